//! The burn module of a network: its blocks (convolution, pooling, dense), Keras-style
//! initialisation with fixed parameter ids, and the forward pass (training and probing).

use super::arch::{Activation, Architecture, Layer, Shape};
use crate::config::ConvProbe;
use anyhow::Result;
use burn::module::{Module, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A layer with a burn module (flatten and dropout have none: the forward pass handles them).
#[derive(Module, Debug)]
pub(super) enum Block {
    Conv(Conv2d),
    MaxPool(MaxPool2d),
    AvgPool(AvgPool2d),
    Dense(Linear),
}

/// The burn module: the hidden layers' blocks in order, then the output layer.
#[derive(Module, Debug)]
pub(super) struct Network {
    pub(super) blocks: Vec<Block>,
    pub(super) output: Linear,
}

/// The CPU device (NdArray backend), with autodiff for training.
#[allow(deprecated)] // burn marks NdArray deprecated in favour of Flex; the design card asks for it.
pub(super) fn device(autodiff: bool) -> Device {
    let d = Device::ndarray();
    if autodiff { d.autodiff() } else { d }
}

/// A parameter with a fixed id: the optimizer's saved state is keyed by parameter ids, so they
/// must be the same in every process that loads the model.
pub(super) fn param<const D: usize>(t: Tensor<D>, id: &mut u64) -> Param<Tensor<D>> {
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
    pub(super) fn init(arch: &Architecture, seed: u64, device: &Device) -> Result<Network> {
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
    /// kernel, with it the differentiable im2col below (training). Probes and predictions of
    /// convolutional models do not come here: `infer` runs them in ndarray.
    pub(super) fn forward(
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
pub(super) fn conv_slices(c: &Conv2d, x: Tensor<4>, pad: usize) -> Tensor<4> {
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
