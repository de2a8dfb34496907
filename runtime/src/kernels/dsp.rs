//! Ternary matrix-vector product for Arm cores with the DSP extension (Cortex-M33 and kin):
//! two multiply-accumulates per `SMLAD`.
//!
//! - Activations are widened once per matvec (in chunks of [`CHUNK`] on the stack) to `int16`
//!   pairs: word `2k` holds `x[4k]` (low half) and `x[4k+1]` (high half), word `2k+1` holds
//!   `x[4k+2]` and `x[4k+3]`.
//! - A packed weight byte (4 weights) indexes [`LANES`], whose entry is the same two-word layout
//!   of the weights as `int16` lanes in `{-1, 0, 1}`.
//! - `SMLAD acc, w, x, acc` adds `w.lo·x.lo + w.hi·x.hi`; two of them per weight byte.
//!
//! Per weight byte and row: `LDRB`, `ADD` (table address), `LDRD` (two lane words), two
//! `SMLAD`; two rows per pass share each `LDRD` of activations. The sums are exact (integer
//! adds in any order; no partial sum can overflow, see the reference's bound), so the result
//! equals [`reference::ternary_matvec`](super::reference::ternary_matvec) bit for bit.
//!
//! The `asm!` kernel exists only under `cfg(runtime_dsp)` (set by `build.rs`). The same
//! table, packing, chunking and lane arithmetic run everywhere in [`ternary_matvec_lanes`]
//! (a portable emulation of `SMLAD`), which the shared test suite checks on the host.

use super::decode_ternary;

/// Activations packed per chunk: 512 (`CHUNK / 2` words, 1 KiB of stack). Rows longer than
/// that are summed chunk by chunk.
pub const CHUNK: usize = 512;

/// Weight bytes per chunk (4 weights each).
const CHUNK_BYTES: usize = CHUNK / 4;

/// One weight as an `int16` lane (two's complement in 16 bits).
const fn lane(code: u8) -> u32 {
    (decode_ternary(code) as i16 as u16) as u32
}

const fn lanes_of(byte: u8) -> [u32; 2] {
    [
        lane(byte) | lane(byte >> 2) << 16,
        lane(byte >> 4) | lane(byte >> 6) << 16,
    ]
}

const fn build_lanes() -> [[u32; 2]; 256] {
    let mut t = [[0u32; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = lanes_of(b as u8);
        b += 1;
    }
    t
}

/// Packed weight byte → its 4 weights as `int16` lanes: `[w0 | w1 << 16, w2 | w3 << 16]`
/// (2 KiB; word aligned, as `LDRD` needs).
pub static LANES: [[u32; 2]; 256] = build_lanes();

/// Widens `x` (a multiple of 4 long) into `int16` pairs: `out[k] = x[2k] | x[2k+1] << 16`.
#[inline(always)]
pub fn pack_pairs(x: &[i8], out: &mut [u32]) {
    for (o, p) in out.iter_mut().zip(x.chunks_exact(2)) {
        *o = (p[0] as i16 as u16) as u32 | ((p[1] as i16 as u16) as u32) << 16;
    }
}

/// `acc + a.lo·b.lo + a.hi·b.hi` on signed 16-bit halves, wrapping: what `SMLAD` computes.
#[inline(always)]
pub fn smlad(acc: i32, a: u32, b: u32) -> i32 {
    let lo = (a as i16 as i32) * (b as i16 as i32);
    let hi = ((a >> 16) as i16 as i32) * ((b >> 16) as i16 as i32);
    acc.wrapping_add(lo).wrapping_add(hi)
}

/// One row's sum over `bytes` (weight bytes) and `xp` (packed activations, 2 words a byte)
/// with the emulated `SMLAD`.
#[inline(always)]
fn dot1_lanes(bytes: &[u8], xp: &[u32]) -> i32 {
    let mut acc = 0i32;
    for (b, xs) in bytes.iter().zip(xp.chunks_exact(2)) {
        let [w0, w1] = LANES[*b as usize];
        acc = smlad(acc, w0, xs[0]);
        acc = smlad(acc, w1, xs[1]);
    }
    acc
}

/// `y[r] += Σ` over weight bytes `b0..b1` of row `r` and the packed chunk `xp`, for the rows
/// of `w` (stride `row_bytes`) that `y` covers, two at a time: the portable form of
/// [`pairs_dsp`]. `y.len()` is even.
fn pairs_lanes(w: &[u8], row_bytes: usize, b0: usize, b1: usize, xp: &[u32], y: &mut [i32]) {
    for (pair, rows) in y.chunks_exact_mut(2).zip(w.chunks_exact(2 * row_bytes)) {
        let (r0, r1) = rows.split_at(row_bytes);
        let (Some(r0), Some(r1)) = (r0.get(b0..b1), r1.get(b0..b1)) else {
            return;
        };
        pair[0] = pair[0].wrapping_add(dot1_lanes(r0, xp));
        pair[1] = pair[1].wrapping_add(dot1_lanes(r1, xp));
    }
}

/// Same contract as [`reference::ternary_matvec`](super::reference::ternary_matvec), computed
/// with the DSP kernel's table, packing and chunking and a portable `SMLAD`: the host-testable
/// twin of `ternary_matvec` (DSP cores only).
pub fn ternary_matvec_lanes(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    drive(w, row_bytes, x, y, pairs_lanes);
}

/// Same contract as [`reference::ternary_matvec`](super::reference::ternary_matvec): the
/// `SMLAD` kernel (Arm with DSP only).
#[cfg(runtime_dsp)]
pub fn ternary_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    if row_bytes.is_multiple_of(4) {
        drive(w, row_bytes, x, y, pairs_dsp);
    } else {
        // Never for blob rows (padded to 16 bytes); the loop below wants whole words.
        drive(w, row_bytes, x, y, pairs_lanes);
    }
}

/// Zeroes `y`, then splits the columns into chunks of at most [`CHUNK`] activations, packs each
/// chunk once and adds every row's sum over it: rows in pairs through `pairs`, an odd last row
/// with [`dot1_lanes`].
#[inline(always)]
fn drive(
    w: &[u8],
    row_bytes: usize,
    x: &[i8],
    y: &mut [i32],
    pairs: impl Fn(&[u8], usize, usize, usize, &[u32], &mut [i32]),
) {
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    y.iter_mut().for_each(|v| *v = 0);
    let even = y.len() & !1;
    let (y_pairs, y_last) = y.split_at_mut(even);
    let mut packed = [0u32; CHUNK / 2];
    let mut b0 = 0;
    while b0 < row_bytes {
        let b1 = row_bytes.min(b0 + CHUNK_BYTES);
        let (Some(xs), Some(xp)) = (x.get(4 * b0..4 * b1), packed.get_mut(..2 * (b1 - b0))) else {
            return;
        };
        pack_pairs(xs, xp);
        let xp = &*xp;
        if !y_pairs.is_empty() {
            pairs(w, row_bytes, b0, b1, xp, y_pairs);
        }
        if let (Some(out), Some(row)) = (y_last.first_mut(), w.get(even * row_bytes..)) {
            if let Some(r) = row.get(b0..b1) {
                *out = out.wrapping_add(dot1_lanes(r, xp));
            }
        }
        b0 = b1;
    }
}

/// One step of the `SMLAD` loop: one weight byte of each row against two activation words.
#[cfg(runtime_dsp)]
macro_rules! step {
    () => {
        concat!(
            "ldrd {xa}, {xb}, [{px}], #8\n",
            "ldrb {t}, [{p0}], #1\n",
            "add.w {t}, {tbl}, {t}, lsl #3\n",
            "ldrd {t}, {u}, [{t}]\n",
            "smlad {a0}, {t}, {xa}, {a0}\n",
            "smlad {a0}, {u}, {xb}, {a0}\n",
            "ldrb {t}, [{p1}], #1\n",
            "add.w {t}, {tbl}, {t}, lsl #3\n",
            "ldrd {t}, {u}, [{t}]\n",
            "smlad {a1}, {t}, {xa}, {a1}\n",
            "smlad {a1}, {u}, {xb}, {a1}\n",
        )
    };
}

/// [`pairs_lanes`] with `SMLAD`: all row pairs in one `asm!` loop, 4 weight bytes (16
/// weights) per row per inner iteration. Needs `row_bytes % 4 == 0` (so `b0`, `b1` are
/// multiples of 4 too).
#[cfg(runtime_dsp)]
fn pairs_dsp(w: &[u8], row_bytes: usize, b0: usize, b1: usize, xp: &[u32], y: &mut [i32]) {
    let len = b1.saturating_sub(b0);
    let n_pairs = y.len() / 2;
    // Everything the loop touches must exist; otherwise (never, for a well-formed call) use
    // the portable loop.
    let fits = n_pairs > 0
        && len > 0
        && len.is_multiple_of(4)
        && b1 <= row_bytes
        && xp.len() >= 2 * len
        && w.len() >= 2 * n_pairs * row_bytes;
    if !fits {
        pairs_lanes(w, row_bytes, b0, b1, xp, y);
        return;
    }
    let Some(start) = w.get(b0..) else {
        return;
    };
    let p0 = start.as_ptr();
    let p1 = p0.wrapping_add(row_bytes);
    let px = xp.as_ptr();
    // Per-pair state the loop reloads: y cursor, y end, packed base, the step from the end of
    // row 1's chunk to the start of the next row 0's chunk, the row stride.
    let mut ctx: [usize; 5] = [
        y.as_mut_ptr() as usize,
        y.as_mut_ptr().wrapping_add(2 * n_pairs) as usize,
        px as usize,
        row_bytes - len,
        row_bytes,
    ];
    // SAFETY: checked above: each of the `n_pairs` passes reads bytes `b0..b1` of rows
    // `2i` and `2i + 1` of `w` (`2·n_pairs` rows of `row_bytes` exist), `len / 4 ≥ 1` inner
    // iterations read `2·len ≤ xp.len()` words of `xp`, and it reads 8-byte entries of
    // `LANES` (word aligned, indices < 256). It reads and writes `y[2i], y[2i+1]` for
    // `i < n_pairs` (`y` is `i32`, word aligned, as `LDRD`/`STRD` need) and the local `ctx`.
    // No stack use; every register it changes is an output. `SMLAD` may set Q and `CMP` sets
    // NZCV, so flags are not preserved (the default).
    unsafe {
        core::arch::asm!(
            "3:",
            "ldr {t}, [{ctx}]",
            "ldrd {a0}, {a1}, [{t}]",
            "ldr {px}, [{ctx}, #8]",
            "2:",
            step!(),
            step!(),
            step!(),
            step!(),
            "cmp {px}, {pxe}",
            "bne 2b",
            "ldr {t}, [{ctx}]",
            "strd {a0}, {a1}, [{t}], #8",
            "str {t}, [{ctx}]",
            "ldrd {xa}, {xb}, [{ctx}, #12]",
            "add {p0}, {p1}, {xa}",
            "add {p1}, {p0}, {xb}",
            "ldr {xa}, [{ctx}, #4]",
            "cmp {t}, {xa}",
            "bne 3b",
            ctx = in(reg) ctx.as_mut_ptr(),
            p0 = inout(reg) p0 => _,
            p1 = inout(reg) p1 => _,
            px = out(reg) _,
            pxe = in(reg) px.wrapping_add(2 * len),
            tbl = in(reg) LANES.as_ptr(),
            a0 = out(reg) _,
            a1 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            t = out(reg) _,
            u = out(reg) _,
            options(nostack),
        );
    }
}

/// What `SXTB16 x` gives (bytes 0 and 2 sign-extended into the two `int16` lanes) and, for the
/// odd bytes, `SXTB16 x, ROR #8` (bytes 1 and 3).
#[inline(always)]
pub fn sxtb16(x: u32) -> u32 {
    (x as u8 as i8 as i16 as u16) as u32 | ((((x >> 16) as u8 as i8 as i16) as u16) as u32) << 16
}

/// Same contract as [`reference::int8_dot`](super::reference::int8_dot), computed the way the
/// `SMLAD` kernel does (four bytes per word, even and odd bytes widened with `SXTB16`, two
/// `SMLAD`s) with portable arithmetic: the host-testable twin of `int8_dot` (DSP cores only).
pub fn int8_dot_pairs(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let word = |c: &[i8]| u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]);
    let mut acc = 0i32;
    let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
    for (x, y) in ca.by_ref().zip(cb.by_ref()) {
        let (x, y) = (word(x), word(y));
        acc = smlad(acc, sxtb16(x), sxtb16(y));
        acc = smlad(acc, sxtb16(x >> 8), sxtb16(y >> 8));
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        acc = acc.wrapping_add(*x as i32 * *y as i32);
    }
    acc
}

/// Same contract as [`reference::int8_dot`](super::reference::int8_dot): 8 bytes per loop
/// step (two words of each vector, four `SXTB16` per word pair, two `SMLAD`s per word pair),
/// the remainder in plain Rust. Exact: `|a·b| ≤ 2^14` per term, the sum fits `i32` for up to
/// `2^16` terms (the reference's bound), and `SMLAD` only wraps beyond that.
#[cfg(runtime_dsp)]
pub fn int8_dot(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let body = n & !7;
    let mut acc = 0i32;
    if body > 0 {
        // SAFETY: the loop reads `body` bytes (a multiple of 8, at least 8) of `a` and of `b`
        // (both hold `n ≥ body`) as words (unaligned word loads are allowed on Armv8-M for
        // normal memory); it writes only its register operands; no stack. `SMLAD` may set
        // the Q flag and `CMP` sets NZCV: flags are not preserved (the default).
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {wa}, [{pa}], #4",
                "ldr {wb}, [{pb}], #4",
                "ldr {xa}, [{pa}], #4",
                "ldr {xb}, [{pb}], #4",
                "sxtb16 {t}, {wa}",
                "sxtb16 {u}, {wb}",
                "sxtb16 {wa}, {wa}, ror #8",
                "sxtb16 {wb}, {wb}, ror #8",
                "smlad {acc}, {t}, {u}, {acc}",
                "smlad {acc}, {wa}, {wb}, {acc}",
                "sxtb16 {t}, {xa}",
                "sxtb16 {u}, {xb}",
                "sxtb16 {xa}, {xa}, ror #8",
                "sxtb16 {xb}, {xb}, ror #8",
                "smlad {acc}, {t}, {u}, {acc}",
                "smlad {acc}, {xa}, {xb}, {acc}",
                "cmp {pa}, {end}",
                "bne 2b",
                pa = inout(reg) a.as_ptr() => _,
                pb = inout(reg) b.as_ptr() => _,
                end = in(reg) a.as_ptr().wrapping_add(body),
                acc = inout(reg) acc,
                wa = out(reg) _,
                wb = out(reg) _,
                xa = out(reg) _,
                xb = out(reg) _,
                t = out(reg) _,
                u = out(reg) _,
                options(nostack, readonly),
            );
        }
    }
    for (x, y) in a[body..n].iter().zip(&b[body..n]) {
        acc = acc.wrapping_add(*x as i32 * *y as i32);
    }
    acc
}

/// `(a0·b, a1·b)`: [`int8_dot`] of two rows against one vector, each word of `b` loaded and
/// widened once for both rows (13 instructions per 4 bytes of both rows instead of 16), the
/// remainder in plain Rust. `a0`, `a1` hold at least `b.len()` bytes. Exact, as `int8_dot`.
#[cfg(runtime_dsp)]
#[inline(always)]
fn int8_dot2(a0: &[i8], a1: &[i8], b: &[i8]) -> (i32, i32) {
    let n = b.len().min(a0.len()).min(a1.len());
    let body = n & !3;
    let (mut acc0, mut acc1) = (0i32, 0i32);
    if body > 0 {
        // SAFETY: the loop reads `body` bytes (a multiple of 4, at least 4) of `a0`, `a1` and
        // `b` (each holds `n ≥ body`) as words (unaligned word loads are allowed on Armv8-M for
        // normal memory); it writes only its register operands; no stack. `SMLAD` may set the
        // Q flag and `CMP` sets NZCV: flags are not preserved (the default). Scheduled for the
        // Cortex-M33: each load is used two instructions later or more.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {q}, [{pb}], #4",
                "ldr {k0}, [{p0}], #4",
                "ldr {k1}, [{p1}], #4",
                "sxtb16 {qe}, {q}",
                "sxtb16 {q}, {q}, ror #8",
                "sxtb16 {t}, {k0}",
                "sxtb16 {k0}, {k0}, ror #8",
                "smlad {acc0}, {t}, {qe}, {acc0}",
                "sxtb16 {t}, {k1}",
                "smlad {acc0}, {k0}, {q}, {acc0}",
                "sxtb16 {k1}, {k1}, ror #8",
                "smlad {acc1}, {t}, {qe}, {acc1}",
                "cmp {pb}, {end}",
                "smlad {acc1}, {k1}, {q}, {acc1}",
                "bne 2b",
                pb = inout(reg) b.as_ptr() => _,
                p0 = inout(reg) a0.as_ptr() => _,
                p1 = inout(reg) a1.as_ptr() => _,
                end = in(reg) b.as_ptr().wrapping_add(body),
                acc0 = inout(reg) acc0,
                acc1 = inout(reg) acc1,
                q = out(reg) _,
                qe = out(reg) _,
                k0 = out(reg) _,
                k1 = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly),
            );
        }
    }
    for ((x0, x1), y) in a0[body..n].iter().zip(&a1[body..n]).zip(&b[body..n]) {
        acc0 = acc0.wrapping_add(*x0 as i32 * *y as i32);
        acc1 = acc1.wrapping_add(*x1 as i32 * *y as i32);
    }
    (acc0, acc1)
}

/// Same contract as [`reference::int8_matvec`](super::reference::int8_matvec): rows that are
/// `stride` apart with gaps between them (the attention's keys: one KV head of each position)
/// in pairs through [`int8_dot2`], an odd last row through [`int8_dot`]; back-to-back rows
/// (`stride == x.len()`: the LM head's embedding rows) one by one, front to back, so that a
/// matrix streamed from XIP flash is read in order (two rows at once would alternate between
/// them, and every cache-line miss would start a new flash transfer instead of chaining onto
/// the last). Out of line, in RAM: it runs for every head and position.
#[cfg(runtime_dsp)]
#[inline(never)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn int8_matvec(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    let len = x.len();
    let row = |r: usize| m.get(r * stride..r * stride + len);
    let mut r = 0;
    if stride != len {
        while let (Some(a0), Some(a1), Some(pair)) = (row(r), row(r + 1), y.get_mut(r..r + 2)) {
            (pair[0], pair[1]) = int8_dot2(a0, a1, x);
            r += 2;
        }
    }
    for (i, out) in y.iter_mut().enumerate().skip(r) {
        *out = row(i).map_or(0, |a| int8_dot(a, x));
    }
}
