//! The forward pass (docs/MODEL.md), integers only, over a block of `n` tokens at positions
//! `pos..pos + n` (`n = 1` when decoding). Reads top to bottom like llama2.c's `forward()`:
//! embedding, then per block attention and feed-forward, then the final norm and the LM head.
//!
//! Every matrix multiplies the whole block at once ([`ternary_matmul`]: each weight is read
//! once per block); everything between the matrices runs token by token with exactly the
//! arithmetic of a one-token pass, so a block's logits and KV cache are bit-identical to
//! feeding its tokens one at a time (tested in `runtime/tests/prefill.rs`).

use super::norm::{rmsnorm_quantize, to_block_i32};
use crate::blob::format::{int8_row_bytes, TernaryEncoding, LOGIT_FRAC_BITS, RESID_FRAC_BITS};
use crate::blob::model::{Gains, TernaryMatrix};
use crate::error::Error;
use crate::fixed::{mul_round, sat_i32, Dyadic};
use crate::kernels::lut::Tables5;
use crate::kernels::{
    int8_matvec, ternary5_matmul, ternary5_matvec, ternary_matmul, ternary_matmul_tiled,
    ternary_matvec, ternary_matvec_tiled,
};
use crate::pass::session::Session;

/// Real value of one unit of the residual stream: `2^-32`.
pub(super) const RESID_SCALE: Dyadic = Dyadic::pow2(-(RESID_FRAC_BITS as i32));

/// Residual values saturate at `±2^62` (`±2^30` in real units), far beyond any trained model.
const RESID_LIMIT: i64 = 1 << 62;

/// `Y[t] = W · act[t]` for `t < n`. Shapes: `act [n][stride]` (each token's first
/// `w.input_len()` entries, which may run up to 4 entries into the next token's or the
/// region's slack, are the matrix input), `y [n][rows]`. The hot loop. Out of line on Arm
/// (7 call sites per layer: inlined, they made the RAM-resident pass 64 KiB of code).
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(target_arch = "arm", inline(never))]
// One-core pass only: with `workers` (two-core boards) every pass is the split pass, and
// this stays in flash.
#[cfg_attr(
    all(feature = "ram-code", not(feature = "workers")),
    link_section = ".data.runtime.hot"
)]
pub(super) fn matmul(
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
    // The row-tiled copy, where the level's kernels read it (x86-64 SIMD) and the model has it.
    if let Some(t) = w.tiled_kernel().filter(|t| t.cols() == stride) {
        match act.get(..n * stride) {
            Some(x) if n == 1 => ternary_matvec_tiled(&t, x, out),
            Some(x) => ternary_matmul_tiled(&t, x, out),
            None => {}
        }
        return;
    }
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
pub(super) fn project(
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

/// `x[i] += round(y[i] · scale · 2^32)`, saturating at `±2^62` (the residual update).
#[inline(always)]
pub(super) fn residual_add(x: &mut [i64], y: &[i32], scale: Dyadic) {
    if cfg!(target_arch = "arm") && residual_add_32(x, y, scale) {
        return;
    }
    for (xi, yi) in x.iter_mut().zip(y) {
        let dx = mul_round(*yi as i64, scale, RESID_FRAC_BITS as i32); // |dx| ≤ 2^62
        *xi = xi.saturating_add(dx).clamp(-RESID_LIMIT, RESID_LIMIT);
    }
}

/// [`residual_add`] in 32-bit operations, for 32-bit Arm: the same bits (tested), when the
/// scale shifts right (always, in practice); `false`, with nothing done, otherwise. The
/// rounding shift [`mul_round`] makes per element is split into its two cases once per vector
/// (a shift by fewer than 32 bits, or a shift of the high word), and the saturation and clamp
/// are one test of the sum's high word, the exact code running only when it fails.
#[inline(always)]
fn residual_add_32(x: &mut [i64], y: &[i32], scale: Dyadic) -> bool {
    let sh = scale.exp.saturating_add(RESID_FRAC_BITS as i32);
    if !(-63..=-1).contains(&sh) {
        return false;
    }
    // mul_round: p = y · mant, then ((p >> (r − 1)) + 1) >> 1 with r = −sh.
    let r1 = sh.unsigned_abs() - 1;
    let mant = scale.mant;
    let update = |xi: &mut i64, dx: i64| {
        let s = xi.wrapping_add(dx);
        // |x|, |dx| ≤ 2^62: a high word in [−2^30, 2^30) means no overflow and no clamp.
        if ((s >> 32) as i32).wrapping_add(1 << 30) >= 0 {
            *xi = s;
        } else {
            *xi = xi.saturating_add(dx).clamp(-RESID_LIMIT, RESID_LIMIT);
        }
    };
    if r1 >= 32 {
        for (xi, yi) in x.iter_mut().zip(y) {
            let p = *yi as i64 * mant as i64;
            let q = ((p >> 32) as i32) >> (r1 - 32);
            update(xi, ((q >> 1) + (q & 1)) as i64);
        }
    } else {
        for (xi, yi) in x.iter_mut().zip(y) {
            let p = *yi as i64 * mant as i64;
            let (hi, lo) = ((p >> 32) as i32, p as u32);
            // p >> r1 in two words; r1 = 0: wrapping_shl(32) shifts by 0 and the OR keeps lo.
            let q_lo = (lo >> r1)
                | (hi as u32).wrapping_shl(32 - r1) & (((r1 != 0) as u32).wrapping_neg());
            let q = ((hi >> r1) as i64) << 32 | q_lo as i64;
            update(xi, (q + 1) >> 1);
        }
    }
    true
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
    // One-core pass only: with `workers` (two-core boards) every pass is the split pass, and
    // this stays in flash.
    #[cfg_attr(
        all(feature = "ram-code", not(feature = "workers")),
        link_section = ".data.runtime.hot"
    )]
    fn run(&mut self, n: usize) {
        #[cfg(feature = "workers")]
        if self.split.is_some() {
            return self.run_split(n);
        }
        #[cfg(target_arch = "x86_64")]
        match crate::kernels::level() {
            // SAFETY: `level()` reports AVX2 and AVX-VNNI only on CPUs with AVX2, BMI1, BMI2
            // and LZCNT.
            crate::kernels::Level::Avx2 | crate::kernels::Level::AvxVnni => {
                return unsafe { self.run_v3(n) }
            }
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
    // One-core pass only: with `workers` (two-core boards) every pass is the split pass, and
    // this stays in flash.
    #[cfg_attr(
        all(feature = "ram-code", not(feature = "workers")),
        link_section = ".data.runtime.hot"
    )]
    pub(super) fn norm_residual(&mut self, n: usize, gain: Gains<'_>, stride: usize) {
        let d = self.model.config().d_model as usize;
        let eps = self.model.norm_eps();
        for t in 0..n {
            let xs = to_block_i32(&self.x[t * d..(t + 1) * d], RESID_SCALE, &mut self.y[..d]);
            self.act_scale[t] =
                rmsnorm_quantize(&self.y[..d], xs, gain, eps, &mut self.act[t * stride..]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_add_32_equals_the_definition() {
        let mut rng = crate::rng::SplitMix64(0x5DEE_CE66_D1CE_4E5B);
        let mut next = move || rng.next_u64();
        let mut taken = 0;
        for case in 0..4000 {
            let n = 1 + (next() % 40) as usize;
            let x: std::vec::Vec<i64> = (0..n)
                .map(|_| match next() % 10 {
                    0 => RESID_LIMIT,
                    1 => -RESID_LIMIT,
                    2 => RESID_LIMIT - (next() % 1000) as i64,
                    _ => (next() as i64) >> (1 + next() % 63),
                })
                .collect();
            let y: std::vec::Vec<i32> = (0..n)
                .map(|_| match next() % 8 {
                    0 => i32::MAX,
                    1 => i32::MIN,
                    _ => (next() as i32) >> (next() % 32),
                })
                .collect();
            let scale = Dyadic {
                mant: (next() as u32) | if case % 5 == 0 { 0 } else { 1 << 31 },
                exp: (next() % 120) as i32 - 100,
            };
            let mut want = x.clone();
            for (xi, yi) in want.iter_mut().zip(&y) {
                let dx = mul_round(*yi as i64, scale, RESID_FRAC_BITS as i32);
                *xi = xi.saturating_add(dx).clamp(-RESID_LIMIT, RESID_LIMIT);
            }
            let mut got = x.clone();
            if residual_add_32(&mut got, &y, scale) {
                taken += 1;
                assert_eq!(got, want, "{x:?} + {y:?} · {scale:?}");
            }
        }
        assert!(taken > 1500, "{taken} of 4000 cases shift right");
    }
}
