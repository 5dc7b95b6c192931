//! `mode heatmap`: per-label heat maps and diagnosis, from the target layer's predictions.
//!
//! The target layer comes from `layers.parquet` (forward direction for the diagnosis and for
//! underfitting; backward direction when the faultiest label overfits). Its predictions are
//! the model's own when the target is the output layer, else its feature model's (head).

use crate::analysis::heatmap as hm;
use crate::analysis::layers::{self as sel};
use crate::artifacts::{
    self, Activations, DiagnosisRow, Head, HeatmapRow, LayerRow, Samples, Table,
};
use crate::config::{Pipeline, Space};
use crate::stages::layers::{INPUT, OUTPUT, from_head, head_path};
use anyhow::{Result, anyhow};
use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::Path;

/// The target layer of a direction in `layers.parquet`.
pub fn target(rows: &[LayerRow], direction: &str) -> Result<String> {
    rows.iter()
        .find(|r| r.direction == direction && r.is_target)
        .map(|r| r.layer.clone())
        .ok_or_else(|| anyhow!("layers.parquet has no {direction} target layer"))
}

/// A layer's states for a split: pixels for `input`, activations otherwise.
pub fn states<'a>(
    layer: &str,
    acts: &'a Activations,
    samples: &'a Samples,
) -> Result<&'a Array2<f32>> {
    if layer == INPUT {
        Ok(&samples.pixels)
    } else {
        acts.layer(layer)
    }
}

/// Predictions at `layer`: the model's own for `output`, the layer's head otherwise.
fn predictions_at(
    dir: &Path,
    layer: &str,
    acts: &Activations,
    samples: &Samples,
) -> Result<Vec<u16>> {
    if layer == OUTPUT {
        return Ok(acts.predicted.clone());
    }
    let head = from_head(&Head::read(&head_path(dir, layer))?);
    Ok(sel::predictions(
        head.probs(states(layer, acts, samples)?.view()).view(),
    ))
}

pub struct HeatmapReport {
    pub diagnosis: Vec<DiagnosisRow>,
    pub layer: String,
    pub maps: usize,
}

pub fn run(p: &Pipeline, dir: &Path, splits_dir: &Path) -> Result<HeatmapReport> {
    let layers = LayerRow::read(&dir.join(artifacts::LAYERS))?;
    let fwd = target(&layers, "forward")?;
    let bwd = target(&layers, "backward")?;
    let train_acts = Activations::read(&artifacts::activations_path(dir, "train"))?;
    let test_acts = Activations::read(&artifacts::activations_path(dir, "test"))?;
    let classes = test_acts.layer(OUTPUT)?.ncols();
    // Pixels are read only where needed: test for input-space maps or an input target,
    // train only for an input target's train predictions.
    let test = if fwd == INPUT || bwd == INPUT || p.heatmap.space == Space::Input {
        Samples::read(&splits_dir.join("test.parquet"))?
    } else {
        empty_like(&test_acts)
    };
    let train = if fwd == INPUT {
        Samples::read(&splits_dir.join("train.parquet"))?
    } else {
        empty_like(&train_acts)
    };
    let train_pred = predictions_at(dir, &fwd, &train_acts, &train)?;
    let test_pred = predictions_at(dir, &fwd, &test_acts, &test)?;
    let d = hm::diagnose(
        &hm::per_label_accuracy(&train_acts.labels, &train_pred, classes),
        &hm::per_label_accuracy(&test_acts.labels, &test_pred, classes),
        p.mode.theta,
        p.mode.gamma,
        p.mode.underfit_rule,
    );
    // Overfitting is analysed at the backward target.
    let overfit = d.iter().any(|r| r.faultiest && r.action == "fix_overfit");
    let (layer, pred) = if overfit && bwd != fwd {
        let pred = predictions_at(dir, &bwd, &test_acts, &test)?;
        (bwd, pred)
    } else {
        (fwd, test_pred)
    };
    let space = p.heatmap.space;
    let x = match space {
        Space::Input => &test.pixels,
        Space::Feature => states(&layer, &test_acts, &test)?,
    };
    let weights = if space == Space::Feature && p.heatmap.weighted && layer != OUTPUT {
        Some(Head::read(&head_path(dir, &layer))?.weights)
    } else {
        None
    };
    let maps = hm::heatmaps(x.view(), &test_acts.labels, &pred, classes);
    let rows: Vec<HeatmapRow> = maps
        .into_iter()
        .map(|m| {
            let mut values = m.values;
            if let Some(w) = &weights {
                values *= &w.row(m.label as usize);
            }
            HeatmapRow {
                label: m.label,
                other: m.other,
                kind: m.kind.into(),
                space: space.as_str().into(),
                layer: layer.clone(),
                n: m.n,
                values: values.to_vec(),
            }
        })
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("mode.weighted".to_string(), weights.is_some().to_string());
    if space == Space::Input {
        meta.extend(test.meta.to_kv());
    }
    artifacts::write_heatmaps(&dir.join(artifacts::HEATMAPS), &rows, &meta)?;
    let diagnosis: Vec<DiagnosisRow> = d
        .into_iter()
        .map(|r| DiagnosisRow {
            label: r.label,
            train_acc: r.train_acc,
            test_acc: r.test_acc,
            gap: r.gap,
            underfit: r.underfit,
            overfit: r.overfit,
            faultiest: r.faultiest,
            action: r.action.into(),
            n_train: r.n_train,
            n_test: r.n_test,
        })
        .collect();
    DiagnosisRow::write(&dir.join(artifacts::DIAGNOSIS), &diagnosis)?;
    Ok(HeatmapReport {
        diagnosis,
        layer,
        maps: rows.len(),
    })
}

/// Samples with no pixels, for when only activations are needed.
fn empty_like(acts: &Activations) -> Samples {
    Samples {
        meta: artifacts::DatasetMeta {
            dataset: String::new(),
            height: 0,
            width: 0,
            classes: 0,
            class_names: vec![],
        },
        ids: acts.ids.clone(),
        labels: acts.labels.clone(),
        true_labels: acts.labels.clone(),
        pixels: Array2::zeros((acts.ids.len(), 0)),
    }
}
