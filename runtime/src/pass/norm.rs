//! RMSNorm fused with the int8 absmax quantization that follows it (Q2), and the plain absmax
//! quantization of q/k/v (Q5).
//!
//! After an RMSNorm the BitLinear input is `h_q = round(127 · (x∘g) / max|x∘g|)`: the `1/rms`
//! factor cancels and only enters the returned scale (docs/MODEL.md, "Consequences").
//!
//! The vector functions are inlined on x86-64 (each target-feature variant of the forward pass
//! gets its own vectorized copy) and kept out of line on Arm, where the pass runs from SRAM and
//! a copy at every call site cost 20 KiB of it (firmware/README.md, "Placement").

use crate::fixed::{bit_len, q127, Dyadic, INV_127};
use crate::format::GAIN_FRAC_BITS;
use crate::model::Gains;

/// [`q127`] for one divisor `m` shared by a whole vector, with the division
/// replaced by a multiply-high (Granlund–Montgomery, "Division by invariant integers using
/// multiplication", 1994, Thm 4.2): with `l = ⌈log2 m⌉` and `magic = ⌈2^(32+l) / m⌉`,
/// `⌊n / m⌋ = ⌊n · magic / 2^(32+l)⌋` for every `n < 2^32`, since `magic · m − 2^(32+l) < m ≤ 2^l`.
/// Bits identical to `q127` (tested); a 32-bit division per element costs more than the rest
/// of the quantization.
///
/// `magic < 2^33` is kept as its low word and its top bit, so that `q` is one 32×32→64 multiply
/// (`UMULL` on a Cortex-M), an add and a shift: `⌊n · magic / 2^32⌋ = ⌊n · lo / 2^32⌋ + n · hi`
/// (exact: `n · hi · 2^32` has no low word), and that sum is `< 2n < 2^32`.
#[derive(Clone, Copy)]
struct Q127 {
    m: u32,
    /// Low 32 bits of `magic`.
    lo: u32,
    /// Bit 32 of `magic` (0 or 1).
    hi: u32,
    /// `l = ⌈log2 m⌉`.
    l: u32,
}

impl Q127 {
    /// For `0 < m < 2^24`.
    #[inline]
    fn new(m: u32) -> Q127 {
        debug_assert!(m > 0 && m < 1 << 24);
        let m = m.max(1);
        let l = 32 - (m - 1).leading_zeros(); // ⌈log2 m⌉ ≤ 24
        let magic = (1u64 << (32 + l)).div_ceil(m as u64); // < 2^33
        Q127 {
            m,
            lo: magic as u32,
            hi: (magic >> 32) as u32,
            l,
        }
    }

    /// `round_half_even(127 · a / m)` for `0 ≤ a ≤ m`.
    /// Overflow: `n = 127·a < 2^31`, so `⌊n · lo / 2^32⌋ + n · hi < 2n < 2^32`.
    #[inline(always)]
    fn of(&self, a: u32) -> i32 {
        debug_assert!(a <= self.m);
        let n = 127 * a;
        let high = ((n as u64 * self.lo as u64) >> 32) as u32;
        let q = (high + n * self.hi) >> self.l;
        let r = n - q * self.m;
        let up = 2 * r > self.m || (2 * r == self.m && q & 1 == 1);
        let out = (q + up as u32) as i32;
        debug_assert_eq!(out, q127(a, self.m));
        out
    }
}

/// `max |v[i]|` (0 for none) as a plain loop that is always inlined, so it vectorizes with
/// the caller's target features (`Iterator::max` may stay an out-of-line scalar call).
#[inline(always)]
pub(crate) fn max_abs_i64(v: &[i64]) -> u64 {
    let mut m = 0u64;
    for x in v {
        m = m.max(x.unsigned_abs());
    }
    m
}

/// [`max_abs_i64`] for `i32`.
#[inline(always)]
pub(crate) fn max_abs_i32(v: &[i32]) -> u32 {
    let mut m = 0u32;
    for x in v {
        m = m.max(x.unsigned_abs());
    }
    m
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
    let mean_sq = Dyadic::from_u64(sumsq, 2 * k as i32)
        .mul(x_scale)
        .mul(x_scale)
        .div(Dyadic::from_u64(n as u64, 0));
    let inv_rms = mean_sq.add(eps).rsqrt();

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
    Dyadic::from_u64(m, -(GAIN_FRAC_BITS as i32))
        .mul(x_scale)
        .mul(inv_rms)
        .mul(INV_127)
}

/// `out[i] = round_half_even(127 · v[i] / max|v|)`; returns `max|v|` (0: `out` all zero).
/// Shapes: `v [n]`, `out [n]`. Requires `|v[i]| < 2^63`.
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn absmax_quantize(v: &[i64], out: &mut [i8]) -> u64 {
    debug_assert_eq!(v.len(), out.len());
    let m = max_abs_i64(v);
    if m == 0 {
        out.iter_mut().for_each(|o| *o = 0);
        return 0;
    }
    let k = bit_len(m).saturating_sub(24);
    let mk = Q127::new((m >> k) as u32);
    for (o, x) in out.iter_mut().zip(v) {
        let q = mk.of((x.unsigned_abs() >> k) as u32);
        *o = if *x < 0 { -q } else { q } as i8;
    }
    m
}

/// Copies the residual stream into `out` as `i32` with one shared rounding shift so that
/// `|out[i]| ≤ 2^30`; returns the real value of one unit of `out`. Shapes: `x [n]`, `out [n]`.
#[cfg_attr(target_arch = "arm", inline(never))]
#[cfg_attr(not(target_arch = "arm"), inline(always))]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn to_block_i32(x: &[i64], x_scale: Dyadic, out: &mut [i32]) -> Dyadic {
    debug_assert_eq!(x.len(), out.len());
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
    use super::{q127, Q127};

    #[test]
    fn q127_by_multiply_equals_division() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
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
}
