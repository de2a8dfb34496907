//! Backend-specific fused kernels behind one trait, [`FusedOps`].
//!
//! Written with burn's tensor ops, the absmax int8 quantizer (Q2/Q3/Q5) and its STE take about
//! ten passes over the activation, each allocating a tensor; they were a large share of the
//! step on the CPU. Here:
//! - on flex (CPU) the quantizer is one pass per row in plain Rust ([`absmax_int8_rows`]);
//! - under autodiff the STE is a single custom op whose forward is the quantized value and whose
//!   backward passes the gradient through unchanged (no `x + (q − x).detach()` arithmetic);
//! - other backends (CUDA) use the tensor-op formulation of `crate::quant`.

use crate::quant;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// Kernels a backend may fuse; the defaults are the plain tensor-op versions.
pub trait FusedOps: Backend {
    /// Q2/Q3/Q5 value: int8 absmax over the last dim (see [`quant::absmax_int8`]).
    fn absmax_int8<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        quant::absmax_int8(x)
    }

    /// The same value with a straight-through gradient (identity). Without autodiff there is no
    /// gradient, so it is the value itself.
    fn absmax_int8_ste<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        Self::absmax_int8(x)
    }
}

/// Scalar kernel of Q2/Q3/Q5 over rows of `n` values: `s = max(max|x|, 1e-5)/127`,
/// `out = round_half_even(x/s)·s` (the clamp to −128..=127 never binds, see `quant`).
///
/// # Shapes
/// - `src`, `dst`: `[rows·n]`
pub fn absmax_int8_rows(src: &[f32], dst: &mut [f32], n: usize) {
    debug_assert_eq!(src.len(), dst.len());
    debug_assert!(n > 0 && src.len() % n == 0);
    let rows_per_task = (16384 / n).max(1);
    dst.par_chunks_mut(rows_per_task * n)
        .zip(src.par_chunks(rows_per_task * n))
        .for_each(|(d, s)| {
            for (dr, sr) in d.chunks_exact_mut(n).zip(s.chunks_exact(n)) {
                let amax = sr.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = amax.max(quant::SCALE_FLOOR) / 127.0;
                for (o, &v) in dr.iter_mut().zip(sr) {
                    *o = round_half_even_small(v / scale) * scale;
                }
            }
        });
}

/// `v.round_ties_even()` for `|v| ≤ 2^22`, without the libm call (so the loop vectorizes):
/// adding and subtracting 1.5·2^23 leaves the nearest integer, ties to even, under the default
/// rounding mode. Here `|v| ≤ 127·(1 + 2^-23)`.
#[inline(always)]
fn round_half_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    (v + MAGIC) - MAGIC
}

impl FusedOps for Flex {
    fn absmax_int8<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let dims = x.dims();
        let n = dims[D - 1];
        let t = x.into_primitive().tensor();
        let t = if t.is_contiguous() {
            t
        } else {
            t.to_contiguous()
        };
        let src = t.as_slice::<f32>().expect("contiguous f32 tensor");
        let mut out = vec![0f32; src.len()];
        absmax_int8_rows(src, &mut out, n);
        let flex = burn::backend::flex::FlexTensor::from_data(TensorData::new(out, dims));
        Tensor::from_primitive(TensorPrimitive::Float(flex))
    }
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}

/// Gradient of the STE: the identity.
#[derive(Debug)]
struct StraightThrough;

impl<B: Backend> Backward<B, 1> for StraightThrough {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| grad);
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn absmax_int8_ste<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let x = x.into_primitive().tensor();
        let inner = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(x.primitive.clone()));
        let q = B::absmax_int8(inner).into_primitive().tensor();
        let out = match StraightThrough
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((), q),
            OpsKind::UnTracked(prep) => prep.finish(q),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn magic_rounding_is_half_even() {
        for i in -300_000..=300_000 {
            let v = i as f32 / 1000.0;
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -2.5, 126.5, -127.5] {
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn flex_kernel_matches_tensor_ops() {
        let dev = Default::default();
        let x = Tensor::<Flex, 3>::random([3, 7, 40], Distribution::Normal(0.0, 2.0), &dev);
        let a = <Flex as FusedOps>::absmax_int8(x.clone());
        let b = quant::absmax_int8(x.clone());
        let d: f32 = (a - b).abs().max().into_scalar();
        assert_eq!(d, 0.0);
        // non-contiguous input
        let xt = x.swap_dims(1, 2);
        let d: f32 = (<Flex as FusedOps>::absmax_int8(xt.clone()) - quant::absmax_int8(xt))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(d, 0.0);
    }

    #[test]
    fn ste_op_value_and_identity_gradient() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x0 = Tensor::<Flex, 2>::random([5, 24], Distribution::Normal(0.0, 1.0), &dev);
        let g0 = Tensor::<Flex, 2>::random([5, 24], Distribution::Normal(0.0, 1.0), &dev);
        let x = Tensor::<A, 2>::from_inner(x0.clone()).require_grad();
        let y = <A as FusedOps>::absmax_int8_ste(x.clone());
        let dv: f32 = (y.clone().inner() - quant::absmax_int8(x0))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(dv, 0.0);
        let grads = (y * Tensor::from_inner(g0.clone())).sum().backward();
        let dg: f32 = (x.grad(&grads).unwrap() - g0).abs().max().into_scalar();
        assert_eq!(dg, 0.0);
    }
}
