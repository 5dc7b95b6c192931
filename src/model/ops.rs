//! The fleet's fused layers as burn autodiff operations: one graph node each for a dense layer
//! with its activation, a convolution with its activation, and the models' cross-entropies,
//! whose forward and backward are the hand-written kernels of [`super::kernels`]. burn records
//! them in the graph like its own operations and routes their gradients; a handful of nodes per
//! step instead of dozens keeps its per-operation cost small.

use super::arch::Activation;
use super::kernels::{self, ConvShape, DenseShape, PoolShape};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use std::borrow::Cow;

type Ad = Autodiff<Flex>;

/// A tensor's values in row-major order (a copy only when it is not contiguous).
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        Cow::Borrowed(t.storage::<f32>())
    } else {
        Cow::Owned(
            t.clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 values"),
        )
    }
}

fn tensor(v: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn primitive<const D: usize>(t: Tensor<D>) -> burn::backend::tensor::FloatTensor<Ad> {
    t.try_into_primitive::<Ad>()
        .expect("fleet tensors live on the Flex autodiff device")
}

#[derive(Debug)]
struct DenseBackward {
    shape: DenseShape,
    act: Activation,
}

impl Backward<Flex, 3> for DenseBackward {
    /// The input, the kernel and the output.
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nw, nb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (x, w, y) = ops.state;
        let s = self.shape;
        let (dx, dw, db) = kernels::dense_backward(
            s,
            &values(&x),
            &values(&w),
            &values(&y),
            &values(&g),
            self.act,
            nx.is_some(),
        );
        if let (Some(n), Some(dx)) = (nx, dx) {
            grads.register::<Flex>(n.id, tensor(dx, vec![s.k, s.b, s.i]));
        }
        if let Some(n) = nw {
            grads.register::<Flex>(n.id, tensor(dw, vec![s.k, s.i, s.o]));
        }
        if let Some(n) = nb {
            grads.register::<Flex>(n.id, tensor(db, vec![s.k, 1, s.o]));
        }
    }
}

/// `act(x · w + b)` for every model: `x` `[K, B, I]`, `w` `[K, I, O]`, `b` `[K, 1, O]`.
pub fn dense(x: Tensor<3>, w: Tensor<3>, b: Tensor<3>, act: Activation) -> Tensor<3> {
    let [k, bsz, i] = x.dims();
    let o = w.dims()[2];
    let shape = DenseShape { k, b: bsz, i, o };
    let (x, w, b) = (primitive(x), primitive(w), primitive(b));
    let forward = |x: &FlexTensor, w: &FlexTensor, b: &FlexTensor| {
        tensor(
            kernels::dense_forward(shape, &values(x), &values(w), &values(b), act),
            vec![k, bsz, o],
        )
    };
    let out = match (DenseBackward { shape, act })
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (xp, wp) = (x.primitive().clone(), w.primitive().clone());
            let y = forward(&xp, &wp, b.primitive());
            prep.finish((xp, wp, y.clone()), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.primitive(), w.primitive(), b.primitive()))
        }
    };
    Tensor::from_primitive::<Ad>(out)
}

#[derive(Debug)]
struct ConvBackward {
    shape: ConvShape,
    act: Activation,
}

impl Backward<Flex, 3> for ConvBackward {
    /// The forward pass's im2col columns (instead of the input), the filters and the output.
    type State = (Vec<f32>, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nw, nb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (cols, w, y) = ops.state;
        let s = self.shape;
        let (dx, dw, db) = kernels::conv_backward(
            s,
            cols,
            &values(&w),
            &values(&y),
            &values(&g),
            self.act,
            nx.is_some(),
        );
        if let (Some(n), Some(dx)) = (nx, dx) {
            grads.register::<Flex>(n.id, tensor(dx, vec![s.k * s.b, s.c, s.h, s.w]));
        }
        let ckk = s.c * s.kernel * s.kernel;
        if let Some(n) = nw {
            grads.register::<Flex>(n.id, tensor(dw, vec![s.k, s.o, ckk]));
        }
        if let Some(n) = nb {
            grads.register::<Flex>(n.id, tensor(db, vec![s.k, s.o, 1]));
        }
    }
}

/// `act(conv(x, w) + b)` for every model: `x` `[K·B, C, H, W]` (model-major), `w`
/// `[K, O, C·k²]`, `b` `[K, O, 1]`; zero padding `pad`, `stride`.
pub fn conv(
    x: Tensor<4>,
    w: Tensor<3>,
    b: Tensor<3>,
    k: usize,
    (kernel, stride, pad): (usize, usize, usize),
    act: Activation,
) -> Tensor<4> {
    let [kb, c, h, wd] = x.dims();
    let o = w.dims()[1];
    let shape = ConvShape {
        k,
        b: kb / k,
        c,
        h,
        w: wd,
        o,
        kernel,
        stride,
        pad,
    };
    let (ho, wo) = shape.out_hw();
    let (x, w, b) = (primitive(x), primitive(w), primitive(b));
    let forward = |x: &FlexTensor, w: &FlexTensor, b: &FlexTensor, keep: bool| {
        let (y, cols) =
            kernels::conv_forward_cols(shape, &values(x), &values(w), &values(b), act, keep);
        (tensor(y, vec![kb, o, ho, wo]), cols)
    };
    let out = match (ConvBackward { shape, act })
        .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let wp = w.primitive().clone();
            let (y, cols) = forward(x.primitive(), &wp, b.primitive(), true);
            prep.finish((cols, wp, y.clone()), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.primitive(), w.primitive(), b.primitive(), false).0)
        }
    };
    Tensor::from_primitive::<Ad>(out)
}

#[derive(Debug)]
struct MaxPoolBackward {
    shape: PoolShape,
    dims: [usize; 4],
}

impl Backward<Flex, 1> for MaxPoolBackward {
    /// Where each maximum was.
    type State = Vec<u32>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        if let Some(n) = nx {
            let dx = kernels::max_pool_backward(self.shape, &values(&g), &ops.state);
            grads.register::<Flex>(n.id, tensor(dx, self.dims.to_vec()));
        }
    }
}

/// Max pooling over `size`² windows with `stride` (no padding) of `[N, C, H, W]`.
pub fn max_pool(x: Tensor<4>, size: usize, stride: usize) -> Tensor<4> {
    let dims = x.dims();
    let [n, c, h, w] = dims;
    let shape = PoolShape {
        planes: n * c,
        h,
        w,
        size,
        stride,
    };
    let (ho, wo) = shape.out_hw();
    let x = primitive(x);
    let (y, at) = kernels::max_pool_forward(shape, &values(x.primitive()));
    let y = tensor(y, vec![n, c, ho, wo]);
    let out = match (MaxPoolBackward { shape, dims })
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(at, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Ad>(out)
}

#[derive(Debug)]
struct CrossEntropyBackward {
    k: usize,
    b: usize,
    c: usize,
}

impl Backward<Flex, 1> for CrossEntropyBackward {
    /// The gradient of the sum of the models' losses with respect to the logits.
    type State = Vec<f32>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nz] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let g = values(&g).to_vec();
        if let Some(n) = nz {
            let per = self.b * self.c;
            let mut dz = ops.state;
            for (m, chunk) in dz.chunks_exact_mut(per).enumerate() {
                if g[m] != 1.0 {
                    chunk.iter_mut().for_each(|v| *v *= g[m]);
                }
            }
            grads.register::<Flex>(n.id, tensor(dz, vec![self.k, self.b, self.c]));
        }
    }
}

/// Each model's mean softmax cross-entropy over its batch, `[K]`, from `logits` `[K, B, C]`
/// and `targets` (`K·B` class indices).
pub fn cross_entropy(logits: Tensor<3>, targets: &[u32]) -> Tensor<1> {
    let [k, b, c] = logits.dims();
    let z = primitive(logits);
    let (loss, grad) = kernels::softmax_ce(k, b, c, &values(z.primitive()), targets);
    let out = tensor(loss, vec![k]);
    let out = match (CrossEntropyBackward { k, b, c })
        .prepare::<NoCheckpointing>([z.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(grad, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Ad>(out)
}
