//! Backend-specific fused kernels behind one trait, [`FusedOps`].
//!
//! Written with burn's tensor ops, the absmax int8 quantizer (Q2/Q3/Q5) and its STE take about
//! ten passes over the activation, each allocating a tensor; they were a large share of the
//! step on the CPU. Here:
//! - on flex (CPU) the quantizer is one pass per row in plain Rust ([`absmax_int8_rows`]);
//! - under autodiff the STE is a single custom op whose forward is the quantized value and whose
//!   backward passes the gradient through unchanged (no `x + (q − x).detach()` arithmetic);
//! - other backends (CUDA) use the tensor-op formulation of `crate::quant`.

use crate::attention::{self, AttnShape, Rope};
use crate::linalg;
use crate::quant::{self, QuantApply};
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
    /// above the diagonal).
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
    /// [`crate::attention`]).
    ///
    /// # Shapes
    /// - `qkv`: `[b, t, (H + 2·Hkv)·hd]` → `[b, t, H·hd]`
    fn rope_attention(
        qkv: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
        quant: QuantApply,
    ) -> Tensor<Self, 3> {
        attention::attention_ops(qkv, rope, s, quant)
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

    /// Gradient of a softmax from its output `p`: `dx = p ⊙ (dp − Σ_j p_j·dp_j)`.
    ///
    /// # Shapes
    /// - `p`, `dp`: `[rows, n]` → `[rows, n]`
    fn softmax_backward(p: Tensor<Self, 2>, dp: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let dot = (p.clone() * dp.clone()).sum_dim(1);
        p * (dp - dot)
    }
}

/// Rows handled by one rayon task in the flex kernels (fixed, so sums are reproducible).
fn rows_per_task(n: usize) -> usize {
    (16384 / n).max(1)
}

fn flex_rows<const D: usize>(x: Tensor<Flex, D>) -> burn::backend::flex::FlexTensor {
    let t = x.into_primitive().tensor();
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

fn flex_tensor<const D: usize>(data: Vec<f32>, dims: [usize; D]) -> Tensor<Flex, D> {
    let flex = burn::backend::flex::FlexTensor::from_data(TensorData::new(data, dims));
    Tensor::from_primitive(TensorPrimitive::Float(flex))
}

/// Scalar kernel of Q2/Q3/Q5 over rows of `n` values: `s = max(max|x|, 1e-5)/127`,
/// `out = round_half_even(x/s)·s` (the clamp to −128..=127 never binds, see `quant`).
///
/// # Shapes
/// - `src`, `dst`: `[rows·n]`
pub fn absmax_int8_rows(src: &[f32], dst: &mut [f32], n: usize) {
    debug_assert_eq!(src.len(), dst.len());
    debug_assert!(n > 0 && src.len().is_multiple_of(n));
    let chunk = rows_per_task(n) * n;
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| {
            for (dr, sr) in d.chunks_exact_mut(n).zip(s.chunks_exact(n)) {
                let scale = int8_scale(sr);
                for (o, &v) in dr.iter_mut().zip(sr) {
                    *o = int8_value(v, scale);
                }
            }
        });
}

/// Scale of the int8 absmax quantizer for one row: `max(max|x|, 1e-5)/127`.
#[inline]
pub(crate) fn int8_scale(row: &[f32]) -> f32 {
    max_abs(row).max(quant::SCALE_FLOOR) / 127.0
}

/// The quantized value of `v` at `scale`: `round_half_even(v/scale)·scale`.
#[inline(always)]
pub(crate) fn int8_value(v: f32, scale: f32) -> f32 {
    round_half_even_small(v / scale) * scale
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
        let t = flex_rows(x);
        let src = t.as_slice::<f32>().expect("contiguous f32 tensor");
        let mut out = vec![0f32; src.len()];
        absmax_int8_rows(src, &mut out, dims[D - 1]);
        flex_tensor(out, dims)
    }

    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        gain: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        let dims = x.dims();
        let n = dims[D - 1];
        let (t, g) = (flex_rows(x), flex_rows(gain));
        let (src, g) = (
            t.as_slice::<f32>().expect("f32"),
            g.as_slice::<f32>().expect("f32"),
        );
        let mut out = vec![0f32; src.len()];
        let chunk = rows_per_task(n) * n;
        out.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| {
                for (dr, sr) in d.chunks_exact_mut(n).zip(s.chunks_exact(n)) {
                    let r = inv_rms(sr, eps);
                    for ((o, &v), &gi) in dr.iter_mut().zip(sr).zip(g) {
                        *o = v * r * gi;
                    }
                }
            });
        flex_tensor(out, dims)
    }

    fn rms_norm_backward(
        x: Tensor<Self, 2>,
        gain: Tensor<Self, 1>,
        dy: Tensor<Self, 2>,
        eps: f64,
    ) -> (Tensor<Self, 2>, Tensor<Self, 1>) {
        let dims = x.dims();
        let n = dims[1];
        let (xt, gt, dyt) = (flex_rows(x), flex_rows(gain), flex_rows(dy));
        let xs = xt.as_slice::<f32>().expect("f32");
        let g = gt.as_slice::<f32>().expect("f32");
        let dys = dyt.as_slice::<f32>().expect("f32");
        let mut dx = vec![0f32; xs.len()];
        let chunk = rows_per_task(n) * n;
        // One partial dg per task, summed in task order afterwards: reproducible for any
        // number of threads.
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(chunk)
            .zip(xs.par_chunks(chunk))
            .zip(dys.par_chunks(chunk))
            .map(|((dxc, xc), dyc)| {
                let mut dg = vec![0f32; n];
                let rows = dxc
                    .chunks_exact_mut(n)
                    .zip(xc.chunks_exact(n))
                    .zip(dyc.chunks_exact(n));
                for ((dxr, xr), dyr) in rows {
                    let r = inv_rms(xr, eps);
                    let c = r * r * r * dot3(g, dyr, xr) / n as f32;
                    let cols = dxr
                        .iter_mut()
                        .zip(dg.iter_mut())
                        .zip(xr.iter().zip(dyr).zip(g));
                    for ((dx, dg), ((&x, &dy), &g)) in cols {
                        *dx = r * g * dy - x * c;
                        *dg += dy * x * r;
                    }
                }
                dg
            })
            .collect();
        let mut dg = vec![0f32; n];
        for p in &partials {
            for (a, b) in dg.iter_mut().zip(p) {
                *a += b;
            }
        }
        (flex_tensor(dx, dims), flex_tensor(dg, [n]))
    }

    fn causal_softmax(x: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let dims = x.dims();
        let t = dims[3];
        debug_assert_eq!(dims[2], t);
        let xt = flex_rows(x);
        let src = xt.as_slice::<f32>().expect("f32");
        let mut out = vec![0f32; src.len()];
        // Whole [t, t] blocks per task, so the row index inside a block is known.
        let chunk = (16384 / (t * t)).max(1) * t * t;
        out.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| {
                for (r, (dr, sr)) in d.chunks_exact_mut(t).zip(s.chunks_exact(t)).enumerate() {
                    let i = r % t; // query position: keys 0..=i are visible
                    let visible = &sr[..=i];
                    let m = visible.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut z = 0f32;
                    for (o, &v) in dr[..=i].iter_mut().zip(visible) {
                        *o = (v - m).exp();
                        z += *o;
                    }
                    let inv = 1.0 / z;
                    for o in dr[..=i].iter_mut() {
                        *o *= inv;
                    }
                    // dr[i+1..] stays 0
                }
            });
        flex_tensor(out, dims)
    }

    fn relu_sq<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let dims = x.dims();
        let xt = flex_rows(x);
        let src = xt.as_slice::<f32>().expect("f32");
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(16384)
            .zip(src.par_chunks(16384))
            .for_each(|(d, s)| {
                for (o, &v) in d.iter_mut().zip(s) {
                    let r = v.max(0.0);
                    *o = r * r;
                }
            });
        flex_tensor(out, dims)
    }

    fn relu_sq_backward<const D: usize>(
        x: Tensor<Self, D>,
        dy: Tensor<Self, D>,
    ) -> Tensor<Self, D> {
        let dims = x.dims();
        let (xt, dyt) = (flex_rows(x), flex_rows(dy));
        let (xs, dys) = (
            xt.as_slice::<f32>().expect("f32"),
            dyt.as_slice::<f32>().expect("f32"),
        );
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(16384)
            .zip(xs.par_chunks(16384))
            .zip(dys.par_chunks(16384))
            .for_each(|((d, x), g)| {
                for ((o, &v), &gv) in d.iter_mut().zip(x).zip(g) {
                    *o = 2.0 * v.max(0.0) * gv;
                }
            });
        flex_tensor(out, dims)
    }

    fn rope_attention(
        qkv: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
        quant: QuantApply,
    ) -> Tensor<Self, 3> {
        Self::rope_attention_saving(qkv, rope, s, quant).0
    }

    fn has_fused_rope_attention() -> bool {
        true
    }

    fn rope_attention_saving(
        qkv: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
        quant: QuantApply,
    ) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        let dims = qkv.dims();
        let xt = flex_rows(qkv);
        let (out, prep) =
            attention::attention_flex(xt.as_slice::<f32>().expect("f32"), dims[1], rope, s, quant);
        (
            flex_tensor(out, [dims[0], dims[1], s.out_width()]),
            flex_tensor(prep, dims),
        )
    }

    fn linear_2d(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([rows, d_in], d_out) = (x.dims(), w.dims()[1]);
        let (xt, wt) = (flex_rows(x), flex_rows(w));
        let (xs, ws) = (
            xt.as_slice::<f32>().expect("f32"),
            wt.as_slice::<f32>().expect("f32"),
        );
        let y = linalg::matmul_new((rows, d_out, d_in), (xs, d_in, 1), (ws, d_out, 1));
        flex_tensor(y, [rows, d_out])
    }

    fn has_fused_linear() -> bool {
        true
    }

    fn linear_2d_backward(
        x: Tensor<Self, 2>,
        w: Tensor<Self, 2>,
        dy: Tensor<Self, 2>,
        want_dx: bool,
        want_dw: bool,
    ) -> (Option<Tensor<Self, 2>>, Option<Tensor<Self, 2>>) {
        let ([rows, d_in], d_out) = (x.dims(), w.dims()[1]);
        let (xt, wt, dyt) = (flex_rows(x), flex_rows(w), flex_rows(dy));
        let (xs, ws, dys) = (
            xt.as_slice::<f32>().expect("f32"),
            wt.as_slice::<f32>().expect("f32"),
            dyt.as_slice::<f32>().expect("f32"),
        );
        // dx = dy·wᵀ: wᵀ read through strides; dw = xᵀ·dy: xᵀ likewise
        let dx = want_dx.then(|| {
            let v = linalg::matmul_new((rows, d_in, d_out), (dys, d_out, 1), (ws, 1, d_out));
            flex_tensor(v, [rows, d_in])
        });
        let dw = want_dw.then(|| {
            let v = linalg::matmul_new((d_in, d_out, rows), (xs, 1, d_in), (dys, d_out, 1));
            flex_tensor(v, [d_in, d_out])
        });
        (dx, dw)
    }

    fn rope_attention_backward(
        saved: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
    ) -> Tensor<Self, 3> {
        let dims = saved.dims();
        let (pt, dyt) = (flex_rows(saved), flex_rows(dy));
        let dx = attention::attention_flex_backward(
            pt.as_slice::<f32>().expect("f32"),
            dyt.as_slice::<f32>().expect("f32"),
            dims[1],
            rope,
            s,
        );
        flex_tensor(dx, dims)
    }

    fn softmax_backward(p: Tensor<Self, 2>, dp: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let dims = p.dims();
        let n = dims[1];
        let (pt, dpt) = (flex_rows(p), flex_rows(dp));
        let (ps, dps) = (
            pt.as_slice::<f32>().expect("f32"),
            dpt.as_slice::<f32>().expect("f32"),
        );
        let mut dx = vec![0f32; ps.len()];
        let chunk = rows_per_task(n) * n;
        dx.par_chunks_mut(chunk)
            .zip(ps.par_chunks(chunk))
            .zip(dps.par_chunks(chunk))
            .for_each(|((dxc, pc), dpc)| {
                let rows = dxc
                    .chunks_exact_mut(n)
                    .zip(pc.chunks_exact(n))
                    .zip(dpc.chunks_exact(n));
                for ((dxr, pr), dpr) in rows {
                    let dot = dot(pr, dpr);
                    for ((o, &p), &d) in dxr.iter_mut().zip(pr).zip(dpr) {
                        *o = p * (d - dot);
                    }
                }
            });
        flex_tensor(dx, dims)
    }
}

/// `1/sqrt(mean(x²) + eps)` of one row.
#[inline]
fn inv_rms(row: &[f32], eps: f64) -> f32 {
    let ms = dot(row, row) / row.len() as f32;
    1.0 / (ms + eps as f32).sqrt()
}

/// Lanes of the row reductions below: 16 independent partial results, so the loops vectorize
/// (a plain `f32` sum must keep its order and stays scalar). The order is fixed, so results do not
/// depend on the thread count.
const LANES: usize = 16;

/// `Σ a_i·b_i`.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i`.
#[inline]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let tail: f32 = ca.remainder().iter().sum();
    for x in ca {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i·b_i·c_i`.
#[inline]
fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail: f32 = (ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder()))
    .map(|((x, y), z)| x * y * z)
    .sum();
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i] * z[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `max_i |a_i|` (0 for an empty row).
#[inline]
pub(crate) fn max_abs(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let tail = ca.remainder().iter().fold(0f32, |m, v| m.max(v.abs()));
    for x in ca {
        for i in 0..LANES {
            acc[i] = acc[i].max(x[i].abs());
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
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

/// Backward of the fused RMSNorm; state: input, gain, eps, input dims.
#[derive(Debug)]
struct RmsNormBackward;

impl<B: FusedOps> Backward<B, 2> for RmsNormBackward {
    type State = (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        f64,
        Vec<usize>,
    );

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gain, eps, dims) = ops.state;
        let n = *dims.last().expect("rank >= 1");
        let rows = dims.iter().product::<usize>() / n;
        let dy = grads.consume::<B>(&ops.node);
        let as2 = |p: B::FloatTensorPrimitive| {
            let t = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(
                p,
                [rows * n].into(),
            )));
            t.reshape([rows, n])
        };
        let gain = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(gain));
        let (dx, dg) = B::rms_norm_backward(as2(x), gain, as2(dy), eps);
        let [px, pg] = ops.parents;
        if let Some(node) = px {
            let dx = B::float_reshape(dx.into_primitive().tensor(), dims.into());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = pg {
            grads.register::<B>(node.id, dg.into_primitive().tensor());
        }
    }
}

/// Backward of the fused causal softmax; state: its output `p`, dims.
#[derive(Debug)]
struct CausalSoftmaxBackward;

impl<B: FusedOps> Backward<B, 1> for CausalSoftmaxBackward {
    type State = (B::FloatTensorPrimitive, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (p, dims) = ops.state;
        let rows = dims[0] * dims[1] * dims[2];
        let n = dims[3];
        unary::<B, _>(ops.parents, ops.node, grads, |dp| {
            let as2 = |x: B::FloatTensorPrimitive| {
                Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(x)).reshape([rows, n])
            };
            let dx = B::softmax_backward(as2(p), as2(dp));
            dx.reshape(dims).into_primitive().tensor()
        });
    }
}

/// Backward of the fused linear; state: both inputs.
#[derive(Debug)]
struct LinearBackward;

impl<B: FusedOps> Backward<B, 2> for LinearBackward {
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let t2 = |p| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(p));
        let [px, pw] = ops.parents;
        let (dx, dw) = B::linear_2d_backward(t2(x), t2(w), t2(dy), px.is_some(), pw.is_some());
        if let (Some(node), Some(dx)) = (px, dx) {
            grads.register::<B>(node.id, dx.into_primitive().tensor());
        }
        if let (Some(node), Some(dw)) = (pw, dw) {
            grads.register::<B>(node.id, dw.into_primitive().tensor());
        }
    }
}

/// Backward of the fused attention; state: the prepared input and settings (P is recomputed).
#[derive(Debug)]
struct AttentionBackward;

impl<B: FusedOps> Backward<B, 1> for AttentionBackward {
    type State = (B::FloatTensorPrimitive, Rope, AttnShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (saved, rope, s) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            let t3 = |p| Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(p));
            B::rope_attention_backward(t3(saved), t3(dy), &rope, s)
                .into_primitive()
                .tensor()
        });
    }
}

/// Backward of the fused ReLU²; state: its input, as a flat `[n]` tensor, and the dims.
#[derive(Debug)]
struct ReluSqBackward;

impl<B: FusedOps> Backward<B, 1> for ReluSqBackward {
    type State = (B::FloatTensorPrimitive, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, dims) = ops.state;
        let n: usize = dims.iter().product();
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            let flat = |p: B::FloatTensorPrimitive| {
                Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(
                    p,
                    [n].into(),
                )))
            };
            let dx = B::relu_sq_backward(flat(x), flat(dy));
            B::float_reshape(dx.into_primitive().tensor(), dims.into())
        });
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn relu_sq<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let dims = x.dims().to_vec();
        let x = x.into_primitive().tensor();
        let y = B::relu_sq(Tensor::<B, D>::from_primitive(TensorPrimitive::Float(
            x.primitive.clone(),
        )))
        .into_primitive()
        .tensor();
        let out = match ReluSqBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, dims), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn linear_2d(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        if !B::has_fused_linear() {
            return burn::tensor::module::linear(x, w, None);
        }
        let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
        let t2 = |p| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(p));
        let y = B::linear_2d(t2(x.primitive.clone()), t2(w.primitive.clone()))
            .into_primitive()
            .tensor();
        let out = match LinearBackward
            .prepare::<C>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn rope_attention(
        qkv: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
        quant: QuantApply,
    ) -> Tensor<Self, 3> {
        if !B::has_fused_rope_attention() {
            return attention::attention_ops(qkv, rope, s, quant);
        }
        let x = qkv.into_primitive().tensor();
        let inner = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(x.primitive));
        let out = match AttentionBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, saved) = B::rope_attention_saving(inner, rope, s, quant);
                let saved = saved.into_primitive().tensor();
                prep.finish((saved, rope.clone(), s), y.into_primitive().tensor())
            }
            OpsKind::UnTracked(prep) => {
                let y = B::rope_attention(inner, rope, s, quant);
                prep.finish(y.into_primitive().tensor())
            }
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn causal_softmax(x: Tensor<Self, 4>) -> Tensor<Self, 4> {
        let dims = x.dims();
        let x = x.into_primitive().tensor();
        let p = B::causal_softmax(Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(
            x.primitive.clone(),
        )))
        .into_primitive()
        .tensor();
        let out = match CausalSoftmaxBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((p.clone(), dims), p),
            OpsKind::UnTracked(prep) => prep.finish(p),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        gain: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        let dims = x.dims().to_vec();
        let x = x.into_primitive().tensor();
        let g = gain.into_primitive().tensor();
        let y = B::rms_norm(
            Tensor::<B, D>::from_primitive(TensorPrimitive::Float(x.primitive.clone())),
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(g.primitive.clone())),
            eps,
        )
        .into_primitive()
        .tensor();
        let out = match RmsNormBackward
            .prepare::<C>([x.node.clone(), g.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x.primitive, g.primitive, eps, dims), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
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
    fn rms_norm_fused_matches_tensor_ops() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x0 = Tensor::<Flex, 3>::random([3, 5, 24], Distribution::Normal(0.0, 2.0), &dev);
        let g0 = Tensor::<Flex, 1>::random([24], Distribution::Normal(1.0, 0.3), &dev);
        let up = Tensor::<Flex, 3>::random([3, 5, 24], Distribution::Normal(0.0, 1.0), &dev);
        // reference: the tensor-op formulation, differentiated by burn
        let reference = |x: Tensor<A, 3>, g: Tensor<A, 1>| {
            let inv = (x.clone().square().mean_dim(2) + 1e-5).sqrt().recip();
            x * inv * g.unsqueeze::<3>()
        };
        let run = |fused: bool| {
            let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
            let g = Tensor::<A, 1>::from_inner(g0.clone()).require_grad();
            let y = if fused {
                <A as FusedOps>::rms_norm(x.clone(), g.clone(), 1e-5)
            } else {
                reference(x.clone(), g.clone())
            };
            let grads = (y.clone() * Tensor::from_inner(up.clone()))
                .sum()
                .backward();
            (y.inner(), x.grad(&grads).unwrap(), g.grad(&grads).unwrap())
        };
        let (y1, dx1, dg1) = run(true);
        let (y2, dx2, dg2) = run(false);
        let close =
            |a: Tensor<Flex, 3>, b: Tensor<Flex, 3>| -> f32 { (a - b).abs().max().into_scalar() };
        assert!(close(y1, y2) < 1e-5);
        assert!(close(dx1, dx2) < 1e-4);
        let dg: f32 = (dg1 - dg2).abs().max().into_scalar();
        assert!(dg < 1e-3, "{dg}");
    }

    #[test]
    fn causal_softmax_fused_matches_tensor_ops() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x0 = Tensor::<Flex, 4>::random([2, 3, 7, 7], Distribution::Normal(0.0, 2.0), &dev);
        let up = Tensor::<Flex, 4>::random([2, 3, 7, 7], Distribution::Normal(0.0, 1.0), &dev);
        let run = |fused: bool| {
            let x = Tensor::<A, 4>::from_inner(x0.clone()).require_grad();
            let p = if fused {
                <A as FusedOps>::causal_softmax(x.clone())
            } else {
                // the trait's tensor-op default, differentiated by burn
                let mask = Tensor::<A, 2, burn::tensor::Bool>::tril_mask([7, 7], 0, &dev);
                let bias = Tensor::<A, 2>::zeros([7, 7], &dev).mask_fill(mask, f32::NEG_INFINITY);
                burn::tensor::activation::softmax(x.clone() + bias.unsqueeze::<4>(), 3)
            };
            let grads = (p.clone() * Tensor::from_inner(up.clone()))
                .sum()
                .backward();
            (p.inner(), x.grad(&grads).unwrap())
        };
        let (p1, g1) = run(true);
        let (p2, g2) = run(false);
        let dp: f32 = (p1.clone() - p2).abs().max().into_scalar();
        let dg: f32 = (g1 - g2).abs().max().into_scalar();
        assert!(dp < 1e-6 && dg < 1e-5, "{dp} {dg}");
        // the future gets exactly zero
        let v = p1.into_data().to_vec::<f32>().unwrap();
        assert_eq!(v[1], 0.0);
        assert_eq!(v[6], 0.0);
    }

    #[test]
    fn relu_sq_fused_matches_tensor_ops() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x0 = Tensor::<Flex, 3>::random([2, 5, 33], Distribution::Normal(0.0, 1.0), &dev);
        let up = Tensor::<Flex, 3>::random([2, 5, 33], Distribution::Normal(0.0, 1.0), &dev);
        let run = |fused: bool| {
            let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
            let y = if fused {
                <A as FusedOps>::relu_sq(x.clone())
            } else {
                burn::tensor::activation::relu(x.clone()).square()
            };
            let grads = (y.clone() * Tensor::from_inner(up.clone()))
                .sum()
                .backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        let dy: f32 = (y1 - y2).abs().max().into_scalar();
        let dg: f32 = (g1 - g2).abs().max().into_scalar();
        assert!(dy == 0.0 && dg < 1e-6, "{dy} {dg}");
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
