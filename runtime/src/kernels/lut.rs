//! Ternary matrix-vector product by table lookup over groups of activations (the T-MAC /
//! bitnet.cpp "TL" idea): one packed weight byte holds the codes of 4 weights, so for each
//! group of 4 activations a 256-entry table of every possible partial sum turns 4
//! multiply-accumulates into one load and one add.
//!
//! - The columns are processed in chunks of [`GROUPS`] groups (128 activations). Per chunk
//!   the tables are built once (`GROUPS · 256` entries, 16 KiB of stack) and then every row
//!   adds one entry per weight byte; the cost of building is shared by all rows.
//! - Entries are `u16`, biased by [`BIAS`] so that they are never negative
//!   (`|Σ| ≤ 4 · 128 = 512`): two entries are then built with one 32-bit add of packed
//!   halves (no carry can cross from one half into the other), and a row's sum is the sum
//!   of its entries minus `BIAS` per byte. All of it is exact integer arithmetic, so the
//!   result equals [`reference::ternary_matvec`](super::reference::ternary_matvec) bit for bit.
//! - Building: entry `b` of a group is `lo[b & 15] + hi[b >> 4]`, where `lo` holds the 16
//!   sums of the first two weights' codes with `x0, x1` and `hi` those of the last two with
//!   `x2, x3`; pairs of `lo` entries are packed into words, so a table is 128 word adds.

use core::mem::MaybeUninit;

/// Groups of 4 activations per chunk (the tables of a chunk take `GROUPS · 512` bytes, 16 KiB
/// of stack). 32 groups cover a 128-wide row in one chunk, so that a matrix is read front to
/// back (sequential reads stream fastest from XIP flash).
pub const GROUPS: usize = 32;

/// Added to every entry, so that entries are in `0..=1024` and fit `u16` lanes.
pub const BIAS: u32 = 512;

/// Entries of one group's table.
const ENTRIES: usize = 256;

/// `u32` words per group's table (two `u16` entries each).
const WORDS: usize = ENTRIES / 2;

/// Two `u16` entries packed in one word in memory order (entry `2k` first), endian-neutral.
#[inline(always)]
fn pack(first: u32, second: u32) -> u32 {
    let (a, b) = ((first as u16).to_ne_bytes(), (second as u16).to_ne_bytes());
    u32::from_ne_bytes([a[0], a[1], b[0], b[1]])
}

/// Fills `table` (`WORDS` words per group, `x.len() / 4` groups) with the biased entries:
/// entry `b` of group `g` is `BIAS + Σ_i d(b >> 2i) · x[4g + i]` (codes `0b10` count as 0, as
/// in [`decode_ternary`](super::decode_ternary)). Writes every word of the first
/// `x.len() / 4` groups.
pub fn build(x: &[i8], table: &mut [MaybeUninit<u32>]) {
    // Weight codes: d(0) = 0, d(1) = 1, d(2) = 0 (never stored), d(3) = -1.
    let half = (BIAS / 2) as i32;
    for (xs, t) in x.chunks_exact(4).zip(table.chunks_exact_mut(WORDS)) {
        let [x0, x1, x2, x3] = [xs[0], xs[1], xs[2], xs[3]].map(i32::from);
        // lo pair k holds entries j = 2k, 2k + 1 of the first two weights' codes: weight 1's
        // code is k >> 1, weight 0's code is 0 or 2 (d = 0) for j = 2k and 1 or 3 (d = ±1)
        // for j = 2k + 1. Both halves biased by BIAS/2.
        let d1 = [0, x1, 0, -x1];
        let lo_pairs: [u32; 8] = core::array::from_fn(|k| {
            let even = d1[k >> 1] + half;
            let odd = even + if k & 1 == 0 { x0 } else { -x0 };
            pack(even as u32, odd as u32)
        });
        let (d2, d3) = ([0, x2, 0, -x2], [0, x3, 0, -x3]);
        for (i, row) in t.chunks_exact_mut(8).enumerate() {
            let hv = (d2[i & 3] + d3[i >> 2] + half) as u32;
            let both = hv | hv << 16;
            for (o, p) in row.iter_mut().zip(&lo_pairs) {
                // Each half: (lo + 256) + (hi + 256) ∈ [0, 1024]: no carry into the next.
                o.write(p.wrapping_add(both));
            }
        }
    }
}

/// Views words that [`build`] wrote as their `u16` entries (memory order).
#[inline(always)]
fn entries(table: &[MaybeUninit<u32>]) -> &[u16] {
    // SAFETY: the caller passes only words `build` initialised; u16 has no invalid bit
    // patterns and a smaller alignment than u32, and twice the length in u16 units covers
    // exactly the same bytes.
    unsafe { core::slice::from_raw_parts(table.as_ptr().cast::<u16>(), table.len() * 2) }
}

/// `Σ_g table_g[bytes[g]]`: one row's biased sum over a chunk.
#[inline(always)]
fn row_sum(bytes: &[u8], table: &[u16]) -> u32 {
    let mut acc = 0u32;
    for (b, t) in bytes.iter().zip(table.chunks_exact(ENTRIES)) {
        acc += t[*b as usize] as u32;
    }
    acc
}

/// Same contract as [`reference::ternary_matvec`](super::reference::ternary_matvec), by table
/// lookup.
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn ternary_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    y.iter_mut().for_each(|v| *v = 0);
    // Not zeroed: `build` writes every word of a chunk's tables before they are read.
    let mut table = [MaybeUninit::<u32>::uninit(); GROUPS * WORDS];
    let mut g0 = 0;
    while g0 < row_bytes {
        let g1 = row_bytes.min(g0 + GROUPS);
        let (Some(xs), Some(t)) = (x.get(4 * g0..4 * g1), table.get_mut(..(g1 - g0) * WORDS))
        else {
            return;
        };
        build(xs, t);
        let t = entries(t);
        #[cfg(runtime_dsp)]
        if g1 - g0 == GROUPS && rows_dsp(w, row_bytes, g0, t, y) {
            g0 = g1;
            continue;
        }
        let bias = BIAS * (g1 - g0) as u32;
        for (out, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
            if let Some(bytes) = row.get(g0..g1) {
                // |sum| < 2^31 (see the reference): the biased u32 sum minus the bias is exact.
                *out = out.wrapping_add(row_sum(bytes, t).wrapping_sub(bias) as i32);
            }
        }
        g0 = g1;
    }
}

// The `asm!` loop hard-codes a chunk of 32 groups (8 words per row, 8 · 2048 bytes of
// tables) and the bias of one chunk (32 · 512).
#[cfg(runtime_dsp)]
const _: () = assert!(GROUPS == 32 && BIAS as usize * GROUPS == 16384 && ENTRIES * 2 * 4 == 2048);

/// One step of [`rows_dsp`]: the 4 weight bytes of one word against 4 groups' tables, then the
/// table pointer moves to the next 4 groups.
#[cfg(runtime_dsp)]
macro_rules! word {
    () => {
        concat!(
            "ldr {w}, [{p}], #4\n",
            "uxtb {t0}, {w}\n",
            "uxtab {t1}, {c256}, {w}, ror #8\n",
            "uxtab {t2}, {c512}, {w}, ror #16\n",
            "uxtab {w}, {c768}, {w}, ror #24\n",
            // Four independent loads in a row pipeline (none forms another's address).
            "ldrh {t0}, [{tbl}, {t0}, lsl #1]\n",
            "ldrh {t1}, [{tbl}, {t1}, lsl #1]\n",
            "ldrh {t2}, [{tbl}, {t2}, lsl #1]\n",
            "ldrh {w}, [{tbl}, {w}, lsl #1]\n",
            "add {acc}, {t0}\n",
            "add {acc}, {t1}\n",
            "add {tbl}, {tbl}, #2048\n",
            "add {acc}, {t2}\n",
            "add {acc}, {w}\n",
        )
    };
}

/// `y[r] += Σ_g table_g[w[r][g0 + g]] − BIAS·GROUPS` for every row, over one full chunk
/// (`GROUPS` = 32 weight bytes, 8 words, per row) in one `asm!` loop. Returns `false` (and
/// does nothing) when a precondition fails, for the portable loop to run instead.
#[cfg(runtime_dsp)]
fn rows_dsp(w: &[u8], row_bytes: usize, g0: usize, table: &[u16], y: &mut [i32]) -> bool {
    let rows = y.len();
    let fits = rows > 0
        && row_bytes >= GROUPS
        && g0 + GROUPS <= row_bytes
        && w.len() >= rows * row_bytes
        && table.len() >= GROUPS * ENTRIES;
    if !fits {
        return false;
    }
    let Some(start) = w.get(g0..) else {
        return false;
    };
    // SAFETY: checked above: for each of the `rows` rows the loop reads the 32 bytes
    // `g0..g0 + 32` of that row (8 word loads; unaligned word loads are allowed on Armv8-M
    // for normal memory) and `u16` entries of `table` at `k·256 + byte` for `k < 32`
    // (`table` holds 32·256 entries); it reads and writes `y[r]` for `r < rows`. The table
    // pointer moves by 8·2048 bytes and back each row; nothing else is touched, no stack.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {acc}, [{yp}]",
            word!(),
            word!(),
            word!(),
            word!(),
            word!(),
            word!(),
            word!(),
            word!(),
            "sub {tbl}, {tbl}, #16384",
            "sub {acc}, {acc}, #16384",
            "str {acc}, [{yp}], #4",
            "add {p}, {p}, {stride}",
            "cmp {yp}, {yend}",
            "bne 2b",
            p = inout(reg) start.as_ptr() => _,
            yp = inout(reg) y.as_mut_ptr() => _,
            yend = in(reg) y.as_mut_ptr().wrapping_add(rows),
            tbl = inout(reg) table.as_ptr() => _,
            stride = in(reg) row_bytes - GROUPS,
            c256 = in(reg) 256u32,
            c512 = in(reg) 512u32,
            c768 = in(reg) 768u32,
            acc = out(reg) _,
            w = out(reg) _,
            t0 = out(reg) _,
            t1 = out(reg) _,
            t2 = out(reg) _,
            options(nostack),
        );
    }
    true
}
