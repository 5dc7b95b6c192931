//! `mode`: command-line entry point. Parses, loads the pipeline, dispatches to one stage.

use anyhow::Result;
use clap::{Parser, Subcommand};
use mode::artifacts::Layout;
use mode::config::Pipeline;
use mode::stages;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mode",
    version,
    about = "MODE: debug a neural network by state differential analysis and input selection"
)]
struct Cli {
    /// Pipeline file with the parameters (pipelines/<name>.toml); built-in defaults otherwise.
    #[arg(long, short, global = true)]
    pipeline: Option<PathBuf>,
    /// Override one pipeline parameter, e.g. --set mode.theta=0.9 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output folder of the pipeline [default: output/<pipeline name>].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Only print errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split idx data into train / bug-fix pool / test Parquet files.
    Split {
        /// Folder with the idx files (overrides data.idx_dir).
        #[arg(long)]
        idx_dir: Option<PathBuf>,
        /// Output folder [default: output/<pipeline>/splits].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train the model on a Parquet of samples (or continue training one with --init).
    Train {
        /// Samples to train on [default: output/<pipeline>/splits/train.parquet].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Continue training this model instead of starting from fresh weights.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Output folder for model.safetensors and train_log.parquet [default: output/<pipeline>/initial].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Epochs (overrides train.epochs).
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// Evaluate a model on a split: metrics.parquet and predictions.parquet.
    Evaluate {
        /// Model file [default: output/<pipeline>/initial/model.safetensors].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Samples to evaluate on [default: output/<pipeline>/splits/test.parquet].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output folder [default: the model's folder].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Arm name recorded in the metrics.
        #[arg(long, default_value = "initial")]
        arm: String,
        /// Iteration recorded in the metrics.
        #[arg(long, default_value_t = 0)]
        iteration: u32,
        /// The batch this model was retrained on; an empty batch marks the arm finished early.
        #[arg(long)]
        batch: Option<PathBuf>,
    },
    /// Record every layer's activations and the predictions for one or more splits.
    Probe {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        /// Split files to probe (repeatable) [default: the train and test splits, and the pool
        /// when heat maps are in feature space or --pool is given].
        #[arg(long)]
        data: Vec<PathBuf>,
        /// Probe the pool split too (uncertainty sampling and feature-space selection need it).
        #[arg(long)]
        pool: bool,
        /// Iteration folder: writes <out>/activations/<split>.parquet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Target-layer selection with feature models: layers.parquet and heads/.
    Layers {
        /// Iteration folder holding activations/ (train and test); outputs go there too.
        #[arg(long)]
        dir: PathBuf,
        /// Cache of the input-pixel feature model (it depends only on the train split).
        #[arg(long)]
        input_head: Option<PathBuf>,
        /// Only fit the input head into --input-head, then stop.
        #[arg(long)]
        input_only: bool,
    },
    /// Heat maps per label and the diagnosis: heatmaps.parquet and diagnosis.parquet.
    Heatmap {
        /// Iteration folder holding activations/ and layers.parquet; outputs go there too.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Choose the next retraining batch: scores.parquet, batch.parquet, pool.parquet.
    Select {
        /// Iteration folder with the diagnosis and heat maps; outputs go there too.
        #[arg(long)]
        dir: PathBuf,
        /// Pool before this selection [default: output/<pipeline>/splits/pool.parquet].
        #[arg(long)]
        pool: Option<PathBuf>,
        /// Arm name (recorded in batch.parquet; seeds the random share).
        #[arg(long)]
        arm: String,
        /// Iteration number (1-based).
        #[arg(long)]
        iteration: u32,
        /// mode: heat-map similarity; label-random / uncertainty: baselines; random: control.
        #[arg(long, value_enum, default_value = "mode")]
        strategy: mode::stages::select::Strategy,
        /// Selection metric (overrides select.metric).
        #[arg(long, value_enum)]
        metric: Option<mode::config::Metric>,
    },
    /// Continue training a model on a selected batch.
    Retrain {
        /// The model to continue from.
        #[arg(long)]
        model: PathBuf,
        /// batch.parquet from `mode select`.
        #[arg(long)]
        batch: PathBuf,
        /// Output folder for model.safetensors and train_log.parquet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the MODE loop for many arms in one process (same stages, same artifacts), in parallel.
    Experiment {
        /// Arms, comma-separated: mode-<metric>[-nols], random, label-random, uncertainty, or
        /// "all" for the 21 arms of the full replication.
        #[arg(long, default_value = "all", value_delimiter = ',')]
        arms: Vec<String>,
        /// Cache of the input-pixel feature model.
        #[arg(long)]
        input_head: Option<PathBuf>,
    },
    /// Many seeds × every arm in one process: sweep.parquet, sweep_summary.parquet and .md.
    Sweep {
        /// Number of seeds (seed, seed + 1, …).
        #[arg(long, default_value_t = 10)]
        seeds: usize,
        /// Arms, comma-separated, or "all"; must include the control `random`.
        #[arg(long, default_value = "all", value_delimiter = ',')]
        arms: Vec<String>,
        /// Folder with the idx files (overrides data.idx_dir).
        #[arg(long)]
        idx_dir: Option<PathBuf>,
        /// Keep every seed's artifacts under <root>/sweep/seed-<s>/.
        #[arg(long)]
        keep_artifacts: bool,
    },
    /// The HTML report with PNG figures: <root>/report/index.html.
    Report {
        /// The MODE arm whose analysis is shown [default: mode-<select.metric>].
        #[arg(long)]
        arm: Option<String>,
        /// The pair i,k of the HC_i − HC_k map.
        #[arg(long, default_value = "3,5")]
        pair: String,
        /// Output folder [default: <root>/report].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Summarise every arm against the control: summary.parquet and the seed's tables.
    Summary {
        /// Output file [default: output/<pipeline>/summary.parquet].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let level = if cli.quiet {
        tracing::Level::ERROR
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut overrides = cli.set.clone();
    match &cli.command {
        Command::Train {
            epochs: Some(e), ..
        } => overrides.push(format!("train.epochs={e}")),
        Command::Select {
            metric: Some(m), ..
        } => overrides.push(format!("select.metric=\"{}\"", m.as_str())),
        _ => {}
    }
    let p = Pipeline::load(cli.pipeline.as_deref(), &overrides)?;
    let layout = Layout::new(cli.root.clone().unwrap_or_else(|| p.output_root()));
    let t0 = Instant::now();
    let stage = match cli.command {
        Command::Split { idx_dir, out } => {
            let out = out.unwrap_or_else(|| layout.splits_dir());
            let r = stages::split::run(&p, idx_dir.as_deref(), &out)?;
            tracing::info!(
                "split: train {} / pool {} / test {} rows → {} (skew moved {}, cap moved {}, labels flipped {})",
                r.train,
                r.pool,
                r.test,
                out.display(),
                r.plan.skew_moved,
                r.plan.cap_moved,
                r.plan.flipped
            );
            "split"
        }
        Command::Train {
            data, init, out, ..
        } => {
            let data = data.unwrap_or_else(|| layout.split("train"));
            let out = out.unwrap_or_else(|| layout.initial_dir());
            let r = stages::train::run(&p, &data, init.as_deref(), &out)?;
            let last = r.epochs.last();
            tracing::info!(
                "train: {} samples, {} epochs, final loss {:.4}, train accuracy {:.4} → {}",
                r.samples,
                r.epochs.len(),
                last.map_or(f64::NAN, |e| e.loss),
                last.map_or(f64::NAN, |e| e.accuracy),
                out.display()
            );
            "train"
        }
        Command::Evaluate {
            model,
            data,
            out,
            arm,
            iteration,
            batch,
        } => {
            let model = model.unwrap_or_else(|| layout.initial_dir().join(mode::artifacts::MODEL));
            let data = data.unwrap_or_else(|| layout.split("test"));
            let out = out.unwrap_or_else(|| model.parent().map(PathBuf::from).unwrap_or_default());
            let finished_early = match &batch {
                Some(b) => mode::artifacts::read_ids(b)?.is_empty(),
                None => false,
            };
            let tag = stages::evaluate::EvalTag {
                arm,
                iteration,
                finished_early,
            };
            let acc = stages::evaluate::run(&p, &model, &data, &out, &tag)?;
            tracing::info!(
                "evaluate: accuracy {acc:.4} on {} → {}",
                data.display(),
                out.display()
            );
            "evaluate"
        }
        Command::Probe {
            model,
            data,
            out,
            pool,
        } => {
            let data = if data.is_empty() {
                let mut d = vec![layout.split("train"), layout.split("test")];
                if pool || p.heatmap.space == mode::config::Space::Feature {
                    d.push(layout.split("pool"));
                }
                d
            } else {
                data
            };
            for (path, n) in stages::probe::run(&model, &data, &out)? {
                tracing::info!("probe: {n} rows → {}", path.display());
            }
            "probe"
        }
        Command::Layers {
            dir,
            input_head,
            input_only,
        } => {
            if input_only {
                let cache = input_head
                    .ok_or_else(|| anyhow::anyhow!("--input-only needs --input-head FILE"))?;
                let train = mode::artifacts::Samples::read(&layout.split("train"))?;
                stages::layers::input_head(&p, &train, Some(&cache))?;
                tracing::info!("layers: input feature model → {}", cache.display());
            } else {
                let r = stages::layers::run(&p, &dir, &layout.splits_dir(), input_head.as_deref())?;
                for row in r.rows.iter().filter(|r| r.direction == "forward") {
                    tracing::info!(
                        "layers: {:<8} width {:>4}  probe accuracy {:.4}  bhattacharyya {}{}",
                        row.layer,
                        row.width,
                        row.probe_accuracy,
                        row.bhattacharyya
                            .map_or("-".to_string(), |b| format!("{b:.4}")),
                        if row.is_target { "  ← target" } else { "" }
                    );
                }
                tracing::info!(
                    "layers: target forward {}, backward {}",
                    r.forward_target,
                    r.backward_target
                );
            }
            "layers"
        }
        Command::Heatmap { dir } => {
            let r = stages::heatmap::run(&p, &dir, &layout.splits_dir())?;
            let faulty: Vec<String> = r
                .diagnosis
                .iter()
                .filter(|d| d.underfit || d.overfit)
                .map(|d| format!("{}{}", d.label, if d.faultiest { "*" } else { "" }))
                .collect();
            tracing::info!(
                "heatmap: {} maps at layer {}; faulty labels [{}] (* = faultiest)",
                r.maps.len(),
                r.layer,
                faulty.join(", ")
            );
            "heatmap"
        }
        Command::Select {
            dir,
            pool,
            arm,
            iteration,
            strategy,
            ..
        } => {
            let pool = pool.unwrap_or_else(|| layout.split("pool"));
            let args = stages::select::SelectArgs {
                dir: &dir,
                pool: &pool,
                splits_dir: &layout.splits_dir(),
                out_dir: &dir,
                arm: &arm,
                iteration,
                strategy,
            };
            let r = stages::select::run(&p, &args)?;
            tracing::info!(
                "select: label {} ({}), {} candidates; batch {} targeted + {} random; pool left {}",
                r.faulty_label.map_or("-".to_string(), |l| l.to_string()),
                r.action,
                r.candidates,
                r.targeted,
                r.random,
                r.left.len()
            );
            "select"
        }
        Command::Retrain { model, batch, out } => {
            let r = stages::retrain::run(&p, &model, &batch, &layout.splits_dir(), &out)?;
            tracing::info!("retrain: {} samples → {}", r.samples, out.display());
            "retrain"
        }
        Command::Experiment { arms, input_head } => {
            let arms = if arms.iter().any(|a| a == "all") {
                stages::experiment::all_arms()
            } else {
                arms
            };
            let records = stages::experiment::run(&p, &layout, &arms, input_head.as_deref())?;
            tracing::info!(
                "experiment: {} arms × {} iterations → {}",
                arms.len(),
                p.mode.max_iter,
                layout.root.join("runs").display()
            );
            let _ = records;
            "experiment"
        }
        Command::Sweep {
            seeds,
            arms,
            idx_dir,
            keep_artifacts,
        } => {
            let arms = if arms.iter().any(|a| a == "all") {
                stages::experiment::all_arms()
            } else {
                arms
            };
            let r = stages::sweep::run(
                &p,
                &layout,
                seeds,
                &arms,
                idx_dir.as_deref(),
                keep_artifacts,
            )?;
            println!(
                "Sweep: {} seeds × {} arms × {} iterations in {:.1} s ({})\n\n{}",
                seeds,
                arms.len(),
                p.mode.max_iter,
                r.seconds,
                p.name,
                stages::sweep::markdown(&r.summary)
            );
            "sweep"
        }
        Command::Report { arm, pair, out } => {
            let (i, k) = pair
                .split_once(',')
                .and_then(|(a, b)| {
                    Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("--pair {pair:?} must be two labels, e.g. --pair 3,5")
                })?;
            let args = stages::report::ReportArgs {
                arm: arm.unwrap_or_else(|| format!("mode-{}", p.select.metric.as_str())),
                pair: (i, k),
                out: out.unwrap_or_else(|| layout.root.join("report")),
            };
            let index = stages::report::run(&p, &layout, &args)?;
            tracing::info!("report: {}", index.display());
            "report"
        }
        Command::Summary { out } => {
            let out = out.unwrap_or_else(|| layout.root.join("summary.parquet"));
            let rows = stages::summary::run(&layout, &out)?;
            let (with, without): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.layer_select);
            if !with.is_empty() {
                println!(
                    "Table 1 (with layer selection)\n{}",
                    stages::summary::markdown(&with)
                );
            }
            if !without.is_empty() {
                println!(
                    "Table 2 (without layer selection)\n{}",
                    stages::summary::markdown(&without)
                );
            }
            "summary"
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    tracing::info!("{stage}: wall time {secs:.2} s");
    // Stage wall times for the report: one appended line per run (a log, not an artifact).
    if layout.root.is_dir() {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.root.join("timings.log"))
        {
            let _ = f.write_all(format!("{stage}\t{secs:.4}\n").as_bytes());
        }
    }
    Ok(())
}
