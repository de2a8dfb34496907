//! RMSNorm fused with the int8 absmax quantization that follows it (Q2), and the plain absmax
//! quantization of q/k/v (Q5).
//!
//! After an RMSNorm the BitLinear input is `h_q = round(127 · (x∘g) / max|x∘g|)`: the `1/rms`
//! factor cancels and only enters the returned scale (docs/MODEL.md, "Consequences").

use crate::fixed::{bit_len, q127, Dyadic, INV_127};
use crate::format::GAIN_FRAC_BITS;
use crate::model::Gains;

/// `out = Q2(RMSNorm(x; g))`. Shapes: `x [n]`, `gain [n]`, `out [≥ n]` (only `out[..n]` written).
///
/// `x` holds integers whose real values are `x[i] · x_scale`; `gain` is Q15.16; `eps` is the
/// real `norm_eps`. Returns `s`, the real value of one unit of `out` (`h_i ≈ s · out[i]`), or
/// zero when `x∘g` is all zero (then `out` is all zero). The Q2 floor `max(absmax, 1e-5)` is
/// not applied: it only matters when every `|h_i| < 1e-5`.
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
    let maxabs = x.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
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
    let m = x
        .iter()
        .zip(gain.iter())
        .map(|(v, g)| (*v as i64 * g as i64).unsigned_abs())
        .max()
        .unwrap_or(0);
    if m == 0 {
        out.iter_mut().take(n).for_each(|o| *o = 0);
        return Dyadic::ZERO;
    }
    let kz = bit_len(m).saturating_sub(24);
    let mz = (m >> kz) as u32; // in [1, 2^24)
    for ((o, v), g) in out.iter_mut().zip(x).zip(gain.iter()) {
        let z = *v as i64 * g as i64;
        let q = q127((z.unsigned_abs() >> kz) as u32, mz);
        *o = if z < 0 { -q } else { q } as i8;
    }
    Dyadic::from_u64(m, -(GAIN_FRAC_BITS as i32))
        .mul(x_scale)
        .mul(inv_rms)
        .mul(INV_127)
}

/// `out[i] = round_half_even(127 · v[i] / max|v|)`; returns `max|v|` (0: `out` all zero).
/// Shapes: `v [n]`, `out [n]`. Requires `|v[i]| < 2^63`.
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn absmax_quantize(v: &[i64], out: &mut [i8]) -> u64 {
    debug_assert_eq!(v.len(), out.len());
    let m = v.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
    if m == 0 {
        out.iter_mut().for_each(|o| *o = 0);
        return 0;
    }
    let k = bit_len(m).saturating_sub(24);
    let mk = (m >> k) as u32;
    for (o, x) in out.iter_mut().zip(v) {
        let q = q127((x.unsigned_abs() >> k) as u32, mk);
        *o = if *x < 0 { -q } else { q } as i8;
    }
    m
}

/// Copies the residual stream into `out` as `i32` with one shared rounding shift so that
/// `|out[i]| ≤ 2^30`; returns the real value of one unit of `out`. Shapes: `x [n]`, `out [n]`.
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) fn to_block_i32(x: &[i64], x_scale: Dyadic, out: &mut [i32]) -> Dyadic {
    debug_assert_eq!(x.len(), out.len());
    let m = x.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
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
