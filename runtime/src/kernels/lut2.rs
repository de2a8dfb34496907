//! The 2-bit ternary matrix-vector product by table lookup ([`lut`](super::lut) has the
//! method and the table format): groups of 4 activations, one weight byte per group and row,
//! one `asm!` row loop per chunk on the Cortex-M33.

use core::mem::MaybeUninit;

use super::lut::{entries, row_sum, BIAS, GROUPS, WORDS};
#[cfg(runtime_dsp)]
use super::lut::{rows_loop, step, word, ENTRIES};

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
    // Safety of the loop: checked above: for each of the `rows` rows it reads the 32 bytes
    // `g0..g0 + 32` of that row (8 word loads; unaligned word loads are allowed on Armv8-M
    // for normal memory) and `u16` entries of `table` at `k·256 + byte` for `k < 32`
    // (`table` holds 32·256 entries); it reads and writes `y[r]` for `r < rows`. The table
    // pointer moves by 8·2048 bytes and back each row; nothing else is touched, no stack.
    rows_loop!(8, BIAS, start.as_ptr(), y, rows, table, row_bytes - GROUPS, [0 next 1 next 2 next 3 next 0 next 1 next 2 next 3 last]);
    true
}
