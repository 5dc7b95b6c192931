//! `mode heatmap`: per-label heat maps and diagnosis, from the target layer's predictions.
//!
//! The target layer comes from `layers.parquet` (forward direction for the diagnosis and for
//! underfitting; backward direction when the faultiest label overfits). Its predictions are
//! the model's own when the target is the output layer, else its feature model's (head).

use crate::analysis::heatmap as hm;
use crate::analysis::layers::{self as sel, SoftmaxHead};
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

/// One split as the analysis sees it: activations, and pixels when they are needed.
pub struct SplitStates<'a> {
    pub acts: &'a Activations,
    pub pixels: Option<&'a Array2<f32>>,
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

/// Diagnosis and heat maps in memory.
pub struct Analysis {
    pub diagnosis: Vec<DiagnosisRow>,
    pub maps: Vec<HeatmapRow>,
    /// The layer whose predictions split the inputs.
    pub layer: String,
    pub weighted: bool,
}

impl Analysis {
    pub fn faultiest(&self) -> Option<&DiagnosisRow> {
        self.diagnosis.iter().find(|r| r.faultiest)
    }
}

/// Whether the analysis needs the train / test pixels for these layer targets.
pub fn needs_pixels(p: &Pipeline, rows: &[LayerRow]) -> Result<(bool, bool)> {
    let (fwd, bwd) = (target(rows, "forward")?, target(rows, "backward")?);
    Ok((
        fwd == INPUT,
        fwd == INPUT || bwd == INPUT || p.heatmap.space == Space::Input,
    ))
}

/// The core of `mode heatmap`.
pub fn analyse(
    p: &Pipeline,
    layers: &[LayerRow],
    heads: &dyn Fn(&str) -> Result<SoftmaxHead>,
    train: &SplitStates,
    test: &SplitStates,
) -> Result<Analysis> {
    let fwd = target(layers, "forward")?;
    let bwd = target(layers, "backward")?;
    let classes = test.acts.layer(OUTPUT)?.ncols();
    let train_pred = train.predictions(&fwd, heads)?;
    let test_pred = test.predictions(&fwd, heads)?;
    let d = hm::diagnose(
        &hm::per_label_accuracy(&train.acts.labels, &train_pred, classes),
        &hm::per_label_accuracy(&test.acts.labels, &test_pred, classes),
        p.mode.theta,
        p.mode.gamma,
        p.mode.underfit_rule,
    );
    // Overfitting is analysed at the backward target.
    let overfit = d.iter().any(|r| r.faultiest && r.action == "fix_overfit");
    let (layer, pred) = if overfit && bwd != fwd {
        let pred = test.predictions(&bwd, heads)?;
        (bwd, pred)
    } else {
        (fwd, test_pred)
    };
    let space = p.heatmap.space;
    let x = match space {
        Space::Input => test.layer(INPUT)?,
        Space::Feature => test.layer(&layer)?,
    };
    let weights = if space == Space::Feature && p.heatmap.weighted && layer != OUTPUT {
        Some(heads(&layer)?.weights)
    } else {
        None
    };
    let maps = hm::heatmaps(x.view(), &test.acts.labels, &pred, classes)
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
    let diagnosis = d
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
    Ok(Analysis {
        diagnosis,
        maps,
        layer,
        weighted: weights.is_some(),
    })
}

/// Write `heatmaps.parquet` and `diagnosis.parquet` into `dir`.
pub fn write(dir: &Path, a: &Analysis, test_meta: Option<&artifacts::DatasetMeta>) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("mode.weighted".to_string(), a.weighted.to_string());
    if let Some(m) = test_meta {
        meta.extend(m.to_kv());
    }
    artifacts::write_heatmaps(&dir.join(artifacts::HEATMAPS), &a.maps, &meta)?;
    DiagnosisRow::write(&dir.join(artifacts::DIAGNOSIS), &a.diagnosis)
}

pub fn run(p: &Pipeline, dir: &Path, splits_dir: &Path) -> Result<Analysis> {
    let layers = LayerRow::read(&dir.join(artifacts::LAYERS))?;
    let train_acts = Activations::read(&artifacts::activations_path(dir, "train"))?;
    let test_acts = Activations::read(&artifacts::activations_path(dir, "test"))?;
    // Pixels are read only where needed.
    let (need_train, need_test) = needs_pixels(p, &layers)?;
    let train = if need_train {
        Some(Samples::read(&splits_dir.join("train.parquet"))?)
    } else {
        None
    };
    let test = if need_test {
        Some(Samples::read(&splits_dir.join("test.parquet"))?)
    } else {
        None
    };
    let heads = |layer: &str| -> Result<SoftmaxHead> {
        Ok(from_head(&Head::read(&head_path(dir, layer))?))
    };
    let a = analyse(
        p,
        &layers,
        &heads,
        &SplitStates {
            acts: &train_acts,
            pixels: train.as_ref().map(|s| &s.pixels),
        },
        &SplitStates {
            acts: &test_acts,
            pixels: test.as_ref().map(|s| &s.pixels),
        },
    )?;
    let test_meta = if p.heatmap.space == Space::Input {
        test.as_ref().map(|s| &s.meta)
    } else {
        None
    };
    write(dir, &a, test_meta)?;
    Ok(a)
}
