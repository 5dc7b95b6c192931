//! Training: Adam (Keras' β and ε), seeded shuffling and dropout, and Adam's saved state.

use super::net::Net;
use super::network::device;
use crate::artifacts::{Artifact, write_bytes};
use crate::config::TrainConfig;
use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Int, Tensor, TensorData};
use ndarray::Array2;
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// One epoch's figures.
#[derive(Debug, Clone, Copy)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

/// Adam's state (moments and step count) after a training, in burn's burnpack format laid out
/// canonically (tensors in name order), so the same state gives the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState(pub Vec<u8>);

impl OptimState {
    fn from_burn(bytes: burn::tensor::Bytes) -> Result<OptimState> {
        let r =
            burn_pack::Reader::from_bytes(bytes).map_err(|e| anyhow!("optimizer state: {e}"))?;
        let (meta, scalars) = (r.metadata().clone(), r.scalars().clone());
        let mut tensors = r
            .into_tensors()
            .map_err(|e| anyhow!("optimizer state: {e}"))?;
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let mut w = burn_pack::Writer::new(tensors);
        for (k, v) in &meta {
            w = w.with_metadata(k, v);
        }
        for (k, v) in scalars {
            w = w.with_scalar(&k, v);
        }
        let out = w
            .into_bytes()
            .map_err(|e| anyhow!("optimizer state: {e}"))?;
        Ok(OptimState(out.to_vec()))
    }
}

impl Artifact for OptimState {
    fn write(&self, path: &Path) -> Result<()> {
        write_bytes(path, &self.0)
    }

    fn read(path: &Path) -> Result<OptimState> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot open the optimizer state {}", path.display()))?;
        burn_pack::Reader::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.clone()))
            .map_err(|e| anyhow!("{}: not an optimizer state: {e}", path.display()))?;
        Ok(OptimState(bytes))
    }
}

/// Train `net` with Adam (Keras' β and ε) on `x`/`y`, shuffling each epoch from `seed`,
/// continuing from Adam's `state` when given (Keras' `fit` on a compiled model again).
/// `on_step(done, total)` reports progress in batches. A non-finite loss stops training with
/// an error. Returns the trained model, the epochs' figures and Adam's state.
pub fn fit(
    net: Net,
    x: &Array2<f32>,
    y: &[u16],
    cfg: &TrainConfig,
    seed: u64,
    state: Option<&OptimState>,
    mut on_step: impl FnMut(usize, usize),
) -> Result<(Net, Vec<EpochStats>, OptimState)> {
    let device = device(true);
    let Net {
        arch,
        settings,
        conv_probe,
        module,
    } = net;
    // Models loaded or probed without autodiff get their gradients back here.
    let mut model = module.fork(&device).train().set_require_grad(true);
    let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
    if let Some(s) = state {
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(s.0.clone()))
            .map_err(|e| anyhow!("loading the optimizer state: {e}"))?;
    }
    if x.nrows() == 0 {
        let st = OptimState::from_burn(optim.into_bytes().map_err(|e| anyhow!("{e}"))?)?;
        return Ok((
            Net {
                arch,
                settings,
                conv_probe,
                module: model,
            },
            Vec::new(),
            st,
        ));
    }
    let loss_fn = CrossEntropyLoss::new(None, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut drop_rng = ChaCha8Rng::seed_from_u64(crate::config::derive_seed(seed, "dropout"));
    let n = x.nrows();
    let batches = n.div_ceil(cfg.batch_size);
    let mut order: Vec<usize> = (0..n).collect();
    let mut stats = Vec::new();
    for epoch in 1..=cfg.epochs {
        let t0 = std::time::Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        let mut correct = 0usize;
        for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let xb = gather(x, chunk);
            let yb: Vec<i64> = chunk.iter().map(|&i| y[i] as i64).collect();
            let input = Tensor::from_data(TensorData::new(xb, [chunk.len(), x.ncols()]), &device);
            let targets =
                Tensor::<1, Int>::from_data(TensorData::new(yb.clone(), [chunk.len()]), &device);
            let (logits, _) = model.forward(&arch, input, None, Some(&mut drop_rng));
            let pred: Vec<i64> = logits
                .clone()
                .detach()
                .argmax(1)
                .try_into_vec_as::<i64>()
                .map_err(|e| anyhow!("{e:?}"))?;
            correct += pred.iter().zip(&yb).filter(|(p, t)| p == t).count();
            let loss = loss_fn.forward(logits, targets);
            let lv: f32 = loss.clone().detach().into_scalar::<f32>();
            if !lv.is_finite() {
                bail!(
                    "training diverged: the loss became {lv} in epoch {epoch}, batch {} (check the data for non-finite or unscaled values, or lower the learning rate)",
                    b + 1
                );
            }
            loss_sum += lv as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.learning_rate, model, grads);
            on_step((epoch - 1) * batches + b + 1, cfg.epochs * batches);
        }
        stats.push(EpochStats {
            epoch,
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    let st = OptimState::from_burn(
        optim
            .into_bytes()
            .map_err(|e| anyhow!("saving the optimizer state: {e}"))?,
    )?;
    Ok((
        Net {
            arch,
            settings,
            conv_probe,
            module: model,
        },
        stats,
        st,
    ))
}

/// The rows `idx` of `x`, one after the other (a training batch).
fn gather(x: &Array2<f32>, idx: &[usize]) -> Vec<f32> {
    let mut v = Vec::with_capacity(idx.len() * x.ncols());
    for &i in idx {
        match x.row(i).as_slice() {
            Some(row) => v.extend_from_slice(row),
            None => v.extend(x.row(i).iter().copied()),
        }
    }
    v
}

/// Per-sample cross-entropy of probabilities against labels.
pub fn cross_entropy(probs: &Array2<f32>, labels: &[u16]) -> Vec<f64> {
    probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(r, &l)| -(r[l as usize].max(1e-7) as f64).ln())
        .collect()
}
