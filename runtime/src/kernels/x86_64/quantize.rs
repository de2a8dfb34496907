//! AVX2 twins of the int8 quantizers' per-element loops (`pass/norm.rs`: the RMSNorm
//! statistics, Q2 of `x∘g`, Q5 of a rotated or projected head), eight elements per step. Each
//! returns what its scalar loop in `pass/norm.rs` returns, bit for bit (the quantizer tests
//! compare them); the quantizing ones handle whole groups of eight and leave the tail to the
//! caller.
//!
//! The quantizer is [`Q127`]'s multiply-high division in `u32` lanes: `⌊n · lo / 2^32⌋` by
//! two `vpmuludq` (even and odd lanes), `q·m` by `vpmulld`, the half-even rounding by
//! compares.

use core::arch::x86_64::*;

use crate::fixed::Q127;

/// [`Q127::of`] on eight `u32` lanes `a ≤ m`.
#[inline]
#[target_feature(enable = "avx2")]
fn q127x8(a: __m256i, q: &Q127) -> __m256i {
    let n = _mm256_sub_epi32(_mm256_slli_epi32::<7>(a), a); // 127·a < 2^31
    let lo = _mm256_set1_epi32(q.lo as i32);
    let even = _mm256_srli_epi64::<32>(_mm256_mul_epu32(n, lo));
    let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(n), lo);
    let high = _mm256_blend_epi32::<0b1010_1010>(even, odd);
    let hi = _mm256_set1_epi32(-(q.hi as i32)); // all ones when bit 32 of magic is set
    let sum = _mm256_add_epi32(high, _mm256_and_si256(n, hi));
    let qv = _mm256_srl_epi32(sum, _mm_cvtsi32_si128(q.l as i32));
    let m = _mm256_set1_epi32(q.m as i32);
    let r2 = _mm256_slli_epi32::<1>(_mm256_sub_epi32(n, _mm256_mullo_epi32(qv, m))); // 2r < 2^25
    let odd_q = _mm256_slli_epi32::<31>(qv); // sign bit = q & 1
    let tie_up = _mm256_and_si256(_mm256_cmpeq_epi32(r2, m), _mm256_srai_epi32::<31>(odd_q));
    let up = _mm256_or_si256(_mm256_cmpgt_epi32(r2, m), tie_up);
    _mm256_sub_epi32(qv, up)
}

/// `|p|` for `i64` lanes with `|p| < 2^63`, and the sign mask.
#[inline]
#[target_feature(enable = "avx2")]
fn abs64(p: __m256i) -> (__m256i, __m256i) {
    let s = _mm256_cmpgt_epi64(_mm256_setzero_si256(), p);
    (_mm256_sub_epi64(_mm256_xor_si256(p, s), s), s)
}

/// The largest of the `i64` lanes of `a` and `b` lanewise (signed).
#[inline]
#[target_feature(enable = "avx2")]
fn max64(a: __m256i, b: __m256i) -> __m256i {
    _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a))
}

/// The four `u64` lanes of `v` (each `< 2^63`): their maximum.
#[inline]
#[target_feature(enable = "avx2")]
fn hmax64(v: __m256i) -> u64 {
    let mut l = [0u64; 4];
    // SAFETY: a 32-byte store into a 32-byte array.
    unsafe { _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, v) };
    l.into_iter().max().unwrap_or(0)
}

/// `x·g` of eight lanes as `(even, odd)` `i64` products (elements 0, 2, 4, 6 and 1, 3, 5, 7).
#[inline]
#[target_feature(enable = "avx2")]
fn products(x: __m256i, g: __m256i) -> (__m256i, __m256i) {
    (
        _mm256_mul_epi32(x, g),
        _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(g)),
    )
}

/// `(max |x|, max |x·g|)` over the whole vectors (the tail by scalar code). Shapes: `x [n]`,
/// `gain [4n]` (little-endian `i32`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn rms_maxima_avx2(x: &[i32], gain: &[u8]) -> (u32, u64) {
    let n = x.len().min(gain.len() / 4);
    let body = n & !7;
    let mut mx = _mm256_setzero_si256();
    let mut mz = _mm256_setzero_si256();
    for i in (0..body).step_by(8) {
        let xv = _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i);
        let gv = _mm256_loadu_si256(gain.as_ptr().add(4 * i) as *const __m256i);
        mx = _mm256_max_epu32(mx, _mm256_abs_epi32(xv));
        let (e, o) = products(xv, gv);
        mz = max64(mz, max64(abs64(e).0, abs64(o).0));
    }
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, mx);
    let mut ma = lanes.into_iter().max().unwrap_or(0);
    let mut mp = hmax64(mz);
    for i in body..n {
        let g = i32::from_le_bytes([
            gain[4 * i],
            gain[4 * i + 1],
            gain[4 * i + 2],
            gain[4 * i + 3],
        ]);
        ma = ma.max(x[i].unsigned_abs());
        mp = mp.max((x[i] as i64 * g as i64).unsigned_abs());
    }
    (ma, mp)
}

/// `Σ (|x| >> k)²` (each square `< 2^48`: `k` cuts `|x|` to 24 bits).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn sum_sq_shifted_avx2(x: &[i32], k: u32) -> u64 {
    let body = x.len() & !7;
    let count = _mm_cvtsi32_si128(k as i32);
    let mut acc = _mm256_setzero_si256();
    for i in (0..body).step_by(8) {
        let a = _mm256_srl_epi32(
            _mm256_abs_epi32(_mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i)),
            count,
        );
        let odd = _mm256_srli_epi64::<32>(a);
        acc = _mm256_add_epi64(acc, _mm256_mul_epu32(a, a));
        acc = _mm256_add_epi64(acc, _mm256_mul_epu32(odd, odd));
    }
    let mut l = [0u64; 4];
    _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, acc);
    let tail: u64 = x[body..]
        .iter()
        .map(|v| ((v.unsigned_abs() >> k) as u64).pow(2))
        .sum();
    l.iter().sum::<u64>() + tail
}

/// Eight `i32` lanes of values in `[−127, 127]` stored as eight bytes at `out`.
///
/// # Safety
/// AVX2; `out` valid for 8 bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store8(q: __m256i, out: *mut i8) {
    let w = _mm256_packs_epi32(q, q); // per lane: q0..3, q0..3 | q4..7, q4..7 (i16)
    let b = _mm256_packs_epi16(w, w); // per lane: q0..3 ×4 | q4..7 ×4 (i8)
    let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    _mm_storel_epi64(out as *mut __m128i, _mm256_castsi256_si128(b));
}

/// `out[i] = ±q.of(|x[i]·g[i]| >> kz)` (the sign of the product) for the whole groups of
/// eight; returns how many were written.
///
/// # Safety
/// AVX2; `gain` holds `4·x.len()` bytes, `out` at least `x.len()`; `kz` cuts every `|x·g|`
/// to at most `q.m`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_products_avx2(
    x: &[i32],
    gain: &[u8],
    kz: u32,
    q: &Q127,
    out: &mut [i8],
) -> usize {
    let body = x.len().min(gain.len() / 4).min(out.len()) & !7;
    let count = _mm_cvtsi32_si128(kz as i32);
    for i in (0..body).step_by(8) {
        let xv = _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i);
        let gv = _mm256_loadu_si256(gain.as_ptr().add(4 * i) as *const __m256i);
        let (e, o) = products(xv, gv);
        let a = _mm256_or_si256(
            _mm256_srl_epi64(abs64(e).0, count),
            _mm256_slli_epi64::<32>(_mm256_srl_epi64(abs64(o).0, count)),
        );
        let neg = _mm256_srai_epi32::<31>(_mm256_xor_si256(xv, gv));
        let v = q127x8(a, q);
        store8(
            _mm256_sub_epi32(_mm256_xor_si256(v, neg), neg),
            out.as_mut_ptr().add(i),
        );
    }
    body
}

/// `max |v|` (`|v| < 2^63`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn max_abs_i64_avx2(v: &[i64]) -> u64 {
    let body = v.len() & !3;
    let mut m = _mm256_setzero_si256();
    for i in (0..body).step_by(4) {
        let a = abs64(_mm256_loadu_si256(v.as_ptr().add(i) as *const __m256i)).0;
        m = max64(m, a);
    }
    v[body..]
        .iter()
        .fold(hmax64(m), |m, x| m.max(x.unsigned_abs()))
}

/// `out[i] = ±q.of(|v[i]| >> k)` (the sign of `v[i]`) for the whole groups of eight; returns
/// how many were written.
///
/// # Safety
/// AVX2; `out` at least as long as `v`; `k` cuts every `|v|` to at most `q.m`.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_i64_avx2(v: &[i64], k: u32, q: &Q127, out: &mut [i8]) -> usize {
    let body = v.len().min(out.len()) & !7;
    let count = _mm_cvtsi32_si128(k as i32);
    let lows = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for i in (0..body).step_by(8) {
        let p = v.as_ptr().add(i) as *const __m256i;
        let (a0, s0) = abs64(_mm256_loadu_si256(p));
        let (a1, s1) = abs64(_mm256_loadu_si256(p.add(1)));
        // Low dwords (the shifted magnitudes, < 2^24) of both, in element order.
        let pick = |v: __m256i| _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, lows));
        let join =
            |a: __m128i, b: __m128i| _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a), b);
        let a = join(
            pick(_mm256_srl_epi64(a0, count)),
            pick(_mm256_srl_epi64(a1, count)),
        );
        let neg = join(pick(s0), pick(s1));
        let r = q127x8(a, q);
        store8(
            _mm256_sub_epi32(_mm256_xor_si256(r, neg), neg),
            out.as_mut_ptr().add(i),
        );
    }
    body
}
