//! Inference of convolutional networks in ndarray: each convolution as im2col over a chunk of
//! images and one matrix product (matrixmultiply's sgemm), pooling and dense layers as plain
//! loops and products. burn-ndarray's inference convolution is a direct loop (and, for channel
//! counts that are not a multiple of the SIMD width, a scalar fallback): this form probes
//! LeNet-5 several times faster on one thread. Values equal burn's forward pass to float
//! rounding (a test compares them); training keeps burn's autodiff.

use super::arch::{Activation, Architecture, Layer};
use super::network::{Block, Network};
use crate::config::ConvProbe;
use burn::tensor::Tensor;
use ndarray::{Array1, Array2, Array4, ArrayView2, Axis};

/// One layer's weights and settings, as plain arrays.
enum Op {
    Conv {
        /// `[filters, channels · k · k]`, rows in (channel, kernel row, kernel column) order.
        w: Array2<f32>,
        b: Array1<f32>,
        k: usize,
        stride: usize,
        pad: usize,
        act: Activation,
    },
    MaxPool {
        size: usize,
        stride: usize,
    },
    AvgPool {
        size: usize,
        stride: usize,
    },
    /// `[inputs, units]`.
    Dense {
        w: Array2<f32>,
        b: Array1<f32>,
        act: Activation,
    },
    Flatten,
    Identity,
}

/// A network ready for inference: one op per layer of the architecture, then the output layer.
pub(super) struct Plan {
    ops: Vec<(Op, bool)>,
    out_w: Array2<f32>,
    out_b: Array1<f32>,
    input: (usize, usize, usize),
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 weights")
}

/// A layer's bias, zeros when it has none.
fn bias(b: &Option<burn::module::Param<Tensor<1>>>, n: usize) -> Array1<f32> {
    b.as_ref()
        .map(|b| Array1::from(values(b.val())))
        .unwrap_or_else(|| Array1::zeros(n))
}

fn dense_parts(l: &burn::nn::Linear) -> (Array2<f32>, Array1<f32>) {
    let [i, o] = l.weight.dims();
    let w = Array2::from_shape_vec((i, o), values(l.weight.val())).expect("dense weight shape");
    (w, bias(&l.bias, o))
}

impl Plan {
    pub(super) fn new(arch: &Architecture, net: &Network) -> Plan {
        let mut blocks = net.blocks.iter();
        let mut ops = Vec::with_capacity(arch.layers.len());
        for l in &arch.layers {
            let op = match l {
                Layer::Conv2d {
                    kernel,
                    stride,
                    padding,
                    activation,
                    ..
                } => {
                    let Some(Block::Conv(c)) = blocks.next() else {
                        unreachable!("a conv block")
                    };
                    let [o, ci, kh, kw] = c.weight.dims();
                    let w = Array2::from_shape_vec((o, ci * kh * kw), values(c.weight.val()))
                        .expect("conv weight shape");
                    Op::Conv {
                        w,
                        b: bias(&c.bias, o),
                        k: *kernel,
                        stride: *stride,
                        pad: *padding,
                        act: *activation,
                    }
                }
                Layer::MaxPool2d { size, stride } => {
                    blocks.next();
                    Op::MaxPool {
                        size: *size,
                        stride: stride.unwrap_or(*size),
                    }
                }
                Layer::AvgPool2d { size, stride } => {
                    blocks.next();
                    Op::AvgPool {
                        size: *size,
                        stride: stride.unwrap_or(*size),
                    }
                }
                Layer::Dense { activation, .. } => {
                    let Some(Block::Dense(d)) = blocks.next() else {
                        unreachable!("a dense block")
                    };
                    let (w, b) = dense_parts(d);
                    Op::Dense {
                        w,
                        b,
                        act: *activation,
                    }
                }
                Layer::Flatten => Op::Flatten,
                Layer::Dropout { .. } => Op::Identity,
            };
            ops.push((op, l.kind_name().is_some()));
        }
        let (out_w, out_b) = dense_parts(&net.output);
        Plan {
            ops,
            out_w,
            out_b,
            input: (arch.channels, arch.height, arch.width),
        }
    }

    /// Class probabilities (softmax of the logits) and the probed layers' activations of a
    /// chunk of flat samples.
    pub(super) fn forward(
        &self,
        x: ArrayView2<f32>,
        probe: ConvProbe,
    ) -> (Array2<f32>, Vec<Array2<f32>>) {
        let n = x.nrows();
        let (c, h, w) = self.input;
        let mut act = Act::Img(
            x.to_owned()
                .into_shape_with_order((n, c, h, w))
                .expect("the input shape"),
        );
        let mut probed = Vec::new();
        for (op, record) in &self.ops {
            act = match (op, act) {
                (
                    Op::Conv {
                        w,
                        b,
                        k,
                        stride,
                        pad,
                        act: a,
                    },
                    Act::Img(x),
                ) => {
                    let mut y = conv(&x, w, *k, *stride, *pad);
                    for (mut plane, &bv) in y.axis_iter_mut(Axis(1)).zip(b.iter()) {
                        plane.mapv_inplace(|v| activate(v + bv, *a));
                    }
                    Act::Img(y)
                }
                (Op::MaxPool { size, stride }, Act::Img(x)) => {
                    Act::Img(pool(&x, *size, *stride, true))
                }
                (Op::AvgPool { size, stride }, Act::Img(x)) => {
                    Act::Img(pool(&x, *size, *stride, false))
                }
                (Op::Dense { w, b, act: a }, x) => {
                    let mut y = x.flat().dot(w);
                    y += b;
                    y.mapv_inplace(|v| activate(v, *a));
                    Act::Vec(y)
                }
                (Op::Flatten, x) => Act::Vec(x.flat()),
                (_, x) => x,
            };
            if *record {
                probed.push(act.probe(probe));
            }
        }
        let mut logits = act.flat().dot(&self.out_w);
        logits += &self.out_b;
        for mut row in logits.axis_iter_mut(Axis(0)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.sum();
            row /= sum;
        }
        (logits, probed)
    }
}

fn activate(v: f32, a: Activation) -> f32 {
    match a {
        Activation::Relu => v.max(0.0),
        Activation::Tanh => v.tanh(),
        Activation::Linear => v,
    }
}

enum Act {
    Img(Array4<f32>),
    Vec(Array2<f32>),
}

impl Act {
    fn flat(self) -> Array2<f32> {
        match self {
            Act::Vec(v) => v,
            Act::Img(x) => flatten(&x),
        }
    }

    fn probe(&self, mode: ConvProbe) -> Array2<f32> {
        match (self, mode) {
            (Act::Vec(v), _) => v.clone(),
            (Act::Img(x), ConvProbe::Full) => flatten(x),
            (Act::Img(x), ConvProbe::Mean) => {
                let (n, c, h, w) = x.dim();
                let area = (h * w) as f32;
                let x = x.as_standard_layout();
                let xs = x.as_slice().expect("a standard layout");
                let means = xs
                    .chunks_exact(h * w)
                    .map(|p| p.iter().sum::<f32>() / area)
                    .collect();
                Array2::from_shape_vec((n, c), means).expect("per-channel means")
            }
        }
    }
}

/// `[n, c, h, w]` → `[n, c·h·w]`, channel-major (burn's `flatten(1, 3)`).
fn flatten(x: &Array4<f32>) -> Array2<f32> {
    let (n, c, h, w) = x.dim();
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, c * h * w))
        .expect("a standard layout")
}

/// A convolution of `x` (`[n, c, h, w]`) with `w` (`[o, c·k·k]`), zero padding `pad`
/// (bias not added): per image, im2col into a buffer that stays in cache and one matrix
/// product straight into the image's `[o, ho·wo]` block of the output.
fn conv(x: &Array4<f32>, w: &Array2<f32>, k: usize, stride: usize, pad: usize) -> Array4<f32> {
    let (n, c, h, wd) = x.dim();
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (wd + 2 * pad - k) / stride + 1;
    let plane = ho * wo;
    let o = w.nrows();
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("a standard layout");
    let mut cols = Array2::<f32>::zeros((c * k * k, plane));
    let mut out = Array2::<f32>::zeros((n * o, plane));
    // The output columns whose input column ow·stride + kj − pad lies inside the image.
    let valid = |kj: usize| {
        let lo = (pad.saturating_sub(kj)).div_ceil(stride);
        let hi = ((wd + pad).saturating_sub(kj)).div_ceil(stride).min(wo);
        (lo, hi.max(lo))
    };
    for img in 0..n {
        let dst = cols.as_slice_mut().expect("a standard layout");
        for ci in 0..c {
            let src = &xs[(img * c + ci) * h * wd..(img * c + ci + 1) * h * wd];
            for ki in 0..k {
                for kj in 0..k {
                    let row = (ci * k + ki) * k + kj;
                    let crow = &mut dst[row * plane..(row + 1) * plane];
                    let (lo, hi) = valid(kj);
                    for oh in 0..ho {
                        let orow = &mut crow[oh * wo..(oh + 1) * wo];
                        let ih = (oh * stride + ki) as isize - pad as isize;
                        if ih < 0 || ih >= h as isize {
                            orow.fill(0.0);
                            continue;
                        }
                        let srow = &src[ih as usize * wd..(ih as usize + 1) * wd];
                        orow[..lo].fill(0.0);
                        orow[hi..].fill(0.0);
                        if stride == 1 {
                            let start = lo + kj - pad;
                            orow[lo..hi].copy_from_slice(&srow[start..start + (hi - lo)]);
                        } else {
                            for (ow, v) in orow.iter_mut().enumerate().take(hi).skip(lo) {
                                *v = srow[ow * stride + kj - pad];
                            }
                        }
                    }
                }
            }
        }
        let mut block = out.slice_mut(ndarray::s![img * o..(img + 1) * o, ..]);
        ndarray::linalg::general_mat_mul(1.0, w, &cols, 0.0, &mut block);
    }
    out.into_shape_with_order((n, o, ho, wo))
        .expect("conv output")
}

/// Max or average pooling without padding.
fn pool(x: &Array4<f32>, size: usize, stride: usize, max: bool) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let ho = (h - size) / stride + 1;
    let wo = (w - size) / stride + 1;
    let area = (size * size) as f32;
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("a standard layout");
    let mut out = vec![0f32; n * c * ho * wo];
    for (plane, dst) in xs.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for a in 0..ho {
            for b in 0..wo {
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                for i in 0..size {
                    let start = (a * stride + i) * w + b * stride;
                    for &v in &plane[start..start + size] {
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                dst[a * wo + b] = if max { acc } else { acc / area };
            }
        }
    }
    Array4::from_shape_vec((n, c, ho, wo), out).expect("pool output")
}
