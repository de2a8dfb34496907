//! Backend-specific fused kernels behind one trait, [`FusedOps`], whose default methods are the
//! plain tensor-op formulations (what CUDA runs).
//!
//! Written with burn's tensor ops, the absmax int8 quantizer (Q2/Q3/Q5) and its STE take about
//! ten passes over the activation, each allocating a tensor; RMSNorm, ReLU², the linears and the
//! attention likewise. They were most of the step on the CPU. So:
//! - `flex.rs`: flex (CPU) runs each as one pass over rows in plain Rust (`crate::fused::rows`,
//!   `crate::fused::attention`, `crate::fused::linalg`) with hand-written backward passes;
//! - `autodiff.rs`: under autodiff each is one custom op (forward: the inner backend's kernel;
//!   backward: the inner backend's gradient kernel), the STE's backward the identity;
//! - other backends (CUDA) keep the defaults below.
//!
//! Module order: the trait (this file) knows nothing of its implementations; `flex.rs` and
//! `autodiff.rs` implement it.

pub mod attention;
mod autodiff;
mod flex;
pub mod linalg;
pub mod quant;
pub mod rows;
#[cfg(test)]
mod tests;

use crate::fused::attention::{AttnShape, Rope};
use crate::fused::quant::QuantApply;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};

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

    /// `RMSNorm(x; g) = x / sqrt(mean(x²) + eps) · g` over the last dim.
    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        gain: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        let inv_rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt().recip();
        x * inv_rms * gain.unsqueeze::<D>()
    }

    /// Gradients of [`FusedOps::rms_norm`] on rows: with `r = 1/sqrt(mean(x²)+eps)`,
    /// `dx_j = r·g_j·dy_j − x_j·r³·Σ_i g_i·dy_i·x_i / n` and `dg_j = Σ_rows dy_j·x_j·r`.
    ///
    /// # Shapes
    /// - `x`, `dy`: `[rows, n]`; `gain`: `[n]` → (`[rows, n]`, `[n]`)
    fn rms_norm_backward(
        x: Tensor<Self, 2>,
        gain: Tensor<Self, 1>,
        dy: Tensor<Self, 2>,
        eps: f64,
    ) -> (Tensor<Self, 2>, Tensor<Self, 1>) {
        let n = x.dims()[1];
        let r = (x.clone().square().mean_dim(1) + eps).sqrt().recip(); // [rows, 1]
        let gdy = dy.clone() * gain.unsqueeze::<2>();
        let dot = (gdy.clone() * x.clone()).sum_dim(1); // [rows, 1]
        let r3 = r.clone() * r.clone() * r.clone();
        let dx = gdy * r.clone() - x.clone() * (r3 * dot / n as f64);
        let dg = (dy * x * r).sum_dim(0).reshape([n]);
        (dx, dg)
    }

    /// Causal softmax over the last dim of attention scores: row `i` of each `[t, t]` block keeps
    /// columns `0..=i` and gives probability 0 to the future (`softmax(x + mask)` with `−inf`
    /// above the diagonal). Only the tensor-op attention ([`attention_ops`]) uses it; under
    /// autodiff its backward is one op from the saved probabilities.
    ///
    /// # Shapes
    /// - `x`: `[b, h, t, t]` → same
    fn causal_softmax(x: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let [b, h, t, _] = x.dims();
        let mask = Tensor::<Self, 2, burn::tensor::Bool>::tril_mask([t, t], 0, &x.device());
        let bias = Tensor::<Self, 2>::zeros([t, t], &x.device()).mask_fill(mask, f32::NEG_INFINITY);
        let scores = x.reshape([b * h, t * t]) + bias.reshape([1, t * t]);
        burn::tensor::activation::softmax(scores.reshape([b, h, t, t]), 3)
    }

    /// The inverted-dropout multiplier of a `[b, t, n]` activation: `1/(1−p)` where an element is
    /// kept (probability `1 − p`), 0 where it is dropped. A constant (no gradient), drawn from the
    /// backend's RNG, which the training loop seeds per step.
    fn dropout_keep(shape: [usize; 3], p: f64, device: &Self::Device) -> Tensor<Self, 3> {
        let keep = Tensor::<Self, 3>::random(shape, Distribution::Bernoulli(1.0 - p), device);
        keep * (1.0 / (1.0 - p))
    }

    /// `relu(x)²` (the FFN activation).
    fn relu_sq<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        burn::tensor::activation::relu(x).square()
    }

    /// Gradient of [`FusedOps::relu_sq`]: `dx = 2·relu(x)·dy`.
    fn relu_sq_backward<const D: usize>(
        x: Tensor<Self, D>,
        dy: Tensor<Self, D>,
    ) -> Tensor<Self, D> {
        burn::tensor::activation::relu(x) * dy * 2.0
    }

    /// `x·w` on rows.
    ///
    /// # Shapes
    /// - `x`: `[rows, d_in]`, `w`: `[d_in, d_out]` → `[rows, d_out]`
    fn linear_2d(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        burn::tensor::module::linear(x, w, None)
    }

    /// True when the backend has its own [`FusedOps::linear_2d_backward`]; otherwise autodiff
    /// differentiates burn's `linear`.
    fn has_fused_linear() -> bool {
        false
    }

    /// Gradients of [`FusedOps::linear_2d`] for the output gradient `dy`: `dx = dy·wᵀ` (when
    /// `want_dx`) and `dw = xᵀ·dy` (when `want_dw`).
    fn linear_2d_backward(
        x: Tensor<Self, 2>,
        w: Tensor<Self, 2>,
        dy: Tensor<Self, 2>,
        want_dx: bool,
        want_dw: bool,
    ) -> (Option<Tensor<Self, 2>>, Option<Tensor<Self, 2>>) {
        let dx = want_dx.then(|| dy.clone().matmul(w.transpose()));
        let dw = want_dw.then(|| x.transpose().matmul(dy));
        (dx, dw)
    }

    /// Causal self-attention with RoPE and Q5 from the fused q|k|v projection (see
    /// [`crate::fused::attention`]).
    ///
    /// # Shapes
    /// - `qkv`: `[b, t, (H + 2·Hkv)·hd]` → `[b, t, H·hd]`
    fn rope_attention(
        qkv: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
        quant: QuantApply,
    ) -> Tensor<Self, 3> {
        attention_ops(qkv, rope, s, quant)
    }

    /// True when the backend has its own [`FusedOps::rope_attention_backward`]; otherwise autodiff
    /// differentiates the tensor-op formulation.
    fn has_fused_rope_attention() -> bool {
        false
    }

    /// [`FusedOps::rope_attention`] plus what its backward pass needs (for flex: the input after
    /// RoPE, Q5 and `1/√hd`). Only called when [`FusedOps::has_fused_rope_attention`] is true.
    fn rope_attention_saving(
        _qkv: Tensor<Self, 3>,
        _rope: &Rope,
        _s: AttnShape,
        _quant: QuantApply,
    ) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        unreachable!("rope_attention_saving of a backend without a fused attention kernel")
    }

    /// Gradient of [`FusedOps::rope_attention`] with respect to `qkv` for the output gradient `dy`,
    /// from what [`FusedOps::rope_attention_saving`] saved (Q5 through the straight-through
    /// estimator). Only called when [`FusedOps::has_fused_rope_attention`] is true.
    fn rope_attention_backward(
        _saved: Tensor<Self, 3>,
        _dy: Tensor<Self, 3>,
        _rope: &Rope,
        _s: AttnShape,
    ) -> Tensor<Self, 3> {
        unreachable!("rope_attention_backward of a backend without a fused attention kernel")
    }
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}

/// Q2/Q3/Q5 applied the way `how` says, through the backend's fused kernels.
pub fn act_quant<B: FusedOps, const D: usize>(x: Tensor<B, D>, how: QuantApply) -> Tensor<B, D> {
    match how {
        QuantApply::Exact => B::absmax_int8(x),
        QuantApply::Ste => B::absmax_int8_ste(x),
        QuantApply::Off => x,
    }
}

/// The attention of [`crate::fused::attention`] with burn tensor ops: what backends without a fused
/// attention run (autodiff differentiates it as usual), and the reference the flex kernels are
/// tested against.
///
/// # Shapes
/// - `qkv`: `[b, t, (H + 2·Hkv)·hd]` → `[b, t, H·hd]`
pub fn attention_ops<B: FusedOps>(
    qkv: Tensor<B, 3>,
    rope: &Rope,
    s: AttnShape,
    quant: QuantApply,
) -> Tensor<B, 3> {
    let [b, t, _] = qkv.dims();
    let (nh, nkv, hd) = (s.n_heads, s.n_kv_heads, s.head_dim);
    let half = hd / 2;
    let dev = qkv.device();
    let (cos, sin) = rope.tables(t);
    let table = |v: &[f32]| {
        Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [t, half]), &dev)
            .reshape([1, t, 1, half])
    };
    let (cos, sin) = (table(cos), table(sin));
    let rot = |x: Tensor<B, 4>| {
        let n = x.dims()[2];
        let x = x.reshape([b, t, n, half, 2]);
        let x0 = x.clone().narrow(4, 0, 1).reshape([b, t, n, half]);
        let x1 = x.narrow(4, 1, 1).reshape([b, t, n, half]);
        let y0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
        let y1 = x0 * sin.clone() + x1 * cos.clone();
        Tensor::stack::<5>(vec![y0, y1], 4).reshape([b, t, n, hd])
    };
    let part = |from: usize, n: usize| {
        qkv.clone()
            .narrow(2, from * hd, n * hd)
            .reshape([b, t, n, hd])
    };
    let q = act_quant(rot(part(0, nh)), quant) * s.inv_sqrt_hd() as f64;
    let k = act_quant(rot(part(nh, nkv)), quant);
    let v = act_quant(part(nh + nkv, nkv), quant);
    let (q, mut k, mut v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
    if nkv < nh {
        let g = nh / nkv;
        let expand = |x: Tensor<B, 4>| {
            x.reshape([b, nkv, 1, t, hd])
                .expand([b, nkv, g, t, hd])
                .reshape([b, nh, t, hd])
        };
        k = expand(k);
        v = expand(v);
    }
    let p = B::causal_softmax(q.matmul(k.swap_dims(2, 3)));
    p.matmul(v).swap_dims(1, 2).reshape([b, t, nh * hd])
}
