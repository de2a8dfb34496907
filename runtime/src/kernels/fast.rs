//! Portable optimized kernels: no per-weight branch, `i32` accumulation, two rows per pass so
//! each activation load serves two rows (the Cortex-M33 has registers for that), weights read
//! 16 at a time as one little-endian `u32`.

/// Same contract as [`reference::ternary_matvec`](super::reference::ternary_matvec).
///
/// Overflow: `|y[r]| ≤ 128 · 4 · row_bytes < 2^31` (rows ≤ `MAX_WIDTH` + padding).
pub fn ternary_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    debug_assert_eq!(row_bytes % 4, 0);
    let mut rows = w.chunks_exact(row_bytes);
    let mut outs = y.chunks_exact_mut(2);
    for pair in outs.by_ref() {
        let (Some(r0), Some(r1)) = (rows.next(), rows.next()) else {
            return;
        };
        let (a0, a1) = dot2(r0, r1, x);
        pair[0] = a0;
        pair[1] = a1;
    }
    if let (Some(out), Some(r0)) = (outs.into_remainder().first_mut(), rows.next()) {
        *out = dot1(r0, x);
    }
}

/// Weight `j` (0..16) of a little-endian word: sign-extend bits `2j..2j+2`.
#[inline(always)]
fn weight(word: u32, j: u32) -> i32 {
    ((word << (30 - 2 * j)) as i32) >> 30
}

#[inline(always)]
fn word_at(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[inline(always)]
fn dot2(r0: &[u8], r1: &[u8], x: &[i8]) -> (i32, i32) {
    let (mut a0, mut a1) = (0i32, 0i32);
    for ((w0, w1), xs) in r0
        .chunks_exact(4)
        .zip(r1.chunks_exact(4))
        .zip(x.chunks_exact(16))
    {
        let (w0, w1) = (word_at(w0), word_at(w1));
        for j in 0..16 {
            let xv = xs[j as usize] as i32;
            a0 += xv * weight(w0, j);
            a1 += xv * weight(w1, j);
        }
    }
    (a0, a1)
}

#[inline(always)]
fn dot1(r0: &[u8], x: &[i8]) -> i32 {
    let mut a0 = 0i32;
    for (w0, xs) in r0.chunks_exact(4).zip(x.chunks_exact(16)) {
        let w0 = word_at(w0);
        for j in 0..16 {
            a0 += xs[j as usize] as i32 * weight(w0, j);
        }
    }
    a0
}

/// Same contract as [`reference::int8_dot`](super::reference::int8_dot); four independent
/// accumulators over chunks of 4.
pub fn int8_dot(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0i32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in ca.by_ref().zip(cb.by_ref()) {
        for k in 0..4 {
            acc[k] += x[k] as i32 * y[k] as i32;
        }
    }
    let mut s = acc[0] + acc[1] + acc[2] + acc[3];
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x as i32 * *y as i32;
    }
    s
}

/// Same contract as [`reference::int8_matvec`](super::reference::int8_matvec): [`int8_dot`]
/// per row.
pub fn int8_matvec(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    let len = x.len();
    for (r, out) in y.iter_mut().enumerate() {
        *out = m
            .get(r * stride..r * stride + len)
            .map_or(0, |row| super::int8_dot(row, x));
    }
}

/// Same contract as [`reference::int8_weighted_sum`](super::reference::int8_weighted_sum):
/// position by position, zero coefficients skipped (softmax weights underflow to zero far from
/// the maximum). Written so that a compiler vectorizes the inner loop (the x86-64 AVX2 variant
/// is this body compiled with AVX2 enabled).
#[inline(always)]
pub fn int8_weighted_sum(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    acc.iter_mut().for_each(|a| *a = 0);
    let hd = acc.len();
    for (s, c) in coef.iter().enumerate() {
        let cs = *c as i64;
        if cs == 0 {
            continue;
        }
        if let Some(vs) = v.get(s * stride..s * stride + hd) {
            for (a, v) in acc.iter_mut().zip(vs) {
                *a += cs * *v as i64;
            }
        }
    }
}

/// Same contract as [`reference::int8_weighted_sum`](super::reference::int8_weighted_sum),
/// register-blocked for scalar cores with a 64-bit multiply-accumulate (`SMLAL` on the
/// Cortex-M33): two dimensions at a time stay in registers while the positions stream past,
/// instead of a load and a store of the accumulator around every product.
#[inline(never)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn int8_weighted_sum_blocked(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    let hd = acc.len();
    let n = coef.len();
    let fits = n == 0
        || (n - 1)
            .checked_mul(stride)
            .and_then(|e| e.checked_add(hd))
            .is_some_and(|e| e <= v.len());
    if !fits || !hd.is_multiple_of(2) {
        return int8_weighted_sum(coef, v, stride, acc);
    }
    for (i0, out) in (0..hd).step_by(2).zip(acc.chunks_exact_mut(2)) {
        let (mut a0, mut a1) = (0i64, 0i64);
        let mut at = i0;
        for c in coef {
            // SAFETY: `at + 1 ≤ (n − 1)·stride + hd − 1 < v.len()` (checked above: `at` is
            // `s·stride + i0` for position `s < n` and `i0 + 1 < hd`).
            let (v0, v1) =
                unsafe { (*v.get_unchecked(at) as i64, *v.get_unchecked(at + 1) as i64) };
            let c = *c as i64;
            a0 += c * v0;
            a1 += c * v1;
            at += stride;
        }
        out[0] = a0;
        out[1] = a1;
    }
}
