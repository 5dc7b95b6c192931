//! The heatmap step: per-label heat maps and the diagnosis, from the target layer's
//! predictions.
//!
//! The target comes from the layer selection (forward for the diagnosis and underfitting,
//! backward when the faultiest label overfits). Its predictions are the model's own when the
//! target is the output layer, else its feature model's.

use super::{Step, Store};
use crate::analysis::heatmap as hm;
use crate::analysis::layers as sel;
use crate::artifacts::SoftmaxHead;
use crate::artifacts::keys::WEIGHTED_KEY;
use crate::artifacts::{
    Activations, DiagnosisRow, Head, HeatmapRow, Heatmaps, INPUT, LayerRow, OUTPUT, Samples, Split,
};
use crate::config::Pipeline;
use crate::vocab::{Action, Direction, Space};
use anyhow::{Result, anyhow};
use ndarray::Array2;
use std::collections::BTreeMap;

use super::layers::target;

fn target_of(rows: &[LayerRow], d: Direction) -> Result<String> {
    target(rows, d).map(str::to_string)
}

/// One split as the analysis sees it: activations, and pixels when they are needed.
pub struct SplitStates<'a> {
    pub acts: &'a Activations,
    pub pixels: Option<&'a Array2<f32>>,
    /// The samples' facts, when they were read (with the pixels).
    pub meta: Option<&'a crate::artifacts::DatasetMeta>,
}

impl SplitStates<'_> {
    /// A layer's states: pixels for `input`, activations otherwise.
    pub fn layer(&self, layer: &str) -> Result<&Array2<f32>> {
        if layer == INPUT {
            self.pixels
                .ok_or_else(|| anyhow!("the input layer's states (pixels) were not loaded"))
        } else {
            self.acts.layer(layer)
        }
    }

    /// Predictions at `layer`: the model's own for `output`, the layer's head otherwise.
    fn predictions(
        &self,
        layer: &str,
        heads: &dyn Fn(&str) -> Result<SoftmaxHead>,
    ) -> Result<Vec<u16>> {
        if layer == OUTPUT {
            return Ok(self.acts.predicted.clone());
        }
        let head = heads(layer)?;
        Ok(sel::predictions(
            head.probs(self.layer(layer)?.view()).view(),
        ))
    }
}

/// Diagnosis and heat maps in memory. `test` below is the analysis split (`heatmap.split`):
/// the test split as in the seed, the train split, or the holdout.
pub struct Analysis {
    pub diagnosis: Vec<DiagnosisRow>,
    pub maps: Heatmaps,
    /// The layer whose predictions split the inputs.
    pub layer: String,
}

/// Whether the analysis needs the train / test pixels for these layer targets.
pub fn needs_pixels(p: &Pipeline, rows: &[LayerRow]) -> Result<(bool, bool)> {
    let (fwd, bwd) = (
        target(rows, Direction::Forward)?,
        target(rows, Direction::Backward)?,
    );
    Ok((
        fwd == INPUT,
        fwd == INPUT || bwd == INPUT || p.heatmap.space == Space::Input,
    ))
}

/// What the selection will find in the pool: each label's candidates, the pool left, the
/// batch and its targeted share (α · batch).
#[derive(Debug, Clone)]
pub struct PoolFacts {
    pub per_label: Vec<usize>,
    pub left: usize,
    pub batch: usize,
    pub targeted: usize,
}

impl PoolFacts {
    /// The facts of `pool` (the pool before this iteration's selection) for a batch of `batch`.
    pub fn new(
        p: &Pipeline,
        pool: &[crate::artifacts::PoolRow],
        classes: usize,
        batch: usize,
    ) -> PoolFacts {
        let mut per_label = vec![0usize; classes];
        for r in pool {
            if let Some(c) = per_label.get_mut(r.label as usize) {
                *c += 1;
            }
        }
        PoolFacts {
            per_label,
            left: pool.len(),
            batch,
            targeted: ((p.mode.alpha * batch as f64).round() as usize).min(batch),
        }
    }
}

/// Whether the forward target's feature model decides the diagnosis: not when it is not to be
/// trusted (near chance, or far below the model) and `layers.untrusted = "model"`.
fn decides(p: &Pipeline, layers: &[LayerRow], target: &str) -> bool {
    if target == OUTPUT || p.layers.untrusted == crate::config::Untrusted::Keep {
        return true;
    }
    !layers.iter().any(|r| {
        r.layer == target
            && r.is_target
            && r.direction == Direction::Forward
            && (r.near_chance || r.below_model)
    })
}

/// Diagnose every label and build the heat maps (pure but for the given head lookup).
pub fn diagnose_and_map(
    p: &Pipeline,
    layers: &[LayerRow],
    heads: &dyn Fn(&str) -> Result<SoftmaxHead>,
    train: &SplitStates,
    test: &SplitStates,
    pool: &PoolFacts,
) -> Result<Analysis> {
    let (fwd, bwd, decided_at) = analysis_layers(p, layers)?;
    let classes = test.acts.probs()?.ncols();
    let train_pred = train.predictions(&decided_at, heads)?;
    let test_pred = test.predictions(&decided_at, heads)?;
    let model = hm::per_label_accuracy(&test.acts.labels, &test.acts.predicted, classes);
    let model_overall = test
        .acts
        .labels
        .iter()
        .zip(&test.acts.predicted)
        .filter(|(l, p)| l == p)
        .count() as f64
        / test.acts.labels.len().max(1) as f64;
    let theta = p.mode.theta.at(model_overall);
    let d = hm::diagnose(
        &hm::per_label_accuracy(&train.acts.labels, &train_pred, classes),
        &hm::per_label_accuracy(&test.acts.labels, &test_pred, classes),
        theta,
        p.mode.gamma,
        p.mode.underfit_rule,
    );
    // Overfitting is analysed at the backward target.
    let overfit = d
        .iter()
        .any(|r| r.faultiest && r.action == Action::FixOverfit);
    let (layer, pred) = if overfit && bwd != fwd {
        let pred = test.predictions(&bwd, heads)?;
        (bwd, pred)
    } else if fwd == decided_at {
        (fwd, test_pred)
    } else {
        let pred = test.predictions(&fwd, heads)?;
        (fwd, pred)
    };
    let space = p.heatmap.space;
    let (rows, weighted) = map_rows(p, heads, test, &layer, &pred, classes)?;
    let mut info = BTreeMap::new();
    info.insert(WEIGHTED_KEY.to_string(), weighted.to_string());
    if let (Space::Input, Some(m)) = (space, test.meta) {
        info.extend(m.to_kv());
    }
    let decided_by = if decided_at == OUTPUT {
        crate::vocab::Decider::Model
    } else {
        crate::vocab::Decider::FeatureModel
    };
    let above_all = d
        .iter()
        .filter(|r| r.n_test > 0)
        .all(|r| r.test_acc < theta);
    let at_target = hm::per_label_accuracy(&test.acts.labels, &pred, classes);
    let decided = Decided {
        model,
        at_target,
        theta,
        layer: decided_at,
        by: decided_by,
        above_all,
    };
    Ok(Analysis {
        diagnosis: diagnosis_rows(d, &decided, pool),
        maps: Heatmaps { rows, info },
        layer,
    })
}

/// The analysis' layers: the heat maps' forward and backward layers (the targets, or the
/// output when the forward target is not to be trusted) and the diagnosis' layer (the
/// model's own predictions, or the forward one).
fn analysis_layers(p: &Pipeline, layers: &[LayerRow]) -> Result<(String, String, String)> {
    let target = target(layers, Direction::Forward)?.to_string();
    let trusted = decides(p, layers, &target);
    // The heat maps' layer: the target (the backward one for overfitting), the output when the
    // target is not to be trusted.
    let fwd = if trusted { target } else { OUTPUT.to_string() };
    let bwd = if trusted {
        target_of(layers, Direction::Backward)?
    } else {
        OUTPUT.to_string()
    };
    // The diagnosis' layer: the model's own predictions, or the heat maps' layer.
    let decided_at = match p.mode.diagnosis {
        crate::config::DiagnosisBy::Model => OUTPUT.to_string(),
        crate::config::DiagnosisBy::TargetLayer => fwd.clone(),
    };
    Ok((fwd, bwd, decided_at))
}

/// The heat map rows of `layer` from the predictions `pred` on the analysis split (weighted
/// by the feature model's weights when `heatmap.weighted`), and whether they are weighted.
fn map_rows(
    p: &Pipeline,
    heads: &dyn Fn(&str) -> Result<SoftmaxHead>,
    test: &SplitStates,
    layer: &str,
    pred: &[u16],
    classes: usize,
) -> Result<(Vec<HeatmapRow>, bool)> {
    let space = p.heatmap.space;
    let x = match space {
        Space::Input => test.layer(INPUT)?,
        Space::Feature => test.layer(layer)?,
    };
    let weights = if space == Space::Feature && p.heatmap.weighted && layer != OUTPUT {
        Some(heads(layer)?.weights)
    } else {
        None
    };
    let rows = hm::heatmaps(x.view(), &test.acts.labels, pred, classes)
        .into_iter()
        .map(|m| {
            let mut values = m.values;
            if let Some(w) = &weights {
                values *= &w.row(m.label as usize);
            }
            HeatmapRow {
                label: m.label,
                other: m.other,
                kind: m.kind,
                space,
                layer: layer.to_string(),
                n: m.n,
                values: values.to_vec(),
            }
        })
        .collect();
    Ok((rows, weights.is_some()))
}

/// How the diagnosis was decided: per label the model's and the deciding layer's accuracy
/// (with their counts), θ, the layer and what it is, and whether every label is below θ.
struct Decided {
    model: Vec<(f64, u32)>,
    at_target: Vec<(f64, u32)>,
    theta: f64,
    layer: String,
    by: crate::vocab::Decider,
    above_all: bool,
}

/// The rows of `diagnosis.parquet`.
fn diagnosis_rows(
    d: Vec<hm::LabelDiagnosis>,
    decided: &Decided,
    pool: &PoolFacts,
) -> Vec<DiagnosisRow> {
    let Decided {
        model,
        at_target,
        theta,
        by: decided_by,
        above_all,
        ..
    } = decided;
    let (theta, decided_by, above_all) = (*theta, *decided_by, *above_all);
    let decided_at = &decided.layer;
    d.into_iter()
        .map(|r| DiagnosisRow {
            label: r.label,
            train_acc: r.train_acc,
            test_acc: r.test_acc,
            gap: r.gap,
            underfit: r.underfit,
            overfit: r.overfit,
            faultiest: r.faultiest,
            action: r.action,
            n_train: r.n_train,
            n_test: r.n_test,
            model_acc: model[r.label as usize].0,
            target_acc: at_target[r.label as usize].0,
            theta,
            layer: decided_at.clone(),
            decided_by,
            theta_above_all: above_all,
            few_candidates: pool.per_label.get(r.label as usize).copied().unwrap_or(0)
                < pool.targeted,
            batch_exceeds_pool: pool.batch > pool.left,
        })
        .collect()
}

/// Diagnose and build the heat maps for the step; write `heatmaps.parquet` and
/// `diagnosis.parquet`.
pub fn run(store: &Store, s: &Step) -> Result<Analysis> {
    let layers = store.get::<Vec<LayerRow>>(&s.dir.layers())?;
    let train_acts = super::probe::activations(store, s, Split::Train)?;
    let on = s.analysis_split();
    let test_acts = super::probe::activations(store, s, on)?;
    // Pixels are read only where needed.
    let (need_train, need_test) = needs_pixels(&s.p, &layers)?;
    let train = if need_train {
        Some(store.get::<Samples>(&s.layout.split(Split::Train))?)
    } else {
        None
    };
    let test = if need_test {
        Some(store.get::<Samples>(&s.layout.split(on))?)
    } else {
        None
    };
    let heads = |layer: &str| -> Result<SoftmaxHead> {
        Ok(store.get::<Head>(&s.dir.head(layer))?.head.clone())
    };
    let pool_split = store.get::<Samples>(&s.layout.split(Split::Pool))?;
    let classes = test_acts.probs()?.ncols();
    let pool = PoolFacts::new(
        &s.p,
        &super::select::pool_before(store, s)?,
        classes,
        s.p.mode.batch.of(pool_split.len()),
    );
    let a = diagnose_and_map(
        &s.p,
        &layers,
        &heads,
        &SplitStates {
            acts: &train_acts,
            pixels: train.as_ref().map(|t| &t.pixels),
            meta: train.as_ref().map(|t| &t.meta),
        },
        &SplitStates {
            acts: &test_acts,
            pixels: test.as_ref().map(|t| &t.pixels),
            meta: test.as_ref().map(|t| &t.meta),
        },
        &pool,
    )?;
    store.put(&s.dir.heatmaps(), a.maps.clone())?;
    store.put(&s.dir.diagnosis(), a.diagnosis.clone())?;
    warn_diagnosis(s, &a.diagnosis, &pool);
    Ok(a)
}

/// The log's warnings of a diagnosis's checks (the flags are in `diagnosis.parquet`).
fn warn_diagnosis(s: &Step, rows: &[DiagnosisRow], pool: &PoolFacts) {
    let at = format!("{} iteration {}", s.arm, s.k);
    let Some(first) = rows.first() else { return };
    if first.theta_above_all && rows.len() > 1 {
        tracing::warn!(
            "{at}: θ = {:.3} is above every label's accuracy, so every label underfits and the targeting just takes the worst; set mode.theta relative to the model (mode.theta = {{ relative = 0.97 }})",
            first.theta
        );
    }
    if first.batch_exceeds_pool {
        tracing::warn!(
            "{at}: the batch ({}) is larger than the pool left ({}): this iteration takes the whole pool (mode.batch, e.g. a fraction such as 0.067)",
            pool.batch,
            pool.left
        );
    }
    if let Some(r) = rows.iter().find(|r| r.faultiest && r.few_candidates) {
        tracing::warn!(
            "{at}: label {} has {} samples left in the pool but the targeted share is {} (α · batch): it takes them all",
            r.label,
            pool.per_label.get(r.label as usize).copied().unwrap_or(0),
            pool.targeted
        );
    }
}
