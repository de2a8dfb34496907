//! x86-64 int8 kernels: dot products against strided rows (attention scores, LM head) and
//! the attention's value accumulation.

use core::arch::x86_64::*;

use super::ternary::{hsum4, hsum8};

/// `y[r] = Σ_{j < len} m[r·stride + j] · x[j]` (`len = x.len()`) with AVX2: both sides widened
/// to `i16` (`vpmovsxbw`), `vpmaddwd` into `i32` (exact for every `i8`, `-128·-128`
/// included), four rows per step. The contract of
/// [`reference::int8_matvec`](super::super::reference::int8_matvec).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn int8_matvec_avx2(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    let len = x.len();
    let rows = y.len();
    if rows == 0 || m.len() < (rows - 1) * stride + len {
        return;
    }
    let body = len & !15;
    // `x` widened once: `body / 16` vectors of 16 `i16`.
    let mut xw = [_mm256_setzero_si256(); 8];
    let tail = |r: usize| -> i32 {
        let row = &m[r * stride..r * stride + len];
        row.iter()
            .zip(x)
            .skip(body)
            .fold(0i32, |s, (p, q)| s.wrapping_add(*p as i32 * *q as i32))
    };
    if body <= 128 {
        for (j, v) in xw.iter_mut().enumerate().take(body / 16) {
            // SAFETY: `16j + 16 ≤ body ≤ len`.
            *v = _mm256_cvtepi8_epi16(unsafe {
                _mm_loadu_si128(x.as_ptr().add(16 * j) as *const __m128i)
            });
        }
    }
    let mut r = 0;
    if len == 32 {
        // Rows of one attention head (32 dimensions, the shipped model's): eight rows per
        // step, reduced together.
        r = matvec_rows32_avx2(m, stride, x, y);
    }
    while r < rows {
        let k = (rows - r).min(4);
        let mut acc = [_mm256_setzero_si256(); 4];
        for (i, a) in acc.iter_mut().enumerate().take(k) {
            // SAFETY: row `r + i < rows` spans `(r+i)·stride .. + len ≤ m.len()` (checked);
            // loads read 16 bytes at `j < body ≤ len` of the row and of `x`.
            unsafe {
                let p = m.as_ptr().add((r + i) * stride);
                for j in (0..body).step_by(16) {
                    let va = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(j) as *const __m128i));
                    let vx = if body <= 128 {
                        xw[j / 16]
                    } else {
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(x.as_ptr().add(j) as *const __m128i))
                    };
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(va, vx));
                }
            }
        }
        let mut s = [0i32; 4];
        // SAFETY: a 16-byte store into a 16-byte array.
        unsafe {
            _mm_storeu_si128(
                s.as_mut_ptr() as *mut __m128i,
                hsum4(acc[0], acc[1], acc[2], acc[3]),
            )
        };
        for (i, si) in s.into_iter().enumerate().take(k) {
            let t = if body < len { tail(r + i) } else { 0 };
            y[r + i] = si.wrapping_add(t);
        }
        r += k;
    }
}

/// [`int8_matvec_avx2`] for rows of 32 (`x.len() == 32`), eight rows per step: each row two
/// widened halves against `x`'s, the eight rows' lanes summed by one [`hsum8`] and stored at
/// once. Returns the rows done (a multiple of eight); the caller does the rest.
///
/// # Safety
/// AVX2; `x` holds 32 entries and `m` every row's (`m.len() ≥ (rows − 1)·stride + 32`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn matvec_rows32_avx2(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) -> usize {
    let wide = |p: *const i8| _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i));
    let (x0, x1) = (wide(x.as_ptr()), wide(x.as_ptr().add(16)));
    let full = y.len() & !7;
    for (r, out) in (0..full).step_by(8).zip(y.chunks_exact_mut(8)) {
        let mut acc = [_mm256_setzero_si256(); 8];
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: row `r + i < rows` spans `(r + i)·stride .. + 32 ≤ m.len()`.
            let p = m.as_ptr().add((r + i) * stride);
            *a = _mm256_add_epi32(
                _mm256_madd_epi16(wide(p), x0),
                _mm256_madd_epi16(wide(p.add(16)), x1),
            );
        }
        // SAFETY: `out` holds eight `i32`.
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, hsum8(&acc));
    }
    full
}

/// Positions per `i32` flush of [`int8_weighted_sum_avx2`]: a `vpmaddwd` lane adds two
/// products of a 12-bit coefficient half and an 8-bit value (`< 2^20`), so the 1024 pairs of
/// 2048 positions stay below `2^30`.
const FLUSH_POSITIONS: usize = 2048;

/// `acc[i] = Σ_s coef[s] · v[s·stride + i]` with AVX2 (the contract of
/// [`reference::int8_weighted_sum`](super::super::reference::int8_weighted_sum)): each
/// coefficient split into 12-bit halves `c = c_hi · 2^12 + c_lo` (`|c| ≤ 2^24`: both fit
/// `i16`), two positions interleaved per `vpmaddwd` against the values widened to `i16`, 32
/// dimensions per pass (16 where 32 do not divide the row), `i32` sums flushed to `i64` every
/// `FLUSH_POSITIONS` positions. Rows whose length is not a multiple of 16, or a coefficient
/// beyond `±2^24`, take the portable loop.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn int8_weighted_sum_avx2(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    let hd = acc.len();
    let t = coef.len();
    let fits = t == 0 || v.len() >= (t - 1) * stride + hd;
    let small = coef.iter().all(|c| c.unsigned_abs() <= 1 << 24);
    if !hd.is_multiple_of(16) || !fits || !small {
        return super::super::fast::int8_weighted_sum(coef, v, stride, acc);
    }
    acc.fill(0);
    let mut j0 = 0;
    while j0 < hd {
        let width = if hd - j0 >= 32 { 32 } else { 16 };
        for s0 in (0..t).step_by(FLUSH_POSITIONS) {
            let block = &coef[s0..t.min(s0 + FLUSH_POSITIONS)];
            // SAFETY: positions `s0..s0 + block.len() ≤ t` and dimensions `j0..j0 + width ≤
            // hd` lie inside `v` (checked above).
            let p = v.as_ptr().add(s0 * stride + j0);
            let (lo, hi) = if width == 32 {
                weighted_block::<2>(block, p, stride)
            } else {
                weighted_block::<1>(block, p, stride)
            };
            let out = acc.get_unchecked_mut(j0..j0 + width);
            for (d, o) in out.iter_mut().enumerate() {
                *o += ((hi[d] as i64) << 12) + lo[d] as i64;
            }
        }
        j0 += width;
    }
}

/// `Σ_s c_lo[s]·v[s][d]` and `Σ_s c_hi[s]·v[s][d]` for `16·H` dimensions `d` of
/// `coef.len() ≤` `FLUSH_POSITIONS` positions (rows `stride` apart from `v`), in dimension
/// order (the first `16·H` entries of each array).
///
/// # Safety
/// AVX2; `v` valid for `16·H` bytes at every `s·stride`, `s < coef.len()`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn weighted_block<const H: usize>(
    coef: &[i32],
    v: *const i8,
    stride: usize,
) -> ([i32; 32], [i32; 32]) {
    let row = |s: usize, h: usize| {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(v.add(s * stride + 16 * h) as *const __m128i))
    };
    // Two i16 halves of a dword: position s low, position s + 1 high.
    let pair = |a: i32, b: i32| (a & 0xFFFF) | (b << 16);
    // Per chunk of positions: the coefficients' 12-bit halves paired once ([low, high]), then
    // each 16 dimensions' four accumulators kept in registers over the chunk.
    const PAIRS: usize = 64;
    let mut halves = [[0i32; 2]; PAIRS];
    let mut lo = [[_mm256_setzero_si256(); 2]; H];
    let mut hi = [[_mm256_setzero_si256(); 2]; H];
    for (ci, chunk) in coef.chunks(2 * PAIRS).enumerate() {
        let base = 2 * PAIRS * ci;
        let pairs = chunk.len() / 2;
        for (hv, c) in halves.iter_mut().zip(chunk.chunks_exact(2)) {
            *hv = [
                pair(c[0] & 0xFFF, c[1] & 0xFFF),
                pair(c[0] >> 12, c[1] >> 12),
            ];
        }
        // An odd position out (the last chunk's) pairs with a zero row, never read.
        let last = chunk.chunks_exact(2).remainder().first().copied();
        for h in 0..H {
            let (mut l, mut g) = (lo[h], hi[h]);
            // (A macro, not a closure: a closure does not inherit the target features, so
            // its intrinsics would become calls.)
            macro_rules! add {
                ($a:expr, $b:expr, $cl:expr, $ch:expr) => {{
                    let (a, b, cl, ch) = ($a, $b, $cl, $ch);
                    // Dimensions 0-3 and 8-11 (p[0]), 4-7 and 12-15 (p[1]), positions
                    // interleaved.
                    let p = [_mm256_unpacklo_epi16(a, b), _mm256_unpackhi_epi16(a, b)];
                    for q in 0..2 {
                        l[q] = _mm256_add_epi32(l[q], _mm256_madd_epi16(p[q], cl));
                        g[q] = _mm256_add_epi32(g[q], _mm256_madd_epi16(p[q], ch));
                    }
                }};
            }
            for (k, hv) in halves[..pairs].iter().enumerate() {
                let (cl, ch) = (_mm256_set1_epi32(hv[0]), _mm256_set1_epi32(hv[1]));
                add!(row(base + 2 * k, h), row(base + 2 * k + 1, h), cl, ch);
            }
            if let Some(c) = last {
                let (cl, ch) = (
                    _mm256_set1_epi32(pair(c & 0xFFF, 0)),
                    _mm256_set1_epi32(pair(c >> 12, 0)),
                );
                add!(row(base + 2 * pairs, h), _mm256_setzero_si256(), cl, ch);
            }
            (lo[h], hi[h]) = (l, g);
        }
    }
    // Back to dimension order: lanes of p[0] are dimensions 0-3 | 8-11, of p[1] 4-7 | 12-15.
    let order = |x: [[__m256i; 2]; H]| {
        let mut out = [0i32; 32];
        for (h, x) in x.iter().enumerate() {
            let first = _mm256_permute2x128_si256::<0x20>(x[0], x[1]); // 0-3, 4-7
            let second = _mm256_permute2x128_si256::<0x31>(x[0], x[1]); // 8-11, 12-15
                                                                        // SAFETY: two 32-byte stores into 64 bytes of a 128-byte array (`h < H ≤ 2`).
            unsafe {
                _mm256_storeu_si256(out.as_mut_ptr().add(16 * h) as *mut __m256i, first);
                _mm256_storeu_si256(out.as_mut_ptr().add(16 * h + 8) as *mut __m256i, second);
            }
        }
        out
    };
    (order(lo), order(hi))
}

/// [`fast::int8_weighted_sum`](super::super::fast::int8_weighted_sum) with AVX-512: eight `i64`
/// lanes per register, each product by `vpmuldq` (signed 32 × 32 → 64: `|c| ≤ 2^24` and
/// `|v| ≤ 2^7` fit), so no 64-bit multiply; rows of `hd` values, 32 per step.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL, DQ.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn int8_weighted_sum_avx512(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    let hd = acc.len();
    let t = coef.len();
    if !hd.is_multiple_of(8) || t == 0 || v.len() < (t - 1) * stride + hd {
        return super::super::fast::int8_weighted_sum(coef, v, stride, acc);
    }
    acc.fill(0);
    for j0 in (0..hd).step_by(32) {
        let lanes = ((hd - j0) / 8).min(4);
        let mut a = [_mm512_setzero_si512(); 4];
        for (s, c) in coef.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            let cv = _mm512_set1_epi64(*c as i64);
            // SAFETY: row `s` spans `s·stride + j0 + 8·lanes ≤ s·stride + hd ≤ v.len()`.
            let p = v.as_ptr().add(s * stride + j0);
            for (k, ak) in a.iter_mut().enumerate().take(lanes) {
                let x = _mm512_cvtepi8_epi64(_mm_loadl_epi64(p.add(8 * k) as *const __m128i));
                *ak = _mm512_add_epi64(*ak, _mm512_mul_epi32(cv, x));
            }
        }
        for (k, ak) in a.iter().enumerate().take(lanes) {
            _mm512_storeu_si512(acc.as_mut_ptr().add(j0 + 8 * k) as *mut __m512i, *ak);
        }
    }
}
