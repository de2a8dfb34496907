//! [`FusedOps`] under autodiff: each fused kernel of the inner backend `B` runs as one custom op
//! (one node of the graph) whose backward pass calls `B`'s gradient kernel, so the graph holds
//! one node per kernel instead of the dozen of its tensor-op formulation. Every op goes through
//! [`custom_op`]; a backward struct per op says what the backward pass keeps and does.

use super::{attention_ops, FusedOps};
use crate::fused::attention::{AttnShape, Rope};
use crate::fused::quant::QuantApply;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// A float primitive as a tensor of rank `D`.
fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// The float primitive of a tensor.
fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// Runs `op` on `N` autodiff inputs. When the graph needs the op's gradient (some input requires
/// one), `tracked` gets the inputs' inner primitives and returns the output and the state `op`'s
/// backward pass reads; otherwise `untracked` returns the output alone.
fn custom_op<B, C, O, const N: usize>(
    op: O,
    inputs: [FloatTensor<Autodiff<B, C>>; N],
    tracked: impl FnOnce([FloatTensor<B>; N]) -> (FloatTensor<B>, O::State),
    untracked: impl FnOnce([FloatTensor<B>; N]) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    O: Backward<B, N>,
{
    let nodes = inputs.each_ref().map(|x| x.node.clone());
    let inner = inputs.map(|x| x.primitive);
    match op.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, state) = tracked(inner);
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(inner)),
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn absmax_int8_ste<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let q = |[x]: [FloatTensor<B>; 1]| prim(B::absmax_int8(tensor::<B, D>(x)));
        tensor(custom_op::<B, C, _, 1>(
            StraightThrough,
            [prim(x)],
            |x| (q(x), ()),
            q,
        ))
    }

    fn dropout_keep(shape: [usize; 3], p: f64, device: &Self::Device) -> Tensor<Self, 3> {
        Tensor::from_inner(B::dropout_keep(shape, p, device))
    }

    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        gain: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        let dims = x.dims().to_vec();
        let y = |x, g| prim(B::rms_norm(tensor::<B, D>(x), tensor(g), eps));
        tensor(custom_op::<B, C, _, 2>(
            RmsNormBackward,
            [prim(x), prim(gain)],
            |[x, g]| (y(x.clone(), g.clone()), (x, g, eps, dims)),
            |[x, g]| y(x, g),
        ))
    }

    fn causal_softmax(x: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let dims = x.dims();
        let p = |x| prim(B::causal_softmax(tensor(x)));
        tensor(custom_op::<B, C, _, 1>(
            CausalSoftmaxBackward,
            [prim(x)],
            |[x]| {
                let p = p(x);
                (p.clone(), (p, dims))
            },
            |[x]| p(x),
        ))
    }

    fn relu_sq<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let dims = x.dims().to_vec();
        let y = |x| prim(B::relu_sq(tensor::<B, D>(x)));
        tensor(custom_op::<B, C, _, 1>(
            ReluSqBackward,
            [prim(x)],
            |[x]| (y(x.clone()), (x, dims)),
            |[x]| y(x),
        ))
    }

    fn linear_2d(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        if !B::has_fused_linear() {
            return burn::tensor::module::linear(x, w, None);
        }
        let y = |x, w| prim(B::linear_2d(tensor(x), tensor(w)));
        tensor(custom_op::<B, C, _, 2>(
            LinearBackward,
            [prim(x), prim(w)],
            |[x, w]| (y(x.clone(), w.clone()), (x, w)),
            |[x, w]| y(x, w),
        ))
    }

    fn rope_attention(
        qkv: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
        quant: QuantApply,
    ) -> Tensor<Self, 3> {
        if !B::has_fused_rope_attention() {
            return attention_ops(qkv, rope, s, quant);
        }
        tensor(custom_op::<B, C, _, 1>(
            AttentionBackward,
            [prim(qkv)],
            |[x]| {
                let (y, saved) = B::rope_attention_saving(tensor(x), rope, s, quant);
                (prim(y), (prim(saved), rope.clone(), s))
            },
            |[x]| prim(B::rope_attention(tensor(x), rope, s, quant)),
        ))
    }
}

/// Gradient of the STE: the identity.
#[derive(Debug)]
struct StraightThrough;

impl<B: Backend> Backward<B, 1> for StraightThrough {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| grad);
    }
}

/// Backward of the fused RMSNorm; state: input, gain, eps, input dims.
#[derive(Debug)]
struct RmsNormBackward;

impl<B: FusedOps> Backward<B, 2> for RmsNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, f64, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gain, eps, dims) = ops.state;
        let n = *dims.last().expect("rank >= 1");
        let rows = dims.iter().product::<usize>() / n;
        let dy = grads.consume::<B>(&ops.node);
        let as2 = |p| tensor::<B, 1>(B::float_reshape(p, [rows * n].into())).reshape([rows, n]);
        let (dx, dg) = B::rms_norm_backward(as2(x), tensor(gain), as2(dy), eps);
        let [px, pg] = ops.parents;
        if let Some(node) = px {
            grads.register::<B>(node.id, B::float_reshape(prim(dx), dims.into()));
        }
        if let Some(node) = pg {
            grads.register::<B>(node.id, prim(dg));
        }
    }
}

/// Backward of the causal softmax; state: its output `p`, dims.
#[derive(Debug)]
struct CausalSoftmaxBackward;

impl<B: Backend> Backward<B, 1> for CausalSoftmaxBackward {
    type State = (FloatTensor<B>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (p, dims) = ops.state;
        let rows = dims[0] * dims[1] * dims[2];
        let n = dims[3];
        unary::<B, _>(ops.parents, ops.node, grads, |dp| {
            let as2 = |x| tensor::<B, 4>(x).reshape([rows, n]);
            prim(softmax_backward(as2(p), as2(dp)).reshape(dims))
        });
    }
}

/// Gradient of a softmax over rows from its output `p`: `dx = p ⊙ (dp − Σ_j p_j·dp_j)`.
///
/// # Shapes
/// - `p`, `dp`: `[rows, n]` → `[rows, n]`
fn softmax_backward<B: Backend>(p: Tensor<B, 2>, dp: Tensor<B, 2>) -> Tensor<B, 2> {
    let dot = (p.clone() * dp.clone()).sum_dim(1);
    p * (dp - dot)
}

/// Backward of the fused linear; state: both inputs.
#[derive(Debug)]
struct LinearBackward;

impl<B: FusedOps> Backward<B, 2> for LinearBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let [px, pw] = ops.parents;
        let (dx, dw) =
            B::linear_2d_backward(tensor(x), tensor(w), tensor(dy), px.is_some(), pw.is_some());
        if let (Some(node), Some(dx)) = (px, dx) {
            grads.register::<B>(node.id, prim(dx));
        }
        if let (Some(node), Some(dw)) = (pw, dw) {
            grads.register::<B>(node.id, prim(dw));
        }
    }
}

/// Backward of the fused attention; state: the prepared input and settings (P is recomputed).
#[derive(Debug)]
struct AttentionBackward;

impl<B: FusedOps> Backward<B, 1> for AttentionBackward {
    type State = (FloatTensor<B>, Rope, AttnShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (saved, rope, s) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            prim(B::rope_attention_backward(
                tensor(saved),
                tensor(dy),
                &rope,
                s,
            ))
        });
    }
}

/// Backward of the fused ReLU²; state: its input and its dims (flattened to `[n]` for the kernel).
#[derive(Debug)]
struct ReluSqBackward;

impl<B: FusedOps> Backward<B, 1> for ReluSqBackward {
    type State = (FloatTensor<B>, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, dims) = ops.state;
        let n: usize = dims.iter().product();
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            let flat = |p| tensor::<B, 1>(B::float_reshape(p, [n].into()));
            let dx = B::relu_sq_backward(flat(x), flat(dy));
            B::float_reshape(prim(dx), dims.into())
        });
    }
}
