//! The network on burn (NdArray CPU backend): Keras-style initialisation, Adam training,
//! activations of every layer, and the model file.

use super::arch::{Activation, Architecture, Layer, Shape};
use super::safetensors;
use crate::artifacts::OUTPUT;
use crate::artifacts::{Artifact, DatasetMeta, write_bytes};
use crate::config::{ConvProbe, Pipeline, TrainConfig};
use anyhow::{Context, Result, anyhow, bail};
use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::loss::CrossEntropyLoss;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

/// A layer with a burn module (flatten and dropout have none: the forward pass handles them).
#[derive(Module, Debug)]
enum Block {
    Conv(Conv2d),
    MaxPool(MaxPool2d),
    AvgPool(AvgPool2d),
    Dense(Linear),
}

/// The burn module: the hidden layers' blocks in order, then the output layer.
#[derive(Module, Debug)]
struct Network {
    blocks: Vec<Block>,
    output: Linear,
}

/// The CPU device (NdArray backend), with autodiff for training.
#[allow(deprecated)] // burn marks NdArray deprecated in favour of Flex; the design card asks for it.
fn device(autodiff: bool) -> Device {
    let d = Device::ndarray();
    if autodiff { d.autodiff() } else { d }
}

/// A parameter with a fixed id: the optimizer's saved state is keyed by parameter ids, so they
/// must be the same in every process that loads the model.
fn param<const D: usize>(t: Tensor<D>, id: &mut u64) -> Param<Tensor<D>> {
    let mut p = Param::from_tensor(t);
    p.id = ParamId::from(*id);
    *id += 1;
    p
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..n).map(|_| rng.random_range(-limit..limit)).collect()
}

/// A dense layer with Keras' Glorot-uniform kernel and zero bias.
fn dense(
    rng: &mut ChaCha8Rng,
    fan_in: usize,
    fan_out: usize,
    id: &mut u64,
    device: &Device,
) -> Linear {
    let w = uniform(rng, fan_in * fan_out, fan_in, fan_out);
    Linear {
        weight: param(
            Tensor::from_data(TensorData::new(w, [fan_in, fan_out]), device),
            id,
        ),
        bias: Some(param(Tensor::zeros([fan_out], device), id)),
    }
}

/// A convolution with Keras' Glorot-uniform kernel (fans k²·channels) and zero bias.
fn conv(
    rng: &mut ChaCha8Rng,
    (cin, cout, k, stride, pad): (usize, usize, usize, usize, usize),
    id: &mut u64,
    device: &Device,
) -> Conv2d {
    let w = uniform(rng, cout * cin * k * k, k * k * cin, k * k * cout);
    Conv2d {
        weight: param(
            Tensor::from_data(TensorData::new(w, [cout, cin, k, k]), device),
            id,
        ),
        bias: Some(param(Tensor::zeros([cout], device), id)),
        stride: [stride, stride],
        kernel_size: [k, k],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(pad, pad, pad, pad),
    }
}

impl Network {
    fn init(arch: &Architecture, seed: u64, device: &Device) -> Result<Network> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut id = 0u64;
        let mut blocks = Vec::new();
        let mut shape = Shape::Image(arch.channels, arch.height, arch.width);
        for l in &arch.layers {
            let next = l.output(shape)?;
            match (l, shape) {
                (
                    Layer::Conv2d {
                        filters,
                        kernel,
                        stride,
                        padding,
                        ..
                    },
                    Shape::Image(c, _, _),
                ) => {
                    blocks.push(Block::Conv(conv(
                        &mut rng,
                        (c, *filters, *kernel, *stride, *padding),
                        &mut id,
                        device,
                    )));
                }
                (Layer::MaxPool2d { size, stride }, _) => blocks.push(Block::MaxPool(
                    MaxPool2dConfig::new([*size, *size])
                        .with_strides([stride.unwrap_or(*size); 2])
                        .init(),
                )),
                (Layer::AvgPool2d { size, stride }, _) => blocks.push(Block::AvgPool(
                    AvgPool2dConfig::new([*size, *size])
                        .with_strides([stride.unwrap_or(*size); 2])
                        .init(),
                )),
                (Layer::Dense { units, .. }, s) => blocks.push(Block::Dense(dense(
                    &mut rng,
                    s.size(),
                    *units,
                    &mut id,
                    device,
                ))),
                _ => {}
            }
            shape = next;
        }
        let output = dense(&mut rng, shape.size(), arch.classes, &mut id, device);
        Ok(Network { blocks, output })
    }

    /// The forward pass: logits, and (when `record`) the probed layers' activations — conv
    /// and pooling layers as per-channel means or full maps (`conv`). `dropout` draws the
    /// training masks; without it dropout is the identity and convolutions use burn's own
    /// kernel (inference), with it the differentiable im2col below (training).
    fn forward(
        &self,
        arch: &Architecture,
        x: Tensor<2>,
        record: Option<ConvProbe>,
        mut dropout: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<2>, Vec<Tensor<2>>) {
        let n = x.dims()[0];
        let mut act = if arch.is_convolutional() {
            Act::Img(x.reshape([n, arch.channels, arch.height, arch.width]))
        } else {
            Act::Vec(x)
        };
        let mut probed = Vec::new();
        let mut blocks = self.blocks.iter();
        let training = dropout.is_some();
        for l in &arch.layers {
            act = match (l, act) {
                (
                    Layer::Conv2d {
                        activation,
                        stride,
                        padding,
                        ..
                    },
                    Act::Img(t),
                ) => {
                    let Some(Block::Conv(c)) = blocks.next() else {
                        unreachable!("a conv block")
                    };
                    let y = if training && *stride == 1 {
                        conv_slices(c, t, *padding)
                    } else {
                        c.forward(t)
                    };
                    Act::Img(activate4(y, *activation))
                }
                (Layer::MaxPool2d { .. }, Act::Img(t)) => match blocks.next() {
                    Some(Block::MaxPool(m)) => Act::Img(m.forward(t)),
                    _ => unreachable!("a max-pool block"),
                },
                (Layer::AvgPool2d { .. }, Act::Img(t)) => match blocks.next() {
                    Some(Block::AvgPool(m)) => Act::Img(m.forward(t)),
                    _ => unreachable!("an avg-pool block"),
                },
                (Layer::Dense { activation, .. }, a) => {
                    let Some(Block::Dense(d)) = blocks.next() else {
                        unreachable!("a dense block")
                    };
                    Act::Vec(activate2(d.forward(a.flat()), *activation))
                }
                (Layer::Flatten, a) => Act::Vec(a.flat()),
                (Layer::Dropout { rate }, a) => match dropout.as_deref_mut() {
                    Some(rng) if *rate > 0.0 => a.dropped(*rate, rng),
                    _ => a,
                },
                (_, a) => a,
            };
            if let (Some(mode), Some(_)) = (record, l.kind_name()) {
                probed.push(act.probe(mode));
            }
        }
        (self.output.forward(act.flat()), probed)
    }
}

/// A layer's output on the way through the network.
enum Act {
    Img(Tensor<4>),
    Vec(Tensor<2>),
}

impl Act {
    fn flat(self) -> Tensor<2> {
        match self {
            Act::Img(t) => t.flatten(1, 3),
            Act::Vec(t) => t,
        }
    }

    /// What the probe records: vectors as they are; images as per-channel means or flat.
    fn probe(&self, mode: ConvProbe) -> Tensor<2> {
        match (self, mode) {
            (Act::Vec(t), _) => t.clone(),
            (Act::Img(t), ConvProbe::Full) => t.clone().flatten(1, 3),
            (Act::Img(t), ConvProbe::Mean) => {
                let [n, c, _, _] = t.dims();
                t.clone().mean_dims(&[2, 3]).reshape([n, c])
            }
        }
    }

    /// Inverted dropout with a mask from our own seeded stream (burn's is process-global).
    fn dropped(self, rate: f64, rng: &mut ChaCha8Rng) -> Act {
        let keep = 1.0 / (1.0 - rate) as f32;
        let mut mask = |dims: Vec<usize>| -> Vec<f32> {
            let n: usize = dims.iter().product();
            (0..n)
                .map(|_| {
                    if rng.random::<f64>() < rate {
                        0.0
                    } else {
                        keep
                    }
                })
                .collect()
        };
        match self {
            Act::Img(t) => {
                let d = t.dims();
                let m = Tensor::<4>::from_data(TensorData::new(mask(d.to_vec()), d), &t.device());
                Act::Img(t * m)
            }
            Act::Vec(t) => {
                let d = t.dims();
                let m = Tensor::<2>::from_data(TensorData::new(mask(d.to_vec()), d), &t.device());
                Act::Vec(t * m)
            }
        }
    }
}

fn activate2(t: Tensor<2>, a: Activation) -> Tensor<2> {
    match a {
        Activation::Relu => relu(t),
        Activation::Tanh => t.tanh(),
        Activation::Linear => t,
    }
}

fn activate4(t: Tensor<4>, a: Activation) -> Tensor<4> {
    match a {
        Activation::Relu => relu(t),
        Activation::Tanh => t.tanh(),
        Activation::Linear => t,
    }
}

/// A stride-1 convolution as im2col from differentiable slices and one batched matrix product.
/// burn-ndarray computes a convolution's input gradient with a naive transposed convolution
/// (≈ 90 % of a LeNet training step); this form has none, and its values and gradients equal
/// `Conv2d::forward`'s to float rounding.
fn conv_slices(c: &Conv2d, x: Tensor<4>, pad: usize) -> Tensor<4> {
    let [o, ci, kh, kw] = c.weight.dims();
    let x = if pad > 0 {
        x.pad([(pad, pad), (pad, pad)], PadMode::Constant(0.0))
    } else {
        x
    };
    let [b, _, h, w] = x.dims();
    let (ho, wo) = (h - kh + 1, w - kw + 1);
    let mut parts = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            parts.push(x.clone().slice([0..b, 0..ci, i..i + ho, j..j + wo]));
        }
    }
    let cols: Tensor<5> = Tensor::stack(parts, 2); // [b, ci, kh·kw, ho, wo]
    let cols: Tensor<3> = cols.reshape([b, ci * kh * kw, ho * wo]);
    let wm: Tensor<3> = c.weight.val().reshape([1, o, ci * kh * kw]);
    let mut y = wm.matmul(cols); // [b, o, ho·wo]
    if let Some(bias) = &c.bias {
        y = y + bias.val().reshape([1, o, 1]);
    }
    y.reshape([b, o, ho, wo])
}

/// A model: the architecture, the weights, and the fingerprint of the settings that made it.
#[derive(Debug, Clone)]
pub struct Net {
    pub arch: Architecture,
    /// `Pipeline::initial_fingerprint` of the initial model, the arm's fingerprint after a
    /// retrain; empty when unknown.
    pub settings: String,
    /// What the probe records of convolution and pooling layers (`probe.conv`).
    pub conv_probe: ConvProbe,
    module: Network,
}

pub(super) const ARCHITECTURE_KEY: &str = "mode.architecture";
const SETTINGS_KEY: &str = "mode.settings";

impl Net {
    /// Fresh Keras-style weights (Glorot-uniform kernels, zero biases) for the pipeline's
    /// architecture on data of this shape, from the pipeline's weight seed.
    pub fn init(p: &Pipeline, meta: &DatasetMeta) -> Result<Net> {
        let arch = Architecture::from_pipeline(p, meta);
        arch.validate()?;
        Ok(Net {
            module: Network::init(&arch, p.model_seed(), &device(false))?,
            arch,
            settings: p.initial_fingerprint(),
            conv_probe: p.probe.conv,
        })
    }

    /// The same weights, recorded as made by other settings.
    pub fn with_settings(mut self, settings: &str) -> Net {
        self.settings = settings.into();
        self
    }

    /// The same model, probed with the pipeline's `probe.conv`.
    pub fn with_probe(mut self, p: &Pipeline) -> Net {
        self.conv_probe = p.probe.conv;
        self
    }

    /// Extra metadata the probe records: how conv and pooling layers were recorded.
    pub fn probe_info(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if self.arch.is_convolutional() {
            m.insert("mode.probe.conv".to_string(), self.conv_probe.to_string());
        }
        m
    }

    /// The width of every probed layer's column.
    pub fn layer_widths(&self) -> Vec<usize> {
        let shapes = self.arch.shapes().unwrap_or_default();
        self.arch
            .probed()
            .into_iter()
            .map(|(i, _)| match i.map(|i| shapes[i]) {
                None => self.arch.classes,
                Some(Shape::Image(c, h, w)) => match self.conv_probe {
                    ConvProbe::Mean => c,
                    ConvProbe::Full => c * h * w,
                },
                Some(s) => s.size(),
            })
            .collect()
    }

    /// A model file of another architecture than the pipeline's is an error.
    pub fn check_pipeline(&self, p: &Pipeline, path: &Path) -> Result<()> {
        let want = Architecture::from_pipeline(
            p,
            &DatasetMeta {
                dataset: String::new(),
                channels: self.arch.channels,
                height: self.arch.height,
                width: self.arch.width,
                classes: self.arch.classes,
                class_names: vec![],
            },
        );
        if want.layers != self.arch.layers || want.channels != self.arch.channels {
            bail!(
                "{}: the model is {} but the pipeline describes {}; train it again or use the pipeline it was made with",
                path.display(),
                self.arch.describe(),
                want.describe()
            );
        }
        Ok(())
    }

    /// Data of another shape or class count than the model's is an error.
    pub fn check_data(&self, meta: &DatasetMeta, data: &Path) -> Result<()> {
        if meta.features() != self.arch.inputs() || meta.classes != self.arch.classes {
            bail!(
                "{}: the data are {}×{}×{} images of {} classes but the model takes {}×{}×{} inputs and has {} classes",
                data.display(),
                meta.channels,
                meta.height,
                meta.width,
                meta.classes,
                self.arch.channels,
                self.arch.height,
                self.arch.width,
                self.arch.classes
            );
        }
        Ok(())
    }

    /// Activations of every layer for `x`, in chunks, without autodiff; the last is the class
    /// probabilities. Every value is checked to be finite.
    pub fn activations(&self, x: &Array2<f32>) -> Result<Vec<Array2<f32>>> {
        let widths = self.layer_widths();
        if x.nrows() == 0 {
            return Ok(widths.iter().map(|&w| Array2::zeros((0, w))).collect());
        }
        if x.ncols() != self.arch.inputs() {
            bail!(
                "the samples have {} values but the model takes {}",
                x.ncols(),
                self.arch.inputs()
            );
        }
        let device = device(false);
        let module = self.module.valid().fork(&device);
        let mut parts: Vec<Vec<Array2<f32>>> = vec![Vec::new(); widths.len()];
        let chunk_rows = if self.arch.is_convolutional() {
            1024
        } else {
            8192
        };
        for chunk in x.axis_chunks_iter(Axis(0), chunk_rows) {
            let (logits, mut outs) = module.forward(
                &self.arch,
                to_tensor(chunk, &device),
                Some(self.conv_probe),
                None,
            );
            outs.push(softmax(logits, 1));
            for (i, t) in outs.into_iter().enumerate() {
                parts[i].push(to_array(t)?);
            }
        }
        let names = self.arch.layer_names();
        parts
            .into_iter()
            .zip(names)
            .map(|(p, name)| {
                let views: Vec<_> = p.iter().map(|a| a.view()).collect();
                let a = ndarray::concatenate(Axis(0), &views)?;
                if let Some(i) = a.iter().position(|v| !v.is_finite()) {
                    bail!(
                        "the model's layer {name} gives a non-finite activation (row {}): its weights have diverged",
                        i / a.ncols().max(1)
                    );
                }
                Ok(a)
            })
            .collect()
    }

    /// Class probabilities for `x`.
    pub fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        Ok(self.activations(x)?.pop().expect("the output layer"))
    }
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

impl Artifact for Net {
    /// SafeTensors with the architecture and settings in the metadata, byte-reproducible.
    fn write(&self, path: &Path) -> Result<()> {
        let mut store = SafetensorsStore::from_bytes(None)
            .metadata(ARCHITECTURE_KEY, self.arch.to_json())
            .metadata(SETTINGS_KEY, self.settings.clone());
        self.module
            .save_into(&mut store)
            .map_err(|e| anyhow!("saving model: {e}"))?;
        let bytes = store
            .get_bytes()
            .map_err(|e| anyhow!("saving model: {e}"))?;
        write_bytes(path, &safetensors::canonical(&bytes)?)
    }

    fn read(path: &Path) -> Result<Net> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot open model {}: run `mode train` first or check the path",
                path.display()
            )
        })?;
        let meta = safetensors::metadata(&bytes).with_context(|| path.display().to_string())?;
        let json = meta.get(ARCHITECTURE_KEY).ok_or_else(|| {
            anyhow!(
                "{}: no {ARCHITECTURE_KEY} metadata; was it written by `mode train`?",
                path.display()
            )
        })?;
        let arch: Architecture = serde_json::from_str(json)
            .map_err(|e| anyhow!("{}: bad architecture metadata: {e}", path.display()))?;
        arch.validate()
            .with_context(|| path.display().to_string())?;
        let mut module = Network::init(&arch, 0, &device(false))?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes));
        let result = module
            .load_from(&mut store)
            .map_err(|e| anyhow!("{}: cannot load the weights: {e}", path.display()))?;
        if !result.missing.is_empty() {
            bail!(
                "{}: weights missing for {:?} (a file of another architecture?)",
                path.display(),
                result.missing
            );
        }
        let net = Net {
            arch,
            settings: meta.get(SETTINGS_KEY).cloned().unwrap_or_default(),
            conv_probe: ConvProbe::Mean,
            module,
        };
        net.check_weights(path)?;
        Ok(net)
    }
}

impl Net {
    /// Every weight finite.
    fn check_weights(&self, path: &Path) -> Result<()> {
        let mut weights: Vec<(String, Vec<f32>)> = Vec::new();
        let read = |t: Tensor<1>| t.try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"));
        for (k, b) in self.module.blocks.iter().enumerate() {
            match b {
                Block::Conv(c) => {
                    weights.push((format!("block {k}"), read(c.weight.val().flatten(0, 3))?))
                }
                Block::Dense(d) => {
                    weights.push((format!("block {k}"), read(d.weight.val().flatten(0, 1))?))
                }
                _ => {}
            }
        }
        weights.push((
            OUTPUT.into(),
            read(self.module.output.weight.val().flatten(0, 1))?,
        ));
        for (name, w) in weights {
            if w.iter().any(|v| !v.is_finite()) {
                bail!(
                    "{}: layer {name} has non-finite weights: the model diverged; train it again",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

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
            let xb = x.select(Axis(0), chunk);
            let yb: Vec<i64> = chunk.iter().map(|&i| y[i] as i64).collect();
            let input = to_tensor(xb.view(), &device);
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

/// Per-sample cross-entropy of probabilities against labels.
pub fn cross_entropy(probs: &Array2<f32>, labels: &[u16]) -> Vec<f64> {
    probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(r, &l)| -(r[l as usize].max(1e-7) as f64).ln())
        .collect()
}
