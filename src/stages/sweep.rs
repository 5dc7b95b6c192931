//! `mode sweep`: many seeds × every arm, in one process, with paired statistics.
//!
//! Seed i uses master seed `seed + i` for everything — split, weights, shuffling, selection —
//! (a pipeline's explicit `split.seed` / `model.seed` are ignored so that each seed really
//! re-splits and re-trains). Every arm starts from that seed's initial model and runs the
//! same steps as `mode experiment`, in memory; the control is `random`. Only the summaries
//! are kept unless `--keep-artifacts` writes each seed's files under `sweep/seed-<s>/`.
//!
//! `--shard I/N` runs only shard I's seeds and writes them as a part; `--merge` turns the
//! parts into the same files as one run (see [`super::shard`]).

use super::Ctx;
use super::shard::{self, Outcome, Plan};
use crate::analysis::stats::{paired_t, wilcoxon};
use crate::arm::{Arm, CONTROL};
use crate::artifacts::io::write_together;
use crate::artifacts::{
    Artifact, Grid, Layout, Manifest, Samples, Split, SweepRow, SweepSummaryRow, Unit, write_bytes,
};
use crate::config::Pipeline;
use crate::engine::Store;
use crate::engine::runner::{IterRecord, run_arms};
use crate::engine::train::{EvalTag, evaluate_model, fit_initial};
use crate::model::{Net, OptimState};
use crate::stages::split;
use crate::vocab::IterStatus;
use anyhow::{Result, bail};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What one seed yields: its sweep rows, and the initial and final per-label accuracies.
pub struct SeedResult {
    pub rows: Vec<SweepRow>,
    pub initial_label_acc: Vec<f64>,
    pub final_label_acc: Vec<(String, Vec<f64>)>,
}

/// A seed's splits, initial model and Adam state: what every arm (and, in an ablation, every
/// setting that does not change them) starts from.
pub struct Foundation {
    pub splits: Vec<(Split, Arc<Samples>)>,
    pub net: Arc<Net>,
    pub state: Arc<OptimState>,
    /// The fingerprint of the settings it was made with.
    pub settings: String,
    pub seconds: f64,
}

/// Split and train the initial model of a seed's pipeline.
pub fn foundation(q: &Pipeline, src: &split::Source) -> Result<Foundation> {
    let t0 = Instant::now();
    let s = split::make(q, src)?;
    let (net, _, state) = fit_initial(q, &s.train, None, |_, _| {})?;
    Ok(Foundation {
        splits: s
            .each()
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v.clone())))
            .collect(),
        net: Arc::new(net),
        state: Arc::new(state),
        settings: q.initial_fingerprint(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// One seed of a pipeline: its foundation (made here unless given), then every arm — all in a
/// memory store over `layout` (written through with `keep`).
pub fn one_seed(
    q: &Pipeline,
    src: &split::Source,
    given: Option<&Foundation>,
    arms: &[Arm],
    layout: &Layout,
    keep: bool,
) -> Result<SeedResult> {
    let t0 = Instant::now();
    let made;
    let f = match given {
        Some(f) if f.settings == q.initial_fingerprint() => f,
        _ => {
            made = foundation(q, src)?;
            &made
        }
    };
    let store = Store::memory(layout.clone(), keep);
    for (split, samples) in &f.splits {
        store.put_arc(&layout.split(*split), samples.clone())?;
    }
    let initial = layout.initial();
    store.put_arc(&initial.optimizer(), f.state.clone())?;
    store.put_arc(&initial.model(), f.net.clone())?;
    let tag = EvalTag {
        arm: crate::engine::train::INITIAL.into(),
        iteration: 0,
        status: IterStatus::Ran,
    };
    let initial_rows = evaluate_model(
        &store,
        q,
        &initial.model(),
        &layout.split(Split::Test),
        &initial,
        &tag,
    )?;
    let initial_secs = f.seconds + t0.elapsed().as_secs_f64();
    let records = run_arms(&store, q, arms)?;
    let last = q.mode.max_iter as u32;
    let final_label_acc = records
        .iter()
        .filter(|r| r.iteration == last)
        .map(|r| (r.arm.to_string(), r.label_acc.clone()))
        .collect();
    let mut rows = Vec::new();
    for &arm in arms {
        rows.push(SweepRow {
            seed: q.seed as i64,
            arm: arm.to_string(),
            metric: arm.metric_name().into(),
            layer_select: arm.layer_select,
            iteration: 0,
            accuracy: initial_rows[0].accuracy,
            target_label: None,
            target_acc: None,
            finished_early: false,
            status: IterStatus::Ran,
            seconds: initial_secs,
        });
        for r in records.iter().filter(|r| r.arm == arm) {
            rows.push(to_row(q.seed, r));
        }
    }
    Ok(SeedResult {
        rows,
        initial_label_acc: initial_rows[1..].iter().map(|r| r.accuracy).collect(),
        final_label_acc,
    })
}

fn to_row(seed: u64, r: &IterRecord) -> SweepRow {
    SweepRow {
        seed: seed as i64,
        arm: r.arm.to_string(),
        metric: r.arm.metric_name().into(),
        layer_select: r.arm.layer_select,
        iteration: r.iteration,
        accuracy: r.accuracy,
        target_label: r.target,
        target_acc: r.target.map(|l| r.label_acc[l as usize]),
        finished_early: r.status == IterStatus::FinishedEarly,
        status: r.status,
        seconds: r.seconds,
    }
}

/// Per-arm statistics against the control (pure).
pub fn summarise(
    rows: &[SweepRow],
    final_label_acc: &BTreeMap<(i64, String), Vec<f64>>,
    initial_label_acc: &BTreeMap<i64, Vec<f64>>,
    theta: crate::config::Theta,
) -> Vec<SweepSummaryRow> {
    let last_iter = rows.iter().map(|r| r.iteration).max().unwrap_or(0);
    let final_of = |arm: &str, seed: i64| {
        rows.iter()
            .find(|r| r.arm == arm && r.seed == seed && r.iteration == last_iter)
            .map(|r| r.accuracy)
    };
    let mut arms: Vec<String> = rows.iter().map(|r| r.arm.clone()).collect();
    arms.sort();
    arms.dedup();
    let seeds: Vec<i64> = initial_label_acc.keys().copied().collect();
    let control = CONTROL.to_string();
    let mut out = Vec::new();
    for arm in &arms {
        let first = rows
            .iter()
            .find(|r| &r.arm == arm)
            .expect("a row of the arm");
        let (metric, layer_select) = (first.metric.clone(), first.layer_select);
        let mut finals = Vec::new();
        let mut deltas = Vec::new();
        let mut initials = Vec::new();
        let (mut faulty, mut lifted) = (0u32, 0u32);
        for &s in &seeds {
            let Some(f) = final_of(arm, s) else { continue };
            finals.push(f);
            let mut initial = f64::NAN;
            if let Some(r) = rows
                .iter()
                .find(|r| &r.arm == arm && r.seed == s && r.iteration == 0)
            {
                initials.push(r.accuracy);
                initial = r.accuracy;
            }
            // θ of this seed's initial model (a relative θ follows its accuracy).
            let theta = theta.at(initial);
            if let Some(c) = final_of(&control, s) {
                deltas.push(f - c);
            }
            if let (Some(init), Some(fin)) = (
                initial_label_acc.get(&s),
                final_label_acc.get(&(s, arm.clone())),
            ) {
                for (a0, a1) in init.iter().zip(fin) {
                    if *a0 < theta {
                        faulty += 1;
                        lifted += (*a1 >= theta) as u32;
                    }
                }
            }
        }
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let is_control = *arm == CONTROL.to_string();
        let t = paired_t(&deltas);
        let (_, wp) = wilcoxon(&deltas);
        let opt = |x: f64| {
            if is_control || x.is_nan() {
                None
            } else {
                Some(x)
            }
        };
        out.push(SweepSummaryRow {
            arm: arm.clone(),
            metric,
            layer_select,
            seeds: finals.len() as u32,
            mean_initial: mean(&initials),
            mean_final: mean(&finals),
            mean_delta: opt(t.mean),
            ci_low: opt(t.ci_low),
            ci_high: opt(t.ci_high),
            t_p: opt(t.p),
            wilcoxon_p: if is_control || deltas.is_empty() {
                None
            } else {
                Some(wp)
            },
            wins: if is_control {
                0
            } else {
                deltas.iter().filter(|d| **d > 1e-12).count() as u32
            },
            losses: if is_control {
                0
            } else {
                deltas.iter().filter(|d| **d < -1e-12).count() as u32
            },
            ties: if is_control {
                0
            } else {
                deltas.iter().filter(|d| d.abs() <= 1e-12).count() as u32
            },
            faulty_labels: faulty,
            lifted,
        });
    }
    out
}

/// The header of a summary table's arm columns.
pub const HEAD: [&str; 10] = [
    "arm",
    "seeds",
    "mean initial",
    "mean final",
    "Δ vs control",
    "95% CI",
    "t-test p",
    "Wilcoxon p",
    "W/L/T",
    "faulty labels lifted past θ",
];

/// A summary row's cells, in the order of [`HEAD`].
pub fn cells(r: &SweepSummaryRow) -> Vec<String> {
    use super::markdown::{interval, lifted, p_value, signed};
    vec![
        r.arm.clone(),
        r.seeds.to_string(),
        format!("{:.4}", r.mean_initial),
        format!("{:.4}", r.mean_final),
        signed(r.mean_delta),
        interval(r.ci_low, r.ci_high),
        p_value(r.t_p),
        p_value(r.wilcoxon_p),
        format!("{}/{}/{}", r.wins, r.losses, r.ties),
        lifted(r.lifted, r.faulty_labels),
    ]
}

/// The summary as a Markdown table.
pub fn markdown(rows: &[SweepSummaryRow]) -> String {
    super::markdown::table(&HEAD, &rows.iter().map(cells).collect::<Vec<_>>())
}

pub struct SweepArgs {
    pub seeds: usize,
    pub arms: Vec<Arm>,
    pub idx_dir: Option<PathBuf>,
    pub keep: bool,
    /// Every seed here, one shard's seeds as a part, or a merge of the parts.
    pub plan: Plan,
}

pub struct SweepReport {
    pub seeds: usize,
    pub arms: usize,
    pub iterations: usize,
    pub summary: Vec<SweepSummaryRow>,
    pub seconds: f64,
    pub out: PathBuf,
    /// How many parts were merged (0: the seeds ran here).
    pub merged: usize,
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.merged > 0 {
            format!(" merged from {} shards", self.merged)
        } else {
            String::new()
        };
        write!(
            f,
            "sweep: {} seeds × {} arms × {} iterations{how} in {:.1} s → {}\n\n{}",
            self.seeds,
            self.arms,
            self.iterations,
            self.seconds,
            self.out.display(),
            markdown(&self.summary)
        )
    }
}

/// The sweep's manifest: settings, seeds and arms (stale summaries are refused by readers).
pub fn manifest(p: &Pipeline, seeds: usize, arms: &[Arm]) -> Manifest {
    let arms: Vec<String> = arms.iter().map(|a| a.to_string()).collect();
    Manifest::new(
        "sweep",
        &crate::config::fingerprint(&serde_json::json!([p.fingerprint(), arms]).to_string()),
        &p.initial_fingerprint(),
        seeds as u32,
    )
}

/// A sweep's kind of part (`parts/sweep-<i>-of-<n>.…`).
pub const KIND: &str = "sweep";

/// The sweep's grid: its seeds × arms, one setting (the pipeline as given).
pub fn grid(p: &Pipeline, seeds: usize, arms: &[Arm]) -> Grid {
    Grid {
        kind: KIND.into(),
        pipeline: p.fingerprint(),
        initial: p.initial_fingerprint(),
        first_seed: p.seed,
        seeds,
        arms: arms.iter().map(|a| a.to_string()).collect(),
        settings: vec![shard::BASE.into()],
    }
}

/// Run the seeds (all, or a shard's); write `sweep.parquet`, `sweep_summary.parquet` and `.md`
/// and the sweep's manifest into the root — or, for a shard, its part; or merge the parts.
pub fn run(ctx: &Ctx, a: &SweepArgs) -> Result<Outcome<SweepReport>> {
    let (p, layout) = (&ctx.p, &ctx.layout);
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !a.arms.contains(&CONTROL) {
        bail!("the sweep compares against the control arm `{CONTROL}`: include it in --arms");
    }
    let t0 = Instant::now();
    let grid = grid(p, a.seeds, &a.arms);
    let units = match a.plan {
        Plan::Merge => {
            let (results, parts) = shard::read_parts(layout, &grid)?;
            return finish(ctx, a, results, t0, parts).map(Outcome::Done);
        }
        Plan::All => shard::units(&grid),
        Plan::Shard(s) => shard::assigned(&grid, s)?,
    };
    let src = split::load(p, a.idx_dir.as_deref())?;
    let bar = crate::progress::bar(units.len() as u64, "sweep");
    // Seeds in parallel (and, inside each, arms): the rayon pool decides how many at once.
    let results: Vec<Result<SeedResult>> = units
        .par_iter()
        .map(|&u| {
            let q = p.with_seed(shard::seed_of(&grid, u));
            let ts = Instant::now();
            let r = one_seed(&q, &src, None, &a.arms, &layout.sweep_seed(q.seed), a.keep)?;
            tracing::info!(
                "sweep: seed {} done in {:.1} s (initial accuracy {:.4})",
                q.seed,
                ts.elapsed().as_secs_f64(),
                r.rows.first().map_or(f64::NAN, |x| x.accuracy)
            );
            bar.inc(1);
            Ok(r)
        })
        .collect();
    bar.finish_and_clear();
    let results: Vec<(Unit, SeedResult)> = units
        .iter()
        .copied()
        .zip(results)
        .map(|(u, r)| r.map(|r| (u, r)))
        .collect::<Result<_>>()?;
    match a.plan {
        Plan::Shard(s) => {
            let last = p.mode.max_iter as u32;
            let rows = results
                .iter()
                .flat_map(|(_, r)| shard::part_rows(shard::BASE, last, r))
                .collect();
            Ok(Outcome::Part(shard::write_part(
                layout, &grid, s, &units, rows, t0,
            )?))
        }
        _ => finish(ctx, a, results, t0, 0).map(Outcome::Done),
    }
}

/// Every seed's result (in seed order) → the sweep's rows, summaries and manifest, written
/// together: the one code path of a one-machine run and of a merge.
fn finish(
    ctx: &Ctx,
    a: &SweepArgs,
    results: Vec<(Unit, SeedResult)>,
    t0: Instant,
    merged: usize,
) -> Result<SweepReport> {
    let (p, layout) = (&ctx.p, &ctx.layout);
    let mut rows = Vec::new();
    let mut initial_acc = BTreeMap::new();
    let mut final_acc = BTreeMap::new();
    let mut m = manifest(p, a.seeds, &a.arms);
    for (u, r) in results {
        let seed = p.seed as i64 + u.seed as i64;
        initial_acc.insert(seed, r.initial_label_acc);
        for (arm, acc) in r.final_label_acc {
            final_acc.insert((seed, arm), acc);
        }
        rows.extend(r.rows);
        m.complete(u.seed as u32 + 1, IterStatus::Ran);
    }
    let summary = summarise(&rows, &final_acc, &initial_acc, p.mode.theta);
    let md = markdown(&summary);
    write_together(vec![
        (layout.sweep(), Box::new(|f: &Path| rows.write(f))),
        (
            layout.sweep_summary(),
            Box::new(|f: &Path| summary.write(f)),
        ),
        (
            layout.sweep_markdown(),
            Box::new(|f: &Path| write_bytes(f, md.as_bytes())),
        ),
        (layout.sweep_manifest(), Box::new(|f: &Path| m.write(f))),
    ])?;
    Ok(SweepReport {
        seeds: a.seeds,
        arms: a.arms.len(),
        iterations: p.mode.max_iter,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
        out: layout.sweep_summary(),
        merged,
    })
}
