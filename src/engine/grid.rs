//! The grid runner of sweeps and ablations. Per seed, a foundation (the splits, the initial
//! model and its Adam state) and every arm's run from it, in a memory store; per arm, the
//! paired statistics against the control of the same setting and seed, with the faulty labels
//! lifted past θ; and how a grid's units end — run here, written as a shard's part, or merged
//! from the parts (see [`super::shard`]).

use super::Store;
use super::runner::{IterRecord, run_arms};
use super::shard::{self, Outcome, Plan};
use super::train::{EvalTag, INITIAL, evaluate_model, fit_initial};
use crate::analysis::stats::{paired_t, wilcoxon};
use crate::arm::{Arm, CONTROL};
use crate::artifacts::{
    Grid, Layout, Manifest, PartRow, Samples, Split, SweepRow, SweepSummaryRow, Unit,
};
use crate::config::{Pipeline, Theta};
use crate::model::{Net, OptimState};
use crate::sources::Source;
use crate::vocab::IterStatus;
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A sweep's kind of grid and part (`parts/sweep-<i>-of-<n>.…`).
pub const SWEEP_KIND: &str = "sweep";
/// An ablation's kind of grid and part (`parts/ablation-<i>-of-<n>.…`).
pub const ABLATION_KIND: &str = "ablation";

/// What one seed yields: its sweep rows, and the initial and final per-label accuracies.
#[derive(Clone)]
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
pub fn foundation(q: &Pipeline, src: &Source) -> Result<Foundation> {
    let t0 = Instant::now();
    let s = super::split::make(q, src)?;
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

/// One seed of a pipeline from its foundation: every arm, all in a memory store over `layout`
/// (written through with `keep`).
pub fn one_seed(
    q: &Pipeline,
    f: &Foundation,
    arms: &[Arm],
    layout: &Layout,
    keep: bool,
) -> Result<SeedResult> {
    let t0 = Instant::now();
    let store = Store::memory(layout.clone(), keep);
    for (split, samples) in &f.splits {
        store.put_arc(&layout.split(*split), samples.clone())?;
    }
    let initial = layout.initial();
    store.put_arc(&initial.optimizer(), f.state.clone())?;
    store.put_arc(&initial.model(), f.net.clone())?;
    let tag = EvalTag {
        arm: INITIAL.into(),
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

/// What a grid runs: per setting its checked pipeline (a sweep has one, the pipeline as
/// given), the arms and the data.
pub struct GridRun<'a> {
    pub grid: &'a Grid,
    pub pipelines: &'a [Pipeline],
    pub arms: &'a [Arm],
    pub src: &'a Source,
    /// Write each seed's files under `sweep/seed-<s>/` (a sweep's `--keep-artifacts`).
    pub keep: bool,
}

/// The units of each seed together (they share foundations), in grid order.
fn by_seed(units: &[Unit]) -> Vec<Vec<Unit>> {
    let mut groups: Vec<Vec<Unit>> = Vec::new();
    for &u in units {
        match groups.last_mut() {
            Some(g) if g[0].seed == u.seed => g.push(u),
            _ => groups.push(vec![u]),
        }
    }
    groups
}

/// Run `units` (seed-major), seeds in parallel (the rayon pool decides how many at once, and
/// inside each, arms); every unit's result in grid order, or the first failure.
pub fn run_units(
    layout: &Layout,
    g: &GridRun,
    units: &[Unit],
    what: &str,
) -> Result<Vec<(Unit, SeedResult)>> {
    let bar = crate::progress::bar(units.len() as u64, what);
    let per_seed: Vec<Result<Vec<(Unit, SeedResult)>>> = by_seed(units)
        .into_par_iter()
        .map(|group| run_seed(layout, g, group, &bar))
        .collect();
    bar.finish_and_clear();
    let mut results = Vec::new();
    for r in per_seed {
        results.extend(r?);
    }
    Ok(results)
}

/// One seed's units in turn: settings that keep the data and the initial model share one
/// foundation. A sweep logs each seed; an ablation names the setting and seed of a failure.
fn run_seed(
    layout: &Layout,
    g: &GridRun,
    group: Vec<Unit>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<(Unit, SeedResult)>> {
    let seed = shard::seed_of(g.grid, group[0]);
    let mut foundations: Vec<Foundation> = Vec::new();
    let mut out = Vec::new();
    for u in group {
        let ts = Instant::now();
        let q = g.pipelines[u.setting].with_seed(seed);
        if !foundations
            .iter()
            .any(|f| f.settings == q.initial_fingerprint())
        {
            foundations.push(foundation(&q, g.src)?);
        }
        let f = foundations
            .iter()
            .find(|f| f.settings == q.initial_fingerprint())
            .expect("the foundation made above");
        let r = one_seed(&q, f, g.arms, &layout.sweep_seed(seed), g.keep);
        let r = if g.grid.kind == ABLATION_KIND {
            r.with_context(|| format!("setting {:?}, seed {seed}", g.grid.settings[u.setting]))?
        } else {
            let r = r?;
            tracing::info!(
                "sweep: seed {} done in {:.1} s (initial accuracy {:.4})",
                q.seed,
                ts.elapsed().as_secs_f64(),
                r.rows.first().map_or(f64::NAN, |x| x.accuracy)
            );
            r
        };
        out.push((u, r));
        bar.inc(1);
    }
    Ok(out)
}

/// How a grid's units end under `plan`: merged from the parts (without running anything),
/// or run here (`run`) and then either finished or, for a shard, written as its part (each
/// unit's rows from `part_rows`). `finish` gets every unit's result in grid order and the
/// number of parts merged (0: the units ran here).
pub fn run_plan<R>(
    layout: &Layout,
    grid: &Grid,
    plan: Plan,
    t0: Instant,
    run: impl FnOnce(&[Unit]) -> Result<Vec<(Unit, SeedResult)>>,
    part_rows: impl Fn(Unit, &SeedResult) -> Vec<PartRow>,
    finish: impl FnOnce(Vec<(Unit, SeedResult)>, usize) -> Result<R>,
) -> Result<Outcome<R>> {
    let units = match plan {
        Plan::Merge => {
            let (results, parts) = shard::read_parts(layout, grid)?;
            return finish(results, parts).map(Outcome::Done);
        }
        Plan::All => shard::units(grid),
        Plan::Shard(s) => shard::assigned(grid, s)?,
    };
    let results = run(&units)?;
    match plan {
        Plan::Shard(s) => {
            let rows = results.iter().flat_map(|(u, r)| part_rows(*u, r)).collect();
            Ok(Outcome::Part(shard::write_part(
                layout, grid, s, &units, rows, t0,
            )?))
        }
        _ => finish(results, 0).map(Outcome::Done),
    }
}

/// Of the labels below θ at the start (faulty), how many ended at or above it (lifted):
/// `(faulty, lifted)`. A label without a final accuracy is not lifted.
pub fn lifted_labels(initial: &[f64], finals: &[f64], theta: f64) -> (u32, u32) {
    let (mut faulty, mut lifted) = (0u32, 0u32);
    for (l, a0) in initial.iter().enumerate() {
        if *a0 < theta {
            faulty += 1;
            lifted += finals.get(l).is_some_and(|&a1| a1 >= theta) as u32;
        }
    }
    (faulty, lifted)
}

/// The sweep rows and per-label accuracies of one setting, as [`arm_summaries`] reads them.
pub struct SweepRuns<'a> {
    pub rows: &'a [SweepRow],
    /// Per (seed, arm), the final per-label accuracies.
    pub final_label_acc: &'a BTreeMap<(i64, String), Vec<f64>>,
    /// Per seed, the initial model's per-label accuracies.
    pub initial_label_acc: &'a BTreeMap<i64, Vec<f64>>,
    pub theta: Theta,
}

/// One setting's seed results gathered by seed, for [`arm_summaries`]: the sweep rows in the
/// order added and the per-label accuracies keyed by seed.
#[derive(Default)]
pub struct Gathered {
    pub rows: Vec<SweepRow>,
    initial: BTreeMap<i64, Vec<f64>>,
    finals: BTreeMap<(i64, String), Vec<f64>>,
}

impl Gathered {
    /// Add the result of master seed `seed`.
    pub fn add(&mut self, seed: i64, r: SeedResult) {
        self.initial.insert(seed, r.initial_label_acc);
        for (arm, acc) in r.final_label_acc {
            self.finals.insert((seed, arm), acc);
        }
        self.rows.extend(r.rows);
    }

    /// What [`arm_summaries`] reads, at θ `theta`.
    pub fn runs(&self, theta: Theta) -> SweepRuns<'_> {
        SweepRuns {
            rows: &self.rows,
            final_label_acc: &self.finals,
            initial_label_acc: &self.initial,
            theta,
        }
    }
}

/// One arm's accuracies over the seeds: finals, initials, deltas against the control, and
/// the faulty labels and those lifted.
#[derive(Default)]
struct ArmSeeds {
    finals: Vec<f64>,
    initials: Vec<f64>,
    deltas: Vec<f64>,
    faulty: u32,
    lifted: u32,
}

impl SweepRuns<'_> {
    fn last_iter(&self) -> u32 {
        self.rows.iter().map(|r| r.iteration).max().unwrap_or(0)
    }

    fn accuracy(&self, arm: &str, seed: i64, iteration: u32) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.arm == arm && r.seed == seed && r.iteration == iteration)
            .map(|r| r.accuracy)
    }

    /// The arm's accuracies over every seed with a final row.
    fn arm_seeds(&self, arm: &str) -> ArmSeeds {
        let last_iter = self.last_iter();
        let control = CONTROL.to_string();
        let mut a = ArmSeeds::default();
        for &s in self.initial_label_acc.keys() {
            let Some(f) = self.accuracy(arm, s, last_iter) else {
                continue;
            };
            a.finals.push(f);
            let mut initial = f64::NAN;
            if let Some(r) = self.accuracy(arm, s, 0) {
                a.initials.push(r);
                initial = r;
            }
            // θ of this seed's initial model (a relative θ follows its accuracy).
            let theta = self.theta.at(initial);
            if let Some(c) = self.accuracy(&control, s, last_iter) {
                a.deltas.push(f - c);
            }
            if let (Some(init), Some(fin)) = (
                self.initial_label_acc.get(&s),
                self.final_label_acc.get(&(s, arm.to_string())),
            ) {
                let (faulty, lifted) = lifted_labels(init, fin, theta);
                a.faulty += faulty;
                a.lifted += lifted;
            }
        }
        a
    }
}

/// Per-arm statistics against the control (pure).
pub fn arm_summaries(runs: &SweepRuns) -> Vec<SweepSummaryRow> {
    let mut arms: Vec<String> = runs.rows.iter().map(|r| r.arm.clone()).collect();
    arms.sort();
    arms.dedup();
    arms.iter()
        .map(|arm| {
            let first = runs
                .rows
                .iter()
                .find(|r| &r.arm == arm)
                .expect("a row of the arm");
            summary_row(arm, first, &runs.arm_seeds(arm))
        })
        .collect()
}

/// An arm's summary row from its accuracies over the seeds (the control's statistics are
/// empty).
fn summary_row(arm: &str, first: &SweepRow, a: &ArmSeeds) -> SweepSummaryRow {
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let is_control = *arm == CONTROL.to_string();
    let t = paired_t(&a.deltas);
    let (_, wp) = wilcoxon(&a.deltas);
    let opt = |x: f64| {
        if is_control || x.is_nan() {
            None
        } else {
            Some(x)
        }
    };
    let count = |keep: fn(f64) -> bool| {
        if is_control {
            0
        } else {
            a.deltas.iter().filter(|d| keep(**d)).count() as u32
        }
    };
    SweepSummaryRow {
        arm: arm.to_string(),
        metric: first.metric.clone(),
        layer_select: first.layer_select,
        seeds: a.finals.len() as u32,
        mean_initial: mean(&a.initials),
        mean_final: mean(&a.finals),
        mean_delta: opt(t.mean),
        ci_low: opt(t.ci_low),
        ci_high: opt(t.ci_high),
        t_p: opt(t.p),
        wilcoxon_p: if is_control || a.deltas.is_empty() {
            None
        } else {
            Some(wp)
        },
        wins: count(|d| d > 1e-12),
        losses: count(|d| d < -1e-12),
        ties: count(|d| d.abs() <= 1e-12),
        faulty_labels: a.faulty,
        lifted: a.lifted,
    }
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
    use crate::markdown::{interval, lifted, p_value, signed};
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
    crate::markdown::table(&HEAD, &rows.iter().map(cells).collect::<Vec<_>>())
}

/// A sweep's manifest: settings, seeds and arms (stale summaries are refused by readers).
pub fn sweep_manifest(p: &Pipeline, seeds: usize, arms: &[Arm]) -> Manifest {
    let arms: Vec<String> = arms.iter().map(|a| a.to_string()).collect();
    Manifest::new(
        "sweep",
        &crate::config::fingerprint(&serde_json::json!([p.fingerprint(), arms]).to_string()),
        &p.initial_fingerprint(),
        seeds as u32,
    )
}
