//! x86-64 AVX-512 twins of the attention's per-key steps ([`super::super::softmax`]), eight
//! keys per step, built from lane helpers: `dyadic_mul8` (`Dyadic::mul` with the exponent
//! clamp), `exp_weights8` (the integer `exp`), [`shift_round8`] (`mul_round`'s rounding shift).

use core::arch::x86_64::*;

use crate::fixed::{Dyadic, EXP2_NEG_Q30, EXP_CEIL, EXP_FLOOR, LN2_Q30, LOG2E_Q30};

/// Whether the vector `Dyadic::mul` below takes `d`: normalized or zero, exponent within the
/// clamp (every scale the forward pass makes is).
pub(super) fn dyadic_ok(d: Dyadic) -> bool {
    (d.mant == 0 || d.mant >= 1 << 31) && d.exp >= EXP_FLOOR && d.exp <= EXP_CEIL
}

/// [`Dyadic::mul`] of normalized-or-zero operands, eight lanes (mantissas in the low 32 bits,
/// exponents as `i64`): `p = a·b` (`≥ 2^62` when both are nonzero), its top 32 bits rounded
/// half up (a carry to `2^32` renormalizes), then the exponent clamp (below `EXP_FLOOR` zero,
/// above `EXP_CEIL` `(u32::MAX, EXP_CEIL)`). Returns `(mant, exp)`, both zero where the
/// product is zero or `live` is clear.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
fn dyadic_mul8(
    (a_mant, a_exp): (__m512i, __m512i),
    (b_mant, b_exp): (__m512i, __m512i),
    live: __mmask8,
) -> (__m512i, __m512i) {
    let one = _mm512_set1_epi64(1);
    let p = _mm512_mul_epu32(a_mant, b_mant);
    let nz = live & _mm512_test_epi64_mask(p, p);
    let top = _mm512_srli_epi64::<63>(p);
    let sh = _mm512_add_epi64(_mm512_set1_epi64(31), top);
    let rr = _mm512_srli_epi64::<1>(_mm512_add_epi64(
        _mm512_srlv_epi64(p, _mm512_sub_epi64(sh, one)),
        one,
    ));
    let carry = _mm512_srli_epi64::<32>(rr);
    let e = _mm512_add_epi64(_mm512_add_epi64(a_exp, b_exp), _mm512_add_epi64(sh, carry));
    let mant = _mm512_srlv_epi64(rr, carry);
    let under = _mm512_cmplt_epi64_mask(e, _mm512_set1_epi64(EXP_FLOOR as i64));
    let over = _mm512_cmpgt_epi64_mask(e, _mm512_set1_epi64(EXP_CEIL as i64));
    let mant = _mm512_mask_mov_epi64(mant, over, _mm512_set1_epi64(u32::MAX as i64));
    let e = _mm512_mask_mov_epi64(e, over, _mm512_set1_epi64(EXP_CEIL as i64));
    let keep = nz & !under;
    (
        _mm512_maskz_mov_epi64(keep, mant),
        _mm512_maskz_mov_epi64(keep, e),
    )
}

/// The `Dyadic`s at `d[(s0 + i)·nkv]` for the eight lanes `i` (lanes past the end of `d` read
/// its last entry; the callers mask them), split into `(mant, exp)` lanes. Eight scalar loads:
/// cheaper than `vpgatherqq` on the cores measured.
///
/// # Safety
/// AVX-512; `d` not empty.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
unsafe fn gather_dyadics8(d: &[Dyadic], s0: usize, nkv: usize) -> (__m512i, __m512i) {
    let last = d.len() - 1;
    // `Dyadic` is `repr(C)`: mantissa low, exponent high, 4-byte aligned.
    let at = |i: usize| (d.as_ptr().add(((s0 + i) * nkv).min(last)) as *const i64).read_unaligned();
    let v = _mm512_setr_epi64(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7));
    (
        _mm512_and_si512(v, _mm512_set1_epi64(0xFFFF_FFFF)),
        _mm512_srai_epi64::<32>(v),
    )
}

/// The lanes of `live` whose `Dyadic` (as [`gather_dyadics8`] splits it) fails
/// [`dyadic_ok`]: a mantissa neither zero nor normalized, or an exponent outside the clamp.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
fn not_ok8((mant, exp): (__m512i, __m512i), live: __mmask8) -> __mmask8 {
    let ok_mant = _mm512_testn_epi64_mask(mant, mant)
        | _mm512_cmpge_epu64_mask(mant, _mm512_set1_epi64(1 << 31));
    let bad_exp = _mm512_cmplt_epi64_mask(exp, _mm512_set1_epi64(EXP_FLOOR as i64))
        | _mm512_cmpgt_epi64_mask(exp, _mm512_set1_epi64(EXP_CEIL as i64));
    live & (!ok_mant | bad_exp)
}

/// [`exp_neg_q24`](crate::fixed::exp_neg_q24)`(smax − score)` for eight scores (Q30 weights,
/// zero where `live` is clear): `t = z·log2 e` (`vpmullq`), a gathered `2^(−j/64)`, a cubic,
/// per-lane shifts by `n`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
fn exp_weights8(sc: __m512i, smax: i64, live: __mmask8) -> __m512i {
    // exp(-z) is 0 for z ≥ 32 nats (Q24): score ≤ smax − 2^29.
    let thr = _mm512_set1_epi64(smax.saturating_sub(32 << 24));
    let zero_w = _mm512_cmple_epi64_mask(sc, thr) | !live;
    // z = smax − score (< 2^29 where the weight is not zero).
    let z = _mm512_sub_epi64(_mm512_set1_epi64(smax), sc);
    let t = _mm512_srli_epi64::<28>(_mm512_add_epi64(
        _mm512_mullo_epi64(z, _mm512_set1_epi64(LOG2E_Q30)),
        _mm512_set1_epi64(1 << 27),
    ));
    let n = _mm512_srli_epi64::<26>(t);
    let zero_w = zero_w | _mm512_cmpge_epu64_mask(n, _mm512_set1_epi64(31));
    let f = _mm512_and_si512(t, _mm512_set1_epi64((1 << 26) - 1));
    let j = _mm512_srli_epi64::<20>(f);
    let r = _mm512_and_si512(f, _mm512_set1_epi64((1 << 20) - 1));
    let x = _mm512_srai_epi64::<26>(_mm512_mullo_epi64(r, _mm512_set1_epi64(LN2_Q30)));
    let x2 = _mm512_srai_epi64::<30>(_mm512_mullo_epi64(x, x));
    let x3 = _mm512_srai_epi64::<30>(_mm512_mullo_epi64(x2, x));
    // (x3 as u32) / 6 = (x3 · 0xAAAAAAAB) >> 34 for every u32.
    let x3_6 = _mm512_srli_epi64::<34>(_mm512_mul_epu32(x3, _mm512_set1_epi64(0xAAAA_AAAB)));
    let poly = _mm512_sub_epi64(
        _mm512_add_epi64(
            _mm512_sub_epi64(_mm512_set1_epi64(1 << 30), x),
            _mm512_srai_epi64::<1>(x2),
        ),
        x3_6,
    );
    // Lanes with a zero weight may hold any j: read entry 0 there.
    let j = _mm512_maskz_mov_epi64(!zero_w, j);
    // SAFETY: every index is below 64, the table's length.
    let table = _mm512_cvtepu32_epi64(unsafe {
        _mm512_i64gather_epi32::<4>(j, EXP2_NEG_Q30.as_ptr() as *const i32)
    });
    let v = _mm512_srai_epi64::<30>(_mm512_add_epi64(
        _mm512_mullo_epi64(table, poly),
        _mm512_set1_epi64(1 << 29),
    ));
    let one = _mm512_set1_epi64(1);
    let half = _mm512_srli_epi64::<1>(_mm512_sllv_epi64(one, n));
    let wgt = _mm512_srlv_epi64(_mm512_add_epi64(v, half), n);
    _mm512_maskz_mov_epi64(!zero_w, wgt)
}

/// The lane mask of the first `k ≤ 8` lanes.
#[inline(always)]
fn first(k: usize) -> __mmask8 {
    if k >= 8 {
        0xFF
    } else {
        (1u8 << k) - 1
    }
}

/// [`softmax_coefficients_scalar`](super::super::softmax::softmax_coefficients_scalar) eight keys at a
/// time with AVX-512: the integer `exp` (`exp_weights8`), the exact normalization of
/// `from_u64` for weights `≤ 2^30` (`vplzcntq`), `dyadic_mul8` by the value scales, the
/// maximum as one unsigned key per lane. Returns `None` (and touches nothing) unless every
/// value scale read is normalized or zero with an exponent in the clamp range, as the forward
/// pass's always are; the caller then runs the scalar code.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL, DQ and CD.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
pub unsafe fn softmax_coefficients_avx512(
    scores: &mut [i64],
    coef: &mut [i32],
    v_scale: &[Dyadic],
    nkv: usize,
) -> Option<(Option<i32>, u64)> {
    let len = scores.len();
    if len == 0 || coef.len() < len || nkv == 0 || v_scale.len() < (len - 1) * nkv + 1 {
        return None;
    }
    // One pass before anything is written: the largest score, and every value scale checked.
    let mut bad: __mmask8 = 0;
    let mut vmax = _mm512_set1_epi64(i64::MIN);
    for s0 in (0..len).step_by(8) {
        let m = first(len - s0);
        bad |= not_ok8(gather_dyadics8(v_scale, s0, nkv), m);
        let sc = _mm512_mask_loadu_epi64(vmax, m, scores.as_ptr().add(s0));
        vmax = _mm512_max_epi64(vmax, sc);
    }
    if bad != 0 {
        return None;
    }
    let smax = _mm512_reduce_max_epi64(vmax);
    let key_bias = 4096i64; // exponent + bias > 0: nonzero keys beat zero
    let mut wsum = _mm512_setzero_si512();
    let mut kmax = _mm512_setzero_si512();
    for s0 in (0..len).step_by(8) {
        let m = first(len - s0);
        let wgt = exp_weights8(
            _mm512_maskz_loadu_epi64(m, scores.as_ptr().add(s0)),
            smax,
            m,
        );
        wsum = _mm512_add_epi64(wsum, wgt);
        // from_u64(wgt, -30): 0 < wgt ≤ 2^30, so 33+ leading zeros and an exact shift.
        let up = _mm512_sub_epi64(_mm512_lzcnt_epi64(wgt), _mm512_set1_epi64(32));
        let a = (
            _mm512_sllv_epi64(wgt, up),
            _mm512_sub_epi64(_mm512_set1_epi64(-30), up),
        );
        let (mant, e) = dyadic_mul8(a, gather_dyadics8(v_scale, s0, nkv), m);
        // pack_dyadic: exponent high, mantissa low.
        let packed = _mm512_or_si512(_mm512_slli_epi64::<32>(e), mant);
        _mm512_mask_storeu_epi64(scores.as_mut_ptr().add(s0), m, packed);
        let key = _mm512_or_si512(
            _mm512_slli_epi64::<32>(_mm512_add_epi64(e, _mm512_set1_epi64(key_bias))),
            mant,
        );
        let live = _mm512_test_epi64_mask(mant, mant);
        kmax = _mm512_max_epu64(kmax, _mm512_maskz_mov_epi64(live, key));
    }
    let wsum = _mm512_reduce_add_epi64(wsum) as u64;
    let kmax = _mm512_reduce_max_epu64(kmax);
    if kmax == 0 {
        coef[..len].fill(0);
        return Some((None, wsum));
    }
    // Coefficients: round(mant / 2^sh), sh = e − exp_s (≥ 8 for nonzero entries).
    let e = (((kmax >> 32) as i64 - key_bias) as i32).saturating_add(8);
    let one = _mm512_set1_epi64(1);
    for s0 in (0..len).step_by(8) {
        let m = first(len - s0);
        let packed = _mm512_maskz_loadu_epi64(m, scores.as_ptr().add(s0));
        let mant = _mm512_and_si512(packed, _mm512_set1_epi64(0xFFFF_FFFF));
        let sh = _mm512_sub_epi64(_mm512_set1_epi64(e as i64), _mm512_srai_epi64::<32>(packed));
        let live = _mm512_test_epi64_mask(mant, mant)
            & _mm512_cmplt_epi64_mask(sh, _mm512_set1_epi64(40))
            & _mm512_cmpgt_epi64_mask(sh, _mm512_setzero_si512());
        let half = _mm512_sllv_epi64(one, _mm512_sub_epi64(sh, one));
        let c = _mm512_srlv_epi64(_mm512_add_epi64(mant, half), sh);
        let c = _mm512_maskz_mov_epi64(live, c);
        _mm256_mask_storeu_epi32(coef.as_mut_ptr().add(s0), m, _mm512_cvtepi64_epi32(c));
    }
    Some((Some(e), wsum))
}

/// [`attention_scores_scalar`](super::super::softmax::attention_scores_scalar) eight keys at a time
/// with AVX-512: `dyadic_mul8`, then `mul_round` (`vpmullq`, per-lane rounding right shifts
/// or saturating left shifts). Returns `false` unless `q_scale` and every key scale read are
/// normalized or zero with exponents in the clamp range (the key scales are checked as they
/// are read, so `scores` may have been written by then); the caller then runs the scalar
/// code, which writes every score.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL, DQ and CD.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
pub unsafe fn attention_scores_avx512(
    dots: &[i32],
    q_scale: Dyadic,
    k_scale: &[Dyadic],
    nkv: usize,
    scores: &mut [i64],
) -> bool {
    let len = scores.len();
    if len == 0 || dots.len() < len || nkv == 0 || k_scale.len() < (len - 1) * nkv + 1 {
        return false;
    }
    if !dyadic_ok(q_scale) {
        return false;
    }
    let mut bad: __mmask8 = 0;
    let q = (
        _mm512_set1_epi64(q_scale.mant as i64),
        _mm512_set1_epi64(q_scale.exp as i64),
    );
    for s0 in (0..len).step_by(8) {
        let m = first(len - s0);
        let k_s = gather_dyadics8(k_scale, s0, nkv);
        bad |= not_ok8(k_s, m);
        let (mant, e) = dyadic_mul8(q, k_s, m);
        // mul_round(dot, d, 24): x · mant (|·| < 2^63), then shift_round by exp + 24.
        let dot = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(m, dots.as_ptr().add(s0)));
        let out = shift_round8(
            _mm512_mullo_epi64(dot, mant),
            _mm512_add_epi64(e, _mm512_set1_epi64(24)),
        );
        _mm512_mask_storeu_epi64(scores.as_mut_ptr().add(s0), m, out);
    }
    bad == 0
}

/// [`shift_round`](crate::fixed::shift_round)`(x, sh)` on eight lanes: right shifts round half
/// up, left shifts saturate at `±2^62`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512cd")]
fn shift_round8(x: __m512i, sh: __m512i) -> __m512i {
    let one = _mm512_set1_epi64(1);
    let limit = _mm512_set1_epi64(1 << 62);
    let left = _mm512_cmpge_epi64_mask(sh, _mm512_setzero_si512());
    // Left: 0 stays 0; saturate when sh ≥ 62 or the shift would reach bit 62.
    let lz = _mm512_lzcnt_epi64(_mm512_abs_epi64(x));
    let sat = _mm512_cmpge_epi64_mask(sh, _mm512_set1_epi64(62))
        | _mm512_cmple_epi64_mask(lz, _mm512_add_epi64(sh, one));
    let neg = _mm512_cmplt_epi64_mask(x, _mm512_setzero_si512());
    let satv = _mm512_mask_sub_epi64(limit, neg, _mm512_setzero_si512(), limit);
    let lv = _mm512_mask_mov_epi64(_mm512_sllv_epi64(x, sh), sat, satv);
    let lv = _mm512_maskz_mov_epi64(_mm512_test_epi64_mask(x, x), lv);
    // Right: r = −sh; r ≥ 64 gives 0, else (x >> r) + ((x >> (r − 1)) & 1).
    let r = _mm512_sub_epi64(_mm512_setzero_si512(), sh);
    let far = _mm512_cmpge_epi64_mask(r, _mm512_set1_epi64(64));
    let rv = _mm512_add_epi64(
        _mm512_srav_epi64(x, r),
        _mm512_and_si512(_mm512_srav_epi64(x, _mm512_sub_epi64(r, one)), one),
    );
    let rv = _mm512_maskz_mov_epi64(!far, rv);
    _mm512_mask_mov_epi64(rv, left, lv)
}
