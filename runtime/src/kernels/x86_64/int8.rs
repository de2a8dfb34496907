//! x86-64 int8 kernels: dot products against strided rows (attention scores, LM head) and
//! the attention's value accumulation.

use core::arch::x86_64::*;

use super::ternary::hsum4;

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

/// [`fast::int8_weighted_sum`](super::super::fast::int8_weighted_sum) compiled with AVX2 (the
/// compiler vectorizes its `i64` multiply-adds with `vpmuldq`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn int8_weighted_sum_avx2(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    super::super::fast::int8_weighted_sum(coef, v, stride, acc)
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
