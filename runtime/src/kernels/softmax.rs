//! The attention's per-key steps for one head: scores from dot products
//! ([`attention_scores_scalar`]), and the softmax step, scores in, value coefficients out
//! ([`softmax_coefficients_scalar`]). Each has its scalar definition and a dispatching entry
//! point (on x86-64 an AVX-512 twin at the VNNI level, eight keys per step, and an AVX2 twin at
//! the AVX2 level, four keys per step; 32-bit Arm runs the twins of
//! [`softmax32`](super::softmax32), written in 32-bit arithmetic; every other target runs the
//! scalar code). All return the same bits (tested in the shared suite).

use crate::fixed::{exp_neg_q24, gt_normalized, mul_round, pack_dyadic, unpack_dyadic, Dyadic};

/// `scores[s] = round(dots[s] · q_scale · k_scale[s·nkv] · 2^24)` (Q24 nats), saturating at
/// `±2^62`: the attention scores of one head from its int8 dot products. The scalar definition.
#[inline(always)]
pub fn attention_scores_scalar(
    dots: &[i32],
    q_scale: Dyadic,
    k_scale: &[Dyadic],
    nkv: usize,
    scores: &mut [i64],
) {
    for (s, (score, dot)) in scores.iter_mut().zip(dots).enumerate() {
        let ks = k_scale.get(s * nkv).copied().unwrap_or(Dyadic::ZERO);
        *score = mul_round(*dot as i64, q_scale.mul(ks), 24);
    }
}

/// Same contract as [`attention_scores_scalar`], at the current kernel level.
#[inline]
pub fn attention_scores(
    dots: &[i32],
    q_scale: Dyadic,
    k_scale: &[Dyadic],
    nkv: usize,
    scores: &mut [i64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::x86_64 as x;
        let done = match super::level() {
            // SAFETY: the VNNI level includes AVX-512 F/BW/VL/DQ/CD.
            super::Level::Avx512Vnni => unsafe {
                x::attention_scores_avx512(dots, q_scale, k_scale, nkv, scores)
            },
            // SAFETY: the AVX2 and AVX-VNNI levels are only reported on CPUs with AVX2.
            super::Level::Avx2 | super::Level::AvxVnni => unsafe {
                x::attention_scores_avx2(dots, q_scale, k_scale, nkv, scores)
            },
            _ => false,
        };
        if done {
            return;
        }
    }
    #[cfg(target_arch = "arm")]
    return super::softmax32::attention_scores_32(dots, q_scale, k_scale, nkv, scores);
    #[cfg(not(target_arch = "arm"))]
    attention_scores_scalar(dots, q_scale, k_scale, nkv, scores)
}

/// Same contract as [`softmax_coefficients_scalar`], at the current kernel level.
#[inline]
pub fn softmax_coefficients(
    scores: &mut [i64],
    coef: &mut [i32],
    v_scale: &[Dyadic],
    nkv: usize,
) -> (Option<i32>, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::x86_64 as x;
        let done = match super::level() {
            // SAFETY: the VNNI level includes AVX-512 F/BW/VL/DQ/CD.
            super::Level::Avx512Vnni => unsafe {
                x::softmax_coefficients_avx512(scores, coef, v_scale, nkv)
            },
            // SAFETY: the AVX2 and AVX-VNNI levels are only reported on CPUs with AVX2.
            super::Level::Avx2 | super::Level::AvxVnni => unsafe {
                x::softmax_coefficients_avx2(scores, coef, v_scale, nkv)
            },
            _ => None,
        };
        if let Some(r) = done {
            return r;
        }
    }
    #[cfg(target_arch = "arm")]
    return super::softmax32::softmax_coefficients_32(scores, coef, v_scale, nkv);
    #[cfg(not(target_arch = "arm"))]
    softmax_coefficients_scalar(scores, coef, v_scale, nkv)
}

/// Softmax weights of one head turned into value coefficients: returns `(e, Σw)` such that
/// `c_s · 2^e ≈ w_s · v_scale_s` with `c_s < 2^24` in `coef[s]`, and `Σw` the weights' sum in
/// Q30; `e = None` when every coefficient is zero.
///
/// `scores [p+1]` holds Q24 nats on entry (clobbered), `v_scale` the value scales of the
/// head's positions `0..=p` (`v_scale[s · nkv]`).
#[inline(always)]
pub fn softmax_coefficients_scalar(
    scores: &mut [i64],
    coef: &mut [i32],
    v_scale: &[Dyadic],
    nkv: usize,
) -> (Option<i32>, u64) {
    let smax = scores.iter().copied().max().unwrap_or(0);
    // Softmax weights w_s = exp(score_s − max) in Q30 (the maximum gets 2^30).
    // c_s = w_s · v_scale_s replaces score_s in `scores` (packed, see `pack_dyadic`).
    let mut wsum = 0u64; // ≤ T · 2^30 < 2^46
    let mut cmax = Dyadic::ZERO;
    for (s, score) in scores.iter_mut().enumerate() {
        let wgt = exp_neg_q24(smax.saturating_sub(*score) as u64);
        wsum += wgt as u64;
        let vs = v_scale.get(s * nkv).copied().unwrap_or(Dyadic::ZERO);
        let cs = Dyadic::from_u64(wgt as u64, -30).mul(vs);
        if gt_normalized(cs, cmax) {
            cmax = cs;
        }
        *score = pack_dyadic(cs);
    }
    // Coefficients c_s = w_s · v_scale_s as integers in units of 2^e (< 2^24).
    let e = cmax.exp.saturating_add(8);
    for (c, packed) in coef.iter_mut().zip(scores.iter()) {
        let cs = unpack_dyadic(*packed);
        let sh = e.saturating_sub(cs.exp);
        *c = if cs.is_zero() || sh >= 40 {
            0
        } else {
            ((cs.mant as u64 + (1u64 << (sh - 1))) >> sh) as i32
        };
    }
    (if cmax.is_zero() { None } else { Some(e) }, wsum)
}
