//! Causal self-attention with RoPE and Q5 as one fused operation.
//!
//! Input is the output of the fused q|k|v projection, `[b, t, (H + 2·Hkv)·hd]` (columns: the `H`
//! query heads, then the `Hkv` key heads, then the `Hkv` value heads, each `hd` wide); output is
//! `[b, t, H·hd]`, heads side by side, ready for the attention sub-norm. Per head it computes
//! (docs/MODEL.md):
//! - `q' = Q5(rope(q))/√hd`, `k' = Q5(rope(k))`, `v' = Q5(v)` (Q5 per token and head, int8 absmax;
//!   through the straight-through estimator when training);
//! - `P = causal_softmax(q'·k'ᵀ)`, `out = P·v'`; query head `h` reads kv head `h / (H/Hkv)`.
//!
//! `crate::fused::attention_ops` writes this with burn tensor ops (any backend; CUDA uses it).
//! On flex, [`attention_flex`] and [`attention_flex_backward`] do it in plain Rust, one batch row per rayon
//! task, small matrix products through the `gemm` crate ([`crate::fused::linalg`]): no head
//! transposes, no `[b, H, t, t]` tensors in the autodiff graph, RoPE without the pair-swap
//! products. The forward pass applies RoPE, Q5 and `1/√hd` once per row into a buffer of the
//! input's size, which is all the backward pass keeps: it recomputes `P` from it (as
//! FlashAttention does) instead of holding `[b, H, t, t]` probabilities.

use crate::fused::linalg::matmul;
use crate::fused::quant::QuantApply;
use crate::fused::rows::{absmax_int8_in_place, dot, sum};
use rayon::prelude::*;
use std::sync::Arc;

/// Head layout of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// query heads `H`
    pub n_heads: usize,
    /// key/value heads `Hkv` (divides `H`)
    pub n_kv_heads: usize,
    /// head dimension `hd` (even)
    pub head_dim: usize,
}

impl AttnShape {
    /// Width of the fused q|k|v rows, `(H + 2·Hkv)·hd`.
    pub fn qkv_width(&self) -> usize {
        (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
    }

    /// Width of the output rows, `H·hd`.
    pub fn out_width(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// `1/√hd` as f32, the factor on q'.
    pub fn inv_sqrt_hd(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }
}

/// RoPE tables on the host: `cos(t·θ_i)` and `sin(t·θ_i)` for `t < ctx`, `i < hd/2`, with
/// `θ_i = rope_theta^(−2i/hd)`; angles in f64, rounded to f32 once. Pairs are interleaved:
/// `out[2i] = x[2i]·cos − x[2i+1]·sin`, `out[2i+1] = x[2i]·sin + x[2i+1]·cos`.
#[derive(Debug, Clone)]
pub struct Rope {
    half: usize,
    ctx: usize,
    cos: Arc<[f32]>,
    sin: Arc<[f32]>,
}

impl Rope {
    /// Tables for head dimension `hd` (even) and `ctx` positions.
    pub fn new(hd: usize, ctx: usize, rope_theta: f64) -> Self {
        let half = hd / 2;
        let mut cos = Vec::with_capacity(ctx * half);
        let mut sin = Vec::with_capacity(ctx * half);
        let theta: Vec<f64> = (0..half)
            .map(|i| rope_theta.powf(-2.0 * i as f64 / hd as f64))
            .collect();
        for t in 0..ctx {
            for &theta in &theta {
                let a = t as f64 * theta;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Self {
            half,
            ctx,
            cos: cos.into(),
            sin: sin.into(),
        }
    }

    /// `dst = rope(src)` at position `t`.
    #[inline]
    fn rotate(&self, t: usize, src: &[f32], dst: &mut [f32]) {
        let (c, s) = self.row(t);
        let pairs = dst.chunks_exact_mut(2).zip(src.chunks_exact(2));
        for ((d, x), (&c, &s)) in pairs.zip(c.iter().zip(s)) {
            d[0] = x[0] * c - x[1] * s;
            d[1] = x[0] * s + x[1] * c;
        }
    }

    /// `dst = rope(·)ᵀ · src` at position `t` (the gradient through [`Rope::rotate`]).
    #[inline]
    fn rotate_back(&self, t: usize, src: &[f32], dst: &mut [f32]) {
        let (c, s) = self.row(t);
        let pairs = dst.chunks_exact_mut(2).zip(src.chunks_exact(2));
        for ((d, g), (&c, &s)) in pairs.zip(c.iter().zip(s)) {
            d[0] = g[0] * c + g[1] * s;
            d[1] = g[1] * c - g[0] * s;
        }
    }

    /// `cos` and `sin` of the first `t` positions, `[t, hd/2]` each, row-major.
    pub fn tables(&self, t: usize) -> (&[f32], &[f32]) {
        (&self.cos[..t * self.half], &self.sin[..t * self.half])
    }

    fn row(&self, t: usize) -> (&[f32], &[f32]) {
        let r = t * self.half..(t + 1) * self.half;
        (&self.cos[r.clone()], &self.sin[r])
    }
}

/// `e^x` for `x ≤ 0`, in a form that vectorizes (libm's `expf` is a call per element): `x = n·ln 2 + r`
/// with `|r| ≤ ln 2 / 2` (Cody–Waite split of ln 2), `e^r` by its Taylor polynomial to degree 7
/// (truncation < 6e-9 relative), `2^n` built in the exponent bits. Below −87 the result (< 2^-125)
/// flushes to 0. Within 2 ulp of `f32::exp` (tested).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // ln 2 rounded to 12 significant bits: n·LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: (v + MAGIC) − MAGIC rounds to an integer
    let (flush, x) = (x < -87.0, x.max(-87.0));
    let z = x * LOG2E + MAGIC;
    let n = z - MAGIC;
    // The integer n sits in z's low mantissa bits: no float-to-int cast (a saturating `as`
    // conversion does not vectorize).
    let n_int = (z.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let y = p * f32::from_bits(((n_int + 127) as u32) << 23);
    if flush {
        0.0
    } else {
        y
    }
}

/// RoPE, Q5 and `1/√hd` on one batch row `x` (`[t, W]`, W = `(H + 2·Hkv)·hd`), written row by row
/// into `out` (same layout): q heads rotated, quantized and scaled; k heads rotated and quantized;
/// v heads quantized. The attention products then read heads straight from it through strides.
fn prepare(x: &[f32], out: &mut [f32], s: AttnShape, rope: &Rope, quant: bool) {
    let (w, hd, nh, nkv) = (s.qkv_width(), s.head_dim, s.n_heads, s.n_kv_heads);
    let inv = s.inv_sqrt_hd();
    for (ti, (src, dst)) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)).enumerate() {
        for (head, (sh, dh)) in src
            .chunks_exact(hd)
            .zip(dst.chunks_exact_mut(hd))
            .enumerate()
        {
            if head < nh + nkv {
                rope.rotate(ti, sh, dh);
            } else {
                dh.copy_from_slice(sh);
            }
            if quant {
                absmax_int8_in_place(dh);
            }
            if head < nh {
                dh.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// `p = causal_softmax(q·kᵀ)` (`[t, t]`, zero above the diagonal) for one head of a prepared
/// row: `q` and `k` start at the head's first column and have row stride `w`.
fn probs(t: usize, hd: usize, w: usize, q: &[f32], k: &[f32], p: &mut [f32]) {
    matmul((t, t, hd), p, t, false, (q, w, 1), (k, 1, w));
    for (i, row) in p.chunks_exact_mut(t).enumerate() {
        let (vis, future) = row.split_at_mut(i + 1);
        let m = vis.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        vis.iter_mut().for_each(|v| *v = exp_nonpositive(*v - m));
        let inv = 1.0 / sum(vis);
        vis.iter_mut().for_each(|v| *v *= inv);
        future.fill(0.0);
    }
}

/// Forward pass on flex buffers: `x` is `[b, t, W]`; returns the output `[b, t, H·hd]` and the
/// prepared input (see `prepare`; the backward pass needs only that).
pub fn attention_flex(
    x: &[f32],
    t: usize,
    rope: &Rope,
    s: AttnShape,
    quant: QuantApply,
) -> (Vec<f32>, Vec<f32>) {
    let (w, d, hd) = (s.qkv_width(), s.out_width(), s.head_dim);
    assert!(t <= rope.ctx && x.len().is_multiple_of(t * w));
    let mut out = vec![0f32; x.len() / w * d];
    let mut prep = vec![0f32; x.len()];
    let group = s.n_heads / s.n_kv_heads;
    out.par_chunks_mut(t * d)
        .zip(prep.par_chunks_mut(t * w))
        .zip(x.par_chunks(t * w))
        .for_each(|((o, pr), x)| {
            prepare(x, pr, s, rope, quant != QuantApply::Off);
            let mut p = vec![0f32; t * t];
            for g in 0..s.n_kv_heads {
                let (k, v) = (
                    &pr[(s.n_heads + g) * hd..],
                    &pr[(s.n_heads + s.n_kv_heads + g) * hd..],
                );
                for h in g * group..(g + 1) * group {
                    probs(t, hd, w, &pr[h * hd..], k, &mut p);
                    matmul(
                        (t, hd, t),
                        &mut o[h * hd..],
                        d,
                        false,
                        (&p, t, 1),
                        (v, w, 1),
                    );
                }
            }
        });
    (out, prep)
}

/// Backward pass on flex buffers: the gradient with respect to `x` of [`attention_flex`], given
/// its prepared input `prep` (`[b, t, W]`) and the output gradient `dy` (`[b, t, H·hd]`); Q5
/// passes gradients straight through, RoPE's transpose rotates them back. Returns `[b, t, W]`.
pub fn attention_flex_backward(
    prep: &[f32],
    dy: &[f32],
    t: usize,
    rope: &Rope,
    s: AttnShape,
) -> Vec<f32> {
    let (w, d, hd) = (s.qkv_width(), s.out_width(), s.head_dim);
    assert!(t <= rope.ctx && prep.len().is_multiple_of(t * w));
    assert_eq!(prep.len() / w, dy.len() / d);
    let mut dx = vec![0f32; prep.len()];
    let group = s.n_heads / s.n_kv_heads;
    let inv = s.inv_sqrt_hd();
    dx.par_chunks_mut(t * w)
        .zip(prep.par_chunks(t * w))
        .zip(dy.par_chunks(t * d))
        .for_each(|((dx, pr), dy)| {
            let buf = || vec![0f32; t * hd];
            let (mut dq, mut dk, mut dv) = (buf(), buf(), buf());
            let (mut p, mut ds) = (vec![0f32; t * t], vec![0f32; t * t]);
            // writes `src` (`[t, hd]`) into head `head` of dx, through RoPE's transpose if `rotate`
            let store = |dx: &mut [f32], head: usize, rotate: bool, src: &[f32]| {
                for (ti, sr) in src.chunks_exact(hd).enumerate() {
                    let dst = &mut dx[ti * w + head * hd..ti * w + (head + 1) * hd];
                    if rotate {
                        rope.rotate_back(ti, sr, dst);
                    } else {
                        dst.copy_from_slice(sr);
                    }
                }
            };
            for g in 0..s.n_kv_heads {
                let (k, v) = (
                    &pr[(s.n_heads + g) * hd..],
                    &pr[(s.n_heads + s.n_kv_heads + g) * hd..],
                );
                dk.fill(0.0);
                dv.fill(0.0);
                for h in g * group..(g + 1) * group {
                    let q = &pr[h * hd..];
                    probs(t, hd, w, q, k, &mut p);
                    let dyh = &dy[h * hd..];
                    // dV += Pᵀ·dY_h
                    matmul((t, hd, t), &mut dv, hd, true, (&p, 1, t), (dyh, d, 1));
                    // dP = dY_h·Vᵀ, then dS = P ⊙ (dP − Σ_j P·dP) row by row
                    matmul((t, t, hd), &mut ds, t, false, (dyh, d, 1), (v, 1, w));
                    for (pr, dr) in p.chunks_exact(t).zip(ds.chunks_exact_mut(t)) {
                        let p_dp = dot(pr, dr);
                        for (dv, &pv) in dr.iter_mut().zip(pr) {
                            *dv = pv * (*dv - p_dp);
                        }
                    }
                    // dq' = dS·K, through the 1/√hd factor, Q5 (identity) and RoPE
                    matmul((t, hd, t), &mut dq, hd, false, (&ds, t, 1), (k, w, 1));
                    dq.iter_mut().for_each(|v| *v *= inv);
                    store(dx, h, true, &dq);
                    // dK += dSᵀ·q'
                    matmul((t, hd, t), &mut dk, hd, true, (&ds, 1, t), (q, w, 1));
                }
                store(dx, s.n_heads + g, true, &dk);
                store(dx, s.n_heads + s.n_kv_heads + g, false, &dv);
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_within_two_ulp() {
        let mut worst = 0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 * i as f32 / 2_000_000.0;
            let (got, want) = (exp_nonpositive(x) as f64, x.exp() as f64);
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-90.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn rotate_back_is_the_transpose() {
        let rope = Rope::new(8, 4, 10000.0);
        let a: Vec<f32> = (0..8).map(|i| (i as f32 * 0.37).sin()).collect();
        let g: Vec<f32> = (0..8).map(|i| (i as f32 * 0.91).cos()).collect();
        let (mut ra, mut rg) = ([0f32; 8], [0f32; 8]);
        rope.rotate(3, &a, &mut ra);
        rope.rotate_back(3, &g, &mut rg);
        // <R·a, g> = <a, Rᵀ·g>
        let lhs: f32 = ra.iter().zip(&g).map(|(x, y)| x * y).sum();
        let rhs: f32 = a.iter().zip(&rg).map(|(x, y)| x * y).sum();
        assert!((lhs - rhs).abs() < 1e-6, "{lhs} vs {rhs}");
    }
}
