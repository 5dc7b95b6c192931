//! The model under debugging: a Keras-style MLP on burn (NdArray CPU backend).
//!
//! Flatten → Dense(h₁, ReLU) → … → Dense(classes, softmax), Glorot-uniform kernels and zero
//! biases as in Keras. The model file is SafeTensors (burn-store) whose header metadata key
//! `mode.architecture` holds the [`Architecture`] as JSON, so any stage rebuilds the model from
//! the file alone. Layers are named `dense_1`, `dense_2`, …, `output`; each layer is one
//! activation column in the probe's output, so other layer kinds (convolutions) only add
//! columns.

use crate::config::TrainConfig;
use anyhow::{Context, Result, anyhow, bail};
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Enough description to rebuild the network from its weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Always "mlp" for now.
    pub kind: String,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub hidden: Vec<usize>,
}

impl Architecture {
    pub fn mlp(height: usize, width: usize, classes: usize, hidden: &[usize]) -> Self {
        Self {
            kind: "mlp".into(),
            height,
            width,
            classes,
            hidden: hidden.to_vec(),
        }
    }

    pub fn inputs(&self) -> usize {
        self.height * self.width
    }

    /// Names of the probed layers, input to output.
    pub fn layer_names(&self) -> Vec<String> {
        let mut v: Vec<String> = (1..=self.hidden.len())
            .map(|i| format!("dense_{i}"))
            .collect();
        v.push("output".into());
        v
    }

    pub fn layer_widths(&self) -> Vec<usize> {
        let mut v = self.hidden.clone();
        v.push(self.classes);
        v
    }

    pub fn describe(&self) -> String {
        let h: Vec<String> = self
            .hidden
            .iter()
            .map(|h| format!("Dense {h} ReLU"))
            .collect();
        format!(
            "Flatten {}×{} → {} → Dense {} softmax",
            self.height,
            self.width,
            h.join(" → "),
            self.classes
        )
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden: Vec<Linear>,
    pub output: Linear,
}

/// The CPU device (NdArray backend), with autodiff for training.
#[allow(deprecated)] // burn marks NdArray deprecated in favour of Flex; the design card asks for it.
pub fn device(autodiff: bool) -> Device {
    let d = Device::ndarray();
    if autodiff { d.autodiff() } else { d }
}

fn glorot(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize, device: &Device) -> Linear {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let w: Vec<f32> = (0..fan_in * fan_out)
        .map(|_| rng.random_range(-limit..limit))
        .collect();
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [fan_in, fan_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::zeros([fan_out], device))),
    }
}

impl Mlp {
    /// Keras-style initialisation: Glorot-uniform kernels, zero biases, from `seed`.
    pub fn init(arch: &Architecture, seed: u64, device: &Device) -> Mlp {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fan_in = arch.inputs();
        let mut hidden = Vec::new();
        for &h in &arch.hidden {
            hidden.push(glorot(&mut rng, fan_in, h, device));
            fan_in = h;
        }
        let output = glorot(&mut rng, fan_in, arch.classes, device);
        Mlp { hidden, output }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for l in &self.hidden {
            x = relu(l.forward(x));
        }
        self.output.forward(x)
    }

    /// Activations of every layer: hidden ReLU outputs, then softmax probabilities.
    pub fn forward_all(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        let mut out = Vec::with_capacity(self.hidden.len() + 1);
        let mut x = x;
        for l in &self.hidden {
            x = relu(l.forward(x));
            out.push(x.clone());
        }
        out.push(softmax(self.output.forward(x), 1));
        out
    }

    /// Save weights and architecture; atomic (temporary file, then rename).
    pub fn save(&self, arch: &Architecture, path: &Path) -> Result<()> {
        let json = serde_json::to_string(arch)?;
        crate::artifacts::write_atomic(path, |file| {
            drop(file);
            let tmp = path.parent().unwrap_or(Path::new(".")).join(format!(
                ".{}.tmp-{}",
                path.file_name().unwrap().to_string_lossy(),
                std::process::id()
            ));
            let mut store = SafetensorsStore::from_file(&tmp)
                .overwrite(true)
                .metadata("mode.architecture", json);
            self.save_into(&mut store)
                .map_err(|e| anyhow!("saving model: {e}"))?;
            Ok(())
        })
    }

    /// Load a model written by [`Mlp::save`].
    pub fn load(path: &Path, device: &Device) -> Result<(Mlp, Architecture)> {
        let arch = read_architecture(path)?;
        let mut model = Mlp::init(&arch, 0, device);
        let mut store = SafetensorsStore::from_file(path);
        let result = model
            .load_from(&mut store)
            .map_err(|e| anyhow!("{}: cannot load weights: {e}", path.display()))?;
        if !result.missing.is_empty() {
            bail!(
                "{}: weights missing for {:?}",
                path.display(),
                result.missing
            );
        }
        Ok((model, arch))
    }
}

/// Read the architecture JSON from a SafeTensors header.
pub fn read_architecture(path: &Path) -> Result<Architecture> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| {
        format!(
            "cannot open model {}: run `mode train` first or check the path",
            path.display()
        )
    })?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        anyhow!(
            "{}: not a SafeTensors model file (too short)",
            path.display()
        )
    })?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        bail!(
            "{}: not a SafeTensors model file (header length {len})",
            path.display()
        );
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|_| anyhow!("{}: truncated SafeTensors header", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow!("{}: SafeTensors header is not JSON: {e}", path.display()))?;
    let arch = v
        .get("__metadata__")
        .and_then(|m| m.get("mode.architecture"))
        .and_then(|a| a.as_str())
        .ok_or_else(|| {
            anyhow!(
                "{}: no mode.architecture metadata; was it written by `mode train`?",
                path.display()
            )
        })?;
    serde_json::from_str(arch)
        .map_err(|e| anyhow!("{}: bad architecture metadata: {e}", path.display()))
}

fn to_tensor(x: ndarray::ArrayView2<f32>, device: &Device) -> Tensor<2> {
    let (n, d) = x.dim();
    let v: Vec<f32> = x.iter().copied().collect();
    Tensor::from_data(TensorData::new(v, [n, d]), device)
}

fn to_array(t: Tensor<2>) -> Result<Array2<f32>> {
    let [n, d] = t.dims();
    let v: Vec<f32> = t
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow!("tensor readback: {e:?}"))?;
    Ok(Array2::from_shape_vec((n, d), v)?)
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

/// Train `model` with Adam (Keras' β and ε) on `x`/`y`, shuffling each epoch from `seed`.
/// `on_step(done, total)` reports progress in batches.
pub fn fit(
    model: Mlp,
    x: &Array2<f32>,
    y: &[u16],
    cfg: &TrainConfig,
    seed: u64,
    mut on_step: impl FnMut(usize, usize),
) -> Result<(Mlp, Vec<EpochStats>)> {
    let device = device(true);
    // Models loaded or probed without autodiff get their gradients back here.
    let mut model = model.fork(&device).train().set_require_grad(true);
    if x.nrows() == 0 {
        return Ok((model, Vec::new()));
    }
    let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
    let loss_fn = CrossEntropyLoss::new(None, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
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
            let xb = x.select(Axis(0), chunk);
            let yb: Vec<i64> = chunk.iter().map(|&i| y[i] as i64).collect();
            let input = to_tensor(xb.view(), &device);
            let targets =
                Tensor::<1, Int>::from_data(TensorData::new(yb.clone(), [chunk.len()]), &device);
            let logits = model.forward(input);
            let pred: Vec<i64> = logits
                .clone()
                .detach()
                .argmax(1)
                .try_into_vec_as::<i64>()
                .map_err(|e| anyhow!("{e:?}"))?;
            correct += pred.iter().zip(&yb).filter(|(p, t)| p == t).count();
            let loss = loss_fn.forward(logits, targets);
            let lv: f32 = loss.clone().detach().into_scalar::<f32>();
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
    Ok((model, stats))
}

/// Activations of every layer for `x`, in chunks, without autodiff.
pub fn activations(model: &Mlp, x: &Array2<f32>) -> Result<Vec<Array2<f32>>> {
    let device = device(false);
    let model = model.valid().fork(&device);
    let layers = model.hidden.len() + 1;
    let mut parts: Vec<Vec<Array2<f32>>> = vec![Vec::new(); layers];
    for chunk in x.axis_chunks_iter(Axis(0), 8192) {
        let outs = model.forward_all(to_tensor(chunk, &device));
        for (i, t) in outs.into_iter().enumerate() {
            parts[i].push(to_array(t)?);
        }
    }
    parts
        .into_iter()
        .map(|p| {
            let views: Vec<_> = p.iter().map(|a| a.view()).collect();
            if views.is_empty() {
                Ok(Array2::zeros((0, 0)))
            } else {
                Ok(ndarray::concatenate(Axis(0), &views)?)
            }
        })
        .collect()
}

/// Softmax probabilities for `x`.
pub fn predict(model: &Mlp, x: &Array2<f32>, classes: usize) -> Result<Array2<f32>> {
    if x.nrows() == 0 {
        return Ok(Array2::zeros((0, classes)));
    }
    Ok(activations(model, x)?.pop().expect("output layer"))
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
