//! The attention's per-key steps ([`softmax`](super::softmax)) written for 32-bit cores: the
//! same bits as [`attention_scores_scalar`] and [`softmax_coefficients_scalar`] (tested in the
//! shared suite), with every 64-bit product a `32 × 32 → 64` one (`UMULL` on a Cortex-M33)
//! and the normalizations and rounding shifts of [`Dyadic`] done on 32-bit halves. The generic
//! `Dyadic` code runs once per vector elsewhere; here it would run once per key and head, and
//! its 64-bit shifts and multiplies cost several times the arithmetic itself on a 32-bit core.
//! Anything outside the common case (a non-normalized scale, an extreme exponent) goes through
//! the generic code, so the results are the same for every input.
//!
//! [`attention_scores_scalar`]: super::softmax::attention_scores_scalar
//! [`softmax_coefficients_scalar`]: super::softmax::softmax_coefficients_scalar

use crate::fixed::{mul_round, Dyadic, EXP2_NEG_Q30, LN2_Q30, LOG2E_Q30};

use crate::fixed::{gt_normalized, pack_dyadic, unpack_dyadic};

/// `a · b` (one `UMULL` on 32-bit Arm).
#[inline(always)]
fn umul(a: u32, b: u32) -> u64 {
    a as u64 * b as u64
}

/// Exponent bound of the scales the fast path takes: a product of two of them, or of one and a
/// softmax weight (exponent in `[−61, −30]`), lands inside the internal exponent clamp `[−2000, 2000]`, so
/// [`Dyadic::mul`]'s clamp never applies and its saturating adds are plain adds.
const PLAIN_EXP: u32 = 960;

/// `d` is normalized (`mant ≥ 2^31`) with `|exp| ≤ PLAIN_EXP`.
#[inline(always)]
fn plain(d: &Dyadic) -> bool {
    d.mant >> 31 != 0 && d.exp.unsigned_abs() <= PLAIN_EXP
}

/// [`Dyadic::mul`] of `a_mant · 2^a_exp` (normalized, `|a_exp| ≤ PLAIN_EXP`) and a [`plain`]
/// `b`, on 32-bit halves and without branches: the product of two mantissas lies in
/// `[2^62, 2^64)`; its top bit decides a shift `s` of 0 or 1, the top 32 bits of the shifted
/// product are kept and rounded half up by the next bit, and a carry out of that rounding
/// (to `2^32`) renormalizes, as `Dyadic::mul` does.
#[inline(always)]
fn mul_plain(a_mant: u32, a_exp: i32, b: Dyadic) -> Dyadic {
    let p = umul(a_mant, b.mant);
    let (hi, lo) = ((p >> 32) as u32, p as u32);
    let s = (hi >> 31) ^ 1; // 1: 63 significant bits
    let top = (hi << s) | ((lo >> 31) & s);
    let (mant, carry) = top.overflowing_add((lo << s) >> 31);
    Dyadic {
        mant: mant | (carry as u32) << 31, // a carry left 0: 2^32 is 2^31 · 2
        exp: a_exp + b.exp + 32 - s as i32 + carry as i32,
    }
}

/// `a · b` for the rare operands [`mul_plain`] does not take: `Dyadic::mul`, out of line (in
/// flash on the Cortex-M33, away from the per-token code in RAM).
#[inline(never)]
#[cold]
fn mul_general(a: Dyadic, b: Dyadic) -> Dyadic {
    a.mul(b)
}

/// [`exp_neg_q24`](crate::fixed::exp_neg_q24) in 32-bit arithmetic: every intermediate value
/// fits 32 bits and every product is `32 × 32 → 64`. The bounds: `z < 2^29` (beyond, the
/// result is 0), so `t < 1.45 · 2^31`; `r < 2^20`, `x < 2^24`, `x2 < 2^18`, `x3 < 2^12`;
/// `poly, table ≤ 2^30`, so `v ≤ 2^30` and `v + 2^(n−1) < 2^31`.
#[inline(always)]
pub(crate) fn exp_neg_q24(z: u64) -> u32 {
    if z >= 32 << 24 {
        return 0;
    }
    let z = z as u32;
    let t = ((umul(z, LOG2E_Q30 as u32) + (1 << 27)) >> 28) as u32; // Q26
    let n = t >> 26;
    if n >= 31 {
        return 0;
    }
    let f = t & ((1 << 26) - 1);
    let r = f & ((1 << 20) - 1);
    let x = (umul(r, LN2_Q30 as u32) >> 26) as u32;
    let x2 = (umul(x, x) >> 30) as u32;
    let x3 = (umul(x2, x) >> 30) as u32;
    let poly = (1u32 << 30) - x + x2 / 2 - x3 / 6;
    let table = EXP2_NEG_Q30[(f >> 20) as usize];
    let v = ((umul(table, poly) + (1 << 29)) >> 30) as u32;
    (v + ((1 << n) >> 1)) >> n
}

/// Same contract as [`attention_scores_scalar`](super::softmax::attention_scores_scalar).
/// Out of line: inlined into the forward pass, its loop ran short of registers.
#[inline(never)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn attention_scores_32(
    dots: &[i32],
    q_scale: Dyadic,
    k_scale: &[Dyadic],
    nkv: usize,
    scores: &mut [i64],
) {
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(runtime_dsp)]
    {
        let n = scores.len().min(dots.len());
        let fits = n > 0
            && (n - 1)
                .checked_mul(nkv)
                .is_some_and(|last| last < k_scale.len());
        if plain(&q_scale) && nkv > 0 && fits {
            done = scores_dsp(&dots[..n], q_scale, k_scale, nkv, &mut scores[..n]);
        }
    }
    scores_general(dots, q_scale, k_scale, nkv, scores, done);
}

/// The loop of [`attention_scores_32`] in Rust from position `from` on: what 32-bit Arm
/// without the DSP loop runs, and the Cortex-M33 for the keys its loop does not take (out of
/// line there, in flash: never in practice).
#[cfg_attr(runtime_dsp, inline(never))]
fn scores_general(
    dots: &[i32],
    q_scale: Dyadic,
    k_scale: &[Dyadic],
    nkv: usize,
    scores: &mut [i64],
    from: usize,
) {
    let rest = scores.iter_mut().zip(dots).enumerate().skip(from);
    for (s, (score, dot)) in rest {
        let ks = k_scale.get(s * nkv).copied().unwrap_or(Dyadic::ZERO);
        let d = if plain(&q_scale) && plain(&ks) {
            mul_plain(q_scale.mant, q_scale.exp, ks)
        } else {
            mul_general(q_scale, ks)
        };
        *score = mul_round(*dot as i64, d, 24);
    }
}

/// The loop of [`attention_scores_32`] in `asm!` for the Cortex-M33, for a [`plain`] `q_scale`
/// and as long as the keys' scales are plain: [`mul_plain`] and [`mul_round`] (a right shift by
/// 1 to 63 bits) in registers, scheduled so that no load or multiply result is used the next
/// cycle. Returns the number of scores written: all of them, or the position of the first key
/// whose scale is not plain or whose rounding shifts left (the caller finishes from there).
/// `dots`, `scores` hold `n ≥ 1` entries and `k_scale` at least `(n − 1)·nkv + 1`.
#[cfg(runtime_dsp)]
fn scores_dsp(
    dots: &[i32],
    q: Dyadic,
    k_scale: &[Dyadic],
    nkv: usize,
    scores: &mut [i64],
) -> usize {
    let n = scores.len().min(dots.len());
    debug_assert!(n > 0 && (n - 1) * nkv < k_scale.len() && plain(&q));
    let base = scores.as_mut_ptr();
    let end: *mut i64;
    // SAFETY: for s < n the loop reads dots[s] and k_scale[s·nkv] (both in bounds: checked by
    // the caller) and writes scores[s]; it stops early at most. Only its register operands
    // change; no stack; flags are not preserved (the default).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {km}, [{kp}]",
            "ldr {ke}, [{kp}, #4]",
            // A plain scale: normalized, |exp| ≤ 960 (else the caller's general code).
            "tst {km}, #0x80000000",
            "beq 9f",
            "add {t}, {ke}, #960",
            "cmp {t}, #1920",
            "bhi 9f",
            // mul_plain: p = ks.mant · q.mant; s = 1 when p has 63 significant bits.
            "umull {lo}, {hi}, {km}, {qm}",
            "add {kp}, {kp}, {kstride}",
            "mvn {t}, {hi}",
            "lsr {t}, {t}, #31",
            "lsl {hi}, {hi}, {t}",
            "lsr {u}, {lo}, #31",
            "and {u}, {u}, {t}",
            "orr {hi}, {hi}, {u}",
            "lsl {lo}, {lo}, {t}",
            "adds {hi}, {hi}, {lo}, lsr #31",
            // sh = ks.exp + q.exp + 32 − s + carry + 24 (qe holds q.exp + 56).
            "adc {ke}, {ke}, {qe}",
            "sub {ke}, {ke}, {t}",
            "it cs",
            "orrcs {hi}, {hi}, #0x80000000",
            // mul_round: p = dot · mant (mant ≥ 2^31: a signed multiply, then + dot · 2^32).
            "ldr {km}, [{dp}], #4",
            "smull {lo}, {u}, {km}, {hi}",
            "add {u}, {u}, {km}",
            // r1 = r − 1 = −sh − 1; 0..=31: shift both words.
            "mvn {t}, {ke}",
            "cmp {t}, #31",
            "bhi 4f",
            "rsb {ke}, {t}, #32",
            "lsr {lo}, {lo}, {t}",
            "lsl {km}, {u}, {ke}",
            "orr {lo}, {lo}, {km}",
            "asr {u}, {u}, {t}",
            // (q + 1) >> 1 over 64 bits.
            "5:",
            "adds {lo}, {lo}, #1",
            "adc {u}, {u}, #0",
            "asrs {u}, {u}, #1",
            "rrx {lo}, {lo}",
            "6:",
            "strd {lo}, {u}, [{sp}], #8",
            "cmp {sp}, {send}",
            "bne 2b",
            "b 9f",
            // r1 in 32..=62: only the high word remains.
            "4:",
            "cmp {t}, #62",
            "bhi 7f",
            "sub {t}, {t}, #32",
            "asr {lo}, {u}, {t}",
            "asr {u}, {lo}, #31",
            "b 5b",
            // r1 ≥ 63 (r ≥ 64): 0. r1 < 0 (sh ≥ 0, a left shift): the caller's general code.
            "7:",
            "cmp {t}, #0",
            "blt 9f",
            "movs {lo}, #0",
            "movs {u}, #0",
            "b 6b",
            "9:",
            dp = inout(reg) dots.as_ptr() => _,
            kp = inout(reg) k_scale.as_ptr() => _,
            kstride = in(reg) nkv * core::mem::size_of::<Dyadic>(),
            sp = inout(reg) base => end,
            send = in(reg) base.wrapping_add(n),
            qm = in(reg) q.mant,
            qe = in(reg) q.exp + 56,
            km = out(reg) _,
            ke = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack),
        );
    }
    (end as usize - base as usize) / core::mem::size_of::<i64>()
}

/// Same contract as [`softmax_coefficients_scalar`](super::softmax::softmax_coefficients_scalar).
/// Out of line: inlined into the forward pass, its loop ran short of registers.
#[inline(never)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn softmax_coefficients_32(
    scores: &mut [i64],
    coef: &mut [i32],
    v_scale: &[Dyadic],
    nkv: usize,
) -> (Option<i32>, u64) {
    #[cfg(runtime_dsp)]
    if let Some(r) = softmax_dsp(scores, coef, v_scale, nkv) {
        return r;
    }
    softmax_general(scores, coef, v_scale, nkv)
}

/// The body of [`softmax_coefficients_32`] in Rust: what 32-bit Arm without the DSP loops
/// runs, and the Cortex-M33 for the inputs its loops do not take (out of line there, in
/// flash: never in practice).
#[cfg_attr(runtime_dsp, inline(never))]
fn softmax_general(
    scores: &mut [i64],
    coef: &mut [i32],
    v_scale: &[Dyadic],
    nkv: usize,
) -> (Option<i32>, u64) {
    let smax = scores.iter().copied().max().unwrap_or(0);
    let mut wsum = 0u64; // ≤ T · 2^30 < 2^46
    let mut cmax = Dyadic::ZERO;
    for (s, score) in scores.iter_mut().enumerate() {
        // smax ≥ score: the difference (at most 2^63) as u64 is exact; saturating it instead
        // changes nothing (both give weight 0).
        let wgt = exp_neg_q24(smax.wrapping_sub(*score) as u64);
        wsum += wgt as u64;
        let vs = v_scale.get(s * nkv).copied().unwrap_or(Dyadic::ZERO);
        let cs = weight_times(wgt, vs);
        if gt_normalized(cs, cmax) {
            cmax = cs;
        }
        *score = pack_dyadic(cs);
    }
    coefficients(scores, coef, cmax, wsum)
}

/// The last step of [`softmax_coefficients_32`]: the packed `c_s` in `scores` as integers in
/// units of `2^e`, `e = cmax.exp + 8`.
#[inline(always)]
fn coefficients(scores: &[i64], coef: &mut [i32], cmax: Dyadic, wsum: u64) -> (Option<i32>, u64) {
    let e = cmax.exp.saturating_add(8);
    for (c, packed) in coef.iter_mut().zip(scores.iter()) {
        let cs = unpack_dyadic(*packed);
        let sh = e.saturating_sub(cs.exp);
        // sh ≥ 33: mant + 2^(sh−1) < 2^sh, so 0 (as for sh ≥ 40).
        *c = if cs.is_zero() || sh >= 33 {
            0
        } else if sh >= 1 {
            // (mant + 2^(sh−1)) >> sh without leaving 32 bits.
            let q = cs.mant >> (sh - 1);
            ((q >> 1) + (q & 1)) as i32
        } else {
            ((cs.mant as u64 + (1u64 << (sh - 1))) >> sh) as i32
        };
    }
    (if cmax.is_zero() { None } else { Some(e) }, wsum)
}

/// `Dyadic::from_u64(w, −30) · vs` for a softmax weight `w` (a normalized or zero product).
#[inline(always)]
fn weight_times(w: u32, vs: Dyadic) -> Dyadic {
    if w == 0 {
        return Dyadic::ZERO;
    }
    // Dyadic::from_u64(w, −30) for 0 < w < 2^32: the mantissa moved up to bit 31.
    let lz = w.leading_zeros();
    let (mant, exp) = (w << lz, -30 - lz as i32);
    if plain(&vs) {
        mul_plain(mant, exp, vs)
    } else {
        mul_general(Dyadic { mant, exp }, vs)
    }
}

/// `exp(−z / 2^24)`'s table ([`EXP2_NEG_Q30`]) as a static for the `asm!` loop, in RAM with the
/// per-token code (from flash, the streamed weights keep evicting it from the XIP cache).
#[cfg(runtime_dsp)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
static EXP2_TABLE: [u32; 64] = EXP2_NEG_Q30;

/// [`softmax_coefficients_32`] for the Cortex-M33 with its two per-key loops in `asm!`: the
/// weights ([`exp_neg_q24`], into `coef` for the moment), then `c_s = w_s · v_scale_s`
/// ([`mul_plain`], packed into `scores`) with the running maximum; the keys from the first
/// scale that is not [`plain`] on, and the last step, in Rust. `None` (nothing done) when
/// `coef` is shorter than `scores` or a scale is missing.
#[cfg(runtime_dsp)]
fn softmax_dsp(
    scores: &mut [i64],
    coef: &mut [i32],
    v_scale: &[Dyadic],
    nkv: usize,
) -> Option<(Option<i32>, u64)> {
    let n = scores.len();
    let fits = n > 0
        && coef.len() >= n
        && nkv > 0
        && (n - 1)
            .checked_mul(nkv)
            .is_some_and(|last| last < v_scale.len());
    if !fits {
        return None;
    }
    let smax = scores.iter().copied().max().unwrap_or(0);
    // SAFETY: `coef` holds at least `n` entries (checked above).
    unsafe { exp_weights_dsp(scores, coef.as_mut_ptr(), smax) };
    // SAFETY: `coef` holds at least `n` entries and `v_scale` the entries `s·nkv` for `s < n`
    // (checked above).
    let (mut cmax, done) = unsafe { plain_coefficients_dsp(scores, coef.as_ptr(), v_scale, nkv) };
    for (s, (score, w)) in scores.iter_mut().zip(coef.iter()).enumerate().skip(done) {
        let cs = weight_times(*w as u32, v_scale[s * nkv]);
        if gt_normalized(cs, cmax) {
            cmax = cs;
        }
        *score = pack_dyadic(cs);
    }
    let wsum = coef[..n].iter().map(|w| *w as u32 as u64).sum();
    Some(coefficients(scores, coef, cmax, wsum))
}

/// The first loop of [`softmax_dsp`]: `coef[s] = exp_neg_q24(smax − scores[s])` for every `s`,
/// in `asm!`.
///
/// # Safety
/// `cp` points to at least `scores.len()` writable `i32`s.
#[cfg(runtime_dsp)]
#[inline(always)]
unsafe fn exp_weights_dsp(scores: &mut [i64], cp: *mut i32, smax: i64) {
    let n = scores.len();
    let sp = scores.as_mut_ptr();
    // SAFETY: for s < n, reads scores[s] and writes coef[s] (both hold n entries: checked
    // above); only register operands change; no stack; flags are not preserved (the default).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldrd {lo}, {hi}, [{sp}], #8",
            // z = smax − score (≥ 0, exact as u64); z ≥ 2^29: weight 0.
            "subs {lo}, {smlo}, {lo}",
            "sbc {hi}, {smhi}, {hi}",
            "orrs {t}, {hi}, {lo}, lsr #29",
            "bne 8f",
            // t = (z · LOG2E_Q30 + 2^27) >> 28 (Q26); n = t >> 26, 0 from n ≥ 31.
            "movw {c}, #0x1D95",
            "movt {c}, #0x5C55",
            "umull {lo}, {hi}, {lo}, {c}",
            "adds {lo}, {lo}, #0x08000000",
            "adc {hi}, {hi}, #0",
            "lsrs {lo}, {lo}, #28",
            "orr {t}, {lo}, {hi}, lsl #4",
            "lsrs {nn}, {t}, #26",
            "cmp {nn}, #31",
            "bhs 8f",
            // x = (r · LN2_Q30) >> 26 for r = t mod 2^20; j = (t >> 20) mod 64.
            "ubfx {lo}, {t}, #0, #20",
            "movw {c}, #0x85FE",
            "movt {c}, #0x2C5C",
            "umull {lo}, {hi}, {lo}, {c}",
            "ubfx {t}, {t}, #20, #6",
            "lsrs {lo}, {lo}, #26",
            "orr {x}, {lo}, {hi}, lsl #6",
            // x2 = x·x >> 30, x3 = x2·x >> 30.
            "umull {lo}, {hi}, {x}, {x}",
            "lsrs {lo}, {lo}, #30",
            "orr {y}, {lo}, {hi}, lsl #2",
            "umull {lo}, {hi}, {y}, {x}",
            "lsrs {lo}, {lo}, #30",
            "orr {lo}, {lo}, {hi}, lsl #2",
            // poly = 2^30 − x + x2/2 − x3/6 (x3/6 = x3 · 43691 >> 18 for x3 < 2^16).
            "movw {c}, #43691",
            "mul {lo}, {lo}, {c}",
            "rsb {x}, {x}, #0x40000000",
            "add {x}, {x}, {y}, lsr #1",
            "sub {x}, {x}, {lo}, lsr #18",
            // v = (table[j] · poly + 2^29) >> 30; weight = (v + 2^(n−1)) >> n.
            "movw {c}, :lower16:{tab}",
            "movt {c}, :upper16:{tab}",
            "ldr {lo}, [{c}, {t}, lsl #2]",
            "mov {y}, #0x20000000",
            "movs {hi}, #0",
            "umlal {y}, {hi}, {lo}, {x}",
            "lsrs {y}, {y}, #30",
            "orr {y}, {y}, {hi}, lsl #2",
            "movs {hi}, #1",
            "lsls {hi}, {hi}, {nn}",
            "add {y}, {y}, {hi}, lsr #1",
            "lsrs {y}, {y}, {nn}",
            "9:",
            "str {y}, [{cp}], #4",
            "cmp {sp}, {send}",
            "bne 2b",
            "b 10f",
            "8:",
            "movs {y}, #0",
            "b 9b",
            "10:",
            sp = inout(reg) sp => _,
            send = in(reg) sp.wrapping_add(n),
            cp = inout(reg) cp => _,
            smlo = in(reg) smax as u32,
            smhi = in(reg) (smax >> 32) as u32,
            tab = sym EXP2_TABLE,
            lo = out(reg) _,
            hi = out(reg) _,
            t = out(reg) _,
            nn = out(reg) _,
            x = out(reg) _,
            y = out(reg) _,
            c = out(reg) _,
            options(nostack),
        );
    }
}

/// The second loop of [`softmax_dsp`]: `scores[s] = pack(coef[s] · v_scale[s·nkv])` with the
/// running maximum, in `asm!`, up to the first scale that is not [`plain`]. Returns the maximum
/// and how many keys it did.
///
/// # Safety
/// `cp` points to at least `scores.len()` readable `i32`s, and `v_scale` holds the entries
/// `s·nkv` for `s < scores.len()`.
#[cfg(runtime_dsp)]
#[inline(always)]
unsafe fn plain_coefficients_dsp(
    scores: &mut [i64],
    cp: *const i32,
    v_scale: &[Dyadic],
    nkv: usize,
) -> (Dyadic, usize) {
    let n = scores.len();
    let sp = scores.as_mut_ptr();
    let (mut cm, mut ce) = (0u32, 0i32);
    let done_ptr: *const i32;
    // SAFETY: for s < n, reads coef[s] and v_scale[s·nkv] (in bounds: checked above) and
    // writes scores[s]; it stops at the first scale that is not plain; only register operands
    // change; no stack; flags are not preserved (the default).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {w}, [{cp}], #4",
            "ldr {vm}, [{vp}]",
            "ldr {ve}, [{vp}, #4]",
            "add {vp}, {vp}, {vstride}",
            "cmp {w}, #0",
            "beq 7f",
            // A plain scale: normalized, |exp| ≤ 960 (else Rust from here).
            "tst {vm}, #0x80000000",
            "beq 9f",
            "add {t}, {ve}, #960",
            "cmp {t}, #1920",
            "bhi 9f",
            // mul_plain(w << lz, −30 − lz, vs): exp = ve + 2 − lz − s + carry.
            "clz {t}, {w}",
            "lsl {w}, {w}, {t}",
            "umull {lo}, {hi}, {w}, {vm}",
            "sub {ve}, {ve}, {t}",
            "add {ve}, {ve}, #2",
            "mvn {t}, {hi}",
            "lsr {t}, {t}, #31",
            "lsl {hi}, {hi}, {t}",
            "lsr {w}, {lo}, #31",
            "and {w}, {w}, {t}",
            "orr {hi}, {hi}, {w}",
            "lsl {lo}, {lo}, {t}",
            "adds {hi}, {hi}, {lo}, lsr #31",
            "adc {ve}, {ve}, #0",
            "sub {ve}, {ve}, {t}",
            "it cs",
            "orrcs {hi}, {hi}, #0x80000000",
            // cmax = cs when cs > cmax (gt_normalized; cs ≠ 0 here).
            "cmp {cm}, #0",
            "beq 5f",
            "cmp {ve}, {ce}",
            "bgt 5f",
            "bne 6f",
            "cmp {hi}, {cm}",
            "bls 6f",
            "5:",
            "mov {cm}, {hi}",
            "mov {ce}, {ve}",
            "6:",
            "strd {hi}, {ve}, [{sp}], #8",
            "cmp {cp}, {cend}",
            "bne 2b",
            "b 10f",
            // Weight 0: c_s = 0, which is never above cmax.
            "7:",
            "movs {hi}, #0",
            "movs {ve}, #0",
            "b 6b",
            "9:",
            "sub {cp}, {cp}, #4",
            "10:",
            cp = inout(reg) cp => done_ptr,
            cend = in(reg) cp.wrapping_add(n),
            sp = inout(reg) sp => _,
            vp = inout(reg) v_scale.as_ptr() => _,
            vstride = in(reg) nkv * core::mem::size_of::<Dyadic>(),
            cm = inout(reg) cm,
            ce = inout(reg) ce,
            w = out(reg) _,
            vm = out(reg) _,
            ve = out(reg) _,
            t = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            options(nostack),
        );
    }
    let done = (done_ptr as usize - cp as usize) / core::mem::size_of::<i32>();
    (Dyadic { mant: cm, exp: ce }, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_equals_the_64_bit_definition() {
        let mut rng = crate::rng::SplitMix64(0x5EED_0FE4_B05E_ED00);
        let mut zs: std::vec::Vec<u64> = (0..70_000).collect();
        // Every table step and its neighbours, the flush-to-zero edges, random values.
        for j in 0..(32u64 << 8) {
            let z = j << 16;
            zs.extend([z.saturating_sub(1), z, z + 1]);
        }
        zs.extend([(32 << 24) - 1, 32 << 24, (32 << 24) + 1, u64::MAX, 1 << 62]);
        for _ in 0..300_000 {
            zs.push(rng.next_u64() % (33 << 24));
        }
        for z in zs {
            assert_eq!(exp_neg_q24(z), crate::fixed::exp_neg_q24(z), "z = {z}");
        }
    }

    #[test]
    fn a_sixth_by_multiplication() {
        // The asm! exp divides x3 < 2^12 by 6 as x3 · 43691 >> 18 (exact below 2^16).
        for v in 0u32..1 << 16 {
            assert_eq!((v * 43691) >> 18, v / 6, "{v}");
        }
    }

    #[test]
    fn mul_equals_dyadic_mul() {
        let mut rng = crate::rng::SplitMix64(0x0123_4567_89AB_CDEF);
        let mut ds = std::vec![
            Dyadic::ZERO,
            Dyadic::ONE,
            Dyadic {
                mant: u32::MAX,
                exp: 0
            },
            Dyadic {
                mant: 1 << 31,
                exp: 0
            },
            Dyadic { mant: 3, exp: 5 },
            Dyadic {
                mant: u32::MAX,
                exp: 2000
            },
            Dyadic {
                mant: 1 << 31,
                exp: -2000
            },
            Dyadic {
                mant: 0xFFFF_FFFE,
                exp: 1000
            },
            Dyadic {
                mant: 0xB504_F334,
                exp: -40
            }, // √2: squares near a carry
            Dyadic {
                mant: 1 << 31,
                exp: (1 << 28) - 1
            },
            Dyadic {
                mant: 1 << 31,
                exp: 1 << 28
            },
            Dyadic {
                mant: 1 << 31,
                exp: -(1 << 28)
            },
            Dyadic {
                mant: u32::MAX,
                exp: i32::MAX
            },
            Dyadic {
                mant: u32::MAX,
                exp: i32::MIN
            },
        ];
        for _ in 0..400 {
            let v = rng.next_u64();
            ds.push(Dyadic {
                mant: (v as u32) | if v >> 63 == 0 { 1 << 31 } else { 0 },
                exp: ((v >> 32) % 4001) as i32 - 2000,
            });
        }
        let mut plains = 0;
        for a in &ds {
            for b in &ds {
                if plain(a) && plain(b) {
                    assert_eq!(mul_plain(a.mant, a.exp, *b), a.mul(*b), "{a:?} · {b:?}");
                    plains += 1;
                }
            }
        }
        assert!(plains > 10_000, "{plains}");
    }
}
