//! x86-64 AVX2 twins of the attention's per-key steps ([`super::super::softmax`]), four keys
//! per step in `i64` lanes. AVX2 lacks what the AVX-512 twins lean on (64-bit multiplies,
//! leading-zero counts, arithmetic variable shifts, unsigned 64-bit compares), so:
//!
//! - every product here has operands below `2^32` (`vpmuludq`), signed ones multiply their
//!   magnitudes and put the sign back;
//! - the normalization of a weight `≤ 2^30` is a five-step binary search (shift by 16, 8, 4, 2,
//!   1 where the top bits are clear);
//! - an arithmetic right shift is `((x ⊕ s) >> r) ⊕ s` with `s` the sign mask;
//! - the maximum key is taken with signed compares (the keys are below `2^63`);
//! - table entries and scales are four scalar loads rather than `vpgather*` (30% faster
//!   scores on the Zen 4 core measured);
//! - whole groups of four keys are plain loads and stores, only the last group's are masked
//!   (`vpmaskmov` stores cost many times a plain store on AMD cores: 15% of the scores step
//!   and 13% of the softmax step on the Zen 4 core measured).

use core::arch::x86_64::*;

use super::attention::dyadic_ok;
use crate::fixed::{Dyadic, EXP2_NEG_Q30, EXP_CEIL, EXP_FLOOR, LN2_Q30, LOG2E_Q30};

/// `a > b` for `i64` lanes, as a lane mask.
#[inline]
#[target_feature(enable = "avx2")]
fn gt(a: __m256i, b: __m256i) -> __m256i {
    _mm256_cmpgt_epi64(a, b)
}

/// `v` where `m` is set, 0 elsewhere.
#[inline]
#[target_feature(enable = "avx2")]
fn keep(m: __m256i, v: __m256i) -> __m256i {
    _mm256_and_si256(m, v)
}

/// The lane mask of the first `k ≤ 4` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn first(k: usize) -> __m256i {
    let k = k.min(4) as i64;
    gt(_mm256_set1_epi64x(k), _mm256_setr_epi64x(0, 1, 2, 3))
}

/// Lanes `0..k` of the four `i64` at `p` (`k = min(4, keys left)`, `m` = [`first`]`(k)`):
/// one plain load for a whole group, a masked one for the last (lanes past it read 0).
///
/// # Safety
/// AVX2; `p` valid for reads of `min(k, 4)` `i64`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load4(p: *const i64, k: usize, m: __m256i) -> __m256i {
    if k >= 4 {
        _mm256_loadu_si256(p as *const __m256i)
    } else {
        _mm256_maskload_epi64(p, m)
    }
}

/// Stores lanes `0..k` of `v` at `p` (as [`load4`]).
///
/// # Safety
/// AVX2; `p` valid for writes of `min(k, 4)` `i64`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store4(p: *mut i64, k: usize, m: __m256i, v: __m256i) {
    if k >= 4 {
        _mm256_storeu_si256(p as *mut __m256i, v)
    } else {
        _mm256_maskstore_epi64(p, m, v)
    }
}

/// [`Dyadic::mul`] of normalized-or-zero operands, four lanes (mantissas in the low 32 bits,
/// exponents as `i64`), with the exponent clamp: the AVX2 form of the AVX-512 twins'
/// `dyadic_mul8`. Returns `(mant, exp)`, both zero where the product is zero.
#[inline]
#[target_feature(enable = "avx2")]
fn dyadic_mul4(
    (a_mant, a_exp): (__m256i, __m256i),
    (b_mant, b_exp): (__m256i, __m256i),
) -> (__m256i, __m256i) {
    let zero = _mm256_setzero_si256();
    let one = _mm256_set1_epi64x(1);
    let p = _mm256_mul_epu32(a_mant, b_mant);
    let top = _mm256_srli_epi64::<63>(p);
    let rr = _mm256_srli_epi64::<1>(_mm256_add_epi64(
        _mm256_srlv_epi64(p, _mm256_add_epi64(_mm256_set1_epi64x(30), top)),
        one,
    ));
    let carry = _mm256_srli_epi64::<32>(rr);
    let sh = _mm256_add_epi64(_mm256_set1_epi64x(31), top);
    let e = _mm256_add_epi64(_mm256_add_epi64(a_exp, b_exp), _mm256_add_epi64(sh, carry));
    let mant = _mm256_srlv_epi64(rr, carry);
    let under = gt(_mm256_set1_epi64x(EXP_FLOOR as i64), e);
    let over = gt(e, _mm256_set1_epi64x(EXP_CEIL as i64));
    let mant = _mm256_blendv_epi8(mant, _mm256_set1_epi64x(u32::MAX as i64), over);
    let e = _mm256_blendv_epi8(e, _mm256_set1_epi64x(EXP_CEIL as i64), over);
    let live = _mm256_andnot_si256(_mm256_or_si256(under, _mm256_cmpeq_epi64(p, zero)), {
        _mm256_set1_epi64x(-1)
    });
    (keep(live, mant), keep(live, e))
}

/// The `Dyadic`s at `d[(s0 + i)·nkv]` for the four lanes `i` as they lie in memory (mantissa
/// in the low 32 bits, exponent in the high 32; lanes past the end of `d` read its last entry:
/// their products are masked away by the callers). Four scalar loads: cheaper than
/// `vpgatherqq` on the cores measured.
///
/// # Safety
/// AVX2; `d` not empty.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_dyadics4(d: &[Dyadic], s0: usize, nkv: usize) -> __m256i {
    let last = d.len() - 1;
    // `Dyadic` is `repr(C)`: mantissa low, exponent high, 4-byte aligned.
    let at = |i: usize| {
        let p = d.as_ptr().add(((s0 + i) * nkv).min(last)) as *const i64;
        p.read_unaligned()
    };
    _mm256_setr_epi64x(at(0), at(1), at(2), at(3))
}

/// [`load_dyadics4`]'s lanes split into `(mant, exp)` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn split_dyadics4(v: __m256i) -> (__m256i, __m256i) {
    let exp = _mm256_or_si256(
        _mm256_srli_epi64::<32>(v),
        // Sign-extend the exponent: the high word's sign, spread over the high half.
        _mm256_and_si256(gt(_mm256_setzero_si256(), v), _mm256_set1_epi64x(-1 << 32)),
    );
    (_mm256_and_si256(v, _mm256_set1_epi64x(0xFFFF_FFFF)), exp)
}

/// The lanes of [`load_dyadics4`] whose `Dyadic` fails [`dyadic_ok`] (a mantissa neither zero
/// nor normalized, or an exponent outside the clamp), tested without splitting them: with
/// `v = exp·2^32 + mant` (`0 ≤ mant < 2^32`), `exp ≥ EXP_FLOOR` is `v ≥ EXP_FLOOR·2^32` and
/// `exp ≤ EXP_CEIL` is `v < (EXP_CEIL + 1)·2^32`.
#[inline]
#[target_feature(enable = "avx2")]
fn not_ok4(v: __m256i) -> __m256i {
    let mant = _mm256_and_si256(v, _mm256_set1_epi64x(0xFFFF_FFFF));
    let ok_mant = _mm256_or_si256(
        gt(mant, _mm256_set1_epi64x(0x7FFF_FFFF)),
        _mm256_cmpeq_epi64(mant, _mm256_setzero_si256()),
    );
    let bad_exp = _mm256_or_si256(
        gt(_mm256_set1_epi64x((EXP_FLOOR as i64) << 32), v),
        gt(
            v,
            _mm256_set1_epi64x(((EXP_CEIL as i64) << 32) | 0xFFFF_FFFF),
        ),
    );
    _mm256_or_si256(
        _mm256_andnot_si256(ok_mant, _mm256_set1_epi64x(-1)),
        bad_exp,
    )
}

/// [`exp_neg_q24`](crate::fixed::exp_neg_q24)`(smax − score)` for four scores (Q30 weights,
/// zero where `live` is clear). Every product has operands below `2^32` where the weight is
/// not zero (`z < 2^29`, `r < 2^20`, `x < 2^24`, `table, poly ≤ 2^30`); other lanes compute
/// garbage that is masked away.
#[inline]
#[target_feature(enable = "avx2")]
fn exp_weights4(sc: __m256i, smax: i64, live: __m256i) -> __m256i {
    // exp(-z) is 0 for z ≥ 32 nats (Q24): score ≤ smax − 2^29.
    let thr = _mm256_set1_epi64x(smax.saturating_sub(32 << 24));
    let z = _mm256_sub_epi64(_mm256_set1_epi64x(smax), sc);
    let t = _mm256_srli_epi64::<28>(_mm256_add_epi64(
        _mm256_mul_epu32(z, _mm256_set1_epi64x(LOG2E_Q30)),
        _mm256_set1_epi64x(1 << 27),
    ));
    let n = _mm256_srli_epi64::<26>(t);
    let nonzero = _mm256_and_si256(
        _mm256_and_si256(live, gt(sc, thr)),
        gt(_mm256_set1_epi64x(31), n),
    );
    let f = _mm256_and_si256(t, _mm256_set1_epi64x((1 << 26) - 1));
    let j = keep(nonzero, _mm256_srli_epi64::<20>(f));
    let r = _mm256_and_si256(f, _mm256_set1_epi64x((1 << 20) - 1));
    let x = _mm256_srli_epi64::<26>(_mm256_mul_epu32(r, _mm256_set1_epi64x(LN2_Q30)));
    let x2 = _mm256_srli_epi64::<30>(_mm256_mul_epu32(x, x));
    let x3 = _mm256_srli_epi64::<30>(_mm256_mul_epu32(x2, x));
    // (x3 as u32) / 6 = (x3 · 0xAAAAAAAB) >> 34 for every u32.
    let x3_6 = _mm256_srli_epi64::<34>(_mm256_mul_epu32(x3, _mm256_set1_epi64x(0xAAAA_AAAB)));
    let poly = _mm256_sub_epi64(
        _mm256_add_epi64(
            _mm256_sub_epi64(_mm256_set1_epi64x(1 << 30), x),
            _mm256_srli_epi64::<1>(x2),
        ),
        x3_6,
    );
    // Four table loads (every index is below 64, the table's length; masked lanes read 0),
    // the indices taken out of the register (a vector store and scalar reloads of it stall
    // on store forwarding).
    let (lo, hi) = (_mm256_castsi256_si128(j), _mm256_extracti128_si256::<1>(j));
    let t = |v: i64| EXP2_NEG_Q30[(v & 63) as usize] as i64;
    let table = _mm256_setr_epi64x(
        t(_mm_cvtsi128_si64(lo)),
        t(_mm_extract_epi64::<1>(lo)),
        t(_mm_cvtsi128_si64(hi)),
        t(_mm_extract_epi64::<1>(hi)),
    );
    let v = _mm256_srli_epi64::<30>(_mm256_add_epi64(
        _mm256_mul_epu32(table, poly),
        _mm256_set1_epi64x(1 << 29),
    ));
    let half = _mm256_srli_epi64::<1>(_mm256_sllv_epi64(_mm256_set1_epi64x(1), n));
    keep(nonzero, _mm256_srlv_epi64(_mm256_add_epi64(v, half), n))
}

/// `Dyadic::from_u64(w, −30)` for weights `w ≤ 2^30` (zero stays zero): `w` shifted left until
/// bit 31 is set. The shift comes from the exponent of `w` converted to `f64` (exact for every
/// `i32`): `⌊log2 w⌋ = E − 1023`, so the shift is `1054 − E` (for `w = 0`, `E = 0` and the
/// shift of 1054 leaves 0). Returns `(mant, exp)`.
#[inline]
#[target_feature(enable = "avx2")]
fn normalize_weights4(w: __m256i) -> (__m256i, __m256i) {
    let low = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    let f = _mm256_castpd_si256(_mm256_cvtepi32_pd(_mm256_castsi256_si128(low)));
    let biased = _mm256_srli_epi64::<52>(f);
    let u = _mm256_sllv_epi64(w, _mm256_sub_epi64(_mm256_set1_epi64x(1054), biased));
    let nz = _mm256_andnot_si256(
        _mm256_cmpeq_epi64(w, _mm256_setzero_si256()),
        _mm256_set1_epi64x(-1),
    );
    (
        u,
        keep(nz, _mm256_sub_epi64(biased, _mm256_set1_epi64x(1084))),
    )
}

/// The four `i64` lanes of `v` summed.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i64(v: __m256i) -> i64 {
    let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    _mm_cvtsi128_si64(_mm_add_epi64(s, _mm_unpackhi_epi64(s, s)))
}

/// The largest of the four `i64` lanes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn hmax_i64(v: __m256i) -> i64 {
    let mut lanes = [0i64; 4];
    // SAFETY: a 32-byte store into a 32-byte array.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v) };
    lanes.into_iter().max().unwrap_or(0)
}

/// [`softmax_coefficients_scalar`](super::super::softmax::softmax_coefficients_scalar) four keys at
/// a time with AVX2 (`exp_weights4`, `normalize_weights4`, `dyadic_mul4` by the value
/// scales, the maximum as one key per lane). Returns `None` (and touches nothing) unless every
/// value scale read is normalized or zero with an exponent in the clamp range, as the forward
/// pass's always are; the caller then runs the scalar code.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn softmax_coefficients_avx2(
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
    let mut bad = _mm256_setzero_si256();
    let mut vmax = _mm256_set1_epi64x(i64::MIN);
    for s0 in (0..len).step_by(4) {
        let m = first(len - s0);
        bad = _mm256_or_si256(bad, not_ok4(load_dyadics4(v_scale, s0, nkv)));
        let sc = _mm256_blendv_epi8(
            _mm256_set1_epi64x(i64::MIN),
            load4(scores.as_ptr().add(s0), len - s0, m),
            m,
        );
        vmax = _mm256_blendv_epi8(vmax, sc, gt(sc, vmax));
    }
    if _mm256_testz_si256(bad, bad) == 0 {
        return None;
    }
    let smax = hmax_i64(vmax);
    let key_bias = 4096i64; // exponent + bias > 0: nonzero keys beat zero
    let mut wsum = _mm256_setzero_si256();
    let mut kmax = _mm256_setzero_si256();
    for s0 in (0..len).step_by(4) {
        let m = first(len - s0);
        let p = scores.as_mut_ptr().add(s0);
        let wgt = exp_weights4(load4(p, len - s0, m), smax, m);
        wsum = _mm256_add_epi64(wsum, wgt);
        let (mant, e) = dyadic_mul4(
            normalize_weights4(wgt),
            split_dyadics4(load_dyadics4(v_scale, s0, nkv)),
        );
        // pack_dyadic: exponent high, mantissa low.
        store4(
            p,
            len - s0,
            m,
            _mm256_or_si256(_mm256_slli_epi64::<32>(e), mant),
        );
        let biased = _mm256_add_epi64(e, _mm256_set1_epi64x(key_bias));
        let live = gt(mant, _mm256_setzero_si256());
        let key = keep(live, _mm256_or_si256(_mm256_slli_epi64::<32>(biased), mant));
        kmax = _mm256_blendv_epi8(kmax, key, gt(key, kmax));
    }
    let wsum = hsum_i64(wsum) as u64;
    let kmax = hmax_i64(kmax);
    if kmax == 0 {
        coef[..len].fill(0);
        return Some((None, wsum));
    }
    // Coefficients: round(mant / 2^sh), sh = e − exp_s (≥ 8 for nonzero entries).
    let e = (((kmax >> 32) - key_bias) as i32).saturating_add(8);
    coefficients4(scores, coef, e);
    Some((Some(e), wsum))
}

/// `coef[s] = round(mant_s / 2^(e − exp_s))` from the packed products in `scores` (0 for a
/// zero product or a shift of 40 or more).
///
/// # Safety
/// AVX2; `coef` at least as long as `scores`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn coefficients4(scores: &[i64], coef: &mut [i32], e: i32) {
    let one = _mm256_set1_epi64x(1);
    let even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    for s0 in (0..scores.len()).step_by(4) {
        let k = scores.len() - s0;
        let m = first(k);
        let packed = load4(scores.as_ptr().add(s0), k, m);
        let mant = _mm256_and_si256(packed, _mm256_set1_epi64x(0xFFFF_FFFF));
        // Exponents are within the clamp: the logical shift's high bits do not matter below.
        let exp = _mm256_srli_epi64::<32>(packed);
        let exp = _mm256_sub_epi64(
            _mm256_xor_si256(exp, _mm256_set1_epi64x(1 << 31)),
            _mm256_set1_epi64x(1 << 31),
        );
        let sh = _mm256_sub_epi64(_mm256_set1_epi64x(e as i64), exp);
        let live = _mm256_and_si256(
            _mm256_and_si256(
                gt(mant, _mm256_setzero_si256()),
                gt(_mm256_set1_epi64x(40), sh),
            ),
            gt(sh, _mm256_setzero_si256()),
        );
        let half = _mm256_sllv_epi64(one, _mm256_sub_epi64(sh, one));
        let c = keep(live, _mm256_srlv_epi64(_mm256_add_epi64(mant, half), sh));
        let c = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(c, even));
        if k >= 4 {
            _mm_storeu_si128(coef.as_mut_ptr().add(s0) as *mut __m128i, c);
        } else {
            let mask = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(m, even));
            _mm_maskstore_epi32(coef.as_mut_ptr().add(s0), mask, c);
        }
    }
}

/// [`attention_scores_scalar`](super::super::softmax::attention_scores_scalar) four keys at a time
/// with AVX2: `dyadic_mul4`, then `mul_round` (`shift_round4` of `dot · mant`). Returns
/// `false` unless `q_scale` and every key scale read are normalized or zero with exponents in
/// the clamp range (the key scales are checked as they are read, so `scores` may have been
/// written by then); the caller then runs the scalar code, which writes every score.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn attention_scores_avx2(
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
    let mut bad = _mm256_setzero_si256();
    let q = (
        _mm256_set1_epi64x(q_scale.mant as i64),
        _mm256_set1_epi64x(q_scale.exp as i64),
    );
    let zero = _mm256_setzero_si256();
    for s0 in (0..len).step_by(4) {
        let k = len - s0;
        let m = first(k);
        let packed = load_dyadics4(k_scale, s0, nkv);
        bad = _mm256_or_si256(bad, not_ok4(packed));
        let k_s = split_dyadics4(packed);
        let (mant, e) = dyadic_mul4(q, k_s);
        let dm = if k >= 4 {
            _mm_loadu_si128(dots.as_ptr().add(s0) as *const __m128i)
        } else {
            _mm_maskload_epi32(
                dots.as_ptr().add(s0),
                _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(
                    m,
                    _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6),
                )),
            )
        };
        // x = dot · mant (|x| < 2^61): the magnitudes multiplied, the sign put back.
        let dot = _mm256_cvtepi32_epi64(dm);
        let neg = gt(zero, dot);
        let ax = _mm256_mul_epu32(_mm256_abs_epi32(dot), mant);
        let x = _mm256_sub_epi64(_mm256_xor_si256(ax, neg), neg);
        let out = shift_round4(x, ax, _mm256_add_epi64(e, _mm256_set1_epi64x(24)));
        store4(scores.as_mut_ptr().add(s0), k, m, out);
    }
    _mm256_testz_si256(bad, bad) != 0
}

/// [`shift_round`](crate::fixed::shift_round)`(x, sh)` on four lanes, given `ax = |x|`: right
/// shifts round half up (arithmetic shifts by the sign-mask identity), left shifts saturate at
/// `±2^62`.
#[inline]
#[target_feature(enable = "avx2")]
fn shift_round4(x: __m256i, ax: __m256i, sh: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let one = _mm256_set1_epi64x(1);
    let sign = gt(zero, x);
    let sra = |v: __m256i, r: __m256i| {
        _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(v, sign), r), sign)
    };
    // Left (sh ≥ 0): 0 stays 0; saturate when sh ≥ 62 or |x| ≥ 2^(62 − sh).
    let left = gt(sh, _mm256_set1_epi64x(-1));
    let big = _mm256_srlv_epi64(ax, _mm256_sub_epi64(_mm256_set1_epi64x(62), sh));
    let sat = _mm256_or_si256(
        gt(sh, _mm256_set1_epi64x(61)),
        _mm256_andnot_si256(_mm256_cmpeq_epi64(big, zero), _mm256_set1_epi64x(-1)),
    );
    let limit = _mm256_set1_epi64x(1 << 62);
    let satv = _mm256_sub_epi64(_mm256_xor_si256(limit, sign), sign);
    let lv = _mm256_blendv_epi8(_mm256_sllv_epi64(x, sh), satv, sat);
    let lv = _mm256_andnot_si256(_mm256_cmpeq_epi64(x, zero), lv);
    // Right: r = −sh; r ≥ 64 gives 0, else (x >> r) + ((x >> (r − 1)) & 1).
    let r = _mm256_sub_epi64(zero, sh);
    let near = gt(_mm256_set1_epi64x(64), r);
    let rv = _mm256_add_epi64(
        sra(x, r),
        _mm256_and_si256(sra(x, _mm256_sub_epi64(r, one)), one),
    );
    _mm256_blendv_epi8(keep(near, rv), lv, left)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{eprintln, vec, vec::Vec};

    /// The normalization through `f64` exponents against `Dyadic::from_u64`, on every power of
    /// two and its neighbours up to `2^30` (where rounding to `f64` could move an exponent if
    /// the conversion were inexact) and on random weights.
    #[test]
    fn normalize_weights4_equals_from_u64() {
        if !std::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        let mut ws: Vec<i64> = vec![0, 1, 2, 3, (1 << 30) - 1, 1 << 30];
        for k in 1..30 {
            ws.extend([(1 << k) - 1, 1 << k, (1 << k) + 1]);
        }
        let mut rng = crate::rng::SplitMix64(0x5EED_00F6_4E00_0001);
        ws.extend((0..4000).map(|_| (rng.next_u64() >> (34 + rng.next_u64() % 30)) as i64));
        while !ws.len().is_multiple_of(4) {
            ws.push(0);
        }
        for four in ws.chunks_exact(4) {
            // SAFETY: AVX2 is present (checked above).
            let (mant, exp) = unsafe {
                let w = _mm256_loadu_si256(four.as_ptr() as *const __m256i);
                let (m, e) = normalize_weights4(w);
                let (mut ms, mut es) = ([0i64; 4], [0i64; 4]);
                _mm256_storeu_si256(ms.as_mut_ptr() as *mut __m256i, m);
                _mm256_storeu_si256(es.as_mut_ptr() as *mut __m256i, e);
                (ms, es)
            };
            for i in 0..4 {
                let want = Dyadic::from_u64(four[i] as u64, -30);
                assert_eq!(
                    (mant[i], exp[i]),
                    (want.mant as i64, want.exp as i64),
                    "w = {}",
                    four[i]
                );
            }
        }
    }
}
