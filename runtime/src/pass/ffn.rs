//! The feed-forward block: `ReLU²(Wup·a)` or, gated, `ReLU²(Wgate·a) ⊙ (Wup·a)`, cut to
//! `i32` by shared rounding shifts, sub-normed and projected down (docs/MODEL.md, "FFN").

use super::forward::{matmul, project, residual_add};
use super::norm::rmsnorm_quantize;
use crate::blob::format::{ternary_row_bytes, TernaryEncoding};
use crate::blob::model::{LayerWeights, TernaryMatrix};
use crate::fixed::{bit_len, Dyadic};
use crate::kernels::lut::Tables5;
use crate::pass::session::Session;

/// `v = relu(v)²` cut to at most `2^30` by a shared rounding shift `k` (returned): `|v| < 2^22`,
/// so the squares (`< 2^44`, kept in `wide`) fit `i64`.
#[inline(always)]
pub(super) fn relu_sq_cut(v: &mut [i32], wide: &mut [i64]) -> u32 {
    if cfg!(target_arch = "arm") {
        return relu_sq_cut_32(v);
    }
    let mut vmax = 0u64;
    for (u, y) in wide.iter_mut().zip(v.iter()) {
        let r = (*y).max(0) as i64;
        *u = r * r;
        vmax = vmax.max(*u as u64);
    }
    cut_to_i32(wide, vmax, v)
}

/// `out = round(v / 2^k)` with the smallest shift `k` (returned) that brings every `|v|` to at
/// most `2^30`, given `vmax = max |v|` (ties round up).
#[inline(always)]
fn cut_to_i32(v: &[i64], vmax: u64, out: &mut [i32]) -> u32 {
    let k = bit_len(vmax).saturating_sub(30);
    for (o, x) in out.iter_mut().zip(v) {
        *o = if k == 0 {
            *x as i32
        } else {
            ((*x + (1 << (k - 1))) >> k) as i32
        };
    }
    k
}

/// The gated product: `g = relu(g)²` cut by `k1` ([`relu_sq_cut`]), then `u = g·u` cut by `k2`
/// (`|g·u| < 2^30 · 2^22 = 2^52`, kept in `wide`); returns `(k1, k2)`.
#[inline(always)]
pub(super) fn gated_cut(g: &mut [i32], u: &mut [i32], wide: &mut [i64]) -> (u32, u32) {
    if cfg!(target_arch = "arm") {
        return gated_cut_32(g, u);
    }
    let k1 = relu_sq_cut(g, wide);
    let mut hmax = 0u64;
    for (h, (r, u)) in wide.iter_mut().zip(g.iter().zip(u.iter())) {
        *h = *r as i64 * *u as i64;
        hmax = hmax.max(h.unsigned_abs());
    }
    let k2 = cut_to_i32(wide, hmax, u);
    (k1, k2)
}

/// `(v + 2^(k−1)) >> k` for `1 ≤ k < 32` and a result that fits 32 bits, as two 32-bit shifts of
/// the rounded 64-bit sum.
#[inline(always)]
fn round_shift_32(v: i64, k: u32) -> i32 {
    let s = v + (1 << (k - 1));
    ((s as u32 >> k) | ((s >> 32) as u32) << (32 - k)) as i32
}

/// [`relu_sq_cut`] in 32-bit operations and without `wide` (32-bit Arm): the largest square is
/// that of the largest `relu(v)`, so one pass finds `k` and one writes the cut squares, each a
/// `32 × 32 → 64` multiply and two 32-bit shifts. The same bits (tested).
#[inline(always)]
fn relu_sq_cut_32(v: &mut [i32]) -> u32 {
    let top = v.iter().fold(0i32, |m, y| m.max(*y)) as u32; // max relu(v)
                                                            // top < 2^22: the square < 2^44, so k ≤ 14.
    let k = bit_len(top as u64 * top as u64).saturating_sub(30);
    for y in v.iter_mut() {
        let r = (*y).max(0) as u32;
        let sq = r as u64 * r as u64;
        *y = if k == 0 {
            sq as i32
        } else {
            round_shift_32(sq as i64, k)
        };
    }
    k
}

/// [`gated_cut`] in 32-bit operations and without `wide` (32-bit Arm): the products are made
/// twice (for their maximum, then cut) instead of stored and read back; `|g·u| = g·|u|` as one
/// `UMULL`, and `k2 ≤ 22`, so the cut is two 32-bit shifts. The same bits (tested).
#[inline(always)]
fn gated_cut_32(g: &mut [i32], u: &mut [i32]) -> (u32, u32) {
    let k1 = relu_sq_cut_32(g);
    let mut hmax = 0u64;
    for (r, u) in g.iter().zip(u.iter()) {
        hmax = hmax.max(*r as u32 as u64 * u.unsigned_abs() as u64);
    }
    let k2 = bit_len(hmax).saturating_sub(30);
    for (r, u) in g.iter().zip(u.iter_mut()) {
        let h = *r as i64 * *u as i64;
        *u = if k2 == 0 {
            h as i32
        } else {
            round_shift_32(h, k2)
        };
    }
    (k1, k2)
}

impl Session<'_, '_> {
    /// A gated FFN's up and gate projections of every token (into `y` and `gate`). One token
    /// through base-3 up and gate matrices whose rows fit one table chunk: the two share one set
    /// of lookup tables, built once (as q, k and v do). Not inlined on Arm, for the reason
    /// [`project_qkv`](Session::project_qkv) is not.
    #[cfg_attr(target_arch = "arm", inline(never))]
    #[cfg_attr(not(target_arch = "arm"), inline(always))]
    // One-core pass only (see `forward.rs`: in flash with `workers`).
    #[cfg_attr(
        all(feature = "ram-code", not(feature = "workers")),
        link_section = ".data.runtime.hot"
    )]
    fn project_up_gate(
        &mut self,
        w_up: &TernaryMatrix<'_>,
        w_gate: &TernaryMatrix<'_>,
        n: usize,
        stride: usize,
    ) {
        let shared = n == 1
            && [w_up, w_gate].iter().all(|m| {
                m.encoding == TernaryEncoding::Base3
                    && m.row_bytes == w_up.row_bytes
                    && m.tiled_kernel().is_none()
            });
        let mut tables = Tables5::new();
        let built = shared
            && self
                .act
                .get(..w_up.input_len())
                .is_some_and(|x| tables.build(x, w_up.row_bytes));
        let tables = built.then_some(&tables);
        project(w_up, tables, self.act, stride, n, self.y, self.scratch);
        project(w_gate, tables, self.act, stride, n, self.gate, self.scratch);
    }

    /// `x += Wdown · Q2(SubNorm(ReLU²(Wup · Q2(RMSNorm(x)))))` for block `l`, every token; with
    /// a gated FFN, `x += Wdown · Q2(SubNorm(ReLU²(Wgate · a) ⊙ (Wup · a)))`, `a = Q2(RMSNorm(x))`.
    #[inline(always)]
    pub(super) fn feed_forward(&mut self, w: &LayerWeights<'_>, n: usize) {
        let c = *self.model.config();
        let eps = self.model.norm_eps();
        let (d, f) = (c.d_model as usize, c.ffn_dim as usize);
        let stride_d = ternary_row_bytes(c.d_model) * 4;
        let stride_f = ternary_row_bytes(c.ffn_dim) * 4;

        self.norm_residual(n, w.ffn_norm, stride_d);
        match &w.w_gate {
            Some(w_gate) => self.project_up_gate(&w.w_up, w_gate, n, stride_d),
            None => matmul(&w.w_up, self.act, stride_d, n, self.y, self.scratch),
        }
        for t in 0..n {
            let yt = &mut self.y[t * f..(t + 1) * f];
            let su = self.act_scale[t].mul(w.w_up.gamma);
            let h_scale = match (&w.w_gate, self.gate.get_mut(t * f..(t + 1) * f)) {
                (Some(w_gate), Some(gt)) => {
                    // r = relu(g)², cut to ≤ 2^30 (shift k1); h = r·u, |h| < 2^52, cut (k2).
                    let (k1, k2) = gated_cut(gt, yt, &mut self.wide[..f]);
                    let sg = self.act_scale[t].mul(w_gate.gamma);
                    sg.mul(sg).mul(su).mul(Dyadic::pow2((k1 + k2) as i32))
                }
                _ => {
                    // u = relu(y)²: |y| < 2^22, so u < 2^44; cut to ≤ 2^30 with a shift k.
                    let k = relu_sq_cut(yt, &mut self.wide[..f]);
                    su.mul(su).mul(Dyadic::pow2(k as i32))
                }
            };
            let act = &mut self.act[t * stride_f..];
            self.act_scale[t] = rmsnorm_quantize(yt, h_scale, w.ffn_sub_norm, eps, act);
        }
        matmul(&w.w_down, self.act, stride_f, n, self.y, self.scratch);
        for t in 0..n {
            let scale = self.act_scale[t].mul(w.w_down.gamma);
            residual_add(
                &mut self.x[t * d..(t + 1) * d],
                &self.y[t * d..(t + 1) * d],
                scale,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_32_bit_cuts_equal_the_definitions() {
        let mut rng = crate::rng::SplitMix64(0xC0FF_EE00_1234_5678);
        let mut next = move || rng.next_u64();
        for case in 0..3000 {
            let n = 1 + (next() % 64) as usize;
            let bits = (case % 23) as u32; // |v| < 2^22: every width up to it
            let val = |v: u64| ((v as i32) >> 10) >> (21 - bits.min(21));
            let g: std::vec::Vec<i32> = (0..n).map(|_| val(next())).collect();
            let u: std::vec::Vec<i32> = (0..n).map(|_| val(next())).collect();
            let mut wide = std::vec![0i64; n];

            let (mut a, mut b) = (g.clone(), g.clone());
            let mut want = 0;
            // The definition: relu_sq_cut's body without the Arm dispatch.
            {
                let mut vmax = 0u64;
                for (w, y) in wide.iter_mut().zip(a.iter()) {
                    let r = (*y).max(0) as i64;
                    *w = r * r;
                    vmax = vmax.max(*w as u64);
                }
                want += cut_to_i32(&wide, vmax, &mut a);
            }
            assert_eq!(relu_sq_cut_32(&mut b), want, "{g:?}");
            assert_eq!(a, b, "{g:?}");

            let (mut ga, mut ua) = (g.clone(), u.clone());
            let k1 = {
                let mut vmax = 0u64;
                for (w, y) in wide.iter_mut().zip(ga.iter()) {
                    let r = (*y).max(0) as i64;
                    *w = r * r;
                    vmax = vmax.max(*w as u64);
                }
                cut_to_i32(&wide, vmax, &mut ga)
            };
            let mut hmax = 0u64;
            for (h, (r, u)) in wide.iter_mut().zip(ga.iter().zip(ua.iter())) {
                *h = *r as i64 * *u as i64;
                hmax = hmax.max(h.unsigned_abs());
            }
            let k2 = cut_to_i32(&wide, hmax, &mut ua);
            let (mut gb, mut ub) = (g.clone(), u.clone());
            assert_eq!(gated_cut_32(&mut gb, &mut ub), (k1, k2), "{g:?} {u:?}");
            assert_eq!((ga, ua), (gb, ub), "{g:?} {u:?}");
        }
    }
}
