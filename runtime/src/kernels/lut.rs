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
//!
//! Base-3 matrices (format v2, [`ternary5_matvec`]) use the same table format and row loop:
//! one byte holds 5 weights (columns `g + k·row_bytes`), so a group is 5 activations and its
//! table 243 live entries ([`build5`]: `lo[v % 9] + hi[v / 9]`, adds only). [`Tables5`] keeps
//! one input's tables for several matrices (the query, key and value projections).

use core::mem::MaybeUninit;

/// Groups of 4 activations per chunk (the tables of a chunk take `GROUPS · 512` bytes, 16 KiB
/// of stack). 32 groups cover a 128-wide row in one chunk, so that a matrix is read front to
/// back (sequential reads stream fastest from XIP flash).
pub const GROUPS: usize = 32;

/// Added to every entry, so that entries are in `0..=1024` and fit `u16` lanes.
pub const BIAS: u32 = 512;

/// Entries of one group's table.
pub(super) const ENTRIES: usize = 256;

/// `u32` words per group's table (two `u16` entries each).
pub(super) const WORDS: usize = ENTRIES / 2;

/// Views words that [`build`] wrote as their `u16` entries (memory order).
#[inline(always)]
pub(super) fn entries(table: &[MaybeUninit<u32>]) -> &[u16] {
    // SAFETY: the caller passes only words `build` initialised; u16 has no invalid bit
    // patterns and a smaller alignment than u32, and twice the length in u16 units covers
    // exactly the same bytes.
    unsafe { core::slice::from_raw_parts(table.as_ptr().cast::<u16>(), table.len() * 2) }
}

/// `Σ_g table_g[bytes[g]]`: one row's biased sum over a chunk.
#[inline(always)]
pub(super) fn row_sum(bytes: &[u8], table: &[u16]) -> u32 {
    let mut acc = 0u32;
    for (b, t) in bytes.iter().zip(table.chunks_exact(ENTRIES)) {
        acc += t[*b as usize] as u32;
    }
    acc
}

// The `asm!` loop hard-codes a chunk of 32 groups (8 words per row, 8 · 2048 bytes of
// tables) and the bias of one chunk (32 · 512).
#[cfg(runtime_dsp)]
const _: () = assert!(GROUPS == 32 && BIAS as usize * GROUPS == 16384 && ENTRIES * 2 * 4 == 2048);

/// One step of [`rows_dsp`]: the 4 weight bytes of one word (already loaded into `$x`) against
/// 4 groups' tables, then the table pointer moves to the next 4 groups. Scheduled for the
/// Cortex-M33 (a load's result is usable 2 cycles later, an extend's too; firmware/COST.md,
/// "Cost model"): the next word is loaded (`$next`) right after the first table entry is
/// added, so it has arrived when the next step extends it. The registers rotate from step to
/// step (`$x, $a, $b, $c` → `$a, $b, $c, $x`: the next word lands in the register just freed),
/// see [`rows_loop!`].
#[cfg(runtime_dsp)]
#[rustfmt::skip]
macro_rules! word {
    ($x:literal, $a:literal, $b:literal, $c:literal, $next:expr) => {
        concat!(
            "uxtb ", $a, ", ", $x, "\n",
            "uxtab ", $b, ", {c256}, ", $x, ", ror #8\n",
            "uxtab ", $c, ", {c512}, ", $x, ", ror #16\n",
            "uxtab ", $x, ", {c768}, ", $x, ", ror #24\n",
            // Four independent loads in a row (none forms another's address).
            "ldrh ", $a, ", [{tbl}, ", $a, ", lsl #1]\n",
            "ldrh ", $b, ", [{tbl}, ", $b, ", lsl #1]\n",
            "ldrh ", $c, ", [{tbl}, ", $c, ", lsl #1]\n",
            "ldrh ", $x, ", [{tbl}, ", $x, ", lsl #1]\n",
            "add {acc}, ", $a, "\n",
            $next,
            "add {acc}, ", $b, "\n",
            "add {tbl}, {tbl}, #2048\n",
            "add {acc}, ", $c, "\n",
            "add {acc}, ", $x, "\n",
        )
    };
}

/// The `n`-th step of a row of `$n` steps ([`word!`] with the registers of its place in the
/// rotation; the last step loads nothing).
#[cfg(runtime_dsp)]
#[rustfmt::skip]
macro_rules! step {
    (0, next) => { word!("{w}", "{t0}", "{t1}", "{t2}", "ldr {t0}, [{p}], #4\n") };
    (1, next) => { word!("{t0}", "{t1}", "{t2}", "{w}", "ldr {t1}, [{p}], #4\n") };
    (2, next) => { word!("{t1}", "{t2}", "{w}", "{t0}", "ldr {t2}, [{p}], #4\n") };
    (3, next) => { word!("{t2}", "{w}", "{t0}", "{t1}", "ldr {w}, [{p}], #4\n") };
    (0, last) => { word!("{w}", "{t0}", "{t1}", "{t2}", "") };
    (1, last) => { word!("{t0}", "{t1}", "{t2}", "{w}", "") };
    (2, last) => { word!("{t1}", "{t2}", "{w}", "{t0}", "") };
    (3, last) => { word!("{t2}", "{w}", "{t0}", "{t1}", "") };
}

/// The `asm!` row loop of [`rows_dsp`] and [`rows5_dsp`] for chunks of `$n` words (`4·$n`
/// groups): per row the first word and `y[r]` are loaded, then the `$n` steps (`[$($place
/// $kind)*]`: each step's place in the register rotation, and whether it loads the next
/// word), then the table pointer moves back and the bias of `4·$n` entries of `$bias` each
/// comes off. The compare sits before the pointer step so that the closing branch dual-issues
/// with that 16-bit `add` (a taken branch after a 16-bit instruction that sets no flags costs
/// 1 cycle on the Cortex-M33, 2 after a compare).
#[cfg(runtime_dsp)]
macro_rules! rows_loop {
    ($n:literal, $bias:expr, $start:expr, $y:expr, $rows:expr, $table:expr, $stride:expr, [$($place:tt $kind:tt)*]) => {
        // SAFETY: see the callers, `rows_dsp` and `rows5_dsp`.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {w}, [{p}], #4",
                "ldr {acc}, [{yp}]",
                $(step!($place, $kind),)*
                "sub {tbl}, {tbl}, #{back}",
                "sub {acc}, {acc}, #{bias}",
                "str {acc}, [{yp}], #4",
                "cmp {yp}, {yend}",
                "add {p}, {stride}",
                "bne 2b",
                back = const $n * 2048,
                bias = const $n * 4 * $bias,
                p = inout(reg) $start => _,
                yp = inout(reg) $y.as_mut_ptr() => _,
                yend = in(reg) $y.as_mut_ptr().wrapping_add($rows),
                tbl = inout(reg) $table.as_ptr() => _,
                stride = in(reg) $stride,
                c256 = in(reg) 256u32,
                c512 = in(reg) 512u32,
                c768 = in(reg) 768u32,
                acc = out(reg) _,
                w = out(reg) _,
                t0 = out(reg) _,
                t1 = out(reg) _,
                t2 = out(reg) _,
                options(nostack),
            )
        }
    };
}

#[cfg(runtime_dsp)]
pub(super) use {rows_loop, step, word};

/// Added to every entry of a base-3 table, so that entries are in `384..=1664`
/// (`|Σ| ≤ 5 · 128 = 640`) and fit `u16` lanes without a carry between packed halves.
pub const BIAS5: u32 = 1024;

/// Two entries in one word, entry `2k` in the low half (little-endian memory order: the
/// `asm!` loop and [`entries`] read halves by address). Computed with wrapping arithmetic:
/// sums of such words are exact as long as every final half lies in `0..65536`.
#[inline(always)]
fn pk(first: i32, second: i32) -> u32 {
    let w = first.wrapping_add(second.wrapping_shl(16)) as u32;
    if cfg!(target_endian = "little") {
        w
    } else {
        w.rotate_left(16)
    }
}

/// Fills `table` with the biased base-3 tables of groups `g0..g1` of a row of `c` bytes
/// (format v2, `Ternary5`: byte `g` holds the weights of columns `g + k·c`, `k < 5`):
/// entry `v` of group `g` is `BIAS5 + Σ_k d_k(v) · x[g + k·c]` for `v < 243`, with `d_k(v)`
/// the weight of digit `k` ([`decode_base3`](super::decode_base3)); entries `243..256` are
/// filled but never read. Writes every word of the first `g1 − g0` groups' tables.
///
/// Entry `v` is `lo[v % 9] + hi[v / 9]` (`lo` over digits 0 and 1, `hi` over digits 2 to 4,
/// with the bias). Two consecutive `hi` blocks are 18 entries, 9 words: four words of `lo`
/// pairs plus `hi[2i]` in both halves, one word `(lo[8] + hi[2i], lo[0] + hi[2i+1])`, four
/// words of the `lo` pairs shifted by one plus `hi[2i+1]`. So a table is 128 word adds of
/// precomputed pairs, done in two passes (words 0-4, then 5-8, of each block) to keep the
/// pairs in registers on a Cortex-M.
#[inline(never)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn build5(x: &[i8], c: usize, g0: usize, g1: usize, table: &mut [MaybeUninit<u32>]) {
    for (g, t) in (g0..g1).zip(table.chunks_exact_mut(WORDS)) {
        let xk = |k: usize| x.get(g + k * c).map_or(0, |v| *v as i32);
        let [x0, x1, x2, x3, x4] = [xk(0), xk(1), xk(2), xk(3), xk(4)];
        // Digit values 0, 1, 2 are weights 0, +1, −1. Nested loops over constant-length
        // arrays (no division by 3): the compiler unrolls them into plain adds.
        let (w0, w1) = ([0, x0, -x0], [0, x1, -x1]);
        let mut lo = [0i32; 9];
        for (row, b) in lo.chunks_exact_mut(3).zip(w1) {
            for (l, a) in row.iter_mut().zip(w0) {
                *l = a + b;
            }
        }
        // hi[27] stands for the unused entries 243..252.
        let bias = BIAS5 as i32;
        let (w2, w3, w4) = ([0, x2, -x2], [0, x3, -x3], [bias, bias + x4, bias - x4]);
        let mut hi = [bias; 28];
        for (block, e) in hi.chunks_exact_mut(9).zip(w4) {
            for (row, dv) in block.chunks_exact_mut(3).zip(w3) {
                for (h, c) in row.iter_mut().zip(w2) {
                    *h = c + dv + e;
                }
            }
        }
        let (blocks, rest) = t.split_at_mut(14 * 9);
        let [p0, p1, p2, p3, p4] = [
            pk(lo[0], lo[1]),
            pk(lo[2], lo[3]),
            pk(lo[4], lo[5]),
            pk(lo[6], lo[7]),
            pk(lo[8], lo[0]),
        ];
        for (w, h) in blocks.chunks_exact_mut(9).zip(hi.chunks_exact(2)) {
            let (a, b) = (h[0], h[1]);
            let aa = pk(a, a);
            // Each half: lo + hi ∈ [BIAS5 − 640, BIAS5 + 640]: the packed sums are exact.
            w[0].write(p0.wrapping_add(aa));
            w[1].write(p1.wrapping_add(aa));
            w[2].write(p2.wrapping_add(aa));
            w[3].write(p3.wrapping_add(aa));
            w[4].write(p4.wrapping_add(pk(a, b)));
        }
        let [p5, p6, p7, p8] = [
            pk(lo[1], lo[2]),
            pk(lo[3], lo[4]),
            pk(lo[5], lo[6]),
            pk(lo[7], lo[8]),
        ];
        for (w, h) in blocks.chunks_exact_mut(9).zip(hi.chunks_exact(2)) {
            let bb = pk(h[1], h[1]);
            w[5].write(p5.wrapping_add(bb));
            w[6].write(p6.wrapping_add(bb));
            w[7].write(p7.wrapping_add(bb));
            w[8].write(p8.wrapping_add(bb));
        }
        for o in rest {
            o.write(pk(BIAS5 as i32, BIAS5 as i32));
        }
    }
}

/// Words of tables a chunk of `n` groups occupies: its tables and up to 3 dummy ones, a whole
/// number of weight words.
#[inline(always)]
fn chunk_words(n: usize) -> usize {
    n.div_ceil(4) * 4 * WORDS
}

/// The tables of groups `g0..g1` ([`build5`]) at the start of `table`, then up to 3 groups of
/// tables whose entries are all `BIAS5`, for the `asm!` row loop, which reads whole words: a
/// byte past the chunk then adds exactly `BIAS5`. Returns the words written
/// ([`chunk_words`]); `g1 − g0 ≤ GROUPS`.
#[inline(always)]
fn build_chunk(table: &mut [MaybeUninit<u32>], x: &[i8], c: usize, g0: usize, g1: usize) -> usize {
    let n = g1 - g0;
    build5(x, c, g0, g1, table.get_mut(..n * WORDS).unwrap_or(&mut []));
    let words = chunk_words(n);
    for o in table.get_mut(n * WORDS..words).unwrap_or(&mut []) {
        o.write(pk(BIAS5 as i32, BIAS5 as i32));
    }
    words
}

/// Tables of every group of one matrix input of at most [`GROUPS`] bytes per row, built once
/// and used for several matrices with that input (the query, key and value projections):
/// [`Tables5::matvec`] then only adds entries. 16 KiB; lives on the caller's stack.
pub struct Tables5 {
    table: [MaybeUninit<u32>; GROUPS * WORDS],
    c: usize,
}

impl Default for Tables5 {
    fn default() -> Tables5 {
        Tables5::new()
    }
}

impl Tables5 {
    /// No tables yet (nothing is written: construct it where it stays, then [`Tables5::build`]).
    #[inline(always)]
    pub fn new() -> Tables5 {
        Tables5 {
            // SAFETY: an array of `MaybeUninit` needs no initialisation. (Written this way, not
            // as `[MaybeUninit::uninit(); N]`, which the compiler turned into a 16 KiB
            // `memclr` per call on the Cortex-M33.)
            table: unsafe {
                MaybeUninit::<[MaybeUninit<u32>; GROUPS * WORDS]>::uninit().assume_init()
            },
            c: 0,
        }
    }

    /// Builds the tables of input `x` (`5c` entries) for rows of `c ≤ GROUPS` bytes; `false`
    /// (and no tables) for longer rows: then call [`ternary5_matvec`], which works chunk by
    /// chunk.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn build(&mut self, x: &[i8], c: usize) -> bool {
        self.c = 0;
        if c == 0 || c > GROUPS || x.len() < 5 * c {
            return false;
        }
        build_chunk(&mut self.table, x, c, 0, c);
        self.c = c;
        true
    }

    /// `y[r] = Σ_j W[r][j] · x[j]` for a base-3 matrix `w` with rows of `c` bytes, from the
    /// tables (the contract of [`reference::ternary5_matvec`](super::reference::ternary5_matvec)).
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    /// Without built tables every output is 0.
    pub fn matvec(&self, w: &[u8], y: &mut [i32]) {
        y.iter_mut().for_each(|v| *v = 0);
        if self.c == 0 {
            return;
        }
        // `build` wrote these words (`c` tables, then the dummy ones).
        let t = entries(self.table.get(..chunk_words(self.c)).unwrap_or(&[]));
        rows5(w, self.c, 0, self.c, t, y);
    }
}

/// `y[r] += Σ_g table_g[w[r][g0 + g]] − BIAS5·(g1 − g0)` for every row (rows of `c` bytes) over
/// the chunk `g0..g1`: the `asm!` loop on DSP cores when `table` also holds the dummy tables
/// up to a whole word, else the portable loop.
#[inline(always)]
fn rows5(w: &[u8], c: usize, g0: usize, g1: usize, table: &[u16], y: &mut [i32]) {
    #[cfg(runtime_dsp)]
    if rows5_dsp(w, c, g0, g1, table, y) {
        return;
    }
    let bias = BIAS5 * (g1 - g0) as u32;
    for (out, row) in y.iter_mut().zip(w.chunks_exact(c.max(1))) {
        if let Some(bytes) = row.get(g0..g1) {
            // |sum| < 2^31: the biased u32 sum minus the bias is exact.
            *out = out.wrapping_add(row_sum(bytes, table).wrapping_sub(bias) as i32);
        }
    }
}

/// Same contract as [`reference::ternary5_matvec`](super::reference::ternary5_matvec), by
/// table lookup: per chunk of up to [`GROUPS`] weight bytes (groups of 5 activations), the
/// tables are built once and every row adds one entry per byte.
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
pub fn ternary5_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert_eq!(x.len(), row_bytes * 5);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    let mut tables = Tables5::new();
    if tables.build(x, row_bytes) {
        return tables.matvec(w, y);
    }
    y.iter_mut().for_each(|v| *v = 0);
    // Longer rows: chunk by chunk in the same tables.
    let table = &mut tables.table;
    let mut g0 = 0;
    while g0 < row_bytes {
        let g1 = row_bytes.min(g0 + GROUPS);
        let words = build_chunk(table, x, row_bytes, g0, g1);
        // `build_chunk` wrote these words.
        let t = entries(table.get(..words).unwrap_or(&[]));
        rows5(w, row_bytes, g0, g1, t, y);
        g0 = g1;
    }
}

/// `y[r] += Σ_g table_g[w[r][g0 + g]] − BIAS5·(g1 − g0)` for every row over one chunk of
/// base-3 bytes, in an `asm!` loop that reads whole words: `n = ceil((g1 − g0) / 4)` words per
/// row against `table`, which holds `4n` groups' tables (those past `g1 − g0` all `BIAS5`).
/// The last row runs the portable loop when its words would read past `w`. Returns `false`
/// (and does nothing) when a precondition fails.
#[cfg(runtime_dsp)]
#[inline(never)]
#[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
fn rows5_dsp(w: &[u8], c: usize, g0: usize, g1: usize, table: &[u16], y: &mut [i32]) -> bool {
    let rows = y.len();
    let n = (g1 - g0).div_ceil(4);
    let fits = rows > 0
        && (1..=8).contains(&n)
        && g0 < g1
        && g1 <= c
        && w.len() >= rows * c
        && table.len() >= 4 * n * ENTRIES;
    if !fits {
        return false;
    }
    // Rows whose `4n` bytes from `g0` lie inside `w`: all but possibly the last.
    let asm_rows = if (rows - 1) * c + g0 + 4 * n <= w.len() {
        rows
    } else {
        rows - 1
    };
    let Some(start) = w.get(g0..) else {
        return false;
    };
    let start = start.as_ptr();
    // From the end of one row's words to the next row's chunk; negative (wrapping, the same
    // bits for `add`) when a row is shorter than the words read.
    let stride = c.wrapping_sub(4 * n) as u32;
    if asm_rows > 0 {
        let ya = &mut y[..asm_rows];
        // SAFETY (every arm): for each of the `asm_rows` rows the loop reads the `4n` bytes
        // from `g0` of that row (`n` word loads, inside `w`: checked above; unaligned word
        // loads are allowed on Armv8-M for normal memory) and `u16` entries of `table` at
        // `k·256 + byte` for `k < 4n` (`table` holds `4n·256` entries); it reads and writes
        // `y[r]` for `r < asm_rows`. The table pointer moves by `n·2048` bytes and back each
        // row; nothing else is touched, no stack.
        match n {
            1 => rows_loop!(1, BIAS5, start, ya, asm_rows, table, stride, [0 last]),
            2 => rows_loop!(2, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 last]),
            3 => rows_loop!(3, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 next 2 last]),
            4 => {
                rows_loop!(4, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 next 2 next 3 last])
            }
            5 => {
                rows_loop!(5, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 next 2 next 3 next 0 last])
            }
            6 => {
                rows_loop!(6, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 next 2 next 3 next 0 next 1 last])
            }
            7 => {
                rows_loop!(7, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 next 2 next 3 next 0 next 1 next 2 last])
            }
            _ => {
                rows_loop!(8, BIAS5, start, ya, asm_rows, table, stride, [0 next 1 next 2 next 3 next 0 next 1 next 2 next 3 last])
            }
        }
    }
    if asm_rows < rows {
        let bias = BIAS5 * (g1 - g0) as u32;
        let row = w
            .get((rows - 1) * c + g0..(rows - 1) * c + g1)
            .unwrap_or(&[]);
        if let Some(out) = y.last_mut() {
            *out = out.wrapping_add(row_sum(row, table).wrapping_sub(bias) as i32);
        }
    }
    true
}

/// The tables of one chunk `g0..g1` (at most [`GROUPS`] groups) of a base-3 input, built in two
/// parts that may run on two cores ([`ChunkTables::build_split`]) and then read by both
/// ([`ChunkTables::add_rows`]): the split forward pass's tables (`pass/split/`). 16 KiB; lives
/// on the caller's stack, shared by reference.
pub struct ChunkTables {
    table: [MaybeUninit<u32>; GROUPS * WORDS],
    c: usize,
    g0: usize,
    g1: usize,
}

impl Default for ChunkTables {
    fn default() -> ChunkTables {
        ChunkTables::new()
    }
}

impl ChunkTables {
    /// No tables yet (nothing is written).
    #[inline(always)]
    pub fn new() -> ChunkTables {
        ChunkTables {
            // SAFETY: an array of `MaybeUninit` needs no initialisation (see `Tables5::new`).
            table: unsafe {
                MaybeUninit::<[MaybeUninit<u32>; GROUPS * WORDS]>::uninit().assume_init()
            },
            c: 0,
            g0: 0,
            g1: 0,
        }
    }

    /// Builds the tables of groups `g0..g1` of input `x` (`5c` entries, rows of `c` bytes):
    /// groups `g0..split` in `join`'s first job, `split..g1` and the dummy tables after them in
    /// its second; `join` must run both before it returns (on two cores, or one after the
    /// other). The two jobs write disjoint halves of the table. `false` (nothing built, every
    /// [`add_rows`](Self::add_rows) then adds nothing) when the chunk is empty, longer than
    /// [`GROUPS`], outside the row, or `x` is short.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn build_split(
        &mut self,
        x: &[i8],
        c: usize,
        (g0, g1): (usize, usize),
        split: usize,
        join: impl FnOnce(&mut dyn FnMut(), &mut (dyn FnMut() + Send)),
    ) -> bool {
        self.c = 0;
        if g0 >= g1 || g1 - g0 > GROUPS || g1 > c || x.len() < 5 * c {
            return false;
        }
        let split = split.clamp(g0, g1);
        let words = chunk_words(g1 - g0);
        let (lo, hi) = self.table[..words].split_at_mut((split - g0) * WORDS);
        join(&mut || build5(x, c, g0, split, lo), &mut || {
            let (built, dummies) = hi.split_at_mut((g1 - split) * WORDS);
            build5(x, c, split, g1, built);
            for o in dummies {
                o.write(pk(BIAS5 as i32, BIAS5 as i32));
            }
        });
        (self.c, self.g0, self.g1) = (c, g0, g1);
        true
    }

    /// `y[r] += Σ_{g0 ≤ g < g1} W[r][g] · (the chunk's inputs)` for the base-3 rows in `w` (rows
    /// of `c` bytes, any subset of a matrix's rows): table lookups only.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn add_rows(&self, w: &[u8], y: &mut [i32]) {
        if self.c == 0 || y.is_empty() {
            return;
        }
        // `build_split` wrote these words (the chunk's tables, then the dummy ones).
        let t = entries(
            self.table
                .get(..chunk_words(self.g1 - self.g0))
                .unwrap_or(&[]),
        );
        rows5(w, self.c, self.g0, self.g1, t, y);
    }
}
