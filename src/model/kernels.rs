//! The arithmetic of the fleet's fused layers, on plain slices: dense layers and convolutions
//! (im2col / col2im around sgemm) forward and backward with their activation, and the
//! softmax cross-entropy. Every model of a fleet is computed alone, in the same order whatever
//! the fleet: a sum over a batch is taken over fixed chunks of [`CHUNK`] samples, added in
//! order, so neither the fleet nor the thread count changes a bit of any model's result.

use super::arch::Activation;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Samples per chunk of a batch: the unit of parallel work and of ordered sums.
pub const CHUNK: usize = 8;

pub fn activate(v: f32, a: Activation) -> f32 {
    match a {
        Activation::Relu => v.max(0.0),
        Activation::Tanh => v.tanh(),
        Activation::Linear => v,
    }
}

/// `g · act'(pre)` written as a function of the activation's output `y`.
pub fn grad_through(g: f32, y: f32, a: Activation) -> f32 {
    match a {
        Activation::Relu => {
            if y > 0.0 {
                g
            } else {
                0.0
            }
        }
        Activation::Tanh => g * (1.0 - y * y),
        Activation::Linear => g,
    }
}

pub use crate::linalg::mat_mul;

fn view(s: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), s).expect("a row-major matrix")
}

fn view_mut(s: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), s).expect("a row-major matrix")
}

/// Shapes of a fleet's dense layer: `k` models, `b` samples each, `i` inputs, `o` units.
#[derive(Debug, Clone, Copy)]
pub struct DenseShape {
    pub k: usize,
    pub b: usize,
    pub i: usize,
    pub o: usize,
}

/// `y[k] = act(x[k] · w[k] + b[k])`; `x` `[K, B, I]`, `w` `[K, I, O]`, `bias` `[K, O]`.
pub fn dense_forward(
    s: DenseShape,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    act: Activation,
) -> Vec<f32> {
    let mut y = vec![0f32; s.k * s.b * s.o];
    y.par_chunks_mut(s.b * s.o).enumerate().for_each(|(m, ym)| {
        let xm = view(&x[m * s.b * s.i..(m + 1) * s.b * s.i], s.b, s.i);
        let wm = view(&w[m * s.i * s.o..(m + 1) * s.i * s.o], s.i, s.o);
        mat_mul(1.0, &xm, &wm, 0.0, &mut view_mut(ym, s.b, s.o));
        let bm = &bias[m * s.o..(m + 1) * s.o];
        for row in ym.chunks_exact_mut(s.o) {
            for (v, &bv) in row.iter_mut().zip(bm) {
                *v = activate(*v + bv, act);
            }
        }
    });
    y
}

/// The gradients of [`dense_forward`] from the output's gradient `g` and the output `y`:
/// (input — when asked, kernel, bias).
pub fn dense_backward(
    s: DenseShape,
    x: &[f32],
    w: &[f32],
    y: &[f32],
    g: &[f32],
    act: Activation,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let mut gp: Vec<f32> = g
        .iter()
        .zip(y)
        .map(|(&g, &y)| grad_through(g, y, act))
        .collect();
    let mut dw = vec![0f32; s.k * s.i * s.o];
    let mut db = vec![0f32; s.k * s.o];
    dw.par_chunks_mut(s.i * s.o)
        .zip(db.par_chunks_mut(s.o))
        .enumerate()
        .for_each(|(m, (dwm, dbm))| {
            let gm = &gp[m * s.b * s.o..(m + 1) * s.b * s.o];
            let xm = view(&x[m * s.b * s.i..(m + 1) * s.b * s.i], s.b, s.i);
            mat_mul(
                1.0,
                &xm.t(),
                &view(gm, s.b, s.o),
                0.0,
                &mut view_mut(dwm, s.i, s.o),
            );
            for row in gm.chunks_exact(s.o) {
                for (d, &v) in dbm.iter_mut().zip(row) {
                    *d += v;
                }
            }
        });
    let dx = want_dx.then(|| {
        let mut dx = vec![0f32; s.k * s.b * s.i];
        dx.par_chunks_mut(s.b * s.i)
            .enumerate()
            .for_each(|(m, dxm)| {
                let gm = view(&gp[m * s.b * s.o..(m + 1) * s.b * s.o], s.b, s.o);
                let wm = view(&w[m * s.i * s.o..(m + 1) * s.i * s.o], s.i, s.o);
                mat_mul(1.0, &gm, &wm.t(), 0.0, &mut view_mut(dxm, s.b, s.i));
            });
        dx
    });
    gp.clear();
    (dx, dw, db)
}

/// Shapes of a fleet's convolution: `k` models of `b` images each, `c` × `h` × `w` in, `o`
/// filters of `kernel`², `stride`, zero padding `pad`.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub k: usize,
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.kernel) / self.stride + 1,
            (self.w + 2 * self.pad - self.kernel) / self.stride + 1,
        )
    }
    fn plane(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }
    fn ckk(&self) -> usize {
        self.c * self.kernel * self.kernel
    }
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// The output columns `ow` whose input column `ow·stride + kj − pad` lies inside a row of
/// `w` pixels: `lo..hi`.
fn valid_cols(s: &ConvShape, kj: usize, wo: usize) -> (usize, usize) {
    let lo = s.pad.saturating_sub(kj).div_ceil(s.stride);
    let hi = (s.w + s.pad).saturating_sub(kj).div_ceil(s.stride).min(wo);
    (lo, hi.max(lo))
}

/// Copy `src` into a short row `dst`, or zero it (`None`), with fixed-width moves: a
/// convolution's rows are 10–32 floats, and a call to `memcpy` or `memset` for every row cost
/// more than the copy itself.
#[inline(always)]
pub(super) fn move_row(dst: &mut [f32], src: Option<&[f32]>) {
    let n = dst.len();
    let eight = |at: usize| -> [f32; 8] {
        match src {
            Some(s) => s[at..at + 8].try_into().expect("8 floats"),
            None => [0.0; 8],
        }
    };
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            let d: &mut [f32; 8] = (&mut dst[i..i + 8]).try_into().expect("8 floats");
            *d = eight(i);
            i += 8;
        }
        if i < n {
            let d: &mut [f32; 8] = (&mut dst[n - 8..]).try_into().expect("8 floats");
            *d = eight(n - 8);
        }
    } else {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = src.map_or(0.0, |s| s[i]);
        }
    }
}

/// im2col of `n` images `x` (`[n, C, H, W]`) into `cols` (`[C·k², n·Ho·Wo]`: image `i`'s
/// columns at `i·Ho·Wo`); every element of `cols` is written.
pub fn im2col(s: &ConvShape, x: &[f32], n: usize, cols: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let plane = ho * wo;
    let width = n * plane;
    let (k, stride, pad) = (s.kernel, s.stride, s.pad);
    for img in 0..n {
        for ci in 0..s.c {
            let src = &x[(img * s.c + ci) * s.h * s.w..(img * s.c + ci + 1) * s.h * s.w];
            for ki in 0..k {
                for kj in 0..k {
                    let row = (ci * k + ki) * k + kj;
                    let dst = &mut cols[row * width + img * plane..row * width + (img + 1) * plane];
                    let (lo, hi) = valid_cols(s, kj, wo);
                    for oh in 0..ho {
                        let orow = &mut dst[oh * wo..(oh + 1) * wo];
                        let ih = (oh * stride + ki) as isize - pad as isize;
                        if ih < 0 || ih >= s.h as isize {
                            move_row(orow, None);
                            continue;
                        }
                        let srow = &src[ih as usize * s.w..(ih as usize + 1) * s.w];
                        if lo > 0 || hi < wo {
                            move_row(orow, None);
                        }
                        if stride == 1 {
                            let start = lo + kj - pad;
                            move_row(&mut orow[lo..hi], Some(&srow[start..start + (hi - lo)]));
                        } else {
                            for (ow, v) in orow.iter_mut().enumerate().take(hi).skip(lo) {
                                *v = srow[ow * stride + kj - pad];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// col2im: add `cols` (`[C·k², n·Ho·Wo]`) back into the gradient `dx` of `n` images
/// (`[n, C, H, W]`).
pub fn col2im(s: &ConvShape, cols: &[f32], n: usize, dx: &mut [f32]) {
    let (ho, wo) = s.out_hw();
    let plane = ho * wo;
    let width = n * plane;
    let (k, stride, pad) = (s.kernel, s.stride, s.pad);
    for img in 0..n {
        for ci in 0..s.c {
            let dst = &mut dx[(img * s.c + ci) * s.h * s.w..(img * s.c + ci + 1) * s.h * s.w];
            for ki in 0..k {
                for kj in 0..k {
                    let row = (ci * k + ki) * k + kj;
                    let src = &cols[row * width + img * plane..row * width + (img + 1) * plane];
                    let (lo, hi) = valid_cols(s, kj, wo);
                    for oh in 0..ho {
                        let ih = (oh * stride + ki) as isize - pad as isize;
                        if ih < 0 || ih >= s.h as isize {
                            continue;
                        }
                        let drow = &mut dst[ih as usize * s.w..(ih as usize + 1) * s.w];
                        let srow = &src[oh * wo..(oh + 1) * wo];
                        if stride == 1 {
                            let start = lo + kj - pad;
                            for (d, v) in
                                drow[start..start + (hi - lo)].iter_mut().zip(&srow[lo..hi])
                            {
                                *d += v;
                            }
                        } else {
                            for (ow, v) in srow.iter().enumerate().take(hi).skip(lo) {
                                drow[ow * stride + kj - pad] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The (model, first image) of every chunk of a fleet's batch.
fn chunks(s: &ConvShape) -> Vec<(usize, usize)> {
    (0..s.k)
        .flat_map(|m| (0..s.b).step_by(CHUNK).map(move |i| (m, i)))
        .collect()
}

/// `buf` cut into one slice per chunk of `work`, `per_image` floats per image: the chunks'
/// images follow each other model by model, so the slices do too.
fn chunk_slices<'a>(
    s: &ConvShape,
    work: &[(usize, usize)],
    buf: &'a mut [f32],
    per_image: usize,
) -> Vec<&'a mut [f32]> {
    let mut rest = buf;
    let mut out = Vec::with_capacity(work.len());
    for &(_, first) in work {
        let n = CHUNK.min(s.b - first);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n * per_image);
        out.push(head);
        rest = tail;
    }
    out
}

/// [`chunk_slices`] of `buf` when there is one, else no slice for every chunk.
fn chunk_slices_of<'a>(
    s: &ConvShape,
    work: &[(usize, usize)],
    buf: Option<&'a mut [f32]>,
    per_image: usize,
) -> Vec<Option<&'a mut [f32]>> {
    match buf {
        Some(b) => chunk_slices(s, work, b, per_image)
            .into_iter()
            .map(Some)
            .collect(),
        None => work.iter().map(|_| None).collect(),
    }
}

thread_local! {
    /// A worker's scratch floats, reused from chunk to chunk (see [`with_scratch`]).
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `f` on `len` scratch floats of this thread, which hold whatever an earlier call left:
/// `f` writes every float before it reads it. The buffer is taken out while `f` runs, so a
/// task that rayon runs inside `f` on this thread gets a fresh one.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.set(buf);
    r
}

/// Column buffers the backward pass has finished with, for the next forward pass to fill
/// (im2col writes every element, so a buffer needs no zeroing: a LeNet-5 step zeroed 4 MB of
/// fresh columns). At most [`KEPT_FLOATS`] floats are kept.
static SPARE_COLS: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
const KEPT_FLOATS: usize = 16 << 20;

/// A buffer of `len` floats, its contents left over from an earlier step.
fn spare_cols(len: usize) -> Vec<f32> {
    let mut spare = SPARE_COLS.lock().unwrap_or_else(|e| e.into_inner());
    match spare.iter().position(|v| v.len() == len) {
        Some(i) => spare.swap_remove(i),
        None => vec![0f32; len],
    }
}

/// Give a finished column buffer back (dropped when the spares are full).
fn return_cols(cols: Vec<f32>) {
    let mut spare = SPARE_COLS.lock().unwrap_or_else(|e| e.into_inner());
    let held: usize = spare.iter().map(Vec::len).sum();
    if held + cols.len() <= KEPT_FLOATS {
        spare.push(cols);
    }
}

/// `y = act(conv(x, w) + bias)`: `x` `[K·B, C, H, W]`, `w` `[K, O, C·k²]`, `bias` `[K, O]`;
/// `y` `[K·B, O, Ho, Wo]`.
pub fn conv_forward(s: ConvShape, x: &[f32], w: &[f32], bias: &[f32], act: Activation) -> Vec<f32> {
    conv_forward_cols(s, x, w, bias, act, false).0
}

/// [`conv_forward`], and when `keep` the im2col of every chunk (its `C·k² × n·Ho·Wo`
/// columns; the chunk of images `i..i+n` at `i·C·k²·Ho·Wo`), which [`conv_backward`] takes
/// instead of the input; else an empty vector.
pub fn conv_forward_cols(
    s: ConvShape,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    act: Activation,
    keep: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (plane, ckk, img) = (s.plane(), s.ckk(), s.image());
    let per = s.o * plane;
    let mut y = vec![0f32; s.k * s.b * per];
    let mut kept = if keep {
        spare_cols(s.k * s.b * ckk * plane)
    } else {
        Vec::new()
    };
    let work = chunks(&s);
    let outs = chunk_slices(&s, &work, &mut y, per);
    let cols = chunk_slices_of(&s, &work, keep.then_some(&mut kept[..]), ckk * plane);
    // Parallel over (model, chunk of images); a chunk is im2col + one sgemm, written into
    // its images' part of `y`.
    work.par_iter()
        .zip(outs)
        .zip(cols)
        .for_each(|((&(m, first), out), cols)| {
            let n = CHUNK.min(s.b - first);
            let wm = view(&w[m * s.o * ckk..(m + 1) * s.o * ckk], s.o, ckk);
            let bm = &bias[m * s.o..(m + 1) * s.o];
            let start = (m * s.b + first) * img;
            let wide_len = s.o * n * plane;
            let spare = if cols.is_some() { 0 } else { ckk * n * plane };
            with_scratch(wide_len + spare, |buf| {
                let (wide, spare) = buf.split_at_mut(wide_len); // [O, n·plane]
                let cols: &mut [f32] = match cols {
                    Some(c) => c,
                    None => spare,
                };
                im2col(&s, &x[start..start + n * img], n, cols);
                crate::linalg::mat_mul_oriented(
                    1.0,
                    &wm,
                    &view(cols, ckk, n * plane),
                    0.0,
                    &mut view_mut(wide, s.o, n * plane),
                );
                for i in 0..n {
                    for (f, &bv) in bm.iter().enumerate() {
                        let src = &wide[f * n * plane + i * plane..f * n * plane + (i + 1) * plane];
                        let dst = &mut out[i * per + f * plane..i * per + (f + 1) * plane];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = activate(v + bv, act);
                        }
                    }
                }
            });
        });
    (y, kept)
}

/// The gradients of [`conv_forward`] from the output's gradient `g`, the output `y` and the
/// forward pass's columns `cols` (from [`conv_forward_cols`], overwritten here): (input —
/// when asked, filters, bias).
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    s: ConvShape,
    mut cols: Vec<f32>,
    w: &[f32],
    y: &[f32],
    g: &[f32],
    act: Activation,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (plane, ckk, img) = (s.plane(), s.ckk(), s.image());
    assert_eq!(
        cols.len(),
        s.k * s.b * ckk * plane,
        "the forward pass's columns"
    );
    let work = chunks(&s);
    let mut dx = want_dx.then(|| vec![0f32; s.k * s.b * img]);
    let colss = chunk_slices(&s, &work, &mut cols, ckk * plane);
    let dxs = chunk_slices_of(&s, &work, dx.as_deref_mut(), img);
    // Per chunk: its part of the filters' and bias' gradients; its images' input gradient
    // goes straight into `dx`.
    let parts: Vec<(Vec<f32>, Vec<f32>)> = work
        .par_iter()
        .zip(colss)
        .zip(dxs)
        .map(|((&(m, first), cols), dx)| {
            let n = CHUNK.min(s.b - first);
            let wm = view(&w[m * s.o * ckk..(m + 1) * s.o * ckk], s.o, ckk);
            with_scratch(s.o * n * plane, |gp| {
                let db = grad_before_activation(&s, y, g, act, m * s.b + first, n, gp);
                let gv = view(gp, s.o, n * plane);
                let mut dw = vec![0f32; s.o * ckk];
                crate::linalg::mat_mul_oriented(
                    1.0,
                    &gv,
                    &view(cols, ckk, n * plane).t(),
                    0.0,
                    &mut view_mut(&mut dw, s.o, ckk),
                );
                if let Some(dx) = dx {
                    mat_mul(1.0, &wm.t(), &gv, 0.0, &mut view_mut(cols, ckk, n * plane));
                    col2im(&s, cols, n, dx);
                }
                (dw, db)
            })
        })
        .collect();
    return_cols(cols);
    let mut dw = vec![0f32; s.k * s.o * ckk];
    let mut db = vec![0f32; s.k * s.o];
    for (&(m, _), (pw, pb)) in work.iter().zip(parts) {
        for (d, v) in dw[m * s.o * ckk..(m + 1) * s.o * ckk].iter_mut().zip(&pw) {
            *d += v;
        }
        for (d, v) in db[m * s.o..(m + 1) * s.o].iter_mut().zip(&pb) {
            *d += v;
        }
    }
    (dx, dw, db)
}

/// The output's gradient through the activation for `n` images from image `image0` (of all
/// the fleet's), into `gp` as [O, n·plane]; returns its sum per filter (the bias' gradient),
/// summed image by image.
fn grad_before_activation(
    s: &ConvShape,
    y: &[f32],
    g: &[f32],
    act: Activation,
    image0: usize,
    n: usize,
    gp: &mut [f32],
) -> Vec<f32> {
    let plane = s.plane();
    let per = s.o * plane;
    let mut db = vec![0f32; s.o];
    for i in 0..n {
        let image = image0 + i;
        for f in 0..s.o {
            let at = image * per + f * plane;
            let dst = &mut gp[f * n * plane + i * plane..f * n * plane + (i + 1) * plane];
            let mut sum = 0f32;
            for ((d, &gv), &yv) in dst
                .iter_mut()
                .zip(&g[at..at + plane])
                .zip(&y[at..at + plane])
            {
                *d = grad_through(gv, yv, act);
                sum += *d;
            }
            db[f] += sum;
        }
    }
    db
}

/// Shapes of a max pooling: `planes` planes (images × channels) of `h` × `w`, windows of
/// `size`², `stride`.
#[derive(Debug, Clone, Copy)]
pub struct PoolShape {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub stride: usize,
}

impl PoolShape {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h - self.size) / self.stride + 1,
            (self.w - self.size) / self.stride + 1,
        )
    }
}

/// Max pooling: the maxima and, for each, the position of the first maximum in its plane.
pub fn max_pool_forward(s: PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (ho, wo) = s.out_hw();
    let (inp, out) = (s.h * s.w, ho * wo);
    let mut y = vec![0f32; s.planes * out];
    let mut at = vec![0u32; s.planes * out];
    // Tasks of at least 8 planes: a plane is too little work to hand to another thread.
    y.par_chunks_mut(out)
        .zip(at.par_chunks_mut(out))
        .enumerate()
        .with_min_len(8)
        .for_each(|(p, (yp, ap))| {
            let plane = &x[p * inp..(p + 1) * inp];
            if s.size == 2 && s.stride == 2 {
                pool_2x2(plane, s.w, ho, wo, yp, ap);
                return;
            }
            for a in 0..ho {
                for b in 0..wo {
                    let (mut best, mut where_) = (f32::NEG_INFINITY, 0usize);
                    for i in 0..s.size {
                        let row = (a * s.stride + i) * s.w + b * s.stride;
                        for (j, &v) in plane[row..row + s.size].iter().enumerate() {
                            keep_first_max(&mut best, &mut where_, v, row + j);
                        }
                    }
                    yp[a * wo + b] = best;
                    ap[a * wo + b] = where_ as u32;
                }
            }
        });
    (y, at)
}

/// One step of a window's scan: `v` at `i` becomes the maximum only when larger than the
/// maximum so far (the first of equal ones is kept), by selects rather than a branch.
#[inline(always)]
fn keep_first_max<I: Copy>(best: &mut f32, at: &mut I, v: f32, i: I) {
    let more = v > *best;
    *best = if more { v } else { *best };
    *at = if more { i } else { *at };
}

/// [`max_pool_forward`]'s windows of 2 × 2 with stride 2 for one plane of width `w`: the same
/// scan (row by row, the first maximum kept), written out so that neighbouring windows'
/// comparisons overlap instead of each waiting on a loop.
fn pool_2x2(plane: &[f32], w: usize, ho: usize, wo: usize, yp: &mut [f32], ap: &mut [u32]) {
    for a in 0..ho {
        let top = &plane[2 * a * w..2 * a * w + 2 * wo];
        let low = &plane[(2 * a + 1) * w..(2 * a + 1) * w + 2 * wo];
        let (ya, aa) = (&mut yp[a * wo..(a + 1) * wo], &mut ap[a * wo..(a + 1) * wo]);
        for b in 0..wo {
            let at = (2 * a * w + 2 * b) as u32;
            let window = [
                (top[2 * b], at),
                (top[2 * b + 1], at + 1),
                (low[2 * b], at + w as u32),
                (low[2 * b + 1], at + w as u32 + 1),
            ];
            let (mut best, mut where_) = (f32::NEG_INFINITY, 0u32);
            for (v, i) in window {
                keep_first_max(&mut best, &mut where_, v, i);
            }
            ya[b] = best;
            aa[b] = where_;
        }
    }
}

/// The input's gradient of a max pooling: each output's gradient goes to its maximum.
pub fn max_pool_backward(s: PoolShape, g: &[f32], at: &[u32]) -> Vec<f32> {
    let (ho, wo) = s.out_hw();
    let (inp, out) = (s.h * s.w, ho * wo);
    let mut dx = vec![0f32; s.planes * inp];
    dx.par_chunks_mut(inp)
        .enumerate()
        .with_min_len(8)
        .for_each(|(p, dp)| {
            for (&gv, &i) in g[p * out..(p + 1) * out]
                .iter()
                .zip(&at[p * out..(p + 1) * out])
            {
                dp[i as usize] += gv;
            }
        });
    dx
}

/// Each model's mean softmax cross-entropy over its batch (`logits` `[K, B, C]`, `targets`
/// `[K, B]`), and the gradient of their sum with respect to the logits.
pub fn softmax_ce(
    k: usize,
    b: usize,
    c: usize,
    logits: &[f32],
    targets: &[u32],
) -> (Vec<f32>, Vec<f32>) {
    let mut grad = vec![0f32; k * b * c];
    let mut loss = vec![0f32; k];
    for m in 0..k {
        let mut sum = 0f32;
        for i in 0..b {
            let r = (m * b + i) * c;
            let z = &logits[r..r + c];
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let gr = &mut grad[r..r + c];
            for (gv, &zv) in gr.iter_mut().zip(z) {
                *gv = zv - max;
            }
            crate::numeric::exp_in_place(gr);
            let mut e = 0f32;
            for gv in gr.iter() {
                e += *gv;
            }
            let t = targets[m * b + i] as usize;
            sum += -(z[t] - max - e.ln());
            let inv = 1.0 / (e * b as f32);
            for gv in gr.iter_mut() {
                *gv *= inv;
            }
            gr[t] -= 1.0 / b as f32;
        }
        loss[m] = sum / b as f32;
    }
    (loss, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finite differences of a scalar function of one slice.
    fn numeric(f: &dyn Fn(&[f32]) -> f64, x: &[f32]) -> Vec<f64> {
        let mut v = x.to_vec();
        (0..x.len())
            .map(|i| {
                let h = 1e-3f32;
                v[i] = x[i] + h;
                let a = f(&v);
                v[i] = x[i] - h;
                let b = f(&v);
                v[i] = x[i];
                (a - b) / (2.0 * h as f64)
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f64], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (*x as f64 - y).abs() < 2e-2 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    fn rnd(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97)) % 1000) as f32
                    / 1000.0
                    - 0.5
            })
            .collect()
    }

    #[test]
    fn conv_gradients_match_finite_differences() {
        let s = ConvShape {
            k: 2,
            b: 3,
            c: 2,
            h: 5,
            w: 6,
            o: 3,
            kernel: 3,
            stride: 2,
            pad: 1,
        };
        let (ho, wo) = s.out_hw();
        let x = rnd(s.k * s.b * s.image(), 1);
        let w = rnd(s.k * s.o * s.ckk(), 2);
        let b = rnd(s.k * s.o, 3);
        let r = rnd(s.k * s.b * s.o * ho * wo, 4); // d loss / d y
        for act in [Activation::Tanh, Activation::Linear] {
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                conv_forward(s, x, w, b, act)
                    .iter()
                    .zip(&r)
                    .map(|(a, c)| (a * c) as f64)
                    .sum()
            };
            let (y, cols) = conv_forward_cols(s, &x, &w, &b, act, true);
            assert_eq!(y, conv_forward(s, &x, &w, &b, act));
            let (dx, dw, db) = conv_backward(s, cols, &w, &y, &r, act, true);
            close(&dx.unwrap(), &numeric(&|v| loss(v, &w, &b), &x), "dx");
            close(&dw, &numeric(&|v| loss(&x, v, &b), &w), "dw");
            close(&db, &numeric(&|v| loss(&x, &w, v), &b), "db");
        }
    }

    #[test]
    fn im2col_matches_its_definition() {
        // Rows shorter and longer than the fixed-width moves, padding and strides.
        for (h, w, kernel, stride, pad) in [
            (5, 5, 3, 1, 1),
            (28, 28, 5, 1, 2),
            (14, 14, 5, 1, 0),
            (13, 21, 3, 2, 1),
            (9, 30, 4, 1, 3),
        ] {
            let s = ConvShape {
                k: 1,
                b: 3,
                c: 2,
                h,
                w,
                o: 1,
                kernel,
                stride,
                pad,
            };
            let (ho, wo) = s.out_hw();
            let n = s.b;
            let x = rnd(n * s.image(), 12);
            let mut cols = vec![f32::NAN; s.ckk() * n * ho * wo];
            im2col(&s, &x, n, &mut cols);
            let width = n * ho * wo;
            for img in 0..n {
                for ci in 0..s.c {
                    for ki in 0..kernel {
                        for kj in 0..kernel {
                            let row = (ci * kernel + ki) * kernel + kj;
                            for oh in 0..ho {
                                for ow in 0..wo {
                                    let ih = (oh * stride + ki) as isize - pad as isize;
                                    let iw = (ow * stride + kj) as isize - pad as isize;
                                    let inside = (0..h as isize).contains(&ih)
                                        && (0..w as isize).contains(&iw);
                                    let want = if inside {
                                        x[((img * s.c + ci) * h + ih as usize) * w + iw as usize]
                                    } else {
                                        0.0
                                    };
                                    let got = cols[row * width + img * ho * wo + oh * wo + ow];
                                    assert_eq!(got.to_bits(), want.to_bits(), "{h}×{w} k{kernel}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dense_gradients_match_finite_differences() {
        let s = DenseShape {
            k: 2,
            b: 4,
            i: 5,
            o: 3,
        };
        let x = rnd(s.k * s.b * s.i, 5);
        let w = rnd(s.k * s.i * s.o, 6);
        let b = rnd(s.k * s.o, 7);
        let r = rnd(s.k * s.b * s.o, 8);
        let act = Activation::Tanh;
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            dense_forward(s, x, w, b, act)
                .iter()
                .zip(&r)
                .map(|(a, c)| (a * c) as f64)
                .sum()
        };
        let y = dense_forward(s, &x, &w, &b, act);
        let (dx, dw, db) = dense_backward(s, &x, &w, &y, &r, act, true);
        close(&dx.unwrap(), &numeric(&|v| loss(v, &w, &b), &x), "dx");
        close(&dw, &numeric(&|v| loss(&x, v, &b), &w), "dw");
        close(&db, &numeric(&|v| loss(&x, &w, v), &b), "db");
    }

    #[test]
    fn max_pool_routes_the_gradient_to_the_maximum() {
        let s = PoolShape {
            planes: 1,
            h: 4,
            w: 4,
            size: 2,
            stride: 2,
        };
        let x = [
            1.0f32, 5.0, 2.0, 0.0, 3.0, 4.0, 9.0, 1.0, 0.0, 0.0, 1.0, 1.0, 7.0, 0.0, 1.0, 2.0,
        ];
        let (y, at) = max_pool_forward(s, &x);
        assert_eq!(y, [5.0, 9.0, 7.0, 2.0]);
        let dx = max_pool_backward(s, &[1.0, 2.0, 3.0, 4.0], &at);
        let mut want = [0f32; 16];
        (want[1], want[6], want[12], want[15]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(dx, want);
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let (k, b, c) = (2, 3, 4);
        let z = rnd(k * b * c, 9);
        let t = [0u32, 3, 1, 2, 2, 0];
        let total =
            |z: &[f32]| -> f64 { softmax_ce(k, b, c, z, &t).0.iter().map(|&v| v as f64).sum() };
        let (_, g) = softmax_ce(k, b, c, &z, &t);
        close(&g, &numeric(&total, &z), "dz");
    }
}
