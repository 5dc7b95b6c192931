//! The one inference kernel, in ndarray: every architecture's forward pass for the probe
//! and the evaluation — dense layers as sgemm (matrixmultiply), convolutions as im2col over
//! each image into a buffer that stays in cache and one sgemm into the image's output block,
//! pooling as plain loops.
//!
//! A fleet of models of one architecture probed on the same inputs shares the first layer's
//! input: their first-layer kernels are put side by side and multiplied once (one wide sgemm
//! instead of K narrow ones); each model then runs its other layers alone. A model's values do
//! not depend on the fleet it is probed in (each output element is the same dot product in the
//! same order; a test checks the bytes).

use super::arch::{Activation, Architecture, Layer};
use super::kernels::{ConvShape, im2col, move_row};
use super::weights::{Param, Weights};
use crate::config::ConvProbe;
use ndarray::{Array2, Array4, ArrayView2, Axis, s};

/// Class probabilities and the probed layers' activations of one chunk.
pub(super) type Forward = (Array2<f32>, Vec<Array2<f32>>);

/// The index of the first layer that changes values, when it is a convolution or a dense
/// layer that sees the input as it is (only flatten and dropout before it): the layer whose
/// product a fleet can share.
fn shared_first(arch: &Architecture) -> Option<usize> {
    for (i, l) in arch.layers.iter().enumerate() {
        match l {
            Layer::Flatten | Layer::Dropout { .. } => continue,
            Layer::Conv2d { .. } | Layer::Dense { .. } => return Some(i),
            _ => return None,
        }
    }
    None
}

/// The input of a chunk as the first layer sees it.
fn input(arch: &Architecture, x: ArrayView2<f32>) -> LayerOut {
    if arch.is_convolutional() {
        LayerOut::Img(
            x.to_owned()
                .into_shape_with_order((x.nrows(), arch.channels, arch.height, arch.width))
                .expect("the input shape"),
        )
    } else {
        LayerOut::Vec(x.to_owned())
    }
}

/// Probabilities and probed layers of one model on a chunk of flat samples.
pub(super) fn forward(
    arch: &Architecture,
    w: &Weights,
    x: ArrayView2<f32>,
    probe: ConvProbe,
) -> Forward {
    run_from(arch, w, 0, input(arch, x), Vec::new(), probe)
}

/// [`forward`] for every model of a fleet on the same chunk; the first layer's product is
/// shared when the architecture allows it.
pub(super) fn forward_fleet(
    arch: &Architecture,
    fleet: &[&Weights],
    x: ArrayView2<f32>,
    probe: ConvProbe,
) -> Vec<Forward> {
    let Some(first) = shared_first(arch).filter(|_| fleet.len() > 1) else {
        return fleet.iter().map(|w| forward(arch, w, x, probe)).collect();
    };
    let outs: Vec<LayerOut> = match &arch.layers[first] {
        Layer::Conv2d {
            stride, padding, ..
        } => {
            let LayerOut::Img(img) = input(arch, x) else {
                unreachable!("a convolution's input is images")
            };
            let convs: Vec<&super::weights::Conv> = fleet
                .iter()
                .map(|w| match &w.layers[first] {
                    Some(Param::Conv(c)) => c,
                    _ => unreachable!("a conv layer's weights"),
                })
                .collect();
            let views: Vec<ArrayView2<f32>> = convs.iter().map(|c| c.w.view()).collect();
            let wide = ndarray::concatenate(Axis(0), &views).expect("filters side by side");
            let o = convs[0].w.nrows();
            let y = conv(&img, &wide, convs[0].k, *stride, *padding);
            convs
                .iter()
                .enumerate()
                .map(|(m, c)| {
                    LayerOut::Img(channels(&y, m * o..(m + 1) * o))
                        .biased(&c.b, act_of(&arch.layers[first]))
                })
                .collect()
        }
        Layer::Dense { .. } => {
            // Only flatten and dropout come before it: the layer sees the flat samples as
            // they are, so the product reads them in place (no copy of the chunk).
            let dense: Vec<&super::weights::Dense> = fleet
                .iter()
                .map(|w| match &w.layers[first] {
                    Some(Param::Dense(d)) => d,
                    _ => unreachable!("a dense layer's weights"),
                })
                .collect();
            let views: Vec<ArrayView2<f32>> = dense.iter().map(|d| d.w.view()).collect();
            let wide = ndarray::concatenate(Axis(1), &views).expect("kernels side by side");
            let y = dot(&x, &wide.view());
            let u = dense[0].w.ncols();
            dense
                .iter()
                .enumerate()
                .map(|(m, d)| {
                    LayerOut::Vec(y.slice(s![.., m * u..(m + 1) * u]).to_owned())
                        .biased(&d.b, act_of(&arch.layers[first]))
                })
                .collect()
        }
        _ => unreachable!("a shared first layer is a convolution or dense"),
    };
    fleet
        .iter()
        .zip(outs)
        .map(|(w, a)| {
            let probed = if arch.layers[first].kind_name().is_some() {
                vec![a.probe(probe)]
            } else {
                Vec::new()
            };
            run_from(arch, w, first + 1, a, probed, probe)
        })
        .collect()
}

/// Channels `range` of every image of `y` (`[n, c, h, w]`, standard layout), copied one
/// image's contiguous block at a time.
fn channels(y: &Array4<f32>, range: std::ops::Range<usize>) -> Array4<f32> {
    let (n, c, h, w) = y.dim();
    let plane = h * w;
    let ys = y.as_slice().expect("a conv output in standard layout");
    let mut out = Vec::with_capacity(n * range.len() * plane);
    for img in 0..n {
        out.extend_from_slice(&ys[(img * c + range.start) * plane..(img * c + range.end) * plane]);
    }
    Array4::from_shape_vec((n, range.len(), h, w), out).expect("the channels' shape")
}

fn act_of(l: &Layer) -> Activation {
    match l {
        Layer::Conv2d { activation, .. } | Layer::Dense { activation, .. } => *activation,
        _ => Activation::Linear,
    }
}

/// The forward pass from layer `start` (whose input is `act`), then the output softmax.
fn run_from(
    arch: &Architecture,
    w: &Weights,
    start: usize,
    mut act: LayerOut,
    mut probed: Vec<Array2<f32>>,
    probe: ConvProbe,
) -> Forward {
    for (l, p) in arch.layers.iter().zip(&w.layers).skip(start) {
        act = match (l, p, act) {
            (
                Layer::Conv2d {
                    stride,
                    padding,
                    activation,
                    ..
                },
                Some(Param::Conv(c)),
                LayerOut::Img(x),
            ) => LayerOut::Img(conv(&x, &c.w, c.k, *stride, *padding)).biased(&c.b, *activation),
            (Layer::MaxPool2d { size, stride }, _, LayerOut::Img(x)) => {
                LayerOut::Img(pool(&x, *size, stride.unwrap_or(*size), Pooling::Max))
            }
            (Layer::AvgPool2d { size, stride }, _, LayerOut::Img(x)) => {
                LayerOut::Img(pool(&x, *size, stride.unwrap_or(*size), Pooling::Average))
            }
            (Layer::Dense { activation, .. }, Some(Param::Dense(d)), x) => {
                LayerOut::Vec(dot(&x.flat().view(), &d.w.view())).biased(&d.b, *activation)
            }
            (Layer::Flatten, _, x) => LayerOut::Vec(x.flat()),
            (_, _, x) => x,
        };
        if l.kind_name().is_some() {
            probed.push(act.probe(probe));
        }
    }
    let o = &w.output;
    let mut logits = dot(&act.flat().view(), &o.w.view());
    logits += &o.b;
    crate::numeric::softmax_rows(&mut logits);
    (logits, probed)
}

/// `a · b` (the kernels' sgemm).
fn dot(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Array2<f32> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    super::kernels::mat_mul(1.0, a, b, 0.0, &mut c.view_mut());
    c
}

fn activate(v: f32, a: Activation) -> f32 {
    match a {
        Activation::Relu => v.max(0.0),
        Activation::Tanh => v.tanh(),
        Activation::Linear => v,
    }
}

/// A layer's output on the way through the network: images `[B, C, H, W]` or vectors
/// `[B, width]`.
enum LayerOut {
    Img(Array4<f32>),
    Vec(Array2<f32>),
}

impl LayerOut {
    /// The layer's bias added (per channel for images, per unit for vectors), then its
    /// activation.
    fn biased(self, b: &ndarray::Array1<f32>, a: Activation) -> LayerOut {
        match self {
            LayerOut::Img(mut y) => {
                for mut img in y.axis_iter_mut(Axis(0)) {
                    for (mut plane, &bv) in img.axis_iter_mut(Axis(0)).zip(b.iter()) {
                        plane.mapv_inplace(|v| activate(v + bv, a));
                    }
                }
                LayerOut::Img(y)
            }
            LayerOut::Vec(mut y) => {
                y += b;
                y.mapv_inplace(|v| activate(v, a));
                LayerOut::Vec(y)
            }
        }
    }

    fn flat(self) -> Array2<f32> {
        match self {
            LayerOut::Vec(v) => v,
            LayerOut::Img(x) => flatten(&x),
        }
    }

    fn probe(&self, mode: ConvProbe) -> Array2<f32> {
        match (self, mode) {
            (LayerOut::Vec(v), _) => v.clone(),
            (LayerOut::Img(x), ConvProbe::Full) => flatten(x),
            (LayerOut::Img(x), ConvProbe::Mean) => {
                let (n, c, h, w) = x.dim();
                let x = x.as_standard_layout();
                let xs = x.as_slice().expect("a standard layout");
                let means = crate::numeric::channel_means(xs, h * w);
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
    let o = w.nrows();
    // One image's convolution, in the training kernels' terms.
    let shape = ConvShape {
        k: 1,
        b: 1,
        c,
        h,
        w: wd,
        o,
        kernel: k,
        stride,
        pad,
    };
    let (ho, wo) = shape.out_hw();
    let plane = ho * wo;
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("a standard layout");
    let mut cols = Array2::<f32>::zeros((c * k * k, plane));
    let mut out = Array2::<f32>::zeros((n * o, plane));
    // Stride 1 (LeNet's): each image zero-padded once, so every row of the patch matrix is
    // whole rows of the padded image — copies without bounds logic.
    let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
    let mut padded = vec![0f32; if stride == 1 { c * hp * wp } else { 0 }];
    for img in 0..n {
        let dst = cols.as_slice_mut().expect("a standard layout");
        if stride == 1 {
            for ci in 0..c {
                let src = &xs[(img * c + ci) * h * wd..(img * c + ci + 1) * h * wd];
                let pl = &mut padded[ci * hp * wp..(ci + 1) * hp * wp];
                for (r, srow) in src.chunks_exact(wd).enumerate() {
                    move_row(
                        &mut pl[(r + pad) * wp + pad..(r + pad) * wp + pad + wd],
                        Some(srow),
                    );
                }
            }
            patch_rows(&padded, dst, c, k, (hp, wp), (ho, wo));
        } else {
            // Other strides: the training's im2col of the one image (its columns are this
            // image's patch matrix).
            let image = c * h * wd;
            im2col(&shape, &xs[img * image..(img + 1) * image], 1, dst);
        }
        let mut block = out.slice_mut(ndarray::s![img * o..(img + 1) * o, ..]);
        crate::linalg::mat_mul_oriented(1.0, &w.view(), &cols.view(), 0.0, &mut block);
    }
    out.into_shape_with_order((n, o, ho, wo))
        .expect("conv output")
}

/// The patch matrix (`[c·k·k, ho·wo]`) of one zero-padded image (`[c, hp, wp]`), stride 1.
fn patch_rows(
    padded: &[f32],
    dst: &mut [f32],
    c: usize,
    k: usize,
    (hp, wp): (usize, usize),
    (ho, wo): (usize, usize),
) {
    let plane = ho * wo;
    for ci in 0..c {
        let pl = &padded[ci * hp * wp..(ci + 1) * hp * wp];
        for ki in 0..k {
            for kj in 0..k {
                let row = (ci * k + ki) * k + kj;
                let crow = &mut dst[row * plane..(row + 1) * plane];
                for (oh, orow) in crow.chunks_exact_mut(wo).enumerate() {
                    let from = (oh + ki) * wp + kj;
                    move_row(orow, Some(&pl[from..from + wo]));
                }
            }
        }
    }
}

/// Which pooling a pooling layer does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Max,
    Average,
}

/// Max or average pooling without padding.
fn pool(x: &Array4<f32>, size: usize, stride: usize, pooling: Pooling) -> Array4<f32> {
    let max = pooling == Pooling::Max;
    let (n, c, h, w) = x.dim();
    let ho = (h - size) / stride + 1;
    let wo = (w - size) / stride + 1;
    let area = (size * size) as f32;
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("a standard layout");
    let mut out = vec![0f32; n * c * ho * wo];
    if max && size == 2 && stride == 2 {
        max_pool_2x2(xs, &mut out, h, w);
        return Array4::from_shape_vec((n, c, ho, wo), out).expect("pool output");
    }
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

/// 2 × 2 max pooling with stride 2 (LeNet's), output row by output row: each output is the
/// maximum of its window taken in the general loop's order (from −∞: top left, top right,
/// bottom left, bottom right), so the bits are the same, in loops the compiler vectorises.
fn max_pool_2x2(xs: &[f32], out: &mut [f32], h: usize, w: usize) {
    let (ho, wo) = (h / 2, w / 2);
    for (plane, dst) in xs.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for (a, row) in dst.chunks_exact_mut(wo).enumerate() {
            let top = &plane[2 * a * w..2 * a * w + 2 * wo];
            let bottom = &plane[(2 * a + 1) * w..(2 * a + 1) * w + 2 * wo];
            for ((d, t), b) in row
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                *d = f32::NEG_INFINITY.max(t[0]).max(t[1]).max(b[0]).max(b[1]);
            }
        }
    }
}
