//! Fixed-point building blocks: the [`Dyadic`] scale type, rounding shifts, the integer `exp`.
//!
//! Per-element data (activations, weights, residual stream) are plain integers. Every real
//! factor that multiplies a whole vector (a norm's `1/rms`, an activation scale, a matrix scale
//! `γ`, an attention weight) is a [`Dyadic`]: a 32-bit mantissa and a power-of-two exponent, so
//! its relative precision is 2^-31 whatever its magnitude. Dyadic arithmetic costs a handful of
//! 64-bit operations and runs once per vector or per head, never per weight.

use serde::{Deserialize, Serialize};

/// A non-negative real number `mant · 2^exp`.
///
/// In the blob (matrix scales `γ`, embedding row scales, `norm_eps`) any `mant`/`exp` pair
/// within the validated exponent range is accepted; `tools pack` should write the normalized
/// form (`mant` in `[2^31, 2^32)`), see `FORMAT.md` §"Fixed-point formats". Inside the runtime
/// every value is kept normalized (or is zero: `mant == 0`, `exp == 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C)]
pub struct Dyadic {
    /// Mantissa (an unsigned integer).
    pub mant: u32,
    /// Power-of-two exponent: the value is `mant · 2^exp`.
    pub exp: i32,
}

/// Smallest exponent a stored [`Dyadic`] may have (validated at load).
pub const DYADIC_EXP_MIN: i32 = -160;
/// Largest exponent a stored [`Dyadic`] may have (validated at load).
pub const DYADIC_EXP_MAX: i32 = 96;

/// Internal exponent clamp: results smaller than `2^-2000` become zero, larger saturate.
pub(crate) const EXP_FLOOR: i32 = -2000;
pub(crate) const EXP_CEIL: i32 = 2000;

/// `1/127` (the int8 absmax step), normalized.
pub(crate) const INV_127: Dyadic = Dyadic::ratio(1, 127);

impl Dyadic {
    /// Zero.
    pub const ZERO: Dyadic = Dyadic { mant: 0, exp: 0 };
    /// One (normalized).
    pub const ONE: Dyadic = Dyadic {
        mant: 1 << 31,
        exp: -31,
    };

    /// The normalized `Dyadic` nearest to the IEEE-754 binary64 number with bits `bits`
    /// (`mant ∈ [2^31, 2^32)`, the 53-bit significand rounded to 32 bits, ties away from zero;
    /// relative error ≤ 2^-32). This is the one real → `Dyadic` conversion of the project:
    /// `tools pack` stores every scale with it (`x.to_bits()`) and the tests build their models
    /// with it. Integer operations only (`FORMAT.md` §5).
    ///
    /// `None` when the number is not positive and finite, or when the result's exponent lies
    /// outside `[DYADIC_EXP_MIN, DYADIC_EXP_MAX]` (not storable in a blob).
    pub const fn from_ieee754(bits: u64) -> Option<Dyadic> {
        let negative = bits >> 63 != 0;
        let biased = ((bits >> 52) & 0x7FF) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        if negative || biased == 0x7FF || (biased == 0 && fraction == 0) {
            return None;
        }
        // value = m · 2^e with m < 2^53 (subnormals: no implicit bit).
        let (mut m, mut e) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased - 1075)
        };
        while m < (1u64 << 52) {
            m <<= 1;
            e -= 1;
        }
        // Keep the top 32 of 53 bits, rounding half up (the value is positive).
        let mut mant = (m + (1u64 << 20)) >> 21;
        e += 21;
        if mant == 1u64 << 32 {
            mant = 1u64 << 31;
            e += 1;
        }
        let d = Dyadic {
            mant: mant as u32,
            exp: e,
        };
        if d.is_storable() {
            Some(d)
        } else {
            None
        }
    }

    /// `true` when the exponent lies in the range a blob may store.
    pub const fn is_storable(self) -> bool {
        self.exp >= DYADIC_EXP_MIN && self.exp <= DYADIC_EXP_MAX
    }

    /// `true` for zero.
    pub const fn is_zero(self) -> bool {
        self.mant == 0
    }

    /// `2^e`.
    pub const fn pow2(e: i32) -> Dyadic {
        Dyadic {
            mant: 1 << 31,
            exp: e.saturating_sub(31),
        }
    }

    /// `m · 2^e`, normalized with round-to-nearest.
    pub const fn from_u64(m: u64, e: i32) -> Dyadic {
        if m == 0 {
            return Dyadic::ZERO;
        }
        let lz = m.leading_zeros() as i32;
        let (mant, e) = if lz >= 32 {
            ((m << (lz - 32)) as u32 as u64, e.saturating_sub(lz - 32))
        } else {
            let sh = 32 - lz; // 1..=32
            let r = (m >> (sh - 1)).div_ceil(2); // round half up, may reach 2^32
            (r, e.saturating_add(sh))
        };
        let (mant, e) = if mant >> 32 != 0 {
            (mant >> 1, e.saturating_add(1))
        } else {
            (mant, e)
        };
        Dyadic::clamped(mant as u32, e)
    }

    /// `num / den` (for constants; `den > 0`), normalized.
    pub const fn ratio(num: u32, den: u32) -> Dyadic {
        Dyadic::from_u64(num as u64, 0).div(Dyadic::from_u64(den as u64, 0))
    }

    /// The same value in normalized form.
    pub const fn normalized(self) -> Dyadic {
        Dyadic::from_u64(self.mant as u64, self.exp)
    }

    /// `self · other`.
    pub const fn mul(self, other: Dyadic) -> Dyadic {
        // < 2^64: both mantissas are < 2^32.
        let p = self.mant as u64 * other.mant as u64;
        let e = self.exp.saturating_add(other.exp);
        if p >> 62 == 0 {
            return Dyadic::from_u64(p, e);
        }
        // Normalized operands (the usual case): p in [2^62, 2^64), so `from_u64` would find
        // 0 or 1 leading zeros. The same rounding without counting them: keep the top 33
        // bits, round half up to 32, renormalize if that carried to 2^32.
        let top = (p >> 63) as i32; // 1: 64 significant bits, 0: 63
        let sh = 31 + top;
        let r = ((p >> (sh - 1)) + 1) >> 1; // ≤ 2^32
        let carry = (r >> 32) as i32;
        let e = e.saturating_add(sh).saturating_add(carry);
        let mant = (r >> carry) as u32;
        Dyadic::clamped(mant, e)
    }

    /// `mant · 2^e` with the internal exponent clamp: below `2^EXP_FLOOR` it is zero, above
    /// `EXP_CEIL` it saturates.
    const fn clamped(mant: u32, e: i32) -> Dyadic {
        if e < EXP_FLOOR {
            Dyadic::ZERO
        } else if e > EXP_CEIL {
            Dyadic {
                mant: u32::MAX,
                exp: EXP_CEIL,
            }
        } else {
            Dyadic { mant, exp: e }
        }
    }

    /// `self / other`; division by zero gives the largest value.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub const fn div(self, other: Dyadic) -> Dyadic {
        let a = self.normalized();
        let b = other.normalized();
        if b.mant == 0 {
            return Dyadic {
                mant: u32::MAX,
                exp: EXP_CEIL,
            };
        }
        // a.mant << 32 ≤ 2^64 − 2^32 and b.mant/2 < 2^31: the rounded numerator fits u64.
        let q = div_u64(
            ((a.mant as u64) << 32).saturating_add(b.mant as u64 / 2),
            b.mant,
        );
        Dyadic::from_u64(q, a.exp.saturating_sub(b.exp).saturating_sub(32))
    }

    /// `self + other`.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub const fn add(self, other: Dyadic) -> Dyadic {
        let a = self.normalized();
        let b = other.normalized();
        if a.mant == 0 {
            return b;
        }
        if b.mant == 0 {
            return a;
        }
        let (hi, lo) = if a.exp >= b.exp { (a, b) } else { (b, a) };
        let diff = hi.exp.saturating_sub(lo.exp);
        // Mantissas moved up by 30 bits: each < 2^62, the sum < 2^63.
        let h = (hi.mant as u64) << 30;
        let l = if diff >= 62 {
            0
        } else {
            ((lo.mant as u64) << 30) >> diff
        };
        Dyadic::from_u64(h + l, hi.exp.saturating_sub(30))
    }

    /// `1 / sqrt(self)`; zero gives the largest value.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub const fn rsqrt(self) -> Dyadic {
        let a = self.normalized();
        if a.mant == 0 {
            return Dyadic {
                mant: u32::MAX,
                exp: EXP_CEIL,
            };
        }
        // n · 2^e2 with e2 even and n in [2^62, 2^64).
        let (n, e2) = if a.exp % 2 == 0 {
            ((a.mant as u64) << 32, a.exp - 32)
        } else {
            ((a.mant as u64) << 31, a.exp - 31)
        };
        let s = isqrt_u64(n); // in [2^31, 2^32): sqrt(value) = s · 2^(e2/2)
        let r = div_u64((1u64 << 63) + s / 2, s as u32); // 2^63 / s, in (2^31, 2^32]
        Dyadic::from_u64(r, -63 - e2 / 2)
    }

    /// Total order on values (for maxima).
    pub const fn gt(self, other: Dyadic) -> bool {
        let a = self.normalized();
        let b = other.normalized();
        if a.mant == 0 || b.mant == 0 {
            return a.mant > b.mant;
        }
        a.exp > b.exp || (a.exp == b.exp && a.mant > b.mant)
    }
}

/// `n / d` for `d > 0`: [`div_u64_by_u32`] on 32-bit Arm (where a 64-bit division is a library
/// routine of a few hundred cycles), the native division elsewhere. The same quotient.
#[inline]
pub(crate) const fn div_u64(n: u64, d: u32) -> u64 {
    if cfg!(target_arch = "arm") {
        div_u64_by_u32(n, d).0
    } else {
        n / d as u64
    }
}

/// `⌊√n⌋`: [`u64::isqrt`], except on 32-bit Arm, where that divides by 64 bits (a library
/// routine in flash): there [`isqrt_newton`].
#[inline]
const fn isqrt_u64(n: u64) -> u64 {
    if cfg!(target_arch = "arm") {
        isqrt_newton(n)
    } else {
        n.isqrt()
    }
}

/// `⌊√n⌋` by Newton's iteration `s ← ⌊(s + ⌊n/s⌋) / 2⌋` from above, dividing by 32-bit digits
/// ([`div_u64_by_u32`]). It decreases while `s > ⌊√n⌋` and stops there (the usual integer
/// argument: the next value is at least `⌊√n⌋` by AM–GM, and below `s` exactly when `s² > n`).
const fn isqrt_newton(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // A start at or above √n: 2^⌈bits/2⌉ ≤ 2^32.
    let bits = 64 - n.leading_zeros();
    let mut s = 1u64 << bits.div_ceil(2);
    loop {
        // 2 ≤ s ≤ 2^32: a 32-bit divisor, but for s = 2^32 (quotient n >> 32).
        let q = if s >> 32 != 0 {
            n >> 32
        } else {
            div_u64_by_u32(n, s as u32).0
        };
        let next = (s + q) / 2;
        if next >= s {
            return s;
        }
        s = next;
    }
}

/// `(n / d, n % d)` for `d > 0` with 32-bit divisions only (`UDIV`): the high word's quotient,
/// then the rest digit by digit in base `2^16` ([`divlu`]).
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub(crate) const fn div_u64_by_u32(n: u64, d: u32) -> (u64, u32) {
    let hi = (n >> 32) as u32;
    let q_hi = hi / d;
    let (q_lo, rem) = divlu(hi - q_hi * d, n as u32, d);
    (((q_hi as u64) << 32) | q_lo as u64, rem)
}

/// `(u1·2^32 + u0) / v` and its remainder for `u1 < v` (the quotient fits 32 bits): Knuth's
/// algorithm D with two base-`2^16` digits and a normalized divisor, as `divlu` in Warren,
/// "Hacker's Delight" (2nd ed., Figure 9–3). Each digit estimate from the divisor's top half is
/// at most 2 too large and is corrected by the usual test against the next divisor digit.
const fn divlu(u1: u32, u0: u32, v: u32) -> (u32, u32) {
    const B: u32 = 1 << 16;
    let s = v.leading_zeros();
    let v = v << s;
    let (vn1, vn0) = (v >> 16, v & 0xffff);
    let un32 = if s == 0 {
        u1
    } else {
        (u1 << s) | (u0 >> (32 - s))
    };
    let un10 = u0 << s;
    let (un1, un0) = (un10 >> 16, un10 & 0xffff);
    let mut q1 = un32 / vn1;
    let mut rhat = un32 - q1 * vn1;
    while q1 >= B || (q1 as u64) * (vn0 as u64) > ((rhat as u64) << 16) + un1 as u64 {
        q1 -= 1;
        rhat += vn1;
        if rhat >= B {
            break;
        }
    }
    // The true value of un21 is below v: the wrapping arithmetic gives it exactly.
    let un21 = (un32 << 16)
        .wrapping_add(un1)
        .wrapping_sub(q1.wrapping_mul(v));
    let mut q0 = un21 / vn1;
    let mut rhat = un21 - q0 * vn1;
    while q0 >= B || (q0 as u64) * (vn0 as u64) > ((rhat as u64) << 16) + un0 as u64 {
        q0 -= 1;
        rhat += vn1;
        if rhat >= B {
            break;
        }
    }
    let rem = (un21 << 16)
        .wrapping_add(un0)
        .wrapping_sub(q0.wrapping_mul(v))
        >> s;
    ((q1 << 16) + q0, rem)
}

/// `round(x · d · 2^frac_bits)` with `|x| < 2^31`, saturated to `±2^62`.
///
/// Overflow: `|x · d.mant| < 2^31 · 2^32 = 2^63` fits `i64` before the shift. `x` fits `i32`,
/// so the product is one `32 × 32 → 64` multiply (a 32-bit core's `i64` multiply is three), and
/// a right shift rounds with one variable shift: `|p| < 2^63 − 2^32`, so `p + 1` cannot overflow.
#[inline]
pub(crate) fn mul_round(x: i64, d: Dyadic, frac_bits: i32) -> i64 {
    debug_assert!(x.unsigned_abs() <= 1 << 31 && x < 1 << 31);
    let p = x as i32 as i64 * d.mant as i64;
    let sh = d.exp.saturating_add(frac_bits);
    if sh < 0 {
        let r = sh.unsigned_abs();
        // shift_round's (p >> r) + ((p >> (r − 1)) & 1).
        return if r >= 64 {
            0
        } else {
            ((p >> (r - 1)) + 1) >> 1
        };
    }
    shift_round(p, sh)
}

/// `round(p · 2^sh)`: right shifts round half up, left shifts saturate at `±2^62`.
#[inline]
pub(crate) fn shift_round(p: i64, sh: i32) -> i64 {
    if sh >= 0 {
        if p == 0 {
            0
        } else if sh >= 62 || p.unsigned_abs().leading_zeros() <= sh as u32 + 1 {
            if p > 0 {
                1 << 62
            } else {
                -(1 << 62)
            }
        } else {
            p << sh
        }
    } else {
        let r = sh.unsigned_abs();
        if r >= 64 {
            0
        } else {
            // (p + 2^(r-1)) >> r without overflow: split into the shifted part and the carry.
            (p >> r) + ((p >> (r - 1)) & 1)
        }
    }
}

/// Saturate an `i64` into `i32`.
#[inline]
pub(crate) fn sat_i32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Number of significant bits of `v` (0 for 0).
#[inline]
pub(crate) const fn bit_len(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// `round_half_even(127 · a / m)` for `0 ≤ a ≤ m`, `0 < m < 2^24`: the int8 absmax step (Q2/Q5).
#[inline]
pub(crate) fn q127(a: u32, m: u32) -> i32 {
    debug_assert!(a <= m && m > 0 && m < 1 << 24);
    let n = 127 * a; // < 2^31
    let q = n / m;
    let r = n % m;
    let up = 2 * r > m || (2 * r == m && q & 1 == 1);
    (q + up as u32) as i32
}

/// `2^(-j/64)` in Q30 for `j = 0..64` (checked against the real function in the tests).
pub(crate) const EXP2_NEG_Q30: [u32; 64] = [
    1073741824, 1062175491, 1050733751, 1039415261, 1028218693, 1017142735, 1006186087, 995347464,
    984625594, 974019220, 963527098, 953147997, 942880699, 932724001, 922676710, 912737649,
    902905651, 893179563, 883558244, 874040567, 864625413, 855311680, 846098274, 836984114,
    827968132, 819049271, 810226483, 801498734, 792865000, 784324269, 775875538, 767517817,
    759250125, 751071493, 742980960, 734977579, 727060411, 719228525, 711481005, 703816941,
    696235434, 688735596, 681316545, 673977412, 666717336, 659535466, 652430958, 645402981,
    638450708, 631573326, 624770026, 618040012, 611382493, 604796689, 598281827, 591837143,
    585461881, 579155293, 572916640, 566745190, 560640218, 554601009, 548626854, 542717053,
];
/// `log2(e)` in Q30.
pub(crate) const LOG2E_Q30: i64 = 1549082005;
/// `ln(2)` in Q30.
pub(crate) const LN2_Q30: i64 = 744261118;

/// `exp(-z / 2^24)` in Q30 (so `exp_neg_q24(0) == 2^30`), for `z ≥ 0` given in Q24.
///
/// Method: `t = z · log2(e)` (Q26), `2^-t = 2^-n · 2^(-j/64) · 2^(-r)` with a 64-entry table
/// and a cubic for `2^(-r) = e^(-x)`, `x = r·ln2 < 0.0109` (truncation error < 6e-10). The
/// relative error is below 1e-7 for results above 0.05 and the absolute error below 1e-8
/// (measured in the tests); results below 2^-30 flush to zero
/// (`z ≥ 21.5` nats).
pub(crate) fn exp_neg_q24(z: u64) -> u32 {
    // Beyond 32 nats the result is 0; below, z · LOG2E_Q30 < 2^29 · 2^31 = 2^60.
    if z >= 32 << 24 {
        return 0;
    }
    let t = ((z as i64 * LOG2E_Q30 + (1 << 27)) >> 28) as u64; // Q26, error ≤ 2^-27
    let n = t >> 26;
    if n >= 31 {
        return 0;
    }
    let f = t & ((1 << 26) - 1);
    let j = (f >> 20) as usize; // 0..64
    let r = (f & ((1 << 20) - 1)) as i64; // Q26, < 2^20 (r < 1/64)
    let x = (r * LN2_Q30) >> 26; // Q30, < 0.0109 · 2^30; r · LN2_Q30 < 2^50
    let x2 = (x * x) >> 30;
    let x3 = (x2 * x) >> 30;
    // x ≥ 0, so x3 < 2^12 is non-negative: dividing it as u32 gives the same quotient without
    // a 64-bit division (a library call on 32-bit cores).
    let poly = (1i64 << 30) - x + x2 / 2 - ((x3 as u32) / 6) as i64; // e^(-x) in Q30, in (0, 2^30]
    let table = match EXP2_NEG_Q30.get(j) {
        Some(&v) => v as i64,
        None => 0,
    };
    // table · poly < 2^60; the product is Q60, back to Q30 with rounding, then 2^-n.
    let v = (table * poly + (1 << 29)) >> 30;
    ((v + ((1 << n) >> 1)) >> n) as u32
}

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
pub(crate) struct Q127 {
    pub(crate) m: u32,
    /// Low 32 bits of `magic`.
    pub(crate) lo: u32,
    /// Bit 32 of `magic` (0 or 1).
    pub(crate) hi: u32,
    /// `l = ⌈log2 m⌉`.
    pub(crate) l: u32,
}

impl Q127 {
    /// For `0 < m < 2^24`.
    #[inline]
    pub(crate) fn new(m: u32) -> Q127 {
        debug_assert!(m > 0 && m < 1 << 24);
        let m = m.max(1);
        let l = 32 - (m - 1).leading_zeros(); // ⌈log2 m⌉ ≤ 24
                                              // ⌈2^(32+l) / m⌉ < 2^33, with 32-bit divisions (a 64-bit one is a library call on Arm).
        let (q, r) = div_u64_by_u32(1u64 << (32 + l), m);
        let magic = q + (r != 0) as u64;
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
    pub(crate) fn of(&self, a: u32) -> i32 {
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

/// A [`Dyadic`] in one `i64` slot (exponent high, mantissa low); [`unpack_dyadic`] inverts it.
#[inline(always)]
pub(crate) fn pack_dyadic(d: Dyadic) -> i64 {
    ((d.exp as i64) << 32) | d.mant as i64
}

#[inline(always)]
pub(crate) fn unpack_dyadic(v: i64) -> Dyadic {
    Dyadic {
        mant: v as u32,
        exp: (v >> 32) as i32,
    }
}

/// [`Dyadic::gt`] for operands that are already normalized (every result of `mul`, and zero):
/// the same order without normalizing both sides again (this runs once per key and head).
#[inline(always)]
pub(crate) fn gt_normalized(a: Dyadic, b: Dyadic) -> bool {
    let r = if a.mant == 0 || b.mant == 0 {
        a.mant > b.mant
    } else {
        a.exp > b.exp || (a.exp == b.exp && a.mant > b.mant)
    };
    debug_assert_eq!(r, a.gt(b));
    r
}

#[cfg(test)]
#[allow(clippy::float_arithmetic)] // the tests compare with real-valued references
mod tests {
    use super::*;

    /// The float formulation (`tools pack`'s before this function existed): `f = x / 2^e` in
    /// `[0.5, 1)`, `mant = round(f · 2^32)`.
    fn dyadic_by_floats(x: f64) -> Dyadic {
        let mut e = x.log2().floor() as i32 + 1;
        let mut f = x / 2f64.powi(e);
        while f >= 1.0 {
            f /= 2.0;
            e += 1;
        }
        while f < 0.5 {
            f *= 2.0;
            e -= 1;
        }
        let mut mant = (f * 4294967296.0).round() as u64;
        if mant == 1 << 32 {
            mant = 1 << 31;
            e += 1;
        }
        Dyadic {
            mant: mant as u32,
            exp: e - 32,
        }
    }

    #[test]
    fn from_ieee754_matches_the_float_formulation() {
        let mut rng = crate::rng::SplitMix64(0x1234_5678_9abc_def0);
        let mut xs = std::vec![1e-5, 1.0 / 127.0, 0.1, 1.0, 1.5, 3.0, 127.0, 1e6];
        for k in -100..60 {
            let p = 2f64.powi(k);
            // Powers of two, their neighbours, and values just below a rounding carry.
            xs.extend([p, p * (1.0 - f64::EPSILON), p * (1.0 + f64::EPSILON)]);
            xs.push(p * (1.0 - 2f64.powi(-33)));
            xs.push(p * (1.0 - 2f64.powi(-32)));
        }
        for _ in 0..20_000 {
            let seed = rng.next_u64();
            let x = f64::from_bits((seed >> 12) | (0x3C0u64 << 52)) * 2f64.powi((seed % 97) as i32);
            xs.push(x);
        }
        for x in xs {
            let want = dyadic_by_floats(x);
            let got = Dyadic::from_ieee754(x.to_bits());
            if want.is_storable() {
                assert_eq!(got, Some(want), "{x:e}");
                assert!(want.mant >= 1 << 31);
            } else {
                assert_eq!(got, None, "{x:e}");
            }
        }
        for bad in [
            0.0,
            -0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e300,
            1e-300,
            5e-324,
        ] {
            assert_eq!(Dyadic::from_ieee754(f64::to_bits(bad)), None, "{bad:e}");
        }
    }

    fn val(d: Dyadic) -> f64 {
        d.mant as f64 * (d.exp as f64).exp2()
    }

    #[test]
    fn table_matches_exp2() {
        for (j, &v) in EXP2_NEG_Q30.iter().enumerate() {
            let want = (-(j as f64) / 64.0).exp2() * (1u64 << 30) as f64;
            assert!((v as f64 - want).abs() <= 0.5, "j={j}");
        }
        assert_eq!(
            LOG2E_Q30,
            (std::f64::consts::LOG2_E * 2f64.powi(30)).round() as i64
        );
        assert_eq!(
            LN2_Q30,
            (std::f64::consts::LN_2 * 2f64.powi(30)).round() as i64
        );
    }

    #[test]
    fn exp_accuracy() {
        let mut worst_rel: f64 = 0.0;
        let mut worst_abs: f64 = 0.0;
        for z in (0u64..(24 << 24)).step_by(37 << 8) {
            let got = exp_neg_q24(z) as f64 / 2f64.powi(30);
            let want = (-(z as f64) / 16777216.0).exp();
            worst_abs = worst_abs.max((got - want).abs());
            if want > 0.05 {
                worst_rel = worst_rel.max((got - want).abs() / want);
            }
        }
        assert!(worst_rel < 1e-7, "rel {worst_rel}");
        assert!(worst_abs < 1e-8, "abs {worst_abs}");
        assert_eq!(exp_neg_q24(0), 1 << 30);
        assert_eq!(exp_neg_q24(u64::MAX), 0);
    }

    #[test]
    fn dyadic_ops() {
        let xs = [
            1e-9, 3.3e-5, 0.001, 0.5, 1.0, 1.5, 7.0, 127.0, 12345.678, 3.1e9,
        ];
        let to = |x: f64| {
            let e = x.log2().floor() as i32 - 31;
            Dyadic::from_u64((x / (e as f64).exp2()).round() as u64, e)
        };
        for &a in &xs {
            for &b in &xs {
                let (da, db) = (to(a), to(b));
                let rel = |g: f64, w: f64| ((g - w) / w).abs();
                assert!(rel(val(da.mul(db)), a * b) < 1e-9);
                assert!(rel(val(da.div(db)), a / b) < 1e-9);
                assert!(rel(val(da.add(db)), a + b) < 1e-9);
            }
            assert!(((val(to(a).rsqrt()) - 1.0 / a.sqrt()) * a.sqrt()).abs() < 1e-9);
        }
        assert!((val(INV_127) - 1.0 / 127.0).abs() < 1e-12);
        assert_eq!(val(Dyadic::ONE), 1.0);
        assert!(to(2.0).gt(to(1.5)) && !to(1.5).gt(to(2.0)) && to(1e-9).gt(Dyadic::ZERO));
    }

    #[test]
    fn mul_fast_path_matches_from_u64() {
        let mut rng = crate::rng::SplitMix64(0x2545_F491_4F6C_DD1D);
        let mut next = move || rng.next_u64();
        let edge = [
            1u32 << 31,
            (1 << 31) + 1,
            u32::MAX,
            u32::MAX - 1,
            0xB504_F334,
            0xB504_F333,
        ];
        let exps = [0, -31, 5, -1000, 1000, -2000, 1990, i32::MIN, i32::MAX];
        for i in 0..20000 {
            let pick = |r: u64| -> u32 {
                if r.is_multiple_of(4) {
                    edge[(r >> 8) as usize % edge.len()]
                } else if r % 4 == 1 {
                    (r >> 16) as u32 >> (r % 32) // any mantissa, not normalized
                } else {
                    (r >> 16) as u32 | 1 << 31
                }
            };
            let (ra, rb) = (next(), next());
            let a = Dyadic {
                mant: pick(ra),
                exp: exps[(ra >> 40) as usize % exps.len()].saturating_sub(i % 7),
            };
            let b = Dyadic {
                mant: pick(rb),
                exp: exps[(rb >> 40) as usize % exps.len()].saturating_add(i % 5),
            };
            let want = Dyadic::from_u64(a.mant as u64 * b.mant as u64, a.exp.saturating_add(b.exp));
            assert_eq!(a.mul(b), want, "{a:?} * {b:?}");
        }
    }

    #[test]
    fn exp_polynomial_small_division() {
        // The cubic's x3 / 6 as u32 equals the i64 quotient over the whole range of x3.
        for x3 in 0i64..(1 << 13) {
            assert_eq!(((x3 as u32) / 6) as i64, x3 / 6);
        }
    }

    #[test]
    fn integer_square_root() {
        let mut rng = crate::rng::SplitMix64(0xD1B5_4A32_D192_ED03);
        let mut ns: std::vec::Vec<u64> = (0..5000).collect();
        for b in 0..64 {
            let p = 1u64 << b;
            ns.extend([p - 1, p, p + 1]);
        }
        for r in [0xFFFF_FFFFu64, 0x8000_0000, 0xB504_F333, 1 << 16] {
            ns.extend([r * r - 1, r * r, r * r + 1]);
        }
        ns.push(u64::MAX);
        for _ in 0..20_000 {
            let v = rng.next_u64();
            ns.push(v >> (v & 63));
        }
        for n in ns {
            let s = n.isqrt();
            assert_eq!(isqrt_u64(n), s, "{n}");
            assert_eq!(isqrt_newton(n), s, "{n}"); // the Arm path, whatever the host
        }
    }

    #[test]
    fn division_by_32_bit_digits() {
        let mut rng = crate::rng::SplitMix64(0x9E37_79B9_7F4A_7C15);
        let mut next = move || rng.next_u64();
        let mut ds: std::vec::Vec<u32> =
            std::vec![1, 2, 3, 7, 0xffff, 0x1_0000, 0x1_0001, 0x8000_0000];
        ds.extend([
            0x8000_0001,
            0xffff_fffe,
            u32::MAX,
            0x7fff_ffff,
            0xffff_0000,
            0x8000_ffff,
        ]);
        for b in 0..32 {
            ds.extend([
                1u32 << b,
                (1u32 << b).wrapping_sub(1).max(1),
                (1u32 << b) | 1,
            ]);
        }
        for _ in 0..2000 {
            let v = next();
            ds.push(((v as u32) >> (v >> 59)).max(1));
        }
        for &d in &ds {
            let mut ns = std::vec![
                0u64,
                1,
                d as u64,
                d as u64 - 1,
                u64::MAX,
                u64::MAX - 1,
                1 << 63
            ];
            ns.extend([
                (d as u64) << 32,
                ((d as u64) << 32) - 1,
                ((d as u64) << 31) + (d as u64 / 2),
            ]);
            for _ in 0..40 {
                let v = next();
                ns.push(v >> (v & 63));
                ns.push(v);
            }
            for n in ns {
                assert_eq!(
                    div_u64_by_u32(n, d),
                    (n / d as u64, (n % d as u64) as u32),
                    "{n} / {d}"
                );
            }
        }
    }

    #[test]
    fn mul_round_is_shift_round_of_the_product() {
        let mut rng = crate::rng::SplitMix64(0x2545_F491_4F6C_DD1D);
        let mut next = move || rng.next_u64();
        let mut xs: std::vec::Vec<i64> =
            std::vec![0, 1, -1, 2, -2, 3, -3, i32::MAX as i64, i32::MIN as i64];
        for _ in 0..300 {
            let v = next();
            xs.push((v as i32 >> (v >> 59)) as i64);
        }
        for _ in 0..300 {
            let v = next();
            let d = Dyadic {
                mant: if v & 1 == 0 {
                    (v >> 32) as u32 | 1 << 31
                } else {
                    (v >> 40) as u32
                },
                exp: ((v >> 8) % 200) as i32 - 150,
            };
            for &x in &xs {
                for frac in [0, 16, 24, 32] {
                    let want = shift_round(x * d.mant as i64, d.exp.saturating_add(frac));
                    assert_eq!(mul_round(x, d, frac), want, "{x} · {d:?} · 2^{frac}");
                }
            }
        }
    }

    #[test]
    fn rounding_helpers() {
        assert_eq!(shift_round(5, -1), 3);
        assert_eq!(shift_round(-5, -1), -2);
        assert_eq!(shift_round(i64::MAX, -1), 1 << 62);
        assert_eq!(shift_round(1, 70), 1 << 62);
        assert_eq!(shift_round(-3, 2), -12);
        assert_eq!(q127(1, 2), 64); // 63.5 -> 64 (even)
        assert_eq!(q127(5, 10), 64);
        assert_eq!(q127(3, 6), 64);
        assert_eq!(q127(7, 7), 127);
        assert_eq!(q127(0, 7), 0);
        assert_eq!(mul_round(3, Dyadic::ONE, 16), 3 << 16);
    }
}
