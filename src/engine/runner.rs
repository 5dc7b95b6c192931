//! The in-process runner: every arm's loop from one initial model, over a memory store
//! (written through to disk for `mode experiment`, kept in memory for sweeps).
//!
//! The arms run in lockstep, one iteration at a time, with the same steps as the make chain —
//! probe, layers, heatmap, select, retrain, evaluate: the probes, the retrainings and the
//! evaluations of every arm run as fleets (one program for all models of one architecture,
//! see `model::fleet`), the per-arm steps in parallel. Each iteration becomes visible on disk
//! only when complete. Arms that analyse the initial model the same way share that first
//! analysis. An arm that fails stops; the others go on, and the first failure is reported at
//! the end.

use super::{Step, Store, heatmap, layers, probe, runs, select, train};
use crate::arm::Arm;
use crate::artifacts::{BatchRow, MetricRow, Split};
use crate::config::Pipeline;
use crate::vocab::{IterStatus, Origin, Scope};
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::collections::HashSet;
use std::time::Instant;

/// One iteration of one arm, as sweeps and ablations record it.
#[derive(Debug, Clone)]
pub struct IterRecord {
    pub arm: Arm,
    pub iteration: u32,
    /// Overall test accuracy and per-label accuracies after this iteration.
    pub accuracy: f64,
    pub label_acc: Vec<f64>,
    /// The label this iteration targeted (the faultiest), if any.
    pub target: Option<u16>,
    pub status: IterStatus,
    pub seconds: f64,
}

fn record_of(arm: Arm, k: u32, metrics: &[MetricRow], batch: &[BatchRow], secs: f64) -> IterRecord {
    let overall = metrics
        .iter()
        .find(|r| r.scope == Scope::Overall)
        .expect("an overall row");
    IterRecord {
        arm,
        iteration: k,
        accuracy: overall.accuracy,
        label_acc: metrics
            .iter()
            .filter(|r| r.scope == Scope::Label)
            .map(|r| r.accuracy)
            .collect(),
        target: batch
            .iter()
            .find(|b| b.origin == Origin::Targeted)
            .map(|b| b.label),
        status: overall.status,
        seconds: secs,
    }
}

/// probe → layers → heatmap for a step.
pub fn analyse(store: &Store, s: &Step) -> Result<()> {
    probe::run(store, s)?;
    layers::run(store, s)?;
    heatmap::run(store, s)?;
    Ok(())
}

/// Copy the analysis of `from` (same model, same analysis settings) into `to`'s folder.
fn copy_analysis(store: &Store, from: &Step, to: &Step) -> Result<()> {
    use crate::artifacts::{Activations, DiagnosisRow, Head, Heatmaps, LayerRow};
    for split in from.probe_splits() {
        let a = store.get::<Activations>(&from.dir.activations(split.as_str()))?;
        store.put_arc(&to.dir.activations(split.as_str()), a)?;
    }
    let rows = store.get::<Vec<LayerRow>>(&from.dir.layers())?;
    if to.p.layers.enabled {
        // One head per layer (the rows list each layer once per direction).
        let mut seen = HashSet::new();
        let names = rows
            .iter()
            .map(|r| r.layer.as_str())
            .filter(|n| seen.insert(*n));
        for name in names.filter(|n| *n != crate::artifacts::OUTPUT) {
            let h = store.get::<Head>(&from.dir.head(name))?;
            store.put_arc(&to.dir.head(name), h)?;
        }
    }
    store.put_arc(&to.dir.layers(), rows)?;
    let maps = store.get::<Heatmaps>(&from.dir.heatmaps())?;
    store.put_arc(&to.dir.heatmaps(), maps)?;
    let d = store.get::<Vec<DiagnosisRow>>(&from.dir.diagnosis())?;
    store.put_arc(&to.dir.diagnosis(), d)?;
    Ok(())
}

/// What makes two arms' analyses of the same model identical.
fn analysis_key(s: &Step) -> (bool, Vec<Split>) {
    (s.p.layers.enabled, s.probe_splits())
}

/// Wall times of an iteration's phases, printed to stderr when `MODE_PROFILE` is set (for
/// profiling; nothing else reads them).
struct Phases {
    on: bool,
    k: u32,
    arms: usize,
    last: std::sync::Mutex<Instant>,
}

impl Phases {
    fn new(k: u32, arms: usize) -> Phases {
        Phases {
            on: std::env::var_os("MODE_PROFILE").is_some(),
            k,
            arms,
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// One arm's step (printed when profiling).
    fn step(&self, s: &Step, what: &str, t0: Instant) {
        if self.on {
            eprintln!(
                "profile:     {} {what} {:.3} s",
                s.arm,
                t0.elapsed().as_secs_f64()
            );
        }
    }

    fn mark(&self, what: &str) {
        if self.on {
            let now = Instant::now();
            eprintln!(
                "profile: iteration {} ({} arms): {what} {:.3} s",
                self.k,
                self.arms,
                (now - *self.last.lock().expect("profile lock")).as_secs_f64()
            );
            *self.last.lock().expect("profile lock") = now;
        }
    }
}

/// One arm's run in the lockstep loop.
struct Lane {
    arm: Arm,
    /// The first iteration still to run.
    start: u32,
    /// Iteration 1's analysis is already in the store (shared from a leader).
    analysed: bool,
    records: Vec<IterRecord>,
    failed: Option<anyhow::Error>,
}

/// The steps of one iteration of the live lanes, and the first failure of each.
struct Round {
    k: u32,
    /// The lanes' indices, in step order.
    live: Vec<usize>,
    steps: Vec<Step>,
    errors: Vec<Option<anyhow::Error>>,
}

impl Round {
    fn fail(&mut self, j: usize, e: anyhow::Error) {
        if self.errors[j].is_none() {
            self.errors[j] = Some(e);
        }
    }

    /// The steps that have not failed.
    fn ok(&self) -> Vec<usize> {
        (0..self.steps.len())
            .filter(|&j| self.errors[j].is_none())
            .collect()
    }
}

/// Run iteration `k` of every live lane: analysis and selection per arm (in parallel),
/// retraining and evaluation as fleets; commit each complete iteration and record it.
fn run_iteration(store: &Store, base: &Pipeline, lanes: &mut [Lane], k: u32) {
    let layout = store.layout().clone();
    let live: Vec<usize> = (0..lanes.len())
        .filter(|&i| lanes[i].failed.is_none() && lanes[i].start <= k)
        .collect();
    if live.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let phase = Phases::new(k, live.len());
    let steps: Vec<Step> = live
        .iter()
        .map(|&i| Step::new(&layout, base, lanes[i].arm, k))
        .collect();
    let mut r = Round {
        k,
        errors: (0..steps.len()).map(|_| None).collect(),
        live,
        steps,
    };
    for j in 0..r.steps.len() {
        let s = &r.steps[j];
        if let Err(e) = store.open_iteration(&s.dir, layout.iter_staging(&s.arm_name(), k)) {
            r.fail(j, e);
        }
    }
    // The probes of every arm that analyses its previous model now, as fleets.
    let probing: Vec<usize> = r
        .ok()
        .into_iter()
        .filter(|&j| r.steps[j].analyses() && !(k == 1 && lanes[r.live[j]].analysed))
        .collect();
    probe_fleet(store, &mut r, &probing);
    phase.mark("probe");
    per_arm(store, &mut r, &probing, &phase);
    phase.mark("layers+heatmap+select");
    // Retraining and evaluation as fleets.
    let ok = r.ok();
    let fleet: Vec<&Step> = ok.iter().map(|&j| &r.steps[j]).collect();
    let retrained = train::retrain_fleet(store, &fleet);
    for (&j, res) in ok.iter().zip(retrained) {
        if let Err(e) = res {
            r.fail(j, e);
        }
    }
    phase.mark("retrain");
    let ok = r.ok();
    let fleet: Vec<&Step> = ok.iter().map(|&j| &r.steps[j]).collect();
    let metrics: Vec<(usize, Result<Vec<MetricRow>>)> = ok
        .iter()
        .copied()
        .zip(train::evaluate_fleet(store, &fleet))
        .collect();
    phase.mark("evaluate");
    let secs = t0.elapsed().as_secs_f64() / r.steps.len() as f64;
    commit_all(store, r, lanes, metrics, secs);
    phase.mark("commit");
}

/// The probes of the `probing` steps as one fleet (a failure fails them all).
fn probe_fleet(store: &Store, r: &mut Round, probing: &[usize]) {
    if probing.is_empty() {
        return;
    }
    let fleet: Vec<&Step> = probing.iter().map(|&j| &r.steps[j]).collect();
    if let Err(e) = probe::run_fleet(store, &fleet) {
        let msg = format!("{e:#}");
        for &j in probing {
            r.fail(j, anyhow::anyhow!("{msg}"));
        }
    }
}

/// layers → heatmap (for the steps that probed) → select, per arm, in parallel.
fn per_arm(store: &Store, r: &mut Round, probing: &[usize], phase: &Phases) {
    let results: Vec<Result<()>> = r
        .steps
        .par_iter()
        // Profiling times each arm's steps alone (in parallel a step's wall time would count
        // the other arms' work its thread picked up).
        .with_min_len(if phase.on { r.steps.len() } else { 1 })
        .enumerate()
        .map(|(j, s)| {
            if r.errors[j].is_some() {
                return Ok(());
            }
            let t = Instant::now();
            if probing.contains(&j) {
                layers::run(store, s)?;
                phase.step(s, "layers", t);
                let t = Instant::now();
                heatmap::run(store, s)?;
                phase.step(s, "heatmap", t);
            }
            let t = Instant::now();
            select::run(store, s)?;
            phase.step(s, "select", t);
            // What the probe found is no longer needed in memory (it is on disk).
            store.forget(&s.dir.activations_dir(), &[]);
            Ok(())
        })
        .collect();
    for (j, res) in results.into_iter().enumerate() {
        if let Err(e) = res {
            r.fail(j, e);
        }
    }
}

/// Close every step's iteration: an evaluated one is committed, recorded in its manifest and
/// in its lane; a failed one is abandoned and stops its lane.
fn commit_all(
    store: &Store,
    mut r: Round,
    lanes: &mut [Lane],
    metrics: Vec<(usize, Result<Vec<MetricRow>>)>,
    secs: f64,
) {
    let k = r.k;
    for (j, m) in metrics {
        let s = &r.steps[j];
        let closed = m.and_then(|m| {
            let status = train::iteration_status(store, s)?;
            Ok((m, status))
        });
        let done = store
            .close_iteration(&s.dir, closed)
            .and_then(|(m, status)| {
                runs::record(store, s, status)?;
                let batch = store.get::<Vec<BatchRow>>(&s.dir.batch())?;
                Ok(record_of(s.arm, k, &m, &batch, secs))
            });
        match done {
            Ok(rec) => lanes[r.live[j]].records.push(rec),
            Err(e) => r.fail(j, e),
        }
    }
    for (j, e) in r.errors.into_iter().enumerate() {
        let s = &r.steps[j];
        if let Some(e) = e {
            // (A step closed above was abandoned already; this drops what it left in memory.)
            store.abandon(&s.dir);
            lanes[r.live[j]].failed = Some(e.context(format!("iteration {k}")));
        } else if k > 1 {
            // The previous iteration is no longer needed in memory but for its selection (the
            // initial model's folder is shared by every arm and stays).
            store.forget(s.prev.path(), &[s.prev.batch(), s.prev.metrics()]);
        }
    }
}

/// Run every arm from the store's initial model, in parallel. Returns every iteration's
/// record, arms in the given order.
pub fn run_arms(store: &Store, base: &Pipeline, arms: &[Arm]) -> Result<Vec<IterRecord>> {
    let layout = store.layout().clone();
    let starts: Vec<u32> = arms
        .iter()
        .map(|&a| runs::resume_point(store, base, a))
        .collect::<Result<_>>()?;
    // Iteration 1's analysis, once per analysis setting among the arms that still need it.
    let mut leaders: Vec<Step> = Vec::new();
    for (&arm, &start) in arms.iter().zip(&starts) {
        let s = Step::new(&layout, base, arm, 1);
        if start == 1
            && s.analyses()
            && !leaders.iter().any(|l| analysis_key(l) == analysis_key(&s))
        {
            leaders.push(s);
        }
    }
    leaders
        .par_iter()
        .map(|s| {
            store.open_iteration(&s.dir, layout.iter_staging(&s.arm_name(), 1))?;
            analyse(store, s).with_context(|| format!("arm {}", s.arm))
        })
        .collect::<Result<Vec<()>>>()?;
    // The other arms of each setting start from a copy.
    let mut analysed = vec![false; arms.len()];
    for (i, (&arm, &start)) in arms.iter().zip(&starts).enumerate() {
        let s = Step::new(&layout, base, arm, 1);
        if let Some(l) = leaders.iter().find(|l| analysis_key(l) == analysis_key(&s))
            && start == 1
            && s.analyses()
        {
            if l.dir != s.dir {
                store.open_iteration(&s.dir, layout.iter_staging(&s.arm_name(), 1))?;
                copy_analysis(store, l, &s).with_context(|| format!("arm {arm}"))?;
            }
            analysed[i] = true;
        }
    }
    let max = base.mode.max_iter as u32;
    let mut lanes: Vec<Lane> = Vec::with_capacity(arms.len());
    for ((&arm, &start), &done) in arms.iter().zip(&starts).zip(&analysed) {
        // Completed iterations (a resumed run): their records come from their files.
        let mut records = Vec::new();
        for k in 1..start.min(max + 1) {
            let s = Step::new(&layout, base, arm, k);
            let m = store.get::<Vec<MetricRow>>(&s.dir.metrics())?;
            let b = store.get::<Vec<BatchRow>>(&s.dir.batch())?;
            records.push(record_of(arm, k, &m, &b, 0.0));
        }
        lanes.push(Lane {
            arm,
            start,
            analysed: done,
            records,
            failed: None,
        });
    }
    let bar = crate::progress::bar(max as u64, "iterations");
    for k in 1..=max {
        run_iteration(store, base, &mut lanes, k);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut all = Vec::new();
    for lane in lanes {
        if let Some(e) = lane.failed {
            return Err(e.context(format!("arm {}", lane.arm)));
        }
        all.extend(lane.records);
    }
    Ok(all)
}
