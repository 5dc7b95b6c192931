//! `mode layers`: target-layer selection with feature models.
//!
//! For the input (flattened pixels) and each hidden layer, a fresh softmax head is fitted on
//! the layer's *train* activations and predicts *test*; the output layer is the model itself.
//! Writes `layers.parquet` and one `heads/<layer>.parquet` per fitted head.

use crate::analysis::layers::{self as sel, Direction, SoftmaxHead};
use crate::artifacts::{self, Activations, Head, LayerRow, Samples, Table};
use crate::config::{Pipeline, derive_seed};
use anyhow::{Result, bail};
use ndarray::{Array2, Axis};
use rand::{SeedableRng, seq::index::sample};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";

/// `<dir>/heads/<layer>.parquet`
pub fn head_path(dir: &Path, layer: &str) -> PathBuf {
    dir.join("heads").join(format!("{layer}.parquet"))
}

fn to_head(layer: &str, h: SoftmaxHead) -> Head {
    Head {
        layer: layer.into(),
        weights: h.weights,
        intercept: h.intercept,
    }
}

pub fn from_head(h: &Head) -> SoftmaxHead {
    SoftmaxHead {
        weights: h.weights.clone(),
        intercept: h.intercept.clone(),
    }
}

/// Rows used to fit heads: all, or a seeded subset of `max` rows.
fn fit_rows(n: usize, max: usize, seed: u64) -> Option<Vec<usize>> {
    if max == 0 || n <= max {
        return None;
    }
    let mut idx = sample(&mut ChaCha8Rng::seed_from_u64(seed), n, max).into_vec();
    idx.sort_unstable();
    Some(idx)
}

fn fit(
    p: &Pipeline,
    x: &Array2<f32>,
    y: &[u16],
    classes: usize,
    layer: &str,
) -> Result<SoftmaxHead> {
    let seed = derive_seed(p.seed, "feature-model-rows");
    match fit_rows(x.nrows(), p.layers.max_train_samples, seed) {
        Some(idx) => {
            let xs = x.select(Axis(0), &idx);
            let ys: Vec<u16> = idx.iter().map(|&i| y[i]).collect();
            sel::fit_head(xs.view(), &ys, classes, &p.layers)
        }
        None => sel::fit_head(x.view(), y, classes, &p.layers),
    }
    .map_err(|e| e.context(format!("layer {layer}")))
}

/// The cached input head, if it fits the data's width and classes.
fn input_head_cached(cache: &Path, data: &Samples) -> Result<Option<SoftmaxHead>> {
    let h = Head::read(cache)?;
    if h.weights.ncols() == data.pixels.ncols() && h.weights.nrows() == data.meta.classes {
        Ok(Some(from_head(&h)))
    } else {
        tracing::warn!(
            "{}: cached input head does not fit this data; refitting",
            cache.display()
        );
        Ok(None)
    }
}

/// Fit (or load from `cache`) the head on the input pixels. It depends only on the train split.
pub fn input_head(p: &Pipeline, train: &Samples, cache: Option<&Path>) -> Result<SoftmaxHead> {
    if let Some(c) = cache
        && c.exists()
    {
        let h = Head::read(c)?;
        if h.weights.ncols() == train.pixels.ncols() && h.weights.nrows() == train.meta.classes {
            return Ok(from_head(&h));
        }
        tracing::warn!(
            "{}: cached input head does not fit this data; refitting",
            c.display()
        );
    }
    let h = fit(p, &train.pixels, &train.labels, train.meta.classes, INPUT)?;
    if let Some(c) = cache {
        to_head(INPUT, h.clone()).write(c)?;
    }
    Ok(h)
}

pub struct LayersReport {
    pub rows: Vec<LayerRow>,
    pub forward_target: String,
    pub backward_target: String,
}

/// Layer selection in memory: the rows of `layers.parquet` and the fitted heads.
pub struct LayerSelection {
    pub rows: Vec<LayerRow>,
    pub heads: Vec<(String, SoftmaxHead)>,
    pub forward_target: String,
    pub backward_target: String,
}

impl LayerSelection {
    pub fn head(&self, layer: &str) -> Result<SoftmaxHead> {
        self.heads
            .iter()
            .find(|(n, _)| n == layer)
            .map(|(_, h)| h.clone())
            .ok_or_else(|| anyhow::anyhow!("no feature model for layer {layer}"))
    }
}

/// The core of `mode layers`: fit heads on the train activations (and use the given input
/// head on the test pixels), compare successive layers' test predictions, pick the targets.
/// With layer selection off, the output layer is the target and nothing is fitted.
pub fn select(
    p: &Pipeline,
    train_acts: &Activations,
    test_acts: &Activations,
    input: Option<(&SoftmaxHead, &Array2<f32>)>,
) -> Result<LayerSelection> {
    let out_probs = test_acts.layer(OUTPUT)?;
    let classes = out_probs.ncols();
    let mut rows = Vec::new();
    if !p.layers.enabled {
        let acc = sel::accuracy(out_probs.view(), &test_acts.labels);
        for d in [Direction::Forward, Direction::Backward] {
            rows.push(LayerRow {
                layer: OUTPUT.into(),
                position: 0,
                width: classes as u32,
                probe_accuracy: acc,
                bhattacharyya: None,
                is_target: true,
                direction: d.as_str().into(),
            });
        }
        return Ok(LayerSelection {
            rows,
            heads: Vec::new(),
            forward_target: OUTPUT.into(),
            backward_target: OUTPUT.into(),
        });
    }
    let (ih, test_pixels) =
        input.ok_or_else(|| anyhow::anyhow!("layer selection needs the input feature model"))?;
    let mut layers: Vec<(String, usize, Array2<f32>)> = Vec::new();
    let mut heads = vec![(INPUT.to_string(), ih.clone())];
    layers.push((
        INPUT.into(),
        test_pixels.ncols(),
        ih.probs(test_pixels.view()),
    ));
    // Hidden layers: one head each, fitted in parallel.
    let hidden: Vec<&(String, Array2<f32>)> = train_acts
        .layers
        .iter()
        .filter(|(n, _)| n != OUTPUT)
        .collect();
    type Fitted = (String, usize, Array2<f32>, SoftmaxHead);
    let fitted: Vec<Result<Fitted>> = hidden
        .par_iter()
        .map(|(name, acts)| {
            let h = fit(p, acts, &train_acts.labels, classes, name)?;
            let probs = h.probs(test_acts.layer(name)?.view());
            Ok((name.clone(), acts.ncols(), probs, h))
        })
        .collect();
    for f in fitted {
        let (name, width, probs, h) = f?;
        heads.push((name.clone(), h));
        layers.push((name, width, probs));
    }
    layers.push((OUTPUT.into(), classes, out_probs.clone()));
    let views: Vec<_> = layers.iter().map(|(_, _, m)| m.view()).collect();
    let mut targets = Vec::new();
    for d in [Direction::Forward, Direction::Backward] {
        let (dist, target) = sel::select_target(&views, p.layers.threshold, d);
        targets.push(layers[target].0.clone());
        for (i, (name, width, probs)) in layers.iter().enumerate() {
            rows.push(LayerRow {
                layer: name.clone(),
                position: i as u32,
                width: *width as u32,
                probe_accuracy: sel::accuracy(probs.view(), &test_acts.labels),
                bhattacharyya: Some(dist[i]),
                is_target: i == target,
                direction: d.as_str().into(),
            });
        }
    }
    Ok(LayerSelection {
        rows,
        heads,
        forward_target: targets[0].clone(),
        backward_target: targets[1].clone(),
    })
}

/// Write `heads/<layer>.parquet` for every fitted head and `layers.parquet` into `dir`.
pub fn write(dir: &Path, selection: &LayerSelection) -> Result<()> {
    for (name, h) in &selection.heads {
        to_head(name, h.clone()).write(&head_path(dir, name))?;
    }
    LayerRow::write(&dir.join(artifacts::LAYERS), &selection.rows)
}

/// Run layer selection for the iteration folder `dir` (which holds `activations/`).
pub fn run(
    p: &Pipeline,
    dir: &Path,
    splits_dir: &Path,
    input_cache: Option<&Path>,
) -> Result<LayersReport> {
    let train_acts = Activations::read(&artifacts::activations_path(dir, "train"))?;
    let test_acts = Activations::read(&artifacts::activations_path(dir, "test"))?;
    let selection = if !p.layers.enabled {
        select(p, &train_acts, &test_acts, None)?
    } else {
        // The input layer's states are the test pixels; its head depends only on the train
        // split and is cached, so the train split is read only when the head must be fitted.
        let test = Samples::read(&splits_dir.join("test.parquet"))?;
        if test.ids != test_acts.ids {
            bail!(
                "{}: activations do not match the test split in {} (re-run `mode probe`)",
                dir.display(),
                splits_dir.display()
            );
        }
        let cached = match input_cache.filter(|c| c.exists()) {
            Some(c) => input_head_cached(c, &test)?,
            None => None,
        };
        let ih = match cached {
            Some(h) => h,
            None => input_head(
                p,
                &Samples::read(&splits_dir.join("train.parquet"))?,
                input_cache,
            )?,
        };
        select(p, &train_acts, &test_acts, Some((&ih, &test.pixels)))?
    };
    write(dir, &selection)?;
    Ok(LayersReport {
        rows: selection.rows,
        forward_target: selection.forward_target,
        backward_target: selection.backward_target,
    })
}
