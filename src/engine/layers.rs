//! The layers step: target-layer selection with feature models.
//!
//! For the input (pixels) and each hidden layer, a fresh softmax head is fitted on the layer's
//! *train* activations and predicts *test*; the output layer is the model itself. Successive
//! layers' test predictions are compared (Bhattacharyya); the target is the first saturated
//! layer, scanning forward (underfitting) and backward (overfitting).

use super::{Step, Store};
use crate::analysis::layers::{self as sel, Direction, SoftmaxHead};
use crate::artifacts::{Activations, Head, INPUT, LayerRow, Layout, OUTPUT, Samples, Split};
use crate::config::{Pipeline, derive_seed, fingerprint};
use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, Axis};
use rand::{SeedableRng, seq::index::sample};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

/// Layer selection in memory: the rows of `layers.parquet` and the fitted heads.
pub struct LayerSelection {
    pub rows: Vec<LayerRow>,
    pub heads: Vec<(String, SoftmaxHead)>,
}

impl LayerSelection {
    /// The target layer of a direction.
    pub fn target(&self, d: Direction) -> Result<&str> {
        target(&self.rows, d)
    }
}

/// The target layer of a direction in `layers.parquet` rows.
pub fn target(rows: &[LayerRow], d: Direction) -> Result<&str> {
    rows.iter()
        .find(|r| r.direction == d && r.is_target)
        .map(|r| r.layer.as_str())
        .ok_or_else(|| anyhow!("the layer selection has no {d} target layer"))
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
    .with_context(|| format!("feature model of layer {layer}"))
}

/// What the input head depends on: the train split and the feature-model settings.
fn input_head_settings(p: &Pipeline, train: &Samples) -> String {
    let split = train.info.get("mode.settings").cloned().unwrap_or_default();
    fingerprint(&serde_json::json!([split, train.len(), p.seed, &p.layers]).to_string())
}

const SETTINGS_KEY: &str = "mode.settings";

/// The head on the input pixels: it depends only on the train split, so it is fitted once
/// per output root (`input_head.parquet`) and reused while its settings match.
pub fn input_head(store: &Store, p: &Pipeline) -> Result<Arc<Head>> {
    let layout: &Layout = store.layout();
    let path = layout.input_head();
    let train = store.get::<Samples>(&layout.split(Split::Train))?;
    let want = input_head_settings(p, &train);
    if store.has(&path) {
        let h = store.get::<Head>(&path)?;
        if h.info.get(SETTINGS_KEY) == Some(&want)
            && h.head.weights.dim() == (train.meta.classes, train.meta.features())
        {
            return Ok(h);
        }
        tracing::info!(
            "{}: made with other settings or data; fitting it again",
            path.display()
        );
    }
    let head = fit(p, &train.pixels, &train.labels, train.meta.classes, INPUT)?;
    let mut h = Head::new(INPUT, head);
    h.info.insert(SETTINGS_KEY.into(), want);
    store.put(&path, h)
}

/// Layer selection over a model's train and test activations (pure but for the fits). The
/// input layer uses the given head on the test pixels. With layer selection off, the output
/// layer is the target and nothing is fitted.
pub fn select(
    p: &Pipeline,
    train: &Activations,
    test: &Activations,
    input: Option<(&SoftmaxHead, &Array2<f32>)>,
) -> Result<LayerSelection> {
    let out_probs = test.probs()?;
    let classes = out_probs.ncols();
    let mut rows = Vec::new();
    if let (false, Some(t)) = (p.layers.enabled, &p.layers.force_target)
        && t != OUTPUT
    {
        bail!(
            "layers.force_target = {t:?} needs layer selection (layers.enabled = true, an arm without -nols)"
        );
    }
    if !p.layers.enabled {
        let acc = sel::accuracy(out_probs.view(), &test.labels);
        for d in [Direction::Forward, Direction::Backward] {
            rows.push(LayerRow {
                layer: OUTPUT.into(),
                position: 0,
                width: classes as u32,
                probe_accuracy: acc,
                bhattacharyya: None,
                is_target: true,
                direction: d,
            });
        }
        return Ok(LayerSelection {
            rows,
            heads: Vec::new(),
        });
    }
    let (ih, test_pixels) =
        input.ok_or_else(|| anyhow!("layer selection needs the input feature model"))?;
    let mut layers: Vec<(String, usize, Array2<f32>)> = Vec::new();
    let mut heads = vec![(INPUT.to_string(), ih.clone())];
    layers.push((
        INPUT.into(),
        test_pixels.ncols(),
        ih.probs(test_pixels.view()),
    ));
    // Hidden layers: one head each, fitted in parallel.
    let hidden: Vec<&(String, Array2<f32>)> =
        train.layers.iter().filter(|(n, _)| n != OUTPUT).collect();
    type Fitted = (String, usize, Array2<f32>, SoftmaxHead);
    let fitted: Vec<Result<Fitted>> = hidden
        .par_iter()
        .map(|(name, acts)| {
            let h = fit(p, acts, &train.labels, classes, name)?;
            let probs = h.probs(test.layer(name)?.view());
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
    let forced = match &p.layers.force_target {
        None => None,
        Some(name) => Some(layers.iter().position(|(n, _, _)| n == name).ok_or_else(|| {
            anyhow!(
                "layers.force_target = {name:?} is not a layer of this model (its layers: {})",
                layers.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?),
    };
    for d in [Direction::Forward, Direction::Backward] {
        let (dist, target) = sel::select_target(&views, p.layers.threshold, d);
        let target = forced.unwrap_or(target);
        for (i, (name, width, probs)) in layers.iter().enumerate() {
            rows.push(LayerRow {
                layer: name.clone(),
                position: i as u32,
                width: *width as u32,
                probe_accuracy: sel::accuracy(probs.view(), &test.labels),
                bhattacharyya: Some(dist[i]),
                is_target: i == target,
                direction: d,
            });
        }
    }
    Ok(LayerSelection { rows, heads })
}

/// Run layer selection on the step's activations (heads fitted on train, compared on the
/// analysis split); write the heads and `layers.parquet`.
pub fn run(store: &Store, s: &Step) -> Result<LayerSelection> {
    let train = super::probe::activations(store, s, Split::Train)?;
    let on = s.analysis_split();
    let test = super::probe::activations(store, s, on)?;
    let selection = if !s.p.layers.enabled {
        select(&s.p, &train, &test, None)?
    } else {
        let test_split = store.get::<Samples>(&s.layout.split(on))?;
        let ih = input_head(store, &s.p)?;
        select(&s.p, &train, &test, Some((&ih.head, &test_split.pixels)))?
    };
    for (name, h) in &selection.heads {
        store.put(&s.dir.head(name), Head::new(name, h.clone()))?;
    }
    store.put(&s.dir.layers(), selection.rows.clone())?;
    Ok(selection)
}
