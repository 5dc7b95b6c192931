//! The layers step: target-layer selection with feature models.
//!
//! For the input (pixels) and each hidden layer, a fresh softmax head is fitted on the layer's
//! *train* activations and predicts *test*; the output layer is the model itself. Successive
//! layers' test predictions are compared (Bhattacharyya); the target is the first saturated
//! layer, scanning forward (underfitting) and backward (overfitting).

use super::{Step, Store};
use crate::analysis::layers::{self as sel, Direction};
use crate::artifacts::SoftmaxHead;
use crate::artifacts::keys::SETTINGS_KEY;
use crate::artifacts::{Activations, Head, INPUT, LayerRow, Layout, OUTPUT, Samples, Split};
use crate::config::{Penalty, Pipeline, derive_seed, fingerprint};
use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, ArrayView2};
use rand::{SeedableRng, seq::SliceRandom, seq::index::sample};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

/// Layer selection in memory: the rows of `layers.parquet` and the fitted heads with their
/// L2 strengths.
pub struct LayerSelection {
    pub rows: Vec<LayerRow>,
    pub heads: Vec<(String, SoftmaxHead, Option<f64>)>,
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

/// A fitted feature model and the L2 strength it was fitted with.
pub struct Fitted {
    pub head: SoftmaxHead,
    pub l2: f64,
}

fn fit(p: &Pipeline, x: &Array2<f32>, y: &[u16], classes: usize, layer: &str) -> Result<Fitted> {
    let seed = derive_seed(p.seed, "feature-model-rows");
    let sub = fit_rows(x.nrows(), p.layers.max_train_samples, seed).map(|idx| {
        let xs = crate::numeric::select_rows(x, &idx);
        let ys: Vec<u16> = idx.iter().map(|&i| y[i]).collect();
        (xs, ys)
    });
    let (xs, ys) = match &sub {
        Some((xs, ys)) => (xs.view(), ys.as_slice()),
        None => (x.view(), y),
    };
    let go = || -> Result<Fitted> {
        let l2 = match p.layers.l2 {
            Penalty::Fixed(v) => v,
            Penalty::Auto => choose_l2(p, xs, ys, classes)?,
        };
        let head = sel::fit_head(
            xs,
            ys,
            classes,
            sel::HeadFit {
                l2,
                max_iterations: p.layers.max_iterations,
            },
        )?;
        Ok(Fitted { head, l2 })
    };
    go().with_context(|| format!("feature model of layer {layer}"))
}

/// `layers.l2 = "auto"`: each strength of `layers.l2_grid` fitted on the fit rows but a
/// seeded `layers.l2_holdout` share, scored by the mean log-loss on that share; the best (the
/// stronger on a tie). Too few rows to hold any out: the middle of the grid.
fn choose_l2(p: &Pipeline, x: ArrayView2<f32>, y: &[u16], classes: usize) -> Result<f64> {
    let grid = &p.layers.l2_grid;
    let n = x.nrows();
    let held = ((n as f64) * p.layers.l2_holdout).round() as usize;
    if held == 0 || held >= n {
        return Ok(grid[grid.len() / 2]);
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
        p.seed,
        "feature-model-l2",
    )));
    let (out, keep) = order.split_at(held);
    let (mut out, mut keep) = (out.to_vec(), keep.to_vec());
    out.sort_unstable();
    keep.sort_unstable();
    let xk = crate::numeric::select_rows(&x, &keep);
    let yk: Vec<u16> = keep.iter().map(|&i| y[i]).collect();
    let xo = crate::numeric::select_rows(&x, &out);
    let yo: Vec<u16> = out.iter().map(|&i| y[i]).collect();
    let scores: Vec<(f64, f64)> = grid
        .par_iter()
        .map(|&l2| {
            let h = sel::fit_head(
                xk.view(),
                &yk,
                classes,
                sel::HeadFit {
                    l2,
                    max_iterations: p.layers.max_iterations,
                },
            )?;
            let probs = h.probs(xo.view());
            let loss =
                crate::model::cross_entropy(&probs, &yo).iter().sum::<f64>() / yo.len() as f64;
            Ok((l2, loss))
        })
        .collect::<Result<_>>()?;
    Ok(scores
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1).then(b.0.total_cmp(&a.0)))
        .map(|(l2, _)| l2)
        .expect("a non-empty grid"))
}

/// The share of the most common label: the accuracy of always guessing it (chance).
fn chance(labels: &[u16], classes: usize) -> f64 {
    let mut count = vec![0usize; classes.max(1)];
    for &l in labels {
        if let Some(c) = count.get_mut(l as usize) {
            *c += 1;
        }
    }
    let top = count.iter().copied().max().unwrap_or(0);
    (top as f64 / labels.len().max(1) as f64).max(1.0 / classes.max(1) as f64)
}

/// A feature model is clearly above chance when it closes at least a tenth of the way from
/// chance to perfect accuracy.
pub fn near_chance(acc: f64, chance: f64) -> bool {
    acc < chance + 0.1 * (1.0 - chance)
}

const L2_KEY: &str = "mode.l2";

/// What the input head depends on: the train split and the feature-model settings.
fn input_head_settings(p: &Pipeline, train: &Samples) -> String {
    let split = train.info.get(SETTINGS_KEY).cloned().unwrap_or_default();
    fingerprint(&serde_json::json!([split, train.len(), p.seed, &p.layers]).to_string())
}

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
    let f = fit(p, &train.pixels, &train.labels, train.meta.classes, INPUT)?;
    let mut h = Head::new(INPUT, f.head);
    h.info.insert(SETTINGS_KEY.into(), want);
    h.info.insert(L2_KEY.into(), f.l2.to_string());
    store.put(&path, h)
}

/// Layer selection over a model's train and test activations (pure but for the fits). The
/// input layer is the given head with its probabilities on the analysis split. With layer
/// selection off, the output layer is the target and nothing is fitted.
pub fn select(
    p: &Pipeline,
    train: &Activations,
    test: &Activations,
    input: Option<(&Head, &Array2<f32>)>,
) -> Result<LayerSelection> {
    let out_probs = test.probs()?;
    let classes = out_probs.ncols();
    let model_acc = sel::accuracy(out_probs.view(), &test.labels);
    let chance = chance(&test.labels, classes);
    if let (false, Some(t)) = (p.layers.enabled, &p.layers.force_target)
        && t != OUTPUT
    {
        bail!(
            "layers.force_target = {t:?} needs layer selection (layers.enabled = true, an arm without -nols)"
        );
    }
    if !p.layers.enabled {
        return Ok(output_only(classes, model_acc, chance));
    }
    let (ih, input_probs) =
        input.ok_or_else(|| anyhow!("layer selection needs the input feature model"))?;
    let (layers, heads) = probed_layers(p, train, test, ih, input_probs)?;
    let views: Vec<_> = layers.iter().map(|l| l.probs.view()).collect();
    let forced = forced_target(p, &layers)?;
    let mut rows = Vec::new();
    for d in [Direction::Forward, Direction::Backward] {
        let (dist, target) = sel::select_target(&views, p.layers.threshold, d);
        let target = forced.unwrap_or(target);
        for (i, l) in layers.iter().enumerate() {
            let acc = sel::accuracy(l.probs.view(), &test.labels);
            rows.push(LayerRow {
                layer: l.name.clone(),
                position: i as u32,
                width: l.width as u32,
                probe_accuracy: acc,
                bhattacharyya: Some(dist[i]),
                is_target: i == target,
                direction: d,
                l2: l.l2,
                near_chance: near_chance(acc, chance),
                below_model: i == target && acc < model_acc - p.layers.max_gap,
            });
        }
    }
    Ok(LayerSelection { rows, heads })
}

/// Layer selection off: the output is the target in both directions.
fn output_only(classes: usize, model_acc: f64, chance: f64) -> LayerSelection {
    let rows = [Direction::Forward, Direction::Backward]
        .into_iter()
        .map(|d| LayerRow {
            layer: OUTPUT.into(),
            position: 0,
            width: classes as u32,
            probe_accuracy: model_acc,
            bhattacharyya: None,
            is_target: true,
            direction: d,
            l2: None,
            near_chance: near_chance(model_acc, chance),
            below_model: false,
        })
        .collect();
    LayerSelection {
        rows,
        heads: Vec::new(),
    }
}

/// One layer as its feature model sees the analysis split.
struct Probed {
    name: String,
    width: usize,
    /// The feature model's probabilities on the analysis split (the model's own for the
    /// output).
    probs: Array2<f32>,
    l2: Option<f64>,
}

/// The fitted heads of [`LayerSelection`]: per layer its name, head and L2 strength.
type FittedHeads = Vec<(String, SoftmaxHead, Option<f64>)>;

/// Every layer, input to output, with its feature model's predictions on `test` (the input's
/// head given, the hidden layers' fitted in parallel), and the heads.
fn probed_layers(
    p: &Pipeline,
    train: &Activations,
    test: &Activations,
    ih: &Head,
    input_probs: &Array2<f32>,
) -> Result<(Vec<Probed>, FittedHeads)> {
    let out_probs = test.probs()?;
    let classes = out_probs.ncols();
    let input_l2 = ih.info.get(L2_KEY).and_then(|v| v.parse::<f64>().ok());
    let mut layers: Vec<Probed> = Vec::new();
    let mut heads = vec![(INPUT.to_string(), ih.head.clone(), input_l2)];
    layers.push(Probed {
        name: INPUT.into(),
        width: ih.head.weights.ncols(),
        probs: input_probs.clone(),
        l2: input_l2,
    });
    // Hidden layers: one head each, fitted in parallel.
    let hidden: Vec<&(String, Array2<f32>)> =
        train.layers.iter().filter(|(n, _)| n != OUTPUT).collect();
    type Done = (String, usize, Array2<f32>, Fitted);
    let fitted: Vec<Result<Done>> = hidden
        .par_iter()
        .map(|(name, acts)| {
            let f = fit(p, acts, &train.labels, classes, name)?;
            let probs = f.head.probs(test.layer(name)?.view());
            Ok((name.clone(), acts.ncols(), probs, f))
        })
        .collect();
    for f in fitted {
        let (name, width, probs, f) = f?;
        heads.push((name.clone(), f.head, Some(f.l2)));
        layers.push(Probed {
            name,
            width,
            probs,
            l2: Some(f.l2),
        });
    }
    layers.push(Probed {
        name: OUTPUT.into(),
        width: classes,
        probs: out_probs.clone(),
        l2: None,
    });
    Ok((layers, heads))
}

/// The position of `layers.force_target`, if set.
fn forced_target(p: &Pipeline, layers: &[Probed]) -> Result<Option<usize>> {
    Ok(match &p.layers.force_target {
        None => None,
        Some(name) => Some(layers.iter().position(|l| l.name == *name).ok_or_else(|| {
            anyhow!(
                "layers.force_target = {name:?} is not a layer of this model (its layers: {})",
                layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?),
    })
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
        let ih = input_head(store, &s.p)?;
        let probs = input_probs(store, s, &ih, on)?;
        select(&s.p, &train, &test, Some((&ih, &probs)))?
    };
    for (name, h, l2) in &selection.heads {
        let mut head = Head::new(name, h.clone());
        if let Some(l2) = l2 {
            head.info.insert(L2_KEY.into(), l2.to_string());
        }
        store.put(&s.dir.head(name), head)?;
    }
    warn_layers(s, &selection.rows);
    store.put(&s.dir.layers(), selection.rows.clone())?;
    Ok(selection)
}

/// The input feature model's probabilities on split `on`: the same for every arm and
/// iteration of a process (one head, one split), so computed once and held in memory.
fn input_probs(store: &Store, s: &Step, ih: &Head, on: Split) -> Result<Arc<Array2<f32>>> {
    let held = s
        .layout
        .input_head()
        .with_file_name(format!(".input-probs-{}", on.as_str()));
    if let Some(p) = store.held::<Array2<f32>>(&held) {
        return Ok(p);
    }
    let split = store.get::<Samples>(&s.layout.split(on))?;
    let p = Arc::new(ih.head.probs(split.pixels.view()));
    store.keep(&held, p.clone());
    Ok(p)
}

/// The log's warnings of a layer selection's checks (the flags are in `layers.parquet`).
fn warn_layers(s: &Step, rows: &[LayerRow]) {
    let at = format!("{} iteration {}", s.arm, s.k);
    for r in rows
        .iter()
        .filter(|r| r.is_target && r.direction == Direction::Forward)
    {
        if r.near_chance {
            tracing::warn!(
                "{at}: the feature model of the target layer {} is not clearly above chance ({:.3}); its diagnosis is not to be trusted (layers.l2, layers.max_train_samples)",
                r.layer,
                r.probe_accuracy
            );
        }
        if r.below_model {
            tracing::warn!(
                "{at}: the feature model of the target layer {} reaches {:.3}, more than layers.max_gap = {} below the model's own accuracy; {}",
                r.layer,
                r.probe_accuracy,
                s.p.layers.max_gap,
                match s.p.layers.untrusted {
                    crate::config::Untrusted::Model =>
                        "the model's own predictions decide the diagnosis",
                    crate::config::Untrusted::Keep =>
                        "it decides the diagnosis all the same (layers.untrusted = \"keep\")",
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_is_the_majority_share_and_near_chance_a_tenth_above() {
        assert!((chance(&[0, 0, 1, 2], 3) - 0.5).abs() < 1e-12);
        assert!((chance(&[0, 1, 2], 3) - 1.0 / 3.0).abs() < 1e-12);
        let c = 1.0 / 3.0;
        assert!(near_chance(0.22, c), "the issue's 0.22 for 3 classes");
        assert!(near_chance(0.39, c));
        assert!(!near_chance(0.41, c));
        assert!(!near_chance(0.9, 0.1));
    }

    /// A hidden layer of noise gets a feature model near chance, flagged; a target far below
    /// the model's own accuracy is flagged too.
    #[test]
    fn layer_flags_follow_the_feature_models() {
        use rand::Rng;
        let n = 300;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let labels: Vec<u16> = (0..n).map(|i| (i % 3) as u16).collect();
        let noise = Array2::from_shape_fn((n, 8), |_| rng.random::<f32>());
        let probs = Array2::from_shape_fn((n, 3), |(i, c)| if c == i % 3 { 0.98 } else { 0.01 });
        let acts = Activations {
            ids: (0..n as u32).collect(),
            labels: labels.clone(),
            predicted: labels.clone(),
            layers: vec![("dense_1".into(), noise), ("output".into(), probs)],
            info: Default::default(),
        };
        let pixels = Array2::from_shape_fn((n, 4), |_| rng.random::<f32>());
        let mut p = Pipeline::default();
        p.layers.l2 = Penalty::Fixed(1.0);
        p.layers.force_target = Some("dense_1".into());
        let ih = fit(&p, &pixels, &labels, 3, INPUT).unwrap();
        let head = Head::new(INPUT, ih.head);
        let probs = head.head.probs(pixels.view());
        let sel = select(&p, &acts, &acts, Some((&head, &probs))).unwrap();
        let row = |layer: &str| {
            sel.rows
                .iter()
                .find(|r| r.layer == layer && r.direction == Direction::Forward)
                .unwrap()
        };
        assert!(
            row("dense_1").near_chance && row("dense_1").below_model && row("dense_1").is_target
        );
        assert!(!row("output").near_chance && !row("output").below_model);
        assert_eq!(row("dense_1").l2, Some(1.0));
    }
}
