//! RMSNorm fused with the int8 absmax quantization that follows it (Q2), and the plain absmax
//! quantization of q/k/v (Q5).
//!
//! After an RMSNorm the BitLinear input is `h_q = round(127 · (x∘g) / max|x∘g|)`: the `1/rms`
//! factor cancels and only enters the returned scale (docs/MODEL.md, "Consequences").
//!
//! The vector functions are inlined on x86-64 (each target-feature variant of the forward pass
//! gets its own vectorized copy) and kept out of line on Arm, where the pass runs from SRAM and
//! a copy at every call site cost 20 KiB of it (firmware/COST.md, "Placement and scheduling").

use super::norm32::{absmax_quantize_32, rmsnorm_quantize_32, to_block_i32_32};
use crate::blob::format::GAIN_FRAC_BITS;
use crate::blob::model::Gains;
use crate::fixed::{bit_len, Dyadic, INV_127, Q127};
use crate::kernels::{max_abs_i32, max_abs_i64};

/// Whether the AVX2 twins of the loops below run (the x86-64 SIMD levels; they return
/// the same bits as the scalar loops, see `kernels/x86_64/quantize.rs`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx2() -> bool {
    crate::kernels::level().runs_avx2()
}

/// `out = Q2(RMSNorm(x; g))`. Shapes: `x [n]`, `gain [n]`, `out [≥ n]` (only `out[..n]` written).
///
/// `x` holds integers whose real values are `x[i] · x_scale`; `gain` is Q15.16; `eps` is the
/// real `norm_eps`. Returns `s`, the real value of one unit of `out` (`h_i ≈ s · out[i]`), or
/// zero when `x∘g` is all zero (then `out` is all zero). The Q2 floor `max(absmax, 1e-5)` is
/// not applied: it only matters when every `|h_i| < 1e-5`.
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn rmsnorm_quantize(
    x: &[i32],
    x_scale: Dyadic,
    gain: Gains<'_>,
    eps: Dyadic,
    out: &mut [i8],
) -> Dyadic {
    debug_assert_eq!(x.len(), gain.len());
    debug_assert!(out.len() >= x.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the x86-64 SIMD levels are only reported on CPUs with AVX2.
        return unsafe { rmsnorm_quantize_avx2(x, x_scale, gain, eps, out) };
    }
    if cfg!(target_arch = "arm") {
        if let Some(s) = rmsnorm_quantize_32(x, x_scale, gain, eps, out) {
            return s;
        }
        return rmsnorm_quantize_rare(x, x_scale, gain, eps, out);
    }
    rmsnorm_quantize_scalar(x, x_scale, gain, eps, out)
}

/// [`rmsnorm_quantize_scalar`] out of line, for the cases 32-bit Arm's twin leaves (rare: not
/// in RAM with the per-token code).
#[cfg_attr(not(target_arch = "arm"), allow(dead_code))]
#[inline(never)]
fn rmsnorm_quantize_rare(
    x: &[i32],
    x_scale: Dyadic,
    gain: Gains<'_>,
    eps: Dyadic,
    out: &mut [i8],
) -> Dyadic {
    rmsnorm_quantize_scalar(x, x_scale, gain, eps, out)
}

/// [`rmsnorm_quantize`]'s scalar loops (every target; the definition the AVX2 twin matches).
#[inline(always)]
pub(crate) fn rmsnorm_quantize_scalar(
    x: &[i32],
    x_scale: Dyadic,
    gain: Gains<'_>,
    eps: Dyadic,
    out: &mut [i8],
) -> Dyadic {
    let n = x.len();
    // Σ x² on values cut to 24 bits: each square < 2^48, n ≤ 2^15 terms, sum < 2^63.
    let maxabs = max_abs_i32(x);
    let k = bit_len(maxabs as u64).saturating_sub(24);
    let sumsq: u64 = x
        .iter()
        .map(|v| {
            let a = (v.unsigned_abs() >> k) as u64;
            a * a
        })
        .sum();
    let inv_rms = inv_rms(sumsq, k, x_scale, n, eps);

    // z = x·g: |x| < 2^31, |g| < 2^31, so |z| < 2^62.
    let mut m = 0u64;
    for (v, g) in x.iter().zip(gain.iter()) {
        m = m.max((*v as i64 * g as i64).unsigned_abs());
    }
    if m == 0 {
        out.iter_mut().take(n).for_each(|o| *o = 0);
        return Dyadic::ZERO;
    }
    let kz = bit_len(m).saturating_sub(24);
    let mz = Q127::new((m >> kz) as u32); // in [1, 2^24)
    for ((o, v), g) in out.iter_mut().zip(x).zip(gain.iter()) {
        let z = *v as i64 * g as i64;
        let q = mz.of((z.unsigned_abs() >> kz) as u32);
        *o = if z < 0 { -q } else { q } as i8;
    }
    rms_scale(m, x_scale, inv_rms)
}

/// `1 / sqrt(mean(x²) + eps)` from `Σ (|x| >> k)²` (real units through `x_scale`).
#[inline(always)]
fn inv_rms(sumsq: u64, k: u32, x_scale: Dyadic, n: usize, eps: Dyadic) -> Dyadic {
    let mean_sq = Dyadic::from_u64(sumsq, 2 * k as i32)
        .mul(x_scale)
        .mul(x_scale)
        .div(Dyadic::from_u64(n as u64, 0));
    mean_sq.add(eps).rsqrt()
}

/// The real value of one unit of Q2's output, given `m = max |x·g|`.
#[inline(always)]
fn rms_scale(m: u64, x_scale: Dyadic, inv_rms: Dyadic) -> Dyadic {
    Dyadic::from_u64(m, -(GAIN_FRAC_BITS as i32))
        .mul(x_scale)
        .mul(inv_rms)
        .mul(INV_127)
}

/// [`rmsnorm_quantize`] with the AVX2 twins of its three loops (statistics, `Σ x²`, Q2); the
/// scalar arithmetic between them is the same code.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn rmsnorm_quantize_avx2(
    x: &[i32],
    x_scale: Dyadic,
    gain: Gains<'_>,
    eps: Dyadic,
    out: &mut [i8],
) -> Dyadic {
    use crate::kernels::x86_64::{quantize_products_avx2, rms_maxima_avx2, sum_sq_shifted_avx2};
    let n = x.len();
    let g = gain.bytes();
    let (maxabs, m) = rms_maxima_avx2(x, g);
    let k = bit_len(maxabs as u64).saturating_sub(24);
    let inv_rms = inv_rms(sum_sq_shifted_avx2(x, k), k, x_scale, n, eps);
    if m == 0 {
        out.iter_mut().take(n).for_each(|o| *o = 0);
        return Dyadic::ZERO;
    }
    let kz = bit_len(m).saturating_sub(24);
    let mz = Q127::new((m >> kz) as u32); // in [1, 2^24)
    let done = quantize_products_avx2(x, g, kz, &mz, out);
    for ((o, v), g) in out.iter_mut().zip(x).zip(gain.iter()).skip(done) {
        let z = *v as i64 * g as i64;
        let q = mz.of((z.unsigned_abs() >> kz) as u32);
        *o = if z < 0 { -q } else { q } as i8;
    }
    rms_scale(m, x_scale, inv_rms)
}

/// `out[i] = round_half_even(127 · v[i] / max|v|)`; returns `max|v|` (0: `out` all zero).
/// Shapes: `v [n]`, `out [n]`. Requires `|v[i]| < 2^63`.
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn absmax_quantize(v: &[i64], out: &mut [i8]) -> u64 {
    debug_assert_eq!(v.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the x86-64 SIMD levels are only reported on CPUs with AVX2.
        return unsafe { absmax_quantize_avx2(v, out) };
    }
    if cfg!(target_arch = "arm") {
        if let Some(m) = absmax_quantize_32(v, out) {
            return m;
        }
        return absmax_quantize_rare(v, out);
    }
    absmax_quantize_scalar(v, out)
}

/// [`absmax_quantize_scalar`] out of line (see [`rmsnorm_quantize_rare`]).
#[cfg_attr(not(target_arch = "arm"), allow(dead_code))]
#[inline(never)]
fn absmax_quantize_rare(v: &[i64], out: &mut [i8]) -> u64 {
    absmax_quantize_scalar(v, out)
}

/// [`absmax_quantize`]'s scalar loops (every target; the definition the AVX2 twin matches).
#[inline(always)]
pub(crate) fn absmax_quantize_scalar(v: &[i64], out: &mut [i8]) -> u64 {
    let m = max_abs_i64(v);
    if m == 0 {
        out.iter_mut().for_each(|o| *o = 0);
        return 0;
    }
    let k = bit_len(m).saturating_sub(24);
    let mk = Q127::new((m >> k) as u32);
    quantize_tail(v, k, &mk, out, 0);
    m
}

/// `out[i] = ±mk.of(|v[i]| >> k)` for `i ≥ from`.
#[inline(always)]
fn quantize_tail(v: &[i64], k: u32, mk: &Q127, out: &mut [i8], from: usize) {
    for (o, x) in out.iter_mut().zip(v).skip(from) {
        let q = mk.of((x.unsigned_abs() >> k) as u32);
        *o = if *x < 0 { -q } else { q } as i8;
    }
}

/// [`absmax_quantize`] with the AVX2 twins of its loops.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn absmax_quantize_avx2(v: &[i64], out: &mut [i8]) -> u64 {
    use crate::kernels::x86_64::{max_abs_i64_avx2, quantize_i64_avx2};
    let m = max_abs_i64_avx2(v);
    if m == 0 {
        out.iter_mut().for_each(|o| *o = 0);
        return 0;
    }
    let k = bit_len(m).saturating_sub(24);
    let mk = Q127::new((m >> k) as u32);
    let done = quantize_i64_avx2(v, k, &mk, out);
    quantize_tail(v, k, &mk, out, done);
    m
}

/// Copies the residual stream into `out` as `i32` with one shared rounding shift so that
/// `|out[i]| ≤ 2^30`; returns the real value of one unit of `out`. Shapes: `x [n]`, `out [n]`.
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn to_block_i32(x: &[i64], x_scale: Dyadic, out: &mut [i32]) -> Dyadic {
    debug_assert_eq!(x.len(), out.len());
    if cfg!(target_arch = "arm") {
        return to_block_i32_32(x, x_scale, out);
    }
    let m = max_abs_i64(x);
    let k = bit_len(m).saturating_sub(30);
    for (o, v) in out.iter_mut().zip(x) {
        // |v| ≤ 2^62 (residual_add saturates there), so adding the half step cannot overflow.
        *o = if k == 0 {
            *v as i32
        } else {
            ((*v + (1 << (k - 1))) >> k) as i32
        };
    }
    x_scale.mul(Dyadic::pow2(k as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::q127;

    /// The AVX2 twins of both quantizers against their scalar loops, bit for bit: random
    /// vectors of every length around the groups of eight, magnitudes from tiny to the `i32`
    /// and `i64` extremes, zero vectors, gains of both signs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_quantizers_equal_the_scalar_loops() {
        use super::*;
        use crate::blob::model::Gains;
        if !crate::kernels::Level::Avx2.supported() {
            std::eprintln!("avx2_quantizers_equal_the_scalar_loops: no AVX2 here, not run");
            return;
        }
        let mut rng = crate::rng::SplitMix64(0x9E37_79B9_7F4A_7C15);
        let mut next = move || rng.next_u64();
        let eps = Dyadic::from_u64(1, -20);
        let scale = Dyadic::from_u64(3, -40);
        // Ties of the half-even rounding: max 254, odd values a give 127·a/254 = a/2, rounded
        // down to even (a = 1, 5, …) or up to even (a = 3, 7, …).
        let ties: std::vec::Vec<i32> = core::iter::once(254)
            .chain((0..40).map(|i| if i % 3 == 0 { -(2 * i + 1) } else { 2 * i + 1 }))
            .collect();
        let ones: std::vec::Vec<u8> = ties.iter().flat_map(|_| 1i32.to_le_bytes()).collect();
        let (mut a, mut b) = (std::vec![5i8; ties.len()], std::vec![5i8; ties.len()]);
        let sa = rmsnorm_quantize_scalar(&ties, scale, Gains::from_bytes(&ones), eps, &mut a);
        // SAFETY: AVX2 is supported (checked above).
        let sb =
            unsafe { rmsnorm_quantize_avx2(&ties, scale, Gains::from_bytes(&ones), eps, &mut b) };
        assert_eq!((sa, &a), (sb, &b), "rmsnorm ties");
        assert_eq!(&a[1..5], &[-0, 2, 2, -4], "127·a/254 = a/2 to even");
        let ties64: std::vec::Vec<i64> = ties.iter().map(|t| *t as i64).collect();
        let (mut a, mut b) = (std::vec![5i8; ties.len()], std::vec![5i8; ties.len()]);
        absmax_quantize_scalar(&ties64, &mut a);
        // SAFETY: as above.
        unsafe { absmax_quantize_avx2(&ties64, &mut b) };
        assert_eq!(a, b, "absmax ties");
        for round in 0..600 {
            let n = 1 + (next() % 70) as usize;
            let shift = (next() % 32) as u32;
            let x: std::vec::Vec<i32> = (0..n)
                .map(|_| match next() % 16 {
                    0 => 0,
                    1 => i32::MIN,
                    2 => i32::MAX,
                    _ => (next() as i32) >> shift,
                })
                .collect();
            let x = if round % 50 == 0 { std::vec![0; n] } else { x };
            let g: std::vec::Vec<u8> = (0..n)
                .flat_map(|_| ((next() as i32) >> (next() % 31)).to_le_bytes())
                .collect();
            let gains = Gains::from_bytes(&g);
            let (mut a, mut b) = (std::vec![5i8; n + 3], std::vec![5i8; n + 3]);
            let sa = rmsnorm_quantize_scalar(&x, scale, gains, eps, &mut a);
            // SAFETY: AVX2 is supported (checked above).
            let sb = unsafe { rmsnorm_quantize_avx2(&x, scale, gains, eps, &mut b) };
            assert_eq!((sa, &a), (sb, &b), "rmsnorm n={n}");
            let v: std::vec::Vec<i64> = (0..n)
                .map(|_| match next() % 16 {
                    0 => 0,
                    1 => i64::MAX,
                    2 => -i64::MAX,
                    _ => (next() as i64) >> (next() % 64),
                })
                .collect();
            let (mut a, mut b) = (std::vec![5i8; n], std::vec![5i8; n]);
            let ma = absmax_quantize_scalar(&v, &mut a);
            // SAFETY: as above.
            let mb = unsafe { absmax_quantize_avx2(&v, &mut b) };
            assert_eq!((ma, &a), (mb, &b), "absmax n={n}");
        }
    }

    #[test]
    fn q127_by_multiply_equals_division() {
        let mut rng = crate::rng::SplitMix64(0x2545_F491_4F6C_DD1D);
        let mut next = move || rng.next_u64();
        let mut ms: std::vec::Vec<u32> = (1..=300).collect();
        for b in 1..24 {
            ms.extend([(1 << b) - 1, 1 << b, (1 << b) + 1]);
        }
        ms.push((1 << 24) - 1);
        for _ in 0..2000 {
            ms.push(1 + (next() % ((1 << 24) - 1)) as u32);
        }
        for m in ms {
            let d = Q127::new(m);
            assert_eq!(d.hi, 1, "the magic of {m} lies in [2^32, 2^33)");
            // Ends, halves (ties), and random numerators.
            let mut a_s = std::vec![0, 1, m, m - 1, m / 2, m / 2 + 1, m.saturating_sub(2)];
            a_s.extend((0..64).map(|_| (next() % (m as u64 + 1)) as u32));
            for a in a_s.into_iter().filter(|a| *a <= m) {
                assert_eq!(d.of(a), q127(a, m), "a={a} m={m}");
            }
        }
        // Every numerator for a few divisors.
        for m in [1, 2, 3, 127, 254, 1000, 65_537] {
            let d = Q127::new(m);
            for a in 0..=m {
                assert_eq!(d.of(a), q127(a, m), "a={a} m={m}");
            }
        }
    }

    #[test]
    fn the_32_bit_twins_equal_the_definitions() {
        let mut rng = crate::rng::SplitMix64(0x0DDB_1A5E_5BAD_5EED);
        let mut next = move || rng.next_u64();
        let eps = Dyadic::from_ieee754(1e-5f64.to_bits()).unwrap();
        let (mut twins_absmax, mut twins_rms) = (0, 0);
        for case in 0..3000 {
            let n = [1, 2, 5, 32, 128, 336][case % 6];
            let width = next() % 64; // magnitudes from 1 bit to all of them
            let wide = |v: u64| (v as i64) >> (63 - width.min(62));
            let x64: std::vec::Vec<i64> = (0..n)
                .map(|_| match next() % 16 {
                    0 => 0,
                    1 => (1 << 62) * if next() & 1 == 0 { 1 } else { -1 },
                    _ => wide(next()),
                })
                .collect();
            let x32: std::vec::Vec<i32> = (0..n)
                .map(|_| match next() % 16 {
                    0 => 0,
                    1 => i32::MIN + 1,
                    2 => i32::MAX,
                    _ => (next() as i32) >> (width % 32),
                })
                .collect();
            let gbytes: std::vec::Vec<u8> = (0..n)
                .flat_map(|_| {
                    let g = match next() % 8 {
                        0 => 0,
                        1 => -(1 << 16),
                        _ => (next() as i32) >> (1 + next() % 31),
                    };
                    g.to_le_bytes()
                })
                .collect();
            let gain = Gains::from_bytes(&gbytes);
            let scale = Dyadic {
                mant: (next() as u32) | 1 << 31,
                exp: (next() % 80) as i32 - 70,
            };

            let (mut a, mut b) = (std::vec![7i8; n], std::vec![7i8; n]);
            let want = absmax_quantize_scalar(&x64, &mut a);
            if let Some(got) = absmax_quantize_32(&x64, &mut b) {
                assert_eq!(got, want, "absmax {x64:?}");
                twins_absmax += 1;
            } else {
                assert_eq!(b, std::vec![7i8; n], "nothing written");
                b.copy_from_slice(&a);
            }
            assert_eq!(a, b, "absmax {x64:?}");
            let (mut a, mut b) = (std::vec![7i32; n], std::vec![7i32; n]);
            assert_eq!(
                to_block_i32(&x64, scale, &mut a),
                to_block_i32_32(&x64, scale, &mut b),
                "block {x64:?}"
            );
            assert_eq!(a, b, "block {x64:?}");
            let (mut a, mut b) = (std::vec![7i8; n + 3], std::vec![7i8; n + 3]);
            let want = rmsnorm_quantize_scalar(&x32, scale, gain, eps, &mut a);
            if let Some(got) = rmsnorm_quantize_32(&x32, scale, gain, eps, &mut b) {
                assert_eq!(got, want, "rmsnorm {x32:?}");
                twins_rms += 1;
            } else {
                assert_eq!(b, std::vec![7i8; n + 3], "nothing written");
                b.copy_from_slice(&a);
            }
            assert_eq!(a, b, "rmsnorm {x32:?}");
        }
        // Both paths of each are taken: the twins, and the definitions for the huge
        // magnitudes that are rare in a model (the random magnitudes here span every bit
        // length, so many cases).
        for (name, twins) in [("absmax", twins_absmax), ("rmsnorm", twins_rms)] {
            assert!(
                twins > 300 && twins < 2900,
                "{name}: {twins} of 3000 cases in the twin"
            );
        }
    }
}
