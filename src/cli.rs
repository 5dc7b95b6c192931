//! The command line: clap types, turned into checked inputs of one stage, run under the
//! output root's lock. Library types derive no clap traits; this is the only module that
//! knows the flags.

use crate::arm::Arm;
use crate::artifacts::{IterDir, Layout, Lock, LockKind, Split};
use crate::config::Pipeline;
use crate::engine::shard::{Plan, Shard};
use crate::stages::{self, At, Ctx};
use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mode",
    version,
    about = "MODE: debug a neural network by state differential analysis and input selection"
)]
pub struct Cli {
    /// Pipeline: a file, or the name of one in pipelines/ (`-p mnist`); built-in defaults
    /// otherwise.
    #[arg(long, short, global = true)]
    pipeline: Option<PathBuf>,
    /// Override one pipeline parameter, e.g. --set mode.theta=0.9 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = key_value)]
    set: Vec<String>,
    /// Output folder of the pipeline [default: output/<pipeline name>].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Only print errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Worker threads for the runners (arms, seeds, settings and row-parallel scoring run on
    /// them; each training runs on one) [default: RAYON_NUM_THREADS, else every core].
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// An arm's iteration, for the loop's stages.
#[derive(Args, Clone)]
struct AtArgs {
    /// The arm: mode-<metric>[-nols], label-random, uncertainty, random, …
    #[arg(long)]
    arm: Arm,
    /// The iteration (1-based).
    #[arg(long)]
    iteration: u32,
}

impl AtArgs {
    fn at(&self) -> At {
        At {
            arm: self.arm,
            k: self.iteration,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Split the data into train / bug-fix pool / test Parquet files: idx files, an image
    /// folder (data.images = "ROOT": ROOT/<class>/*.png|jpg) or a Parquet table (data.table).
    Split {
        /// Folder with the idx files [default: data.idx_dir; unused with data.images or
        /// data.table].
        #[arg(long)]
        idx_dir: Option<PathBuf>,
        /// Output folder [default: <root>/splits].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train the initial model on a Parquet of samples (or continue one with --init).
    Train {
        /// Samples to train on [default: <root>/splits/train.parquet].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Continue training this model instead of starting from fresh weights.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Output folder for model.safetensors and train_log.parquet [default: <root>/initial].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Epochs (overrides train.epochs).
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// Evaluate a model on a split: metrics.parquet and predictions.parquet.
    Evaluate {
        /// The arm whose iteration is evaluated (with --iteration); else the initial model.
        #[arg(long, requires = "iteration", conflicts_with_all = ["model", "data", "out", "onnx"])]
        arm: Option<Arm>,
        #[arg(long, requires = "arm")]
        iteration: Option<u32>,
        /// Model file [default: <root>/initial/model.safetensors].
        #[arg(long, conflicts_with = "onnx")]
        model: Option<PathBuf>,
        /// An ONNX classifier instead (your own model; model.input says how samples reach it).
        #[arg(long, requires = "out")]
        onnx: Option<PathBuf>,
        /// Samples [default: <root>/splits/test.parquet].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output folder [default: the model's folder].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record every layer's activations: an arm's iteration, or any model (a `mode` model or
    /// an ONNX classifier) on any samples.
    Probe {
        #[arg(long, requires = "iteration", conflicts_with_all = ["model", "data", "out", "onnx"])]
        arm: Option<Arm>,
        #[arg(long, requires = "arm")]
        iteration: Option<u32>,
        /// Model file (instead of --arm/--iteration).
        #[arg(long, requires = "out", conflicts_with = "onnx")]
        model: Option<PathBuf>,
        /// An ONNX classifier: records every Relu/Gemm/MatMul/Conv output (or model.onnx_layers)
        /// and `output` (probabilities; softmax applied when the model ends in logits).
        #[arg(long, requires = "out")]
        onnx: Option<PathBuf>,
        /// Sample files to probe (repeatable) [default: the train and test splits].
        #[arg(long)]
        data: Vec<PathBuf>,
        /// Folder: writes <out>/activations/<file stem>.parquet.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Target-layer selection with feature models: layers.parquet and heads/.
    Layers {
        #[arg(long, requires = "iteration", required_unless_present = "input_only")]
        arm: Option<Arm>,
        #[arg(long, requires = "arm")]
        iteration: Option<u32>,
        /// Only fit the input-pixel feature model (<root>/input_head.parquet).
        #[arg(long, conflicts_with = "arm")]
        input_only: bool,
    },
    /// Heat maps per label and the diagnosis: heatmaps.parquet and diagnosis.parquet.
    Heatmap(AtArgs),
    /// Choose the next retraining batch: scores.parquet, batch.parquet, pool.parquet.
    Select(AtArgs),
    /// Continue training the previous model on the selected batch.
    Retrain(AtArgs),
    /// One iteration for your own trainer: probe an ONNX model, layers, heatmap, select and
    /// evaluate into runs/<arm>/iter-<k>/, with batch.csv (id, label, origin, source) to train
    /// on; the next iteration takes the retrained model's ONNX.
    Debug {
        /// The ONNX classifier of this iteration (the one the previous batch was trained into).
        #[arg(long)]
        onnx: PathBuf,
        /// The iteration (1-based); iteration k starts from iteration k − 1's pool.
        #[arg(long)]
        iteration: u32,
        /// The selection strategy [default: mode-<select.metric>].
        #[arg(long)]
        arm: Option<Arm>,
    },
    /// Run the loop for many arms in one process (same steps, same files), in parallel.
    Experiment {
        /// Arms, comma-separated, or a set ("all": every arm, 27; "replication": the seed's 21;
        /// "baselines"; "core").
        #[arg(long, default_value = "all")]
        arms: String,
    },
    /// Many seeds × arms in one process: sweep.parquet, sweep_summary.parquet and .md.
    Sweep {
        /// Number of seeds (seed, seed + 1, …).
        #[arg(long, default_value_t = 10)]
        seeds: usize,
        /// Arms, comma-separated, or a set; must include the control `random`.
        #[arg(long, default_value = "all")]
        arms: String,
        /// Folder with the idx files [default: data.idx_dir].
        #[arg(long)]
        idx_dir: Option<PathBuf>,
        /// Keep every seed's artifacts under <root>/sweep/seed-<s>/.
        #[arg(long, conflicts_with = "merge")]
        keep_artifacts: bool,
        /// Run only shard I of N of the seeds (a fixed block of them) and write it as a part
        /// under <root>/parts/; merge the parts with --merge.
        #[arg(long, value_name = "I/N", conflicts_with = "merge")]
        shard: Option<Shard>,
        /// Merge the parts of every shard under <root>/parts/ into the files one run writes
        /// (give the options the shards ran with).
        #[arg(long)]
        merge: bool,
    },
    /// Protocol settings × arms × seeds: ablation.parquet, ablation_summary.parquet and .md.
    Ablate {
        /// A setting: "base" or overrides "k=v; k=v" (repeatable) [default: ablate.settings].
        #[arg(long = "setting", value_name = "K=V; K=V")]
        settings: Vec<String>,
        /// Arms, comma-separated, or a set [default: ablate.arms].
        #[arg(long)]
        arms: Option<String>,
        /// Seeds per setting [default: ablate.seeds].
        #[arg(long)]
        seeds: Option<usize>,
        /// Folder with the idx files [default: data.idx_dir].
        #[arg(long)]
        idx_dir: Option<PathBuf>,
        /// Run only shard I of N of the (setting, seed) units (a fixed block of them) and
        /// write it as a part under <root>/parts/; merge the parts with --merge.
        #[arg(long, value_name = "I/N", conflicts_with = "merge")]
        shard: Option<Shard>,
        /// Merge the parts of every shard under <root>/parts/ into the files one run writes
        /// (give the options the shards ran with).
        #[arg(long)]
        merge: bool,
    },
    /// Summarise every arm against the control: summary.parquet and the seed's tables.
    Summary {
        /// Output file [default: <root>/summary.parquet].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Include incomplete runs (flagged `interrupted`) instead of refusing them.
        #[arg(long)]
        allow_incomplete: bool,
        /// Print the seed's Tables 1 and 2 after the verdict.
        #[arg(long)]
        tables: bool,
    },
    /// The HTML report with PNG figures: <root>/report/index.html.
    Report {
        /// The MODE arm whose analysis is shown [default: mode-<select.metric>].
        #[arg(long)]
        arm: Option<Arm>,
        /// The pair i,k of the HC_i − HC_k map.
        #[arg(long, default_value = "3,5", value_parser = parse_pair)]
        pair: (u16, u16),
        /// Output folder [default: <root>/report].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// What the Makefile needs: iterations, arms, artifact paths, the chain's make rules.
    Info {
        #[command(subcommand)]
        what: InfoCommand,
    },
}

#[derive(Subcommand)]
enum InfoCommand {
    /// mode.max_iter after --set.
    MaxIter,
    /// The pipelines of pipelines/, each with what it is.
    Pipelines,
    /// The arms of a list, sets expanded.
    Arms { list: String },
    /// The path of an artifact (of --arm's --iteration; iteration 0 = the initial model).
    Path {
        artifact: String,
        #[arg(long)]
        arm: Option<Arm>,
        #[arg(long, default_value_t = 0)]
        iteration: u32,
    },
    /// Make rules of the foundation, the in-process loop and the per-stage chain.
    Makefile {
        #[arg(long, default_value = "all")]
        experiment: String,
        #[arg(long, default_value = "mode-dot,random")]
        chain: String,
    },
}

/// The arm of `mode debug`: the given one, else MODE with the pipeline's metric.
fn debug_arm(arm: Option<Arm>, p: &Pipeline) -> Arm {
    arm.unwrap_or(Arm::mode(p.select.metric, true))
}

/// What a sweep or ablation does: every unit, one shard's, or the merge of the parts.
fn plan(shard: Option<Shard>, merge: bool) -> Plan {
    match (shard, merge) {
        (Some(s), _) => Plan::Shard(s),
        (None, true) => Plan::Merge,
        (None, false) => Plan::All,
    }
}

fn parse_pair(s: &str) -> Result<(u16, u16), String> {
    s.split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .ok_or_else(|| format!("{s:?} must be two labels, e.g. 3,5"))
}

/// What a command printed: a one-line log, or text for standard output.
pub enum Printed {
    Log(String),
    Stdout(String),
}

fn log(r: impl std::fmt::Display) -> Printed {
    Printed::Log(r.to_string())
}

fn out(r: impl std::fmt::Display) -> Printed {
    Printed::Stdout(r.to_string())
}

/// How a command holds the output root: the folder locked, shared or alone, the unit inside
/// it, and whether it sweeps the root's leftover temporaries.
struct Hold {
    root: PathBuf,
    kind: LockKind,
    unit: Option<String>,
    sweep_temporaries: bool,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Split { .. } => "split",
            Command::Train { .. } => "train",
            Command::Evaluate { .. } => "evaluate",
            Command::Probe { .. } => "probe",
            Command::Layers { .. } => "layers",
            Command::Heatmap(_) => "heatmap",
            Command::Select(_) => "select",
            Command::Retrain(_) => "retrain",
            Command::Debug { .. } => "debug",
            Command::Experiment { .. } => "experiment",
            Command::Sweep { .. } => "sweep",
            Command::Ablate { .. } => "ablate",
            Command::Summary { .. } => "summary",
            Command::Report { .. } => "report",
            Command::Info { .. } => "info",
        }
    }

    /// How the command holds the output root; `None`: it writes nothing. An explicit `--out`
    /// folder is locked as a unit of its parent folder.
    fn lock(&self, ctx: &Ctx) -> Option<Hold> {
        let layout = &ctx.layout;
        let root = layout.root.clone();
        let hold = |root: PathBuf, kind, unit, sweep_temporaries| {
            Some(Hold {
                root,
                kind,
                unit,
                sweep_temporaries,
            })
        };
        let shared = |unit: String| hold(root.clone(), LockKind::Shared, Some(unit), true);
        let own = |dir: &Path| {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
            let name = dir.file_name().map(|n| n.to_string_lossy().to_string());
            hold(
                parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                LockKind::Shared,
                Some(name.unwrap_or_else(|| "out".into())),
                false,
            )
        };
        let unit = |p: PathBuf| layout.relative(&p);
        let arm = |a: &Arm| shared(unit(layout.arm_dir(&a.to_string())));
        let part = |kind: &str, s: &Shard| {
            let unit = Layout::part_unit(kind, s.index, s.count);
            hold(root.clone(), LockKind::Shared, Some(unit), false)
        };
        match self {
            Command::Split { out: Some(d), .. } | Command::Train { out: Some(d), .. } => own(d),
            Command::Evaluate { out: Some(d), .. } | Command::Probe { out: Some(d), .. } => own(d),
            Command::Split { .. } => shared(unit(layout.splits_dir())),
            Command::Train { .. } | Command::Evaluate { arm: None, .. } => {
                shared(unit(layout.initial().path().to_path_buf()))
            }
            Command::Evaluate { arm: Some(a), .. } | Command::Probe { arm: Some(a), .. } => arm(a),
            Command::Layers { arm: Some(a), .. } => arm(a),
            Command::Layers { .. } => shared(unit(layout.input_head())),
            Command::Heatmap(a) | Command::Select(a) | Command::Retrain(a) => arm(&a.arm),
            // A shard writes only its own part and sweeps no temporaries: on storage shared
            // between machines, another host's live process is not in this one's /proc.
            Command::Sweep { shard: Some(s), .. } => part(crate::engine::grid::SWEEP_KIND, s),
            Command::Ablate { shard: Some(s), .. } => part(crate::engine::grid::ABLATION_KIND, s),
            Command::Sweep { .. } => shared(unit(layout.sweep())),
            Command::Ablate { .. } => shared(unit(layout.ablation())),
            Command::Debug { arm: a, .. } => arm(&debug_arm(*a, &ctx.pipeline)),
            Command::Experiment { .. } | Command::Summary { .. } | Command::Report { .. } => {
                hold(root.clone(), LockKind::Exclusive, None, true)
            }
            Command::Probe { .. } | Command::Info { .. } => None,
        }
    }
}

/// `--set KEY VALUE` (a space for the `=`) would read VALUE as the command; say what is meant
/// before clap does.
pub fn check_set_args(args: &[String]) -> std::result::Result<(), String> {
    for (i, a) in args.iter().enumerate() {
        if a == "--set"
            && let Some(v) = args.get(i + 1)
            && !v.contains('=')
        {
            let next = args.get(i + 2).map_or("VALUE", String::as_str);
            return Err(format!(
                "--set {v}: give the key and its value in one argument, --set {v}={next}"
            ));
        }
    }
    Ok(())
}

/// A `--set` value: KEY=VALUE in one argument.
fn key_value(s: &str) -> std::result::Result<String, String> {
    if s.contains('=') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not KEY=VALUE: give the key and its value in one argument, e.g. --set {s}=0.9"
        ))
    }
}

/// Load and check the pipeline, take the lock, run the command; append its wall time to the
/// root's timings log.
pub fn run(cli: Cli) -> Result<Printed> {
    if let Some(n) = cli.threads {
        if n == 0 {
            bail!("--threads 0: give at least one thread");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
    }
    let file = cli.pipeline.as_deref().map(crate::config::pipeline_file);
    let mut p = Pipeline::load(file.as_deref(), &cli.set)?;
    if let Command::Train {
        epochs: Some(e), ..
    } = cli.command
    {
        p.train.epochs = e;
        p.validate()
            .map_err(|err| err.at(format!("--epochs {e}")))?;
    }
    let layout = Layout::new(
        cli.root
            .clone()
            .unwrap_or_else(|| Layout::default_root(&p.name)),
    );
    let ctx = Ctx {
        pipeline: p,
        layout,
    };
    let _lock = match cli.command.lock(&ctx) {
        Some(h) => Some(Lock::acquire(
            &h.root,
            h.kind,
            h.unit.as_deref(),
            &format!("mode {}", cli.command.name()),
            h.sweep_temporaries,
        )?),
        None => None,
    };
    let t0 = Instant::now();
    let name = cli.command.name();
    let printed = match dispatch(&ctx, cli.command)? {
        Printed::Log(line) => Printed::Log(format!("{line} ({:.2} s)", t0.elapsed().as_secs_f64())),
        other => other,
    };
    if ctx.layout.root.is_dir() && name != "info" {
        use std::io::Write;
        let line = format!("{name}\t{:.4}\n", t0.elapsed().as_secs_f64());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ctx.layout.timings())
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    Ok(printed)
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<Printed> {
    let l = &ctx.layout;
    let step_or = |arm: Option<Arm>, k: Option<u32>| arm.zip(k).map(|(arm, k)| At { arm, k });
    Ok(match command {
        Command::Split { idx_dir, out } => log(stages::split::run(
            ctx,
            &stages::split::SplitArgs {
                idx_dir,
                out: out.unwrap_or_else(|| l.splits_dir()),
            },
        )?),
        Command::Train {
            data, init, out, ..
        } => log(stages::train::run(
            ctx,
            &stages::train::TrainArgs {
                data: data.unwrap_or_else(|| l.split(Split::Train)),
                init,
                out: out.map(IterDir).unwrap_or_else(|| l.initial()),
            },
        )?),
        Command::Evaluate {
            arm,
            iteration,
            model,
            onnx,
            data,
            out,
        } => {
            let a = evaluate_args(l, step_or(arm, iteration), model, onnx, data, out);
            log(stages::evaluate::run(ctx, &a)?)
        }
        Command::Probe {
            arm,
            iteration,
            model,
            onnx,
            data,
            out,
        } => {
            let a = probe_args(l, step_or(arm, iteration), model, onnx, data, out)?;
            log(stages::probe::run(ctx, &a)?)
        }
        Command::Layers { arm, iteration, .. } => {
            use stages::layers::LayersArgs;
            let a = match step_or(arm, iteration) {
                Some(at) => LayersArgs::Step(at),
                None => LayersArgs::InputHead,
            };
            log(stages::layers::run(ctx, &a)?)
        }
        Command::Heatmap(a) => log(stages::heatmap::run(ctx, a.at())?),
        Command::Select(a) => log(stages::select::run(ctx, a.at())?),
        Command::Retrain(a) => log(stages::retrain::run(ctx, a.at())?),
        Command::Debug {
            onnx,
            iteration,
            arm,
        } => log(stages::debug::run(
            ctx,
            &stages::debug::DebugArgs {
                onnx,
                at: At {
                    arm: debug_arm(arm, &ctx.pipeline),
                    k: iteration,
                },
            },
        )?),
        command => dispatch_runs(ctx, command)?,
    })
}

/// The commands over whole runs: the experiment, the grids, the tables, the report, `info`.
fn dispatch_runs(ctx: &Ctx, command: Command) -> Result<Printed> {
    let l = &ctx.layout;
    Ok(match command {
        Command::Experiment { arms } => log(stages::experiment::run(
            ctx,
            &stages::experiment::ExperimentArgs {
                arms: Arm::parse_list(&arms)?,
            },
        )?),
        Command::Sweep {
            seeds,
            arms,
            idx_dir,
            keep_artifacts,
            shard,
            merge,
        } => out(stages::sweep::run(
            ctx,
            &stages::sweep::SweepArgs {
                seeds,
                arms: Arm::parse_list(&arms)?,
                idx_dir,
                keep: keep_artifacts,
                plan: plan(shard, merge),
            },
        )?),
        Command::Ablate {
            settings,
            arms,
            seeds,
            idx_dir,
            shard,
            merge,
        } => {
            let a = ablate_args(ctx, settings, arms, seeds, idx_dir, plan(shard, merge))?;
            out(stages::ablate::run(ctx, &a)?)
        }
        Command::Summary {
            out: file,
            allow_incomplete,
            tables,
        } => out(stages::summary::run(
            ctx,
            &stages::summary::SummaryArgs {
                out: file.unwrap_or_else(|| l.summary()),
                allow_incomplete,
                tables,
            },
        )?),
        Command::Report { arm, pair, out } => log(stages::report::run(
            ctx,
            &stages::report::ReportArgs {
                arm: arm.unwrap_or(Arm::mode(ctx.pipeline.select.metric, true)),
                pair,
                out: out.unwrap_or_else(|| l.report_dir()),
            },
        )?),
        Command::Info { what } => out(stages::info::run(ctx, &info_args(what)?)?),
        _ => unreachable!("a stage of one iteration, run by dispatch"),
    })
}

/// What `mode evaluate` evaluates: a step of an arm, an ONNX model, or a model file (the
/// initial model by default).
fn evaluate_args(
    l: &Layout,
    at: Option<At>,
    model: Option<PathBuf>,
    onnx: Option<PathBuf>,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
) -> stages::evaluate::EvaluateArgs {
    use stages::evaluate::EvaluateArgs;
    match (at, onnx) {
        (Some(at), _) => EvaluateArgs::Step(at),
        (None, Some(onnx)) => EvaluateArgs::Onnx {
            model: onnx,
            data: data.unwrap_or_else(|| l.split(Split::Test)),
            out: IterDir(out.unwrap_or_default()),
        },
        (None, None) => {
            let model = model.unwrap_or_else(|| l.initial().model());
            let out = out
                .or_else(|| model.parent().map(Path::to_path_buf))
                .unwrap_or_default();
            EvaluateArgs::Model {
                model,
                data: data.unwrap_or_else(|| l.split(Split::Test)),
                out: IterDir(out),
                arm: crate::engine::train::INITIAL.into(),
                iteration: 0,
            }
        }
    }
}

/// What `mode probe` probes: a step of an arm, a model file or an ONNX model (the train and
/// test splits by default).
fn probe_args(
    l: &Layout,
    at: Option<At>,
    model: Option<PathBuf>,
    onnx: Option<PathBuf>,
    data: Vec<PathBuf>,
    out: Option<PathBuf>,
) -> Result<stages::probe::ProbeArgs> {
    use stages::probe::ProbeArgs;
    let data = if data.is_empty() {
        vec![l.split(Split::Train), l.split(Split::Test)]
    } else {
        data
    };
    Ok(match (at, model, onnx, out) {
        (Some(at), ..) => ProbeArgs::Step(at),
        (None, Some(model), None, Some(out)) => ProbeArgs::Model {
            model,
            data,
            out: IterDir(out),
        },
        (None, None, Some(model), Some(out)) => ProbeArgs::Onnx {
            model,
            data,
            out: IterDir(out),
        },
        _ => bail!(
            "probe what? pass --arm A --iteration K, or --model FILE --out DIR, or --onnx FILE --out DIR"
        ),
    })
}

/// The ablation's settings, arms and seeds: the command line's, else the pipeline's
/// `[ablate]`.
fn ablate_args(
    ctx: &Ctx,
    settings: Vec<String>,
    arms: Option<String>,
    seeds: Option<usize>,
    idx_dir: Option<PathBuf>,
    plan: Plan,
) -> Result<stages::ablate::AblateArgs> {
    let list = if settings.is_empty() {
        ctx.pipeline.ablate.settings.clone()
    } else {
        settings
    };
    Ok(stages::ablate::AblateArgs {
        settings: list
            .iter()
            .map(|s| stages::ablate::Setting::parse(s))
            .collect::<Result<_>>()?,
        arms: Arm::parse_list(arms.as_deref().unwrap_or(&ctx.pipeline.ablate.arms))?,
        seeds: seeds.unwrap_or(ctx.pipeline.ablate.seeds),
        idx_dir,
        plan,
    })
}

/// What `mode info` tells.
fn info_args(what: InfoCommand) -> Result<stages::info::InfoArgs> {
    use stages::info::InfoArgs;
    Ok(match what {
        InfoCommand::MaxIter => InfoArgs::MaxIter,
        InfoCommand::Pipelines => InfoArgs::Pipelines,
        InfoCommand::Arms { list } => InfoArgs::Arms(Arm::parse_list(&list)?),
        InfoCommand::Path {
            artifact,
            arm,
            iteration,
        } => InfoArgs::Path {
            artifact,
            arm,
            k: iteration,
        },
        InfoCommand::Makefile { experiment, chain } => InfoArgs::Makefile {
            experiment: Arm::parse_list(&experiment)?,
            chain: Arm::parse_list(&chain)?,
        },
    })
}
