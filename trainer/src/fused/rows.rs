//! Row kernels on plain `f32` slices, shared by the flex kernels (`crate::fused`) and the fused
//! attention (`crate::fused::attention`): reductions on 16 independent lanes, the int8 absmax quantizer
//! of one row, and the row partition of the rayon tasks.
//!
//! A plain `f32` sum must keep its order and so stays scalar; 16 partial sums vectorize. Their
//! order is fixed, so every result is the same for any number of threads.

use crate::fused::quant::SCALE_FLOOR;
use rayon::prelude::*;

/// Lanes of the row reductions: 16 independent partial results.
const LANES: usize = 16;

/// Values handled by one rayon task of an elementwise kernel.
pub const VALUES_PER_TASK: usize = 16384;

/// Rows handled by one rayon task for rows of `n` values (fixed, so sums are reproducible).
pub fn rows_per_task(n: usize) -> usize {
    (VALUES_PER_TASK / n).max(1)
}

/// `Σ a_i·b_i`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i`.
#[inline]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let tail: f32 = ca.remainder().iter().sum();
    for x in ca {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i·b_i·c_i`.
#[inline]
pub fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail: f32 = (ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder()))
    .map(|((x, y), z)| x * y * z)
    .sum();
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i] * z[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `max_i |a_i|` (0 for an empty row).
#[inline]
pub fn max_abs(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let tail = ca.remainder().iter().fold(0f32, |m, v| m.max(v.abs()));
    for x in ca {
        for i in 0..LANES {
            acc[i] = acc[i].max(x[i].abs());
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// `1/sqrt(mean(x²) + eps)` of one row.
#[inline]
pub fn inv_rms(row: &[f32], eps: f64) -> f32 {
    let ms = dot(row, row) / row.len() as f32;
    1.0 / (ms + eps as f32).sqrt()
}

/// Scale of the int8 absmax quantizer (Q2/Q3/Q5) for one row: `max(max|x|, 1e-5)/127`.
#[inline]
pub fn int8_scale(row: &[f32]) -> f32 {
    max_abs(row).max(SCALE_FLOOR) / 127.0
}

/// The quantized value of `v` at `scale`: `round_half_even(v/scale)·scale` (the clamp to
/// −128..=127 of `docs/MODEL.md` never binds, see `crate::fused::quant::absmax_int8`).
#[inline(always)]
pub fn int8_value(v: f32, scale: f32) -> f32 {
    round_half_even_small(v / scale) * scale
}

/// Q2/Q3/Q5 on one row in place.
#[inline]
pub fn absmax_int8_in_place(row: &mut [f32]) {
    let scale = int8_scale(row);
    row.iter_mut().for_each(|v| *v = int8_value(*v, scale));
}

/// Q2/Q3/Q5 over rows of `n` values, rayon over row blocks: `dst = Q(src)` row by row.
///
/// # Shapes
/// - `src`, `dst`: `[rows·n]`
pub fn absmax_int8_rows(src: &[f32], dst: &mut [f32], n: usize) {
    debug_assert_eq!(src.len(), dst.len());
    debug_assert!(n > 0 && src.len().is_multiple_of(n));
    let chunk = rows_per_task(n) * n;
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| {
            for (dr, sr) in d.chunks_exact_mut(n).zip(s.chunks_exact(n)) {
                let scale = int8_scale(sr);
                for (o, &v) in dr.iter_mut().zip(sr) {
                    *o = int8_value(v, scale);
                }
            }
        });
}

/// `v.round_ties_even()` for `|v| ≤ 2^22`, without the libm call (so the loop vectorizes):
/// adding and subtracting 1.5·2^23 leaves the nearest integer, ties to even, under the default
/// rounding mode. Here `|v| ≤ 127·(1 + 2^-23)`.
#[inline(always)]
fn round_half_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    (v + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_rounding_is_half_even() {
        for i in -300_000..=300_000 {
            let v = i as f32 / 1000.0;
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -2.5, 126.5, -127.5] {
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
    }

    /// The lane reductions against plain sequential ones, for lengths around the lane count
    /// (remainder only, whole lanes, both) and the empty row.
    #[test]
    fn lane_reductions_match_sequential() {
        for n in [0usize, 1, 15, 16, 17, 40, 100] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.3).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.2).collect();
            let c: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let close = |x: f32, y: f32| (x - y).abs() <= 1e-5 * (1.0 + y.abs());
            let want_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let want_dot3: f32 = a.iter().zip(&b).zip(&c).map(|((x, y), z)| x * y * z).sum();
            let want_max = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(close(dot(&a, &b), want_dot), "dot, n = {n}");
            assert!(close(sum(&a), a.iter().sum()), "sum, n = {n}");
            assert!(close(dot3(&a, &b, &c), want_dot3), "dot3, n = {n}");
            assert_eq!(max_abs(&a), want_max, "max_abs, n = {n}");
        }
    }

    /// One row by hand: absmax 127 gives scale 1, so the values are the codes; halves round to
    /// even.
    #[test]
    fn int8_row_by_hand() {
        let mut row = [127.0f32, -63.5, 0.5, 1.5, 2.5, -0.4];
        assert_eq!(int8_scale(&row), 1.0);
        absmax_int8_in_place(&mut row);
        assert_eq!(row, [127.0, -64.0, 0.0, 2.0, 2.0, -0.0]);
        // the all-zero row takes the floor scale and stays zero
        let mut zeros = [0f32; 3];
        absmax_int8_in_place(&mut zeros);
        assert_eq!(zeros, [0.0; 3]);
    }
}
