//! The in-process runner: every arm's loop from one initial model, arms in parallel, over a
//! memory store (written through to disk for `mode experiment`, kept in memory for sweeps).
//!
//! Each iteration runs the same steps as the make chain — probe, layers, heatmap, select,
//! retrain, evaluate — and becomes visible on disk only when complete. Arms that analyse the
//! initial model the same way share that first analysis.

use super::{Step, Store, heatmap, layers, probe, runs, select, train};
use crate::arm::Arm;
use crate::artifacts::{BatchRow, MetricRow, Split};
use crate::config::Pipeline;
use crate::vocab::{IterStatus, Origin, Scope};
use anyhow::{Context, Result};
use rayon::prelude::*;
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
        let mut names: Vec<&str> = rows.iter().map(|r| r.layer.as_str()).collect();
        names.dedup();
        for name in names.iter().filter(|n| **n != crate::artifacts::OUTPUT) {
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

/// Run iterations `start..=max_iter` of one arm; with `analysed`, iteration 1's analysis is
/// already in the store.
fn run_arm(
    store: &Store,
    base: &Pipeline,
    arm: Arm,
    start: u32,
    analysed: bool,
) -> Result<Vec<IterRecord>> {
    let layout = store.layout().clone();
    let max = base.mode.max_iter as u32;
    let mut records = Vec::new();
    // Completed iterations (a resumed run): their records come from their files.
    for k in 1..start.min(max + 1) {
        let s = Step::new(&layout, base, arm, k);
        let m = store.get::<Vec<MetricRow>>(&s.dir.metrics())?;
        let b = store.get::<Vec<BatchRow>>(&s.dir.batch())?;
        records.push(record_of(arm, k, &m, &b, 0.0));
    }
    for k in start..=max {
        let t0 = Instant::now();
        let s = Step::new(&layout, base, arm, k);
        let name = s.arm_name();
        store.open_iteration(&s.dir, layout.iter_staging(&name, k))?;
        let body = || -> Result<(Vec<MetricRow>, IterStatus)> {
            if s.analyses() && !(k == 1 && analysed) {
                analyse(store, &s)?;
            }
            select::run(store, &s)?;
            train::retrain(store, &s)?;
            let status = train::iteration_status(store, &s)?;
            Ok((train::evaluate(store, &s)?, status))
        };
        let (metrics, status) = match body() {
            Ok(v) => v,
            Err(e) => {
                store.abandon(&s.dir);
                return Err(e.context(format!("iteration {k}")));
            }
        };
        store.commit(&s.dir)?;
        runs::record(store, &s, status)?;
        let batch = store.get::<Vec<BatchRow>>(&s.dir.batch())?;
        records.push(record_of(
            arm,
            k,
            &metrics,
            &batch,
            t0.elapsed().as_secs_f64(),
        ));
        // The previous iteration is no longer needed in memory but for its selection (the
        // initial model's folder is shared by every arm and stays).
        if k > 1 {
            store.forget(s.prev.path(), &[s.prev.batch(), s.prev.metrics()]);
        }
    }
    Ok(records)
}

/// Advances a progress bar when dropped (when an arm ends, however it ends).
struct BarTick<'a>(&'a indicatif::ProgressBar);

impl Drop for BarTick<'_> {
    fn drop(&mut self) {
        self.0.inc(1);
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
    let bar = crate::progress::bar(arms.len() as u64, "arms");
    let results: Vec<Result<Vec<IterRecord>>> = arms
        .par_iter()
        .zip(&starts)
        .zip(&analysed)
        .map(|((&arm, &start), &done)| {
            let _done = BarTick(&bar);
            run_arm(store, base, arm, start, done).with_context(|| format!("arm {arm}"))
        })
        .collect();
    bar.finish_and_clear();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}
