//! 32-bit twins of [`rmsnorm_quantize`](super::norm::rmsnorm_quantize),
//! [`absmax_quantize`](super::norm::absmax_quantize) and [`to_block_i32`](super::norm::to_block_i32),
//! which call them on 32-bit Arm: the same bits (tested in `norm`), with the 64-bit products and
//! shifts split so that a 32-bit core does each with one or two instructions: magnitudes as `u32`
//! times `u32` (`UMULL`), a shift of a 64-bit magnitude to 24 or 30 bits as two 32-bit shifts
//! chosen once per vector, and the bit length of a maximum taken from the OR of the magnitudes
//! (the same bit length, no compares). The Cortex-M33 loops are `asm!` (`runtime_dsp`).

use crate::blob::format::GAIN_FRAC_BITS;
use crate::blob::model::Gains;
use crate::fixed::Q127;
use crate::fixed::{bit_len, Dyadic, INV_127};
use crate::kernels::max_abs_i64;

/// `(v >> k) as i32` (an arithmetic shift) for a value whose result fits 32 bits, as two 32-bit
/// shifts.
#[inline(always)]
fn shr_to_i32(v: i64, k: u32) -> i32 {
    let (hi, lo) = ((v >> 32) as i32, v as u32);
    if k >= 32 {
        hi >> (k - 32)
    } else {
        // The low word of v >> k; k = 0 only when v fits 32 bits (wrapping_shl(32) shifts by 0).
        ((lo >> k) | (hi as u32).wrapping_shl(32 - k)) as i32
    }
}

/// [`Q127::of`]`(a)`, negated when `neg`. The magic's top bit `hi` is always 1
/// (`2^(l−1) < m ≤ 2^l`, so `2^(32+l) / m` lies in `[2^32, 2^33)`; tested), which saves the loops
/// a register; the rounding test `2r > m || (2r == m && q odd)` is `2r + (q & 1) > m`.
#[inline(always)]
fn q127_signed(q: &Q127, a: u32, neg: bool) -> i8 {
    debug_assert_eq!(q.hi, 1);
    let n = 127 * a;
    let t = ((((n as u64 * q.lo as u64) >> 32) as u32) + n) >> q.l;
    let r = n - t * q.m;
    let out = (t + (2 * r + (t & 1) > q.m) as u32) as i32;
    debug_assert_eq!(out, q.of(a));
    (if neg { -out } else { out }) as i8
}

/// `(OR |x_i|, OR |g_i|, max |x_i·g_i|)`: the first pass of [`rmsnorm_quantize_32`] (the ORs
/// have the bit lengths of the maxima).
#[inline(always)]
fn rms_scan(x: &[i32], gains: &[[u8; 4]]) -> (u32, u32, u64) {
    #[cfg(runtime_dsp)]
    if let Some(r) = rms_scan_dsp(x, gains) {
        return r;
    }
    let (mut or, mut gor, mut m) = (0u32, 0u32, 0u64);
    for (v, g) in x.iter().zip(gains) {
        let g = i32::from_le_bytes(*g).unsigned_abs();
        or |= v.unsigned_abs();
        gor |= g;
        m = m.max(v.unsigned_abs() as u64 * g as u64);
    }
    (or, gor, m)
}

/// [`rms_scan`] as an `asm!` loop for the Cortex-M33 (the compiled loop ran out of registers
/// and kept its maxima on the stack): the 64-bit maximum is updated by a branch that is
/// rarely taken; `None` for an empty input.
#[cfg(runtime_dsp)]
fn rms_scan_dsp(x: &[i32], gains: &[[u8; 4]]) -> Option<(u32, u32, u64)> {
    let n = x.len().min(gains.len());
    if n == 0 {
        return None;
    }
    let (mut or, mut gor, mut mlo, mut mhi) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: reads x[i] and the word gains[i] for i < n (unaligned word loads are allowed on
    // Armv8-M for normal memory); only register operands change; no stack; flags are not
    // preserved (the default).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {v}, [{px}], #4",
            "ldr {g}, [{pg}], #4",
            "cmp {v}, #0",
            "it mi",
            "rsbmi {v}, {v}, #0",
            "cmp {g}, #0",
            "it mi",
            "rsbmi {g}, {g}, #0",
            "orr {or}, {or}, {v}",
            "umull {lo}, {hi}, {v}, {g}",
            "orr {gor}, {gor}, {g}",
            "subs {v}, {mlo}, {lo}",
            "sbcs {v}, {mhi}, {hi}",
            "blo 4f",
            "3:",
            "cmp {px}, {end}",
            "bne 2b",
            "b 5f",
            "4:",
            "mov {mlo}, {lo}",
            "mov {mhi}, {hi}",
            "b 3b",
            "5:",
            px = inout(reg) x.as_ptr() => _,
            pg = inout(reg) gains.as_ptr() => _,
            end = in(reg) x.as_ptr().wrapping_add(n),
            or = inout(reg) or,
            gor = inout(reg) gor,
            mlo = inout(reg) mlo,
            mhi = inout(reg) mhi,
            v = out(reg) _,
            g = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            options(nostack, readonly),
        );
    }
    Some((or, gor, (mhi as u64) << 32 | mlo as u64))
}

/// `out[i] = ±q(|x_i·g_i| >> (32 − sh))` with `|x_i·g_i| >> (32 − sh)` taken as the high word
/// of `|x_i| · (|g_i| << sh)` (every `|g_i| << sh` fits 32 bits): the quantization loop of
/// [`rmsnorm_quantize_32`].
#[inline(always)]
fn rms_quantize(x: &[i32], gains: &[[u8; 4]], out: &mut [i8], sh: u32, q: &Q127) {
    #[cfg(runtime_dsp)]
    if rms_quantize_dsp(x, gains, out, sh, q) {
        return;
    }
    for ((o, v), g) in out.iter_mut().zip(x).zip(gains) {
        let g = i32::from_le_bytes(*g);
        let a = ((v.unsigned_abs() as u64 * (g.unsigned_abs() << sh) as u64) >> 32) as u32;
        // The sign of x·g when it is not 0 (when it is, q is 0 either way).
        *o = q127_signed(q, a, (*v ^ g) < 0);
    }
}

/// [`rms_quantize`] as an `asm!` loop for the Cortex-M33: [`q127_signed`] in registers (the
/// compiled loop kept the divisor's constants on the stack), with no multiply result used the
/// cycle after it is produced where another instruction can go between. `false` for an empty
/// input.
#[cfg(runtime_dsp)]
fn rms_quantize_dsp(x: &[i32], gains: &[[u8; 4]], out: &mut [i8], sh: u32, q: &Q127) -> bool {
    let n = x.len().min(gains.len()).min(out.len());
    if n == 0 {
        return false;
    }
    debug_assert_eq!(q.hi, 1);
    // SAFETY: reads x[i] and the word gains[i] and writes out[i] for i < n (unaligned word
    // loads are allowed on Armv8-M for normal memory); only register operands change; no
    // stack; flags are not preserved (the default).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {v}, [{px}], #4",
            "ldr {g}, [{pg}], #4",
            "eor {s}, {v}, {g}",
            "cmp {v}, #0",
            "it mi",
            "rsbmi {v}, {v}, #0",
            "cmp {g}, #0",
            "it mi",
            "rsbmi {g}, {g}, #0",
            "lsl {g}, {g}, {sh}",
            // a = high word of |x| · (|g| << sh); n = 127·a.
            "umull {t}, {v}, {v}, {g}",
            "rsb {g}, {v}, {v}, lsl #7",
            // t = ((n · lo) >> 32 + n) >> l
            "umull {t}, {v}, {g}, {lo}",
            "add {v}, {v}, {g}",
            "lsr {v}, {v}, {l}",
            // r = n − t·m; round up when 2r + (t & 1) > m.
            "mls {t}, {v}, {m}, {g}",
            "and {g}, {v}, #1",
            "add {t}, {g}, {t}, lsl #1",
            "cmp {t}, {m}",
            "it hi",
            "addhi {v}, {v}, #1",
            "cmp {s}, #0",
            "it mi",
            "rsbmi {v}, {v}, #0",
            "strb {v}, [{po}], #1",
            "cmp {px}, {end}",
            "bne 2b",
            px = inout(reg) x.as_ptr() => _,
            pg = inout(reg) gains.as_ptr() => _,
            po = inout(reg) out.as_mut_ptr() => _,
            end = in(reg) x.as_ptr().wrapping_add(n),
            sh = in(reg) sh,
            lo = in(reg) q.lo,
            l = in(reg) q.l,
            m = in(reg) q.m,
            v = out(reg) _,
            g = out(reg) _,
            s = out(reg) _,
            t = out(reg) _,
            options(nostack),
        );
    }
    true
}

/// [`rmsnorm_quantize`] in 32-bit operations; `None` (nothing written) in the rare cases it
/// leaves to the definition.
#[cfg_attr(not(any(test, target_arch = "arm")), allow(dead_code))]
#[inline(always)]
pub(super) fn rmsnorm_quantize_32(
    x: &[i32],
    x_scale: Dyadic,
    gain: Gains<'_>,
    eps: Dyadic,
    out: &mut [i8],
) -> Option<Dyadic> {
    let n = x.len();
    // The gains as words (one unaligned load each; `Gains::iter`'s bytes load one by one).
    let gains = gain.bytes().as_chunks::<4>().0;
    // One pass for the bit lengths of max |x| and max |g| and for max |x·g| (< 2^62).
    let (or, gor, m) = rms_scan(x, gains);
    let k = bit_len(or as u64).saturating_sub(24);
    let mut sumsq = 0u64;
    for v in x {
        let a = v.unsigned_abs() >> k;
        sumsq += a as u64 * a as u64;
    }
    if m == 0 {
        out.iter_mut().take(n).for_each(|o| *o = 0);
        return Some(Dyadic::ZERO);
    }
    let kz = bit_len(m).saturating_sub(24);
    // |x·g| >> kz is the high word of |x| · (|g| << (32 − kz)) when every |g| < 2^kz (then
    // kz ≥ 1, as some g ≠ 0): one multiply, no 64-bit shift. Else (gains of 2^kz or more, in
    // practice never) the definition.
    if kz >= 32 || gor >> kz != 0 {
        return None;
    }
    rms_quantize(x, gains, out, 32 - kz, &Q127::new((m >> kz) as u32));
    let mean_sq = Dyadic::from_u64(sumsq, 2 * k as i32)
        .mul(x_scale)
        .mul(x_scale)
        .div(Dyadic::from_u64(n as u64, 0));
    let inv_rms = mean_sq.add(eps).rsqrt();
    Some(
        Dyadic::from_u64(m, -(GAIN_FRAC_BITS as i32))
            .mul(x_scale)
            .mul(inv_rms)
            .mul(INV_127),
    )
}

/// [`absmax_quantize`] in 32-bit operations; `None` (nothing written) in the rare case it leaves
/// to the definition.
#[cfg_attr(not(any(test, target_arch = "arm")), allow(dead_code))]
#[inline(always)]
pub(super) fn absmax_quantize_32(v: &[i64], out: &mut [i8]) -> Option<u64> {
    let m = max_abs_i64(v);
    if m == 0 {
        out.iter_mut().for_each(|o| *o = 0);
        return Some(0);
    }
    let k = bit_len(m).saturating_sub(24);
    if k >= 32 {
        return None; // |v| ≥ 2^55 (the definition handles it)
    }
    let mk = Q127::new((m >> k) as u32);
    for (o, x) in out.iter_mut().zip(v) {
        let a = x.unsigned_abs();
        // The 64-bit shift as two 32-bit ones; k = 0: the high word is 0 (a fits 32 bits),
        // and wrapping_shl(32) shifts by 0.
        let a = (a as u32 >> k) | ((a >> 32) as u32).wrapping_shl(32 - k);
        *o = q127_signed(&mk, a, *x < 0);
    }
    Some(m)
}

/// [`to_block_i32`] in 32-bit operations: `round(v / 2^k)` keeps 32 bits of a 64-bit sum.
#[cfg_attr(not(any(test, target_arch = "arm")), allow(dead_code))]
#[inline(always)]
pub(super) fn to_block_i32_32(x: &[i64], x_scale: Dyadic, out: &mut [i32]) -> Dyadic {
    let mut or = 0u64;
    for v in x {
        or |= v.unsigned_abs();
    }
    let k = bit_len(or).saturating_sub(30);
    if k == 0 {
        for (o, v) in out.iter_mut().zip(x) {
            *o = *v as i32;
        }
    } else {
        // |v| ≤ 2^62 (residual_add saturates there), so v + 2^(k−1) cannot overflow; the
        // shifted value fits i32, so only the low word of the result is kept.
        let half = 1i64 << (k - 1);
        for (o, v) in out.iter_mut().zip(x) {
            *o = shr_to_i32(*v + half, k);
        }
    }
    x_scale.mul(Dyadic::pow2(k as i32))
}
