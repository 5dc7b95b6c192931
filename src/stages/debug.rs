//! `mode debug`: one iteration of the loop for a user's own trainer. The ONNX model given for
//! iteration k is probed (train, test, the pool when needed), then the engine's own steps run
//! — layers → heatmap → select — and the model is evaluated on the test split. There is no
//! retrain step: the user trains on `batch.csv` and brings the next model's ONNX to k + 1.
//!
//! What it guarantees:
//! - `runs/<arm>/iter-<k>/` holds the engine's artifacts of an iteration (activations,
//!   layers, heads, heat maps, diagnosis, scores, batch, pool), `batch.csv`, and the given
//!   model's `metrics.parquet` / `predictions.parquet` (in a debug run these evaluate the model
//!   analysed at iteration k; in an engine run, the retrained one);
//! - the folder appears whole or not at all (staged, renamed into place when complete);
//! - the pool before iteration k is iteration k − 1's `pool.parquet` (k = 1: the pool split),
//!   so a batch never repeats an earlier one; running iteration k again replaces it and
//!   removes the later iterations, which came from the pool it replaces;
//! - no manifest is written: an arm folder of the engine (with `manifest.json`) is refused.

use super::{At, Ctx};
use crate::artifacts::{
    Activations, Artifact, BatchCsv, BatchCsvRow, BatchRow, Layout, MetricRow, Samples, SourceRow,
    Split,
};
use crate::engine::select::Selection;
use crate::engine::train::{self, EvalTag};
use crate::engine::{Step, Store, heatmap, layers, probe, runs, select};
use crate::model::OnnxNet;
use anyhow::{Result, bail};
use std::collections::HashMap;
use std::path::PathBuf;

pub struct DebugArgs {
    pub onnx: PathBuf,
    pub at: At,
}

pub struct DebugReport {
    pub selection: Selection,
    pub metrics: MetricRow,
    pub csv: PathBuf,
    /// The diagnosis explained (when the arm analyses the model).
    pub verdict: Option<crate::analysis::verdict::Verdict>,
}

impl std::fmt::Display for DebugReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.selection;
        write!(
            f,
            "debug: {} iteration {}: model accuracy {:.4}; label {} ({}); batch {} targeted + {} random → {}",
            self.metrics.arm,
            self.metrics.iteration,
            self.metrics.accuracy,
            s.faulty_label.map_or("-".to_string(), |l| l.to_string()),
            s.action,
            s.targeted,
            s.random,
            self.csv.display()
        )?;
        if let Some(v) = &self.verdict {
            write!(f, "\n{}", v.diagnosis_text().trim_end())?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Ctx, a: &DebugArgs) -> Result<DebugReport> {
    let layout = &ctx.layout;
    let (arm, k) = (a.at.arm, a.at.k);
    let name = arm.to_string();
    let store = Store::memory(layout.clone(), true);
    let s = check_start(ctx, &store, a)?;
    let test = store.get::<Samples>(&layout.split(Split::Test))?;
    let net = OnnxNet::load(&a.onnx, &s.p, &test.meta)?;
    let (selection, metrics) = store
        .staged(&s.dir, layout.iter_staging(&name, k), || {
            let done = iteration(&store, &s, &net, a, &test)?;
            // The later iterations came from the pool this one replaces.
            runs::remove_after(layout, &name, k)?;
            Ok(done)
        })
        .map_err(|e| e.context(format!("debug iteration {k}")))?;
    let verdict = if s.analyses() {
        Some(verdict_of(&store, &s)?)
    } else {
        None
    };
    Ok(DebugReport {
        selection,
        metrics: metrics[0].clone(),
        csv: s.dir.batch_csv(),
        verdict,
    })
}

/// The step of iteration k, after checking that it may run: not iteration 0, not in a run
/// folder of the engine, the splits made with these settings, and (k > 1) the pool that
/// iteration k − 1 left still a part of the pool split.
fn check_start(ctx: &Ctx, store: &Store, a: &DebugArgs) -> Result<Step> {
    let layout = &ctx.layout;
    let (arm, k) = (a.at.arm, a.at.k);
    let name = arm.to_string();
    if k == 0 {
        bail!("--iteration 0: iterations start at 1");
    }
    if layout.manifest(&name).exists() {
        bail!(
            "{}: this arm folder holds a run of the engine ({}); debug your own model under another --root",
            layout.arm_dir(&name).display(),
            layout.manifest(&name).display()
        );
    }
    runs::check_splits(store, &ctx.pipeline)?;
    let s = Step::new(layout, &ctx.pipeline, arm, k);
    if k > 1 && !s.prev.pool().exists() {
        bail!(
            "{}: iteration {k} starts from the pool iteration {} left; run `mode debug --iteration {}` first",
            s.prev.pool().display(),
            k - 1,
            k - 1
        );
    }
    if k > 1 {
        check_pool_of_splits(store, &s)?;
    }
    Ok(s)
}

/// The iteration's steps on the user's model: probe → layers → heatmap (when the arm
/// analyses it), select, the model's evaluation on the test split, and `batch.csv`.
fn iteration(
    store: &Store,
    s: &Step,
    net: &OnnxNet,
    a: &DebugArgs,
    test: &Samples,
) -> Result<(Selection, Vec<MetricRow>)> {
    let layout = &s.layout;
    if s.analyses() {
        probe::run_with(store, s, net, &layout.relative(&a.onnx))?;
        layers::run(store, s)?;
        heatmap::run(store, s)?;
    }
    let sel = select::run(store, s)?;
    let tag = EvalTag {
        arm: s.arm_name(),
        iteration: s.k,
        status: train::iteration_status(store, s)?,
    };
    let test_path = layout.split(Split::Test);
    let acts = s.dir.activations(Split::Test.as_str());
    let metrics = if store.has(&acts) {
        let probs = store.get::<Activations>(&acts)?.probs()?.clone();
        train::write_evaluation(store, &s.p, test, probs, &s.dir, &tag)?
    } else {
        train::evaluate_with(store, &s.p, net, (test, &test_path), &s.dir, &tag)?
    };
    let csv = batch_csv(store, layout, &sel.batch)?;
    store.put(&s.dir.batch_csv(), csv)?;
    Ok((sel, metrics))
}

/// The diagnosis of the committed iteration, explained.
fn verdict_of(store: &Store, s: &Step) -> Result<crate::analysis::verdict::Verdict> {
    let test = store.get::<Samples>(&s.layout.split(Split::Test))?;
    Ok(crate::analysis::verdict::verdict(
        &crate::analysis::verdict::Facts {
            shown: &s.arm_name(),
            diagnosis: &Vec::<crate::artifacts::DiagnosisRow>::read(&s.dir.diagnosis())?,
            layers: &Vec::<crate::artifacts::LayerRow>::read(&s.dir.layers())?,
            summary: &[],
            control: f64::NAN,
            sweep: None,
            class_names: &test.meta.class_names,
        },
    ))
}

/// Iteration k − 1's pool must be a part of today's pool split, with its labels: when the data
/// were split again since (another `split.seed`, other files), its rows are other images.
fn check_pool_of_splits(store: &Store, s: &Step) -> Result<()> {
    let split = s.layout.split(Split::Pool);
    let pool = store.get::<Samples>(&split)?;
    let labels: HashMap<u32, u16> = pool
        .ids
        .iter()
        .copied()
        .zip(pool.labels.iter().copied())
        .collect();
    let prev = store.get::<Vec<crate::artifacts::PoolRow>>(&s.prev.pool())?;
    if prev.is_empty() {
        bail!(
            "{}: the pool is empty: iterations 1 to {} selected every sample of it, so iteration {} has nothing to select from (split with a larger pool: split.pool_fraction)",
            s.prev.pool().display(),
            s.k - 1,
            s.k
        );
    }
    if let Some(r) = prev.iter().find(|r| labels.get(&r.id) != Some(&r.label)) {
        bail!(
            "{}: id {} (label {}) is not in the pool split {} as it is now: the data were split again since iteration {}; start again with `mode debug --iteration 1`",
            s.prev.pool().display(),
            r.id,
            r.label,
            split.display(),
            s.k - 1
        );
    }
    Ok(())
}

/// The batch with where each sample came from: `splits/sources.parquet` when the data came
/// from an image folder or a table, else the pool split file and the row in it.
fn batch_csv(store: &Store, layout: &Layout, batch: &[BatchRow]) -> Result<BatchCsv> {
    let from = if layout.sources().exists() {
        layout.sources()
    } else {
        layout.split(Split::Pool)
    };
    let source: HashMap<u32, String> = if layout.sources().exists() {
        store
            .get::<Vec<SourceRow>>(&layout.sources())?
            .iter()
            .map(|r| (r.id, r.source.clone()))
            .collect()
    } else {
        let path = layout.split(Split::Pool);
        let pool = store.get::<Samples>(&path)?;
        let file = layout.relative(&path);
        pool.ids
            .iter()
            .enumerate()
            .map(|(row, &id)| (id, format!("{file}#{row}")))
            .collect()
    };
    batch
        .iter()
        .map(|b| {
            let Some(src) = source.get(&b.id) else {
                bail!(
                    "id {} of the batch has no source in {}: the data were split again while this iteration ran; run it again",
                    b.id,
                    from.display()
                );
            };
            Ok(BatchCsvRow {
                id: b.id,
                label: b.label,
                origin: b.origin,
                source: src.clone(),
            })
        })
        .collect::<Result<_>>()
        .map(BatchCsv)
}
