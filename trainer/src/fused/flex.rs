//! [`FusedOps`] on flex (CPU): each kernel one pass over contiguous rows in plain Rust, rayon over
//! blocks of rows ([`rows_per_task`]), reductions from [`crate::fused::rows`]; the attention from
//! [`crate::fused::attention`], the products through [`crate::fused::linalg`] (gemm straight into fresh
//! buffers).

use super::FusedOps;
use crate::data::rng::SplitMix64;
use crate::fused::attention::{self, AttnShape, Rope};
use crate::fused::linalg;
use crate::fused::quant::QuantApply;
use crate::fused::rows::{absmax_int8_rows, dot3, inv_rms, rows_per_task, VALUES_PER_TASK};
use burn::backend::flex::{FlexDevice, FlexTensor};
use burn::backend::Flex;
use burn::tensor::{Distribution, Int, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// The tensor's storage, made contiguous (row-major) if it was not.
fn flex_rows<const D: usize>(x: Tensor<Flex, D>) -> FlexTensor {
    let t = x.into_primitive().tensor();
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The `f32` values of a tensor from [`flex_rows`].
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("f32 tensor")
}

/// A tensor of shape `dims` over `data` (row-major).
fn flex_tensor<const D: usize>(data: Vec<f32>, dims: [usize; D]) -> Tensor<Flex, D> {
    let flex = FlexTensor::from_data(TensorData::new(data, dims));
    Tensor::from_primitive(TensorPrimitive::Float(flex))
}

impl FusedOps for Flex {
    fn absmax_int8<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let dims = x.dims();
        let t = flex_rows(x);
        let src = values(&t);
        let mut out = vec![0f32; src.len()];
        absmax_int8_rows(src, &mut out, dims[D - 1]);
        flex_tensor(out, dims)
    }

    /// One seed from the backend RNG (which the trainer seeds per step), then `keep_mask`.
    fn dropout_keep(shape: [usize; 3], p: f64, device: &FlexDevice) -> Tensor<Self, 3> {
        let halves = Tensor::<Flex, 1, Int>::random([2], Distribution::Uniform(0.0, 2e9), device)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("int tensor");
        let seed = ((halves[0] as u64) << 32) ^ halves[1] as u64;
        flex_tensor(keep_mask(seed, shape.iter().product(), p), shape)
    }

    fn rms_norm<const D: usize>(
        x: Tensor<Self, D>,
        gain: Tensor<Self, 1>,
        eps: f64,
    ) -> Tensor<Self, D> {
        let dims = x.dims();
        let n = dims[D - 1];
        let (t, g) = (flex_rows(x), flex_rows(gain));
        let (src, g) = (values(&t), values(&g));
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
        let (xs, g, dys) = (values(&xt), values(&gt), values(&dyt));
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

    fn relu_sq<const D: usize>(x: Tensor<Self, D>) -> Tensor<Self, D> {
        let dims = x.dims();
        let xt = flex_rows(x);
        let src = values(&xt);
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(VALUES_PER_TASK)
            .zip(src.par_chunks(VALUES_PER_TASK))
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
        let (xs, dys) = (values(&xt), values(&dyt));
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(VALUES_PER_TASK)
            .zip(xs.par_chunks(VALUES_PER_TASK))
            .zip(dys.par_chunks(VALUES_PER_TASK))
            .for_each(|((d, x), g)| {
                for ((o, &v), &gv) in d.iter_mut().zip(x).zip(g) {
                    *o = 2.0 * v.max(0.0) * gv;
                }
            });
        flex_tensor(out, dims)
    }

    fn linear_2d(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let ([rows, d_in], d_out) = (x.dims(), w.dims()[1]);
        let (xt, wt) = (flex_rows(x), flex_rows(w));
        let (xs, ws) = (values(&xt), values(&wt));
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
        let (xs, ws, dys) = (values(&xt), values(&wt), values(&dyt));
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
        let (out, prep) = attention::attention_flex(values(&xt), dims[1], rope, s, quant);
        (
            flex_tensor(out, [dims[0], dims[1], s.out_width()]),
            flex_tensor(prep, dims),
        )
    }

    fn rope_attention_backward(
        saved: Tensor<Self, 3>,
        dy: Tensor<Self, 3>,
        rope: &Rope,
        s: AttnShape,
    ) -> Tensor<Self, 3> {
        let dims = saved.dims();
        let (pt, dyt) = (flex_rows(saved), flex_rows(dy));
        let dx = attention::attention_flex_backward(values(&pt), values(&dyt), dims[1], rope, s);
        flex_tensor(dx, dims)
    }
}

/// `n` inverted-dropout multipliers for `seed`: `1/(1−p)` (kept) or 0 (dropped, when a uniform
/// u32 falls below `p·2³²`), from one SplitMix64 stream per chunk of [`VALUES_PER_TASK`] values,
/// in parallel. Far cheaper than burn's per-element Bernoulli draw from its ChaCha RNG (which cost
/// a dropout run ~18% of its speed), and the same mask on any number of threads.
pub(crate) fn keep_mask(seed: u64, n: usize, p: f64) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    let threshold = (p * 4_294_967_296.0) as u64;
    let mut v = vec![0f32; n];
    v.par_chunks_mut(VALUES_PER_TASK)
        .enumerate()
        .for_each(|(c, out)| {
            let mut rng = SplitMix64::new(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for pair in out.chunks_mut(2) {
                let r = rng.next_u64();
                for (k, o) in pair.iter_mut().enumerate() {
                    let u = (r >> (32 * k)) & 0xFFFF_FFFF;
                    *o = if u >= threshold { keep } else { 0.0 };
                }
            }
        });
    v
}
