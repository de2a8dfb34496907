//! Attention of a block: the q/k/v projections (sharing one set of base-3 lookup tables for a
//! single token), RoPE, the int8 KV cache (Q5), and causal softmax attention of one query at a
//! time, then the heads merged and sub-normed (docs/MODEL.md, "Attention").

use super::forward::{matmul, project, residual_add};
use super::norm::{absmax_quantize, rmsnorm_quantize};
use crate::blob::format::{ternary_row_bytes, TernaryEncoding, ROPE_FRAC_BITS};
use crate::blob::model::LayerWeights;
use crate::fixed::{bit_len, mul_round, sat_i32, Dyadic, INV_127};
use crate::kernels::lut::Tables5;
use crate::kernels::max_abs_i64;
use crate::kernels::{attention_scores, int8_matvec, int8_weighted_sum, softmax_coefficients};
use crate::pass::session::Session;

/// Rotates one head: `out[2i] = y0·cos − y1·sin`, `out[2i+1] = y0·sin + y1·cos` with the
/// Q1.30 table row, so `out` is in units of `2^-30` of `y`'s units.
/// Overflow: `|y| < 2^22`, `|cos|, |sin| ≤ 2^30`: each term `< 2^52`, sum `< 2^53`.
#[inline(always)]
pub(super) fn rope(y: &[i32], table: &[u8], out: &mut [i64]) {
    for ((pair, cs), o) in y
        .chunks_exact(2)
        .zip(table.chunks_exact(8))
        .zip(out.chunks_exact_mut(2))
    {
        let c = i32::from_le_bytes([cs[0], cs[1], cs[2], cs[3]]) as i64;
        let s = i32::from_le_bytes([cs[4], cs[5], cs[6], cs[7]]) as i64;
        let (y0, y1) = (pair[0] as i64, pair[1] as i64);
        o[0] = y0 * c - y1 * s;
        o[1] = y0 * s + y1 * c;
    }
}

/// Concatenates the heads' accumulators `acc [H][hd]` (real value `acc · head_scale[h]`)
/// into one block-scaled `i32` vector `y [d]` with `|y| ≤ 2^30`; returns its unit.
#[inline(always)]
pub(super) fn merge_heads(acc: &[i64], head_scale: &[Dyadic], hd: usize, y: &mut [i32]) -> Dyadic {
    let mut amax = Dyadic::ZERO;
    for (a, hs) in acc.chunks_exact(hd).zip(head_scale) {
        let m = max_abs_i64(a);
        let r = Dyadic::from_u64(m, 0).mul(*hs);
        if r.gt(amax) {
            amax = r;
        }
    }
    let a_scale = Dyadic {
        mant: amax.mant,
        exp: amax.exp.saturating_sub(30),
    };
    for ((a, hs), yh) in acc
        .chunks_exact(hd)
        .zip(head_scale)
        .zip(y.chunks_exact_mut(hd))
    {
        let m = max_abs_i64(a);
        let k = bit_len(m).saturating_sub(31); // acc >> k fits i32
        let ratio = if amax.is_zero() {
            Dyadic::ZERO
        } else {
            hs.mul(Dyadic::pow2(k as i32)).div(a_scale)
        };
        for (yo, v) in yh.iter_mut().zip(a) {
            *yo = sat_i32(mul_round(*v >> k, ratio, 0));
        }
    }
    if amax.is_zero() {
        Dyadic::ONE
    } else {
        a_scale
    }
}

impl Session<'_, '_> {
    /// `x += Wo · Q2(SubNorm(Attention(Q2(RMSNorm(x)))))` for block `l`, every token.
    #[inline(always)]
    pub(super) fn attention(&mut self, w: &LayerWeights<'_>, l: usize, n: usize) {
        let c = *self.model.config();
        let stride = ternary_row_bytes(c.d_model) * 4;
        self.norm_residual(n, w.attn_norm, stride);
        self.project_qkv(w, l, n, stride);
        for t in 0..n {
            self.attend(w, l, t, stride);
        }
        matmul(&w.wo, self.act, stride, n, self.y, self.scratch);
        let d = c.d_model as usize;
        for t in 0..n {
            let scale = self.act_scale[t].mul(w.wo.gamma);
            residual_add(
                &mut self.x[t * d..(t + 1) * d],
                &self.y[t * d..(t + 1) * d],
                scale,
            );
        }
    }

    /// The query, key and value projections of every token. One token through base-3 q, k and
    /// v whose rows fit one table chunk: the three share one set of lookup tables (16 KiB of
    /// stack, built once instead of three times). Not inlined on Arm, so that the tables'
    /// stack frame is gone before the next matrix (`Wo`) builds its own; inlined elsewhere, so
    /// that it is compiled with each `run` variant's target features (x86-64 v3/v4).
    #[cfg_attr(target_arch = "arm", inline(never))]
    #[cfg_attr(not(target_arch = "arm"), inline(always))]
    // One-core pass only (see `forward.rs`: in flash with `workers`).
    #[cfg_attr(
        all(feature = "ram-code", not(feature = "workers")),
        link_section = ".data.runtime.hot"
    )]
    fn project_qkv(&mut self, w: &LayerWeights<'_>, l: usize, n: usize, stride: usize) {
        let (wq, wk, wv) = (&w.wq, &w.wk, &w.wv);
        let shared = n == 1
            && [wq, wk, wv].iter().all(|m| {
                m.encoding == TernaryEncoding::Base3
                    && m.row_bytes == wq.row_bytes
                    && m.tiled_kernel().is_none()
            });
        let mut tables = Tables5::new();
        let built = shared
            && self
                .act
                .get(..wq.input_len())
                .is_some_and(|x| tables.build(x, wq.row_bytes));
        let tables = built.then_some(&tables);
        self.project_queries(w, n, stride, tables);
        self.project_keys_values(w, l, n, stride, tables);
    }

    /// Queries: project, rotate, quantize per head (Q5) into `q8[t]`, `q_scale[t]`. The
    /// `1/sqrt(hd)` of the scores is folded into the scale.
    #[inline(always)]
    fn project_queries(
        &mut self,
        w: &LayerWeights<'_>,
        n: usize,
        stride: usize,
        tables: Option<&Tables5>,
    ) {
        let c = *self.model.config();
        let (d, hd, nh) = (
            c.d_model as usize,
            c.head_dim() as usize,
            c.n_heads as usize,
        );
        let rope_unit = Dyadic::pow2(-(ROPE_FRAC_BITS as i32));
        project(&w.wq, tables, self.act, stride, n, self.y, self.scratch);
        for t in 0..n {
            let rope_row = self.model.rope_row(self.pos + t);
            let qs = self.act_scale[t]
                .mul(w.wq.gamma)
                .mul(rope_unit)
                .mul(INV_127);
            let qs = qs.mul(self.model.inv_sqrt_head_dim());
            for h in 0..nh {
                let (Some(yh), Some(q8)) = (
                    self.y.get(t * d + h * hd..t * d + (h + 1) * hd),
                    self.q8.get_mut(t * d + h * hd..t * d + (h + 1) * hd),
                ) else {
                    return;
                };
                let tmp = &mut self.wide[..hd];
                rope(yh, rope_row, tmp);
                let m = absmax_quantize(tmp, q8);
                self.q_scale[t * nh + h] = qs.mul(Dyadic::from_u64(m, 0));
            }
        }
    }

    /// Keys (rotated) and values of each token, quantized per KV head (Q5), into the cache
    /// slots `[l][pos + t][g]`.
    #[inline(always)]
    fn project_keys_values(
        &mut self,
        w: &LayerWeights<'_>,
        l: usize,
        n: usize,
        stride: usize,
        tables: Option<&Tables5>,
    ) {
        let c = *self.model.config();
        let (hd, nkv) = (c.head_dim() as usize, c.n_kv_heads as usize);
        let kv = nkv * hd;
        let rope_unit = Dyadic::pow2(-(ROPE_FRAC_BITS as i32));
        let slot = |t: usize, g: usize| (l * self.ctx_len + self.pos + t) * nkv + g;

        project(&w.wk, tables, self.act, stride, n, self.y, self.scratch);
        for t in 0..n {
            let rope_row = self.model.rope_row(self.pos + t);
            let ks = self.act_scale[t]
                .mul(w.wk.gamma)
                .mul(rope_unit)
                .mul(INV_127);
            for g in 0..nkv {
                let i = slot(t, g);
                let tmp = &mut self.wide[..hd];
                rope(
                    &self.y[t * kv + g * hd..t * kv + (g + 1) * hd],
                    rope_row,
                    tmp,
                );
                let m = absmax_quantize(tmp, &mut self.k_cache[i * hd..(i + 1) * hd]);
                self.k_scale[i] = ks.mul(Dyadic::from_u64(m, 0));
            }
        }
        project(&w.wv, tables, self.act, stride, n, self.y, self.scratch);
        for t in 0..n {
            let vs = self.act_scale[t].mul(w.wv.gamma).mul(INV_127);
            for g in 0..nkv {
                let i = slot(t, g);
                let tmp = &mut self.wide[..hd];
                for (o, v) in tmp
                    .iter_mut()
                    .zip(&self.y[t * kv + g * hd..t * kv + (g + 1) * hd])
                {
                    *o = *v as i64;
                }
                let m = absmax_quantize(tmp, &mut self.v_cache[i * hd..(i + 1) * hd]);
                self.v_scale[i] = vs.mul(Dyadic::from_u64(m, 0));
            }
        }
    }

    /// Causal softmax attention of token `t` (position `p = pos + t`) over positions `0..=p`
    /// for every query head: scores, softmax weights, value accumulation, head merge; then the
    /// sub-norm quantizes the merged heads into `act[t]` (scale `act_scale[t]`).
    #[inline(always)]
    fn attend(&mut self, w: &LayerWeights<'_>, l: usize, t: usize, stride: usize) {
        let c = *self.model.config();
        let (d, hd) = (c.d_model as usize, c.head_dim() as usize);
        let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
        let group = nh / nkv;
        let p = self.pos + t;
        let first = l * self.ctx_len * nkv; // cache entry of (l, position 0, head 0)
        for h in 0..nh {
            let g = h / group;
            let q = &self.q8[t * d + h * hd..t * d + (h + 1) * hd];
            // Scores in Q24 nats: |q·k| ≤ 2^14 · hd < 2^29.
            let keys = &self.k_cache[(first + g) * hd..];
            let dots = &mut self.coef[..=p];
            int8_matvec(keys, nkv * hd, q, dots);
            let q_scale = self.q_scale[t * nh + h];
            let k_scale = &self.k_scale[first + g..];
            attention_scores(dots, q_scale, k_scale, nkv, &mut self.scores[..=p]);
            let v_scale = &self.v_scale[first + g..];
            let (e, wsum) =
                softmax_coefficients(&mut self.scores[..=p], &mut self.coef[..=p], v_scale, nkv);
            let values = &self.v_cache[(first + g) * hd..];
            let acc = &mut self.wide[h * hd..(h + 1) * hd];
            // acc_i = Σ_s c_s · v_s,i: |c_s| ≤ 2^24, |v| ≤ 128, T ≤ 2^15 → < 2^46.
            int8_weighted_sum(&self.coef[..=p], values, nkv * hd, acc);
            // a_real = acc · 2^e / Σw_real with Σw_real = wsum · 2^-30.
            self.head_scale[h] = match e {
                Some(e) => Dyadic::pow2(e).div(Dyadic::from_u64(wsum, -30)),
                None => Dyadic::ZERO,
            };
        }
        let a_scale = merge_heads(&self.wide[..d], self.head_scale, hd, &mut self.y[..d]);
        let eps = self.model.norm_eps();
        let act = &mut self.act[t * stride..];
        self.act_scale[t] = rmsnorm_quantize(&self.y[..d], a_scale, w.attn_sub_norm, eps, act);
    }
}
