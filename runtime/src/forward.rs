//! The forward pass of one token (docs/MODEL.md), integers only. Reads top to bottom:
//! embedding, then per block attention and feed-forward, then the final norm and the LM head.

use crate::error::Error;
use crate::fixed::{bit_len, exp_neg_q24, mul_round, sat_i32, Dyadic, INV_127};
use crate::format::{int8_row_bytes, LOGIT_FRAC_BITS, RESID_FRAC_BITS, ROPE_FRAC_BITS};
use crate::kernels::{int8_dot, ternary_matvec};
use crate::model::TernaryMatrix;
use crate::norm::{absmax_quantize, rmsnorm_quantize, to_block_i32};
use crate::session::Session;

/// Real value of one unit of the residual stream: `2^-32`.
const RESID_SCALE: Dyadic = Dyadic::pow2(-(RESID_FRAC_BITS as i32));

/// `y = W · act` (the padded activation prefix the matrix reads).
fn matvec(w: &TernaryMatrix<'_>, act: &[i8], y: &mut [i32]) {
    let n = w.row_bytes * 4;
    if let (Some(x), Some(out)) = (act.get(..n), y.get_mut(..w.rows)) {
        ternary_matvec(w.data, w.row_bytes, x, out);
    }
}

/// Rotates one head: `out[2i] = y0·cos − y1·sin`, `out[2i+1] = y0·sin + y1·cos` with the
/// Q1.30 table row, so `out` is in units of `2^-30` of `y`'s units.
/// Overflow: `|y| < 2^22`, `|cos|, |sin| ≤ 2^30`: each term `< 2^52`, sum `< 2^53`.
fn rope(y: &[i32], table: &[u8], out: &mut [i64]) {
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

/// A [`Dyadic`] in one `i64` slot (exponent high, mantissa low); [`unpack_dyadic`] inverts it.
#[inline(always)]
fn pack_dyadic(d: Dyadic) -> i64 {
    ((d.exp as i64) << 32) | d.mant as i64
}

#[inline(always)]
fn unpack_dyadic(v: i64) -> Dyadic {
    Dyadic {
        mant: v as u32,
        exp: (v >> 32) as i32,
    }
}

/// Residual values saturate at `±2^62` (`±2^30` in real units), far beyond any trained model.
const RESID_LIMIT: i64 = 1 << 62;

/// `x[i] += round(y[i] · scale · 2^32)`, saturating at `±2^62` (the residual update).
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
fn residual_add(x: &mut [i64], y: &[i32], scale: Dyadic) {
    for (xi, yi) in x.iter_mut().zip(y) {
        let dx = mul_round(*yi as i64, scale, RESID_FRAC_BITS as i32); // |dx| ≤ 2^62
        *xi = xi.saturating_add(dx).clamp(-RESID_LIMIT, RESID_LIMIT);
    }
}

impl Session<'_, '_> {
    /// Runs one token at the current position, records it ([`Session::tokens`]), advances the
    /// position, and returns the logits for the next token: `i32`, one unit = `2^-16` nats
    /// (Q15.16, [`LOGIT_FRAC_BITS`]).
    ///
    /// Errors: [`Error::TokenOutOfRange`], [`Error::ContextFull`] (all `ctx_len` positions used).
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn forward(&mut self, token: u16) -> Result<&[i32], Error> {
        let c = *self.model.config();
        if token as u32 >= c.vocab_size {
            return Err(Error::TokenOutOfRange(token));
        }
        if self.pos >= self.ctx_len {
            return Err(Error::ContextFull);
        }
        if let Some(slot) = self.tokens.get_mut(self.pos) {
            *slot = token;
        }
        // x = e_tok · E_q[tok]  (Q3), into Q31.32.
        let (row, e) = self.model.embedding_row(token as usize);
        for (xi, q) in self.x.iter_mut().zip(row) {
            *xi = mul_round(*q as i64, e, RESID_FRAC_BITS as i32);
        }

        for l in 0..c.n_layers as usize {
            self.attention(l);
            self.feed_forward(l);
        }

        // logits_v = s · e_v · Σ_i h_q,i E_q,vi  (Q4), tied int8 head.
        let eps = self.model.norm_eps();
        let d = c.d_model as usize;
        let xs = to_block_i32(self.x, RESID_SCALE, &mut self.y[..d]);
        let s = rmsnorm_quantize(&self.y[..d], xs, self.model.final_norm(), eps, self.act);
        let rb = int8_row_bytes(c.d_model);
        let emb = self.model.embedding();
        if let Some(h) = self.act.get(..rb) {
            for (v, (logit, erow)) in self.logits.iter_mut().zip(emb.chunks_exact(rb)).enumerate() {
                // |dot| ≤ 2^14 · d < 2^29.
                let dot = int8_dot(h, erow);
                let scale = s.mul(self.model.embedding_scale(v));
                *logit = sat_i32(mul_round(dot as i64, scale, LOGIT_FRAC_BITS as i32));
            }
        }
        self.pos += 1;
        Ok(self.logits)
    }

    /// `x += Wo · Q2(SubNorm(Attention(Q2(RMSNorm(x)))))` for block `l` at position `pos`.
    fn attention(&mut self, l: usize) {
        let c = *self.model.config();
        let w = self.model.layer(l);
        let eps = self.model.norm_eps();
        let (t, tl) = (self.pos, self.ctx_len);
        let (d, hd) = (c.d_model as usize, c.head_dim() as usize);
        let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
        let group = nh / nkv;
        let rope_row = self.model.rope_row(t);
        let rope_unit = Dyadic::pow2(-(ROPE_FRAC_BITS as i32));

        let xs = to_block_i32(self.x, RESID_SCALE, &mut self.y[..d]);
        let s = rmsnorm_quantize(&self.y[..d], xs, w.attn_norm, eps, self.act);

        // Queries: project, rotate, quantize per head (Q5). The 1/sqrt(hd) of the scores is
        // folded into q_scale.
        matvec(&w.wq, self.act, self.y);
        let qs = s.mul(w.wq.gamma).mul(rope_unit).mul(INV_127);
        let qs = qs.mul(self.model.inv_sqrt_head_dim());
        for h in 0..nh {
            let (Some(yh), Some(q8)) = (
                self.y.get(h * hd..(h + 1) * hd),
                self.q8.get_mut(h * hd..(h + 1) * hd),
            ) else {
                return;
            };
            let tmp = &mut self.wide[..hd];
            rope(yh, rope_row, tmp);
            let m = absmax_quantize(tmp, q8);
            self.q_scale[h] = qs.mul(Dyadic::from_u64(m, 0));
        }

        // Keys and values of this position into the cache: [l][t][g] slots.
        let slot = |g: usize| (l * tl + t) * nkv + g;
        matvec(&w.wk, self.act, self.y);
        let ks = s.mul(w.wk.gamma).mul(rope_unit).mul(INV_127);
        for g in 0..nkv {
            let i = slot(g);
            let tmp = &mut self.wide[..hd];
            rope(&self.y[g * hd..(g + 1) * hd], rope_row, tmp);
            let m = absmax_quantize(tmp, &mut self.k_cache[i * hd..(i + 1) * hd]);
            self.k_scale[i] = ks.mul(Dyadic::from_u64(m, 0));
        }
        matvec(&w.wv, self.act, self.y);
        let vs = s.mul(w.wv.gamma).mul(INV_127);
        for g in 0..nkv {
            let i = slot(g);
            let tmp = &mut self.wide[..hd];
            for (o, v) in tmp.iter_mut().zip(&self.y[g * hd..(g + 1) * hd]) {
                *o = *v as i64;
            }
            let m = absmax_quantize(tmp, &mut self.v_cache[i * hd..(i + 1) * hd]);
            self.v_scale[i] = vs.mul(Dyadic::from_u64(m, 0));
        }

        // Causal softmax attention per query head, accumulators into wide[h·hd..].
        for h in 0..nh {
            let g = h / group;
            let q = &self.q8[h * hd..(h + 1) * hd];
            // Scores in Q24 nats: |q·k| ≤ 2^14 · hd < 2^29.
            for s in 0..=t {
                let i = (l * tl + s) * nkv + g;
                let dot = int8_dot(q, &self.k_cache[i * hd..(i + 1) * hd]);
                let scale = self.q_scale[h].mul(self.k_scale[i]);
                self.scores[s] = mul_round(dot as i64, scale, 24);
            }
            let smax = self.scores[..=t].iter().copied().max().unwrap_or(0);
            // Softmax weights w_s = exp(score_s − max) in Q30 (the maximum gets 2^30).
            // c_s = w_s · v_scale_s replaces score_s in `scores` (packed, see `pack_dyadic`).
            let mut wsum = 0u64; // ≤ T · 2^30 < 2^46
            let mut cmax = Dyadic::ZERO;
            for s in 0..=t {
                let i = (l * tl + s) * nkv + g;
                let wgt = exp_neg_q24(smax.saturating_sub(self.scores[s]) as u64);
                wsum += wgt as u64;
                let cs = Dyadic::from_u64(wgt as u64, -30).mul(self.v_scale[i]);
                if cs.gt(cmax) {
                    cmax = cs;
                }
                self.scores[s] = pack_dyadic(cs);
            }
            // Coefficients c_s = w_s · v_scale_s as integers in units of 2^e (< 2^24).
            let e = cmax.exp.saturating_add(8);
            for s in 0..=t {
                let cs = unpack_dyadic(self.scores[s]);
                let sh = e.saturating_sub(cs.exp);
                self.coef[s] = if cs.is_zero() || sh >= 40 {
                    0
                } else {
                    ((cs.mant as u64 + (1u64 << (sh - 1))) >> sh) as i32
                };
            }
            // acc_i = Σ_s c_s · v_s,i: |c_s| ≤ 2^24, |v| ≤ 128, T ≤ 2^15 → < 2^46.
            let acc = &mut self.wide[h * hd..(h + 1) * hd];
            acc.iter_mut().for_each(|a| *a = 0);
            for s in 0..=t {
                let cs = self.coef[s] as i64;
                if cs == 0 {
                    continue;
                }
                let i = (l * tl + s) * nkv + g;
                for (a, v) in acc.iter_mut().zip(&self.v_cache[i * hd..(i + 1) * hd]) {
                    *a += cs * *v as i64;
                }
            }
            // a_real = acc · 2^e / Σw_real with Σw_real = wsum · 2^-30.
            self.head_scale[h] = if cmax.is_zero() {
                Dyadic::ZERO
            } else {
                Dyadic::pow2(e).div(Dyadic::from_u64(wsum, -30))
            };
        }

        // Concatenate the heads into one block-scaled i32 vector y[..d] with |y| ≤ 2^30.
        let mut amax = Dyadic::ZERO;
        for h in 0..nh {
            let m = self.wide[h * hd..(h + 1) * hd]
                .iter()
                .map(|a| a.unsigned_abs())
                .max()
                .unwrap_or(0);
            let r = Dyadic::from_u64(m, 0).mul(self.head_scale[h]);
            if r.gt(amax) {
                amax = r;
            }
        }
        let a_scale = Dyadic {
            mant: amax.mant,
            exp: amax.exp.saturating_sub(30),
        };
        for h in 0..nh {
            let acc = &self.wide[h * hd..(h + 1) * hd];
            let m = acc.iter().map(|a| a.unsigned_abs()).max().unwrap_or(0);
            let k = bit_len(m).saturating_sub(31); // acc >> k fits i32
            let ratio = if amax.is_zero() {
                Dyadic::ZERO
            } else {
                self.head_scale[h].mul(Dyadic::pow2(k as i32)).div(a_scale)
            };
            for (yo, a) in self.y[h * hd..(h + 1) * hd].iter_mut().zip(acc) {
                *yo = sat_i32(mul_round(*a >> k, ratio, 0));
            }
        }
        let a_scale = if amax.is_zero() { Dyadic::ONE } else { a_scale };

        let s2 = rmsnorm_quantize(&self.y[..d], a_scale, w.attn_sub_norm, eps, self.act);
        matvec(&w.wo, self.act, self.y);
        residual_add(self.x, &self.y[..d], s2.mul(w.wo.gamma));
    }

    /// `x += Wdown · Q2(SubNorm(ReLU²(Wup · Q2(RMSNorm(x)))))` for block `l`.
    fn feed_forward(&mut self, l: usize) {
        let c = *self.model.config();
        let w = self.model.layer(l);
        let eps = self.model.norm_eps();
        let (d, f) = (c.d_model as usize, c.ffn_dim as usize);

        let xs = to_block_i32(self.x, RESID_SCALE, &mut self.y[..d]);
        let s = rmsnorm_quantize(&self.y[..d], xs, w.ffn_norm, eps, self.act);
        matvec(&w.w_up, self.act, self.y);
        // u = relu(y)²: |y| < 2^22, so u < 2^44; then cut to ≤ 2^30 with a shared shift k.
        let mut umax = 0u64;
        for (u, y) in self.wide[..f].iter_mut().zip(&self.y[..f]) {
            let r = (*y).max(0) as i64;
            *u = r * r;
            umax = umax.max(*u as u64);
        }
        let k = bit_len(umax).saturating_sub(30);
        for (y, u) in self.y[..f].iter_mut().zip(&self.wide[..f]) {
            *y = if k == 0 {
                *u as i32
            } else {
                ((*u + (1 << (k - 1))) >> k) as i32
            };
        }
        let su = s.mul(w.w_up.gamma);
        let u_scale = su.mul(su).mul(Dyadic::pow2(k as i32));
        let s2 = rmsnorm_quantize(&self.y[..f], u_scale, w.ffn_sub_norm, eps, self.act);
        matvec(&w.w_down, self.act, self.y);
        residual_add(self.x, &self.y[..d], s2.mul(w.w_down.gamma));
    }
}
