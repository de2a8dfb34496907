//! The forward pass (docs/MODEL.md), integers only, over a block of `n` tokens at positions
//! `pos..pos + n` (`n = 1` when decoding). Reads top to bottom like llama2.c's `forward()`:
//! embedding, then per block attention and feed-forward, then the final norm and the LM head.
//!
//! Every matrix multiplies the whole block at once ([`ternary_matmul`]: each weight is read
//! once per block); everything between the matrices runs token by token with exactly the
//! arithmetic of a one-token pass, so a block's logits and KV cache are bit-identical to
//! feeding its tokens one at a time (tested in `runtime/tests/prefill.rs`).

use crate::error::Error;
use crate::fixed::{bit_len, mul_round, sat_i32, Dyadic, INV_127};
use crate::format::{
    int8_row_bytes, ternary_row_bytes, TernaryEncoding, LOGIT_FRAC_BITS, RESID_FRAC_BITS,
    ROPE_FRAC_BITS,
};
use crate::kernels::lut::Tables5;
use crate::kernels::{
    attention_scores, int8_matvec, int8_weighted_sum, softmax_coefficients, ternary5_matmul,
    ternary5_matvec, ternary_matmul, ternary_matvec,
};
use crate::model::{Gains, LayerWeights, TernaryMatrix};
use crate::norm::{absmax_quantize, max_abs_i64, rmsnorm_quantize, to_block_i32};
use crate::session::Session;

/// Real value of one unit of the residual stream: `2^-32`.
const RESID_SCALE: Dyadic = Dyadic::pow2(-(RESID_FRAC_BITS as i32));

/// Residual values saturate at `±2^62` (`±2^30` in real units), far beyond any trained model.
const RESID_LIMIT: i64 = 1 << 62;

/// `Y[t] = W · act[t]` for `t < n`. Shapes: `act [n][stride]` (each token's first
/// `w.input_len()` entries, which may run up to 4 entries into the next token's or the
/// region's slack, are the matrix input), `y [n][rows]`. The hot loop. Out of line on Arm
/// (7 call sites per layer: inlined, they made the RAM-resident pass 64 KiB of code).
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
fn matmul(
    w: &TernaryMatrix<'_>,
    act: &[i8],
    stride: usize,
    n: usize,
    y: &mut [i32],
    scratch: &mut [i8],
) {
    let cols = w.input_len();
    let Some(out) = y.get_mut(..n * w.rows) else {
        return;
    };
    match w.encoding {
        TernaryEncoding::Packed2 if n > 1 && stride == cols => {
            if let Some(x) = act.get(..n * stride) {
                ternary_matmul(w.data, w.row_bytes, x, out, scratch);
            }
        }
        TernaryEncoding::Base3 if n > 1 && stride == cols => {
            if let Some(x) = act.get(..n * stride) {
                ternary5_matmul(w.data, w.row_bytes, x, out);
            }
        }
        enc => {
            for (t, yt) in out.chunks_exact_mut(w.rows.max(1)).enumerate() {
                let Some(xt) = act.get(t * stride..t * stride + cols) else {
                    return;
                };
                match enc {
                    TernaryEncoding::Packed2 => ternary_matvec(w.data, w.row_bytes, xt, yt),
                    TernaryEncoding::Base3 => ternary5_matvec(w.data, w.row_bytes, xt, yt),
                }
            }
        }
    }
}

/// [`matmul`], or one token from tables already built for this matrix's input.
#[inline(always)]
fn project(
    w: &TernaryMatrix<'_>,
    tables: Option<&Tables5>,
    act: &[i8],
    stride: usize,
    n: usize,
    y: &mut [i32],
    scratch: &mut [i8],
) {
    match (tables, y.get_mut(..w.rows)) {
        (Some(t), Some(out)) if n == 1 => t.matvec(w.data, out),
        _ => matmul(w, act, stride, n, y, scratch),
    }
}

/// `v = relu(v)²` cut to at most `2^30` by a shared rounding shift `k` (returned): `|v| < 2^22`,
/// so the squares (`< 2^44`, kept in `wide`) fit `i64`.
#[inline(always)]
fn relu_sq_cut(v: &mut [i32], wide: &mut [i64]) -> u32 {
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

/// Rotates one head: `out[2i] = y0·cos − y1·sin`, `out[2i+1] = y0·sin + y1·cos` with the
/// Q1.30 table row, so `out` is in units of `2^-30` of `y`'s units.
/// Overflow: `|y| < 2^22`, `|cos|, |sin| ≤ 2^30`: each term `< 2^52`, sum `< 2^53`.
#[inline(always)]
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

/// `x[i] += round(y[i] · scale · 2^32)`, saturating at `±2^62` (the residual update).
#[inline(always)]
fn residual_add(x: &mut [i64], y: &[i32], scale: Dyadic) {
    for (xi, yi) in x.iter_mut().zip(y) {
        let dx = mul_round(*yi as i64, scale, RESID_FRAC_BITS as i32); // |dx| ≤ 2^62
        *xi = xi.saturating_add(dx).clamp(-RESID_LIMIT, RESID_LIMIT);
    }
}

/// Concatenates the heads' accumulators `acc [H][hd]` (real value `acc · head_scale[h]`)
/// into one block-scaled `i32` vector `y [d]` with `|y| ≤ 2^30`; returns its unit.
#[inline(always)]
fn merge_heads(acc: &[i64], head_scale: &[Dyadic], hd: usize, y: &mut [i32]) -> Dyadic {
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
    /// Runs one token at the current position, records it ([`Session::tokens`]), advances the
    /// position, and returns the logits for the next token: `i32`, one unit = `2^-16` nats
    /// (Q15.16, [`LOGIT_FRAC_BITS`]).
    ///
    /// Errors: [`Error::TokenOutOfRange`], [`Error::ContextFull`] (all `ctx_len` positions used).
    pub fn forward(&mut self, token: u16) -> Result<&[i32], Error> {
        self.forward_block(core::slice::from_ref(&token))
    }

    /// Runs up to [`block`](Session::block) tokens at positions `pos..pos + n` in one pass and
    /// returns the logits after each of them, `[n][V]` (row `t` predicts the token after
    /// `tokens[t]`): bit-identical to `n` calls of [`forward`](Session::forward).
    ///
    /// Errors (nothing is changed then): [`Error::TokenOutOfRange`], [`Error::ContextFull`]
    /// (fewer than `n` positions left), [`Error::BlockTooLarge`] (`n` > the session's block).
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn forward_block(&mut self, tokens: &[u16]) -> Result<&[i32], Error> {
        let n = tokens.len();
        self.check(tokens)?;
        if n > self.block {
            return Err(Error::BlockTooLarge {
                tokens: u32::try_from(n).unwrap_or(u32::MAX),
                block: self.block as u32,
            });
        }
        if let Some(slots) = self.tokens.get_mut(self.pos..self.pos + n) {
            slots.copy_from_slice(tokens);
        }
        self.run(n);
        let v = self.model.config().vocab_size as usize;
        Ok(self.logits.get(..n * v).unwrap_or(&[]))
    }

    /// Feeds `tokens` in blocks of [`block`](Session::block) (each weight read once per
    /// block) and returns the logits after the last one: the same bits as feeding them one by
    /// one with [`forward`](Session::forward).
    ///
    /// Errors (nothing is changed then): [`Error::EmptyPrompt`], [`Error::TokenOutOfRange`],
    /// [`Error::ContextFull`] (fewer than `tokens.len()` positions left).
    pub fn prefill(&mut self, tokens: &[u16]) -> Result<&[i32], Error> {
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        self.check(tokens)?;
        if let Some(slots) = self.tokens.get_mut(self.pos..self.pos + tokens.len()) {
            slots.copy_from_slice(tokens);
        }
        self.run_recorded(tokens.len());
        Ok(self.logits())
    }

    /// Every token in the vocabulary and `pos + tokens.len() ≤ ctx_len`.
    fn check(&self, tokens: &[u16]) -> Result<(), Error> {
        let vocab = self.model.config().vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as u32 >= vocab) {
            return Err(Error::TokenOutOfRange(bad));
        }
        if tokens.len() > self.ctx_len - self.pos {
            return Err(Error::ContextFull);
        }
        Ok(())
    }

    /// Runs the `n` tokens already recorded at positions `pos..pos + n` (`pos + n ≤ ctx_len`)
    /// in blocks of at most `block`.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub(crate) fn run_recorded(&mut self, n: usize) {
        let mut left = n.min(self.ctx_len - self.pos);
        while left > 0 {
            let k = left.min(self.block);
            self.run(k);
            left -= k;
        }
    }

    /// One pass over the `n ≤ block` tokens recorded at `pos..pos + n`. On x86-64 CPUs with
    /// the AVX2 kernels, the whole pass is compiled a second time for x86-64-v3 (AVX2, BMI2,
    /// LZCNT: vectorized norms, one-uop variable shifts and leading-zero counts); the
    /// arithmetic is the same integer code, so the bits are too.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    fn run(&mut self, n: usize) {
        #[cfg(target_arch = "x86_64")]
        match crate::kernels::level() {
            // SAFETY: `level()` reports AVX2 only on CPUs with AVX2, BMI1, BMI2 and LZCNT.
            crate::kernels::Level::Avx2 => return unsafe { self.run_v3(n) },
            // SAFETY: the AVX-512 VNNI level includes AVX-512 F/BW/VL/DQ and the AVX2 level's.
            crate::kernels::Level::Avx512Vnni => return unsafe { self.run_v4(n) },
            _ => {}
        }
        self.run_pass(n)
    }

    /// [`run_pass`](Session::run_pass) compiled with x86-64-v4's integer features (AVX-512
    /// F/BW/VL/DQ: `vpmullq` lets the compiler vectorize the quantizers' 64-bit products).
    ///
    /// # Safety
    /// The CPU must support AVX2, BMI1, BMI2, LZCNT, POPCNT and AVX-512 F, BW, VL, DQ.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt,avx512f,avx512bw,avx512vl,avx512dq")]
    unsafe fn run_v4(&mut self, n: usize) {
        self.run_pass(n)
    }

    /// [`run_pass`](Session::run_pass) compiled with the x86-64-v3 integer features.
    ///
    /// # Safety
    /// The CPU must support AVX2, BMI1, BMI2 and LZCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
    unsafe fn run_v3(&mut self, n: usize) {
        self.run_pass(n)
    }

    /// The forward pass proper (inlined into each compiled variant of [`run`](Session::run)).
    #[inline(always)]
    fn run_pass(&mut self, n: usize) {
        let layers = self.model.config().n_layers as usize;
        self.embed(n);
        for l in 0..layers {
            let w = self.model.layer(l);
            self.attention(&w, l, n);
            self.feed_forward(&w, n);
        }
        self.lm_head(n);
        self.pos += n;
        self.last_n = n;
    }

    /// `x[t] = e_tok · E_q[tok]` (Q3), into Q31.32.
    #[inline(always)]
    fn embed(&mut self, n: usize) {
        let d = self.model.config().d_model as usize;
        for t in 0..n {
            let tok = self.tokens.get(self.pos + t).copied().unwrap_or(0);
            let (row, e) = self.model.embedding_row(tok as usize);
            for (xi, q) in self.x[t * d..(t + 1) * d].iter_mut().zip(row) {
                *xi = mul_round(*q as i64, e, RESID_FRAC_BITS as i32);
            }
        }
    }

    /// `act[t] = Q2(RMSNorm(x[t]; gain))` for each token (rows `stride` apart), scales into
    /// `act_scale`.
    #[cfg_attr(target_arch = "arm", inline(never))]
    #[cfg_attr(not(target_arch = "arm"), inline(always))]
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    fn norm_residual(&mut self, n: usize, gain: Gains<'_>, stride: usize) {
        let d = self.model.config().d_model as usize;
        let eps = self.model.norm_eps();
        for t in 0..n {
            let xs = to_block_i32(&self.x[t * d..(t + 1) * d], RESID_SCALE, &mut self.y[..d]);
            self.act_scale[t] =
                rmsnorm_quantize(&self.y[..d], xs, gain, eps, &mut self.act[t * stride..]);
        }
    }

    /// `x += Wo · Q2(SubNorm(Attention(Q2(RMSNorm(x)))))` for block `l`, every token.
    #[inline(always)]
    fn attention(&mut self, w: &LayerWeights<'_>, l: usize, n: usize) {
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
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    fn project_qkv(&mut self, w: &LayerWeights<'_>, l: usize, n: usize, stride: usize) {
        let (wq, wk, wv) = (&w.wq, &w.wk, &w.wv);
        let shared = n == 1
            && [wq, wk, wv]
                .iter()
                .all(|m| m.encoding == TernaryEncoding::Base3 && m.row_bytes == wq.row_bytes);
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

    /// A gated FFN's up and gate projections of every token (into `y` and `gate`). One token
    /// through base-3 up and gate matrices whose rows fit one table chunk: the two share one set
    /// of lookup tables, built once (as q, k and v do). Not inlined on Arm, for the reason
    /// [`project_qkv`](Session::project_qkv) is not.
    #[cfg_attr(target_arch = "arm", inline(never))]
    #[cfg_attr(not(target_arch = "arm"), inline(always))]
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    fn project_up_gate(
        &mut self,
        w_up: &TernaryMatrix<'_>,
        w_gate: &TernaryMatrix<'_>,
        n: usize,
        stride: usize,
    ) {
        let shared = n == 1
            && [w_up, w_gate]
                .iter()
                .all(|m| m.encoding == TernaryEncoding::Base3 && m.row_bytes == w_up.row_bytes);
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
    fn feed_forward(&mut self, w: &LayerWeights<'_>, n: usize) {
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
                    let k1 = relu_sq_cut(gt, &mut self.wide[..f]);
                    let mut hmax = 0u64;
                    for (h, (r, u)) in self.wide[..f].iter_mut().zip(gt.iter().zip(yt.iter())) {
                        *h = *r as i64 * *u as i64;
                        hmax = hmax.max(h.unsigned_abs());
                    }
                    let k2 = cut_to_i32(&self.wide[..f], hmax, yt);
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

    /// `logits[t]_v = s · e_v · Σ_i h_q,i E_q,vi` (Q4) with the tied int8 head, every token.
    #[inline(always)]
    fn lm_head(&mut self, n: usize) {
        let c = *self.model.config();
        let d = c.d_model as usize;
        let v = c.vocab_size as usize;
        let eps = self.model.norm_eps();
        let rb = int8_row_bytes(c.d_model);
        let emb = self.model.embedding();
        for t in 0..n {
            let xs = to_block_i32(&self.x[t * d..(t + 1) * d], RESID_SCALE, &mut self.y[..d]);
            let s = rmsnorm_quantize(&self.y[..d], xs, self.model.final_norm(), eps, self.act);
            let (Some(h), Some(logits)) =
                (self.act.get(..rb), self.logits.get_mut(t * v..(t + 1) * v))
            else {
                return;
            };
            // |dot| ≤ 2^14 · d < 2^29.
            int8_matvec(emb, rb, h, logits);
            for (logit, e) in logits.iter_mut().zip(self.model.embedding_scales()) {
                let scale = s.mul(e);
                *logit = sat_i32(mul_round(*logit as i64, scale, LOGIT_FRAC_BITS as i32));
            }
        }
    }
}
