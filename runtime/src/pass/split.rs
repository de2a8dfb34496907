//! The split forward pass: each token's work cut in two halves that run on two cores
//! ([`Workers`]), with exactly the one-core pass's arithmetic (`forward.rs`, `attention.rs`,
//! `ffn.rs`), so the logits and the KV cache are the same bits (runtime/tests/workers.rs).
//!
//! Per block, with a barrier (one [`Workers::join`]) after each step:
//!
//! | step | this core | the other core |
//! |---|---|---|
//! | attention RMSNorm | the norm (serial) | touches the flash rows of q, k, v it will read next |
//! | lookup tables of the q/k/v input | groups `0..c/2` | groups `c/2..c` |
//! | q, k, v projections + RoPE + Q5 | query heads `0..H/2`, KV heads `0..Hkv/2` | the other heads |
//! | attention | query heads `0..H/2` | query heads `H/2..H` (its own score scratch) |
//! | head merge + sub-norm | serial | touches `Wo`'s flash rows |
//! | `Wo` (tables, then rows + residual add) | rows `0..d/2` | rows `d/2..d` |
//! | FFN RMSNorm | serial | touches up/gate flash rows |
//! | up and gate (shared tables) | rows `0..F/2` of both | rows `F/2..F` |
//! | ReLU², gate product, sub-norm | serial | touches `Wdown`'s flash rows |
//! | `Wdown`, per table chunk (tables, rows), residual add | rows `0..d/2` | rows `d/2..d` |
//! | final norm, LM head | the norm; vocabulary rows `0..V/2` | rows `V/2..V` |
//!
//! Matrices whose rows cannot share one set of tables (2-bit, or mixed encodings) run their
//! own kernel on each core's rows (each core builds its own tables). A block of tokens
//! (prefill) runs token by token, which the one-core pass guarantees gives the same bits.
//!
//! The "touches" are the placement's prefetch: with a [`RowCopy`] (the first rows of every
//! matrix in fast RAM, the rest streamed from XIP flash on a Pico 2), the other core reads one
//! byte of every 8-byte flash line of the rows the next step streams, while this core runs the
//! serial step; the XIP cache (16 KiB, shared by both cores) then holds them. Reads only: the
//! results cannot change.
//!
//! Disjointness (see [`workers`](super::workers)): every `join` below gets two closures built
//! from `split_at_mut` halves of what is written and shared borrows of what is read.

use super::attention::{merge_heads, rope};
use super::ffn::{gated_cut, relu_sq_cut};
use super::forward::{residual_add, RESID_SCALE};
use super::norm::{absmax_quantize, rmsnorm_quantize, to_block_i32};
use super::workers::{Workers, KERNEL_STACK};
use crate::fixed::{mul_round, sat_i32, Dyadic, INV_127};
use crate::format::TensorKind;
use crate::format::{
    int8_row_bytes, TernaryEncoding, LOGIT_FRAC_BITS, RESID_FRAC_BITS, ROPE_FRAC_BITS,
};
use crate::kernels::lut::{ChunkTables, GROUPS};
use crate::kernels::{
    attention_scores, int8_matvec, int8_weighted_sum, softmax_coefficients, ternary5_matvec,
    ternary_matvec,
};
use crate::model::{scales_of, Gains, LayerWeights, Model, TernaryMatrix};
use crate::session::Session;

/// The block matrices, in the order of a [`RowCopy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mat {
    Q,
    K,
    V,
    O,
    Up,
    Gate,
    Down,
}

const MATS: [Mat; 7] = [
    Mat::Q,
    Mat::K,
    Mat::V,
    Mat::O,
    Mat::Up,
    Mat::Gate,
    Mat::Down,
];

fn matrix<'a>(w: &LayerWeights<'a>, m: Mat) -> Option<TernaryMatrix<'a>> {
    match m {
        Mat::Q => Some(w.wq),
        Mat::K => Some(w.wk),
        Mat::V => Some(w.wv),
        Mat::O => Some(w.wo),
        Mat::Up => Some(w.w_up),
        Mat::Gate => w.w_gate,
        Mat::Down => Some(w.w_down),
    }
}

/// Parts of a rows-copied fraction ([`RowCopy`]).
const FRACTION_ONE: usize = 1024;

/// Most bytes prefetched ahead of their use: half the XIP cache, so that the lines brought in
/// do not evict each other (2 ways of 8 KiB).
const PREFETCH_AHEAD: usize = 8 * 1024;

// The placement's schedule (a heuristic: only speed depends on it, never a result). Cycles a
// Cortex-M33 on RP2350 XIP flash spends, as the cost model charges them (firmware/COST.md,
// "Two cores"): the serial steps per element (RMSNorm with its input's copy; head merge or
// ReLU² cut with the sub-norm), a prefetched byte (a chained 8-byte transfer of 48 cycles and
// the touch), a byte a rows job streams (chained when a row is read front to back; a new
// transfer per line when the rows are read chunk by chunk), and a byte computed from RAM (the
// lookup loop).
const NORM_CYCLES_PER_ELEMENT: usize = 85;
const SUBNORM_CYCLES_PER_ELEMENT: usize = 95;
const PREFETCH_CYCLES_PER_BYTE_X2: usize = 13;
const STREAM_CYCLES_PER_BYTE: usize = 6;
const STREAM_CHUNKED_CYCLES_PER_BYTE: usize = 14;
const LOOKUP_CYCLES_PER_BYTE_X2: usize = 7;

/// The split pass's placement: a copy, in fast memory, of what both cores or the serial steps
/// read every token (the LM head's embedding and its row scales, every norm's gains: when they
/// fit) and of the same fraction of the first rows of every block matrix, so that this core's
/// share of each matrix (its first rows) and as much of the other core's as fits are read from
/// RAM, and only the other core streams the rest from the model (XIP flash on a Pico 2): two
/// cores streaming at once would break the flash link's chained transfers
/// (firmware/COST.md, "Two cores"). Byte-for-byte copies: results do not change.
#[derive(Clone, Copy, Debug)]
pub struct RowCopy<'b> {
    bytes: &'b [u8],
    per_layer: usize,
    /// Bytes copied of each matrix of a block, and where they start in a block's copy.
    len: [usize; 7],
    offset: [usize; 7],
    embedding: &'b [u8],
    /// The norms' gains: per block `attn_norm [d]`, `attn_sub_norm [d]`, `ffn_norm [d]`,
    /// `ffn_sub_norm [F]` (4 bytes each), then the final norm `[d]`, then the embedding's row
    /// scales `[V]` (8 bytes each); empty when they did not fit.
    small: &'b [u8],
    fraction: usize,
}

/// The gains a [`RowCopy`] holds per block, in order.
const GAINS: [TensorKind; 4] = [
    TensorKind::AttnNorm,
    TensorKind::AttnSubNorm,
    TensorKind::FfnNorm,
    TensorKind::FfnSubNorm,
];

impl<'b> RowCopy<'b> {
    /// Copies into `ram` the embedding (if it fits), then the first `⌊rows · f / 1024⌋` rows of
    /// every block matrix for the largest `f ≤ 1024` that fits. Returns the copy and the bytes
    /// used.
    pub fn place(model: &Model<'_>, ram: &'b mut [u8]) -> (RowCopy<'b>, usize) {
        let layers = model.config().n_layers as usize;
        let w0 = model.layer(0);
        let shapes = MATS.map(|m| matrix(&w0, m).map_or((0, 0), |t| (t.rows, t.row_bytes)));
        let emb: &[i8] = model.embedding();
        let (emb_ram, rest) = if ram.len() >= emb.len() {
            ram.split_at_mut(emb.len())
        } else {
            ram.split_at_mut(0)
        };
        for (o, e) in emb_ram.iter_mut().zip(emb) {
            *o = *e as u8;
        }
        // The gains and the embedding's scales, in the order of `small`.
        let c = model.config();
        let (d4, f4) = (4 * c.d_model as usize, 4 * c.ffn_dim as usize);
        let scales = model.embedding_scale_bytes();
        let small_len = layers * (3 * d4 + f4) + d4 + scales.len();
        let (small_ram, rest) = if rest.len() >= small_len {
            rest.split_at_mut(small_len)
        } else {
            rest.split_at_mut(0)
        };
        if !small_ram.is_empty() {
            let mut at = 0;
            let mut put = |src: &[u8]| {
                if let Some(d) = small_ram.get_mut(at..at + src.len()) {
                    d.copy_from_slice(src);
                }
                at += src.len();
            };
            for l in 0..layers {
                for kind in GAINS {
                    put(model.layer_gains(l, kind).bytes());
                }
            }
            put(model.final_norm().bytes());
            put(scales);
        }
        let per_layer = |f: usize| -> usize {
            shapes
                .iter()
                .map(|&(rows, rb)| rows * f / FRACTION_ONE * rb)
                .sum()
        };
        let (mut lo, mut hi) = (0, FRACTION_ONE);
        while lo < hi {
            let f = (lo + hi).div_ceil(2);
            if per_layer(f).saturating_mul(layers) <= rest.len() {
                lo = f;
            } else {
                hi = f - 1;
            }
        }
        let fraction = lo;
        let mut len = [0; 7];
        let mut offset = [0; 7];
        let mut at = 0;
        for (i, &(rows, rb)) in shapes.iter().enumerate() {
            len[i] = rows * fraction / FRACTION_ONE * rb;
            offset[i] = at;
            at += len[i];
        }
        let per_layer = at;
        let total = per_layer * layers;
        let (bytes, _) = rest.split_at_mut(total.min(rest.len()));
        for l in 0..layers {
            let w = model.layer(l);
            for (i, m) in MATS.iter().enumerate() {
                let src = matrix(&w, *m).map_or(&[][..], |t| t.data);
                let at = l * per_layer + offset[i];
                if let (Some(d), Some(s)) = (bytes.get_mut(at..at + len[i]), src.get(..len[i])) {
                    d.copy_from_slice(s);
                }
            }
        }
        let used = emb_ram.len() + small_ram.len() + bytes.len();
        let copy = RowCopy {
            bytes,
            per_layer,
            len,
            offset,
            embedding: emb_ram,
            small: small_ram,
            fraction,
        };
        (copy, used)
    }

    /// Rows of each matrix copied, in 1024ths.
    pub fn fraction(&self) -> u32 {
        self.fraction as u32
    }

    /// Whether the LM head's embedding is in the copy.
    pub fn has_embedding(&self) -> bool {
        !self.embedding.is_empty()
    }

    /// Whether the norms' gains and the embedding's scales are in the copy.
    pub fn has_gains(&self) -> bool {
        !self.small.is_empty()
    }

    /// Block `l`'s weights with its gains read from the copy (when it holds them).
    fn layer(&self, mut w: LayerWeights<'b>, l: usize, c: &crate::Config) -> LayerWeights<'b> {
        if self.small.is_empty() {
            return w;
        }
        let (d4, f4) = (4 * c.d_model as usize, 4 * c.ffn_dim as usize);
        let mut at = l * (3 * d4 + f4);
        let mut take = |n: usize| {
            let g = Gains::from_bytes(self.small.get(at..at + n).unwrap_or(&[]));
            at += n;
            g
        };
        w.attn_norm = take(d4);
        w.attn_sub_norm = take(d4);
        w.ffn_norm = take(d4);
        w.ffn_sub_norm = take(f4);
        w
    }

    /// The final norm's gains and the embedding's row scales from the copy.
    fn head_norm_and_scales(&self, c: &crate::Config) -> Option<(Gains<'b>, &'b [u8])> {
        if self.small.is_empty() {
            return None;
        }
        let (d4, f4) = (4 * c.d_model as usize, 4 * c.ffn_dim as usize);
        let at = c.n_layers as usize * (3 * d4 + f4);
        let gains = Gains::from_bytes(self.small.get(at..at + d4)?);
        Some((gains, self.small.get(at + d4..)?))
    }

    fn head(&self, l: usize, m: Mat) -> &'b [u8] {
        let i = m as usize;
        let at = l * self.per_layer + self.offset[i];
        self.bytes.get(at..at + self.len[i]).unwrap_or(&[])
    }
}

/// A matrix's rows: the first `k` from a [`RowCopy`] (`head`), the rest from the model.
#[derive(Clone, Copy)]
struct Rows<'w> {
    m: TernaryMatrix<'w>,
    head: &'w [u8],
}

impl<'w> Rows<'w> {
    fn copied(&self) -> usize {
        (self.head.len().checked_div(self.m.row_bytes)).map_or(0, |k| k.min(self.m.rows))
    }

    /// Rows `a..b` as (the copied ones, the model's ones).
    fn parts(&self, a: usize, b: usize) -> [&'w [u8]; 2] {
        let (rb, k) = (self.m.row_bytes, self.copied());
        [
            self.head.get(a.min(k) * rb..b.min(k) * rb).unwrap_or(&[]),
            self.m.data.get(a.max(k) * rb..b.max(k) * rb).unwrap_or(&[]),
        ]
    }

    /// `y = W[a..b] · x` with the matrix's own kernel (which builds its own tables, if any).
    fn matvec(&self, x: &[i8], a: usize, b: usize, y: &mut [i32]) {
        let rb = self.m.row_bytes;
        let mut y = y;
        for part in self.parts(a, b) {
            let n = part.len().checked_div(rb).unwrap_or(0);
            let at = n.min(y.len());
            let (yp, rest) = core::mem::take(&mut y).split_at_mut(at);
            y = rest;
            if n == 0 || yp.len() != n {
                continue;
            }
            match self.m.encoding {
                TernaryEncoding::Base3 => ternary5_matvec(part, rb, x, yp),
                TernaryEncoding::Packed2 => ternary_matvec(part, rb, x, yp),
            }
        }
    }

    /// `y += W[a..b] · (the chunk's inputs)` from tables built for this matrix's input.
    fn add(&self, t: &ChunkTables, a: usize, b: usize, y: &mut [i32]) {
        let rb = self.m.row_bytes;
        let mut y = y;
        for part in self.parts(a, b) {
            let n = part.len().checked_div(rb).unwrap_or(0);
            let at = n.min(y.len());
            let (yp, rest) = core::mem::take(&mut y).split_at_mut(at);
            y = rest;
            t.add_rows(part, yp);
        }
    }
}

/// Reads one byte of every 8-byte line of `bytes` (and its last byte): brings them into the XIP
/// cache.
fn touch(bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        // SAFETY: `i < bytes.len()`: a read inside the slice (volatile, so that it happens:
        // its only purpose is to bring the line into the cache).
        let _ = unsafe { core::ptr::read_volatile(bytes.as_ptr().add(i)) };
        i += 8;
    }
    if let Some(last) = bytes.last() {
        // SAFETY: a reference to the slice's last byte.
        let _ = unsafe { core::ptr::read_volatile(last) };
    }
}

/// How a pass is split: the workers, whether the other core takes part, the placement.
struct Ctx<'c> {
    model: Model<'c>,
    workers: &'c dyn Workers,
    two: bool,
    /// The other core's stack holds a kernel's own tables ([`KERNEL_STACK`]).
    roomy: bool,
    rows: Option<RowCopy<'c>>,
    shared_tables: bool,
    /// The prefetch cursor: the next byte the model streams, in the pass's order, as (block,
    /// matrix in `MATS` order, offset into that matrix's streamed rows).
    cursor: core::cell::Cell<(usize, usize, usize)>,
    /// Bytes prefetched and not yet used.
    pending: core::cell::Cell<usize>,
    /// What the other core prefetches at the end of the next rows job ([`Ctx::matvec`]).
    job_prefetch: core::cell::Cell<[&'c [u8]; 4]>,
    /// [`Ctx::streamed`]'s cache: two blocks' streamed rows.
    streamed_block: [core::cell::Cell<usize>; 2],
    streamed_cache: [[core::cell::Cell<&'c [u8]>; 7]; 2],
}

impl<'c> Ctx<'c> {
    #[inline(always)]
    fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
        if self.two {
            self.workers.join(here, there);
        } else {
            here();
            there();
        }
    }

    /// Where `n` items are cut: this core takes `0..mid`, the other `mid..n`.
    #[inline(always)]
    fn mid(&self, n: usize) -> usize {
        if self.two {
            n / 2
        } else {
            n
        }
    }

    fn rows<'a>(&'a self, w: &LayerWeights<'a>, l: usize, m: Mat) -> Option<Rows<'a>> {
        let head = self.rows.map_or(&[][..], |r| r.head(l, m));
        matrix(w, m).map(|m| Rows { m, head })
    }

    /// The rows of matrix `m` of block `l` that the model streams (those not in the row copy),
    /// from a cache of two blocks (`Model::layer` is not free).
    fn streamed(&self, l: usize, m: Mat) -> &'c [u8] {
        let slot = l & 1;
        if self.streamed_block[slot].get() != l {
            let w = self.model.layer(l);
            for (cell, m) in self.streamed_cache[slot].iter().zip(MATS) {
                let bytes = matrix(&w, m).map_or(&[][..], |t| {
                    let head = self.rows.map_or(0, |r| r.head(l, m).len());
                    let k = head.checked_div(t.row_bytes).map_or(0, |k| k.min(t.rows));
                    t.data
                        .get(k * t.row_bytes..t.rows * t.row_bytes)
                        .unwrap_or(&[])
                });
                cell.set(bytes);
            }
            self.streamed_block[slot].set(l);
        }
        self.streamed_cache[slot][m as usize].get()
    }

    /// Matrix `m` of block `l` is about to be used: returns its streamed bytes that no
    /// prefetch touched (the job streams them) and moves the cursor past it.
    fn consume(&self, l: usize, m: Mat) -> usize {
        if !self.two || self.rows.is_none() {
            return 0;
        }
        let total = self.streamed(l, m).len();
        let (cl, cm, off) = self.cursor.get();
        let left = match (l, m as usize).cmp(&(cl, cm)) {
            core::cmp::Ordering::Less => 0,
            core::cmp::Ordering::Equal => total.saturating_sub(off),
            core::cmp::Ordering::Greater => total,
        };
        self.pending
            .set(self.pending.get().saturating_sub(total - left));
        if (l, m as usize) >= (cl, cm) {
            let next = if m as usize + 1 == MATS.len() {
                (l + 1, 0, 0)
            } else {
                (l, m as usize + 1, 0)
            };
            self.cursor.set(next);
        }
        left
    }

    /// The next streamed bytes in the pass's order from the cursor on, at most `budget` and
    /// at most [`PREFETCH_AHEAD`] ahead of their use; the cursor moves past them.
    fn plan(&self, budget: usize) -> [&'c [u8]; 4] {
        let mut out = [&[][..]; 4];
        if !self.two || self.rows.is_none() {
            return out;
        }
        let mut left = budget.min(PREFETCH_AHEAD.saturating_sub(self.pending.get()));
        let (mut l, mut mi, mut off) = self.cursor.get();
        let layers = self.model.config().n_layers as usize;
        let mut n = 0;
        while left > 0 && n < out.len() && l < layers {
            let bytes = self.streamed(l, MATS[mi]);
            let rest = bytes.get(off..).unwrap_or(&[]);
            let take = rest.len().min(left);
            if take > 0 {
                out[n] = &rest[..take];
                n += 1;
                left -= take;
                off += take;
                self.pending.set(self.pending.get() + take);
            }
            if off >= bytes.len() {
                off = 0;
                mi += 1;
                if mi == MATS.len() {
                    mi = 0;
                    l += 1;
                }
            }
        }
        self.cursor.set((l, mi, off));
        out
    }

    /// Sets what the other core prefetches at the end of the next rows job: as many bytes as
    /// the job's matrices stream (`budget`), so that prefetching keeps pace with use. Returns
    /// the bytes planned.
    fn prefetch_in_job(&self, budget: usize) -> usize {
        let pieces = self.plan(budget);
        self.job_prefetch.set(pieces);
        pieces.iter().map(|p| p.len()).sum()
    }

    /// Runs the serial step `here` (about `cycles` long) on this core while the other one
    /// prefetches as many of the next streamed bytes as it can in that time (when a row copy
    /// says the model is in slow memory).
    fn serial(&self, here: &mut dyn FnMut(), cycles: usize) {
        if !self.two || self.rows.is_none() {
            return here();
        }
        let pieces = self.plan(cycles * 2 / PREFETCH_CYCLES_PER_BYTE_X2);
        if pieces.iter().all(|p| p.is_empty()) {
            return here();
        }
        self.join(here, &mut || pieces.iter().for_each(|p| touch(p)));
    }

    /// Where a rows job is cut: this core takes rows `0..s`, the other `s..rows`. Without a row
    /// copy, halves. With one, this core's rows all come from RAM (`s ≤ copied` unless fewer
    /// than half are copied) and the other core's share is smaller by what streaming its
    /// `unprefetched` bytes (`stream` cycles per byte) and prefetching `prefetch` bytes cost,
    /// against the lookup loop's cycles per byte computed, over `mats` matrices of `rb`-byte
    /// rows.
    #[allow(clippy::too_many_arguments)]
    fn cut(
        &self,
        rows: usize,
        copied: usize,
        rb: usize,
        mats: usize,
        unprefetched: usize,
        stream: usize,
        prefetch: usize,
    ) -> usize {
        if !self.two {
            return rows;
        }
        if self.rows.is_none() {
            return rows / 2;
        }
        let other = 2 * stream * unprefetched + PREFETCH_CYCLES_PER_BYTE_X2 * prefetch;
        let extra = other / (2 * LOOKUP_CYCLES_PER_BYTE_X2 * rb * mats).max(1);
        (rows / 2 + extra).min(copied.max(rows / 2)).min(rows)
    }

    /// Whether the base-3 matrices `ms` share one input's tables built by both cores: all
    /// base 3 with the same row length.
    fn share(&self, ms: &[&Rows<'_>]) -> Option<usize> {
        let rb = ms.first()?.m.row_bytes;
        let all = ms
            .iter()
            .all(|r| r.m.encoding == TernaryEncoding::Base3 && r.m.row_bytes == rb);
        (self.shared_tables && all && rb > 0).then_some(rb)
    }

    /// `y = W · x` split at row `s` (`y0`: rows `0..s`, `y1`: `s..rows`), then `after0(y0)` on
    /// this core and `after1(y1)` on the other. Base-3 rows: per chunk of [`GROUPS`] table
    /// groups, the tables built by both cores, then each core's rows.
    #[allow(clippy::too_many_arguments)]
    fn matvec(
        &self,
        tables: &mut ChunkTables,
        r: &Rows<'_>,
        x: &[i8],
        s: usize,
        y0: &mut [i32],
        y1: &mut [i32],
        after0: &mut dyn FnMut(&mut [i32]),
        after1: &mut (dyn FnMut(&mut [i32]) + Send),
    ) {
        let rows = r.m.rows;
        let pieces = self.job_prefetch.take();
        let Some(rb) = self.share(&[r]) else {
            if !self.roomy {
                // The kernel keeps its own tables on the stack: all rows on this core.
                r.matvec(x, 0, s, y0);
                r.matvec(x, s, rows, y1);
                after0(y0);
                after1(y1);
                return;
            }
            return self.join(
                &mut || {
                    r.matvec(x, 0, s, y0);
                    after0(y0);
                },
                &mut || {
                    r.matvec(x, s, rows, y1);
                    after1(y1);
                    pieces.iter().for_each(|p| touch(p));
                },
            );
        };
        let chunks = rb.div_ceil(GROUPS);
        for ch in 0..chunks {
            let (g0, g1) = (ch * GROUPS, rb.min(ch * GROUPS + GROUPS));
            tables.build_split(x, rb, (g0, g1), g0 + self.mid(g1 - g0), |a, b| {
                self.join(a, b)
            });
            let t = &*tables;
            let (first, last) = (ch == 0, ch + 1 == chunks);
            let (y0, y1) = (&mut *y0, &mut *y1);
            let (after0, after1) = (&mut *after0, &mut *after1);
            self.join(
                &mut || {
                    if first {
                        y0.fill(0);
                    }
                    r.add(t, 0, s, y0);
                    if last {
                        after0(y0);
                    }
                },
                &mut || {
                    if first {
                        y1.fill(0);
                    }
                    r.add(t, s, rows, y1);
                    if last {
                        after1(y1);
                        pieces.iter().for_each(|p| touch(p));
                    }
                },
            );
        }
    }
}

/// One core's share of the query, key and value heads and where their results go.
struct QkvPart<'a> {
    /// Query heads `h0..h1`, KV heads `g0..g1`.
    heads: (usize, usize),
    groups: (usize, usize),
    /// Matrix outputs (at least as long as the larger of the two shares).
    y: &'a mut [i32],
    /// RoPE / quantizer scratch, `hd` entries.
    tmp: &'a mut [i64],
    q8: &'a mut [i8],
    q_scale: &'a mut [Dyadic],
    k8: &'a mut [i8],
    k_scale: &'a mut [Dyadic],
    v8: &'a mut [i8],
    v_scale: &'a mut [Dyadic],
}

/// What both cores read to quantize their heads.
#[derive(Clone, Copy)]
struct QkvScales<'a> {
    hd: usize,
    rope_row: &'a [u8],
    /// Per-unit scales of the rotated q, k and of v, before each head's maximum.
    qs: Dyadic,
    ks: Dyadic,
    vs: Dyadic,
}

impl QkvPart<'_> {
    fn query_rows(&self) -> (usize, usize) {
        (self.heads.0, self.heads.1)
    }

    /// RoPE and Q5 of the query heads from `y` (the projection's rows of those heads).
    fn quantize_q(&mut self, y: &[i32], s: &QkvScales<'_>) {
        let hd = s.hd;
        for (i, yh) in y.chunks_exact(hd).enumerate() {
            let (Some(q8), Some(tmp)) = (
                self.q8.get_mut(i * hd..(i + 1) * hd),
                self.tmp.get_mut(..hd),
            ) else {
                return;
            };
            rope(yh, s.rope_row, tmp);
            let m = absmax_quantize(tmp, q8);
            if let Some(qs) = self.q_scale.get_mut(i) {
                *qs = s.qs.mul(Dyadic::from_u64(m, 0));
            }
        }
    }

    /// RoPE and Q5 of the key heads into the cache slots.
    fn quantize_k(&mut self, y: &[i32], s: &QkvScales<'_>) {
        let hd = s.hd;
        for (i, yh) in y.chunks_exact(hd).enumerate() {
            let (Some(k8), Some(tmp)) = (
                self.k8.get_mut(i * hd..(i + 1) * hd),
                self.tmp.get_mut(..hd),
            ) else {
                return;
            };
            rope(yh, s.rope_row, tmp);
            let m = absmax_quantize(tmp, k8);
            if let Some(ks) = self.k_scale.get_mut(i) {
                *ks = s.ks.mul(Dyadic::from_u64(m, 0));
            }
        }
    }

    /// Q5 of the value heads into the cache slots.
    fn quantize_v(&mut self, y: &[i32], s: &QkvScales<'_>) {
        let hd = s.hd;
        for (i, yh) in y.chunks_exact(hd).enumerate() {
            let (Some(v8), Some(tmp)) = (
                self.v8.get_mut(i * hd..(i + 1) * hd),
                self.tmp.get_mut(..hd),
            ) else {
                return;
            };
            for (o, v) in tmp.iter_mut().zip(yh) {
                *o = *v as i64;
            }
            let m = absmax_quantize(tmp, v8);
            if let Some(vs) = self.v_scale.get_mut(i) {
                *vs = s.vs.mul(Dyadic::from_u64(m, 0));
            }
        }
    }

    /// This core's q, k and v rows from shared tables, each quantized before the next.
    fn project_shared(&mut self, t: &ChunkTables, r: &[Rows<'_>; 3], s: &QkvScales<'_>) {
        let hd = s.hd;
        let (h0, h1) = self.query_rows();
        let (g0, g1) = self.groups;
        let y = core::mem::take(&mut self.y);
        let nq = ((h1 - h0) * hd).min(y.len());
        y[..nq].fill(0);
        r[0].add(t, h0 * hd, h1 * hd, &mut y[..nq]);
        self.quantize_q(&y[..nq], s);
        let nk = ((g1 - g0) * hd).min(y.len());
        y[..nk].fill(0);
        r[1].add(t, g0 * hd, g1 * hd, &mut y[..nk]);
        self.quantize_k(&y[..nk], s);
        y[..nk].fill(0);
        r[2].add(t, g0 * hd, g1 * hd, &mut y[..nk]);
        self.quantize_v(&y[..nk], s);
        self.y = y;
    }
}

/// One core's share of the attention heads.
struct AttendPart<'a> {
    heads: (usize, usize),
    /// Accumulators of heads `h0..h1` (`hd` each).
    acc: &'a mut [i64],
    head_scale: &'a mut [Dyadic],
    scores: &'a mut [i64],
    coef: &'a mut [i32],
}

/// What every head's attention reads.
#[derive(Clone, Copy)]
struct AttendIn<'a> {
    hd: usize,
    nkv: usize,
    group: usize,
    p: usize,
    /// Cache entry of (layer, position 0, KV head 0).
    first: usize,
    q8: &'a [i8],
    q_scale: &'a [Dyadic],
    keys: &'a [i8],
    values: &'a [i8],
    k_scale: &'a [Dyadic],
    v_scale: &'a [Dyadic],
}

impl AttendPart<'_> {
    /// Causal softmax attention of heads `h0..h1` (the one-core pass's `attend`, per head).
    fn run(&mut self, a: &AttendIn<'_>) {
        let (hd, nkv, p) = (a.hd, a.nkv, a.p);
        let (h0, h1) = self.heads;
        for h in h0..h1 {
            let g = h / a.group;
            let i = h - h0;
            let (Some(q), Some(dots), Some(scores), Some(acc)) = (
                a.q8.get(h * hd..(h + 1) * hd),
                self.coef.get_mut(..=p),
                self.scores.get_mut(..=p),
                self.acc.get_mut(i * hd..(i + 1) * hd),
            ) else {
                return;
            };
            let keys = a.keys.get((a.first + g) * hd..).unwrap_or(&[]);
            int8_matvec(keys, nkv * hd, q, dots);
            let k_scale = a.k_scale.get(a.first + g..).unwrap_or(&[]);
            let q_scale = a.q_scale.get(h).copied().unwrap_or(Dyadic::ZERO);
            attention_scores(dots, q_scale, k_scale, nkv, scores);
            let v_scale = a.v_scale.get(a.first + g..).unwrap_or(&[]);
            let (e, wsum) = softmax_coefficients(scores, dots, v_scale, nkv);
            let values = a.values.get((a.first + g) * hd..).unwrap_or(&[]);
            int8_weighted_sum(dots, values, nkv * hd, acc);
            if let Some(hs) = self.head_scale.get_mut(i) {
                *hs = match e {
                    Some(e) => Dyadic::pow2(e).div(Dyadic::from_u64(wsum, -30)),
                    None => Dyadic::ZERO,
                };
            }
        }
    }
}

/// The second core's scratch and the split's settings, held by a session made with
/// [`Session::with_workers`].
pub(crate) struct Split<'b> {
    pub(crate) workers: &'b dyn Workers,
    /// Cores in use: 1 or 2 ([`Session::set_cores`]).
    pub(crate) cores: usize,
    pub(crate) rows: Option<RowCopy<'b>>,
    pub(crate) shared_tables: bool,
    /// The other core's attention scores `[T]` and coefficients `[T]`.
    pub(crate) scores: &'b mut [i64],
    pub(crate) coef: &'b mut [i32],
}

impl Session<'_, '_> {
    /// The split pass over the `n` tokens recorded at `pos..pos + n`, token by token.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub(super) fn run_split(&mut self, n: usize) {
        for t in 0..n {
            self.split_token(t);
        }
        self.pos += n;
        self.last_n = n;
    }

    /// One token at position `pos + t` through the whole pass; its logits go to row `t`.
    #[inline(never)]
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    fn split_token(&mut self, t: usize) {
        let Session {
            model,
            ctx_len,
            pos,
            x,
            act,
            y,
            wide,
            q8,
            q_scale,
            head_scale,
            k_cache,
            v_cache,
            k_scale,
            v_scale,
            scores,
            coef,
            logits,
            tokens,
            gate,
            split,
            ..
        } = self;
        let Some(split) = split.as_mut() else {
            return;
        };
        let ctx = Ctx {
            model: *model,
            cursor: core::cell::Cell::new((0, 0, 0)),
            pending: core::cell::Cell::new(0),
            job_prefetch: core::cell::Cell::new([&[][..]; 4]),
            streamed_block: [
                core::cell::Cell::new(usize::MAX),
                core::cell::Cell::new(usize::MAX),
            ],
            streamed_cache: Default::default(),
            workers: split.workers,
            two: split.cores > 1 && split.workers.cores() > 1,
            roomy: split.workers.other_stack_bytes() >= KERNEL_STACK,
            rows: split.rows,
            shared_tables: split.shared_tables,
        };
        let model = *model;
        let c = *model.config();
        let (d, hd) = (c.d_model as usize, c.head_dim() as usize);
        let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
        let (f, v) = (c.ffn_dim as usize, c.vocab_size as usize);
        let (layers, tt) = (c.n_layers as usize, *ctx_len);
        let p = *pos + t;
        let eps = model.norm_eps();
        let mut tables = ChunkTables::new();

        // Embedding (Q3) into the residual stream.
        let tok = tokens.get(p).copied().unwrap_or(0);
        let (row, e) = model.embedding_row(tok as usize);
        let x = &mut x[..d];
        for (xi, q) in x.iter_mut().zip(row) {
            *xi = mul_round(*q as i64, e, RESID_FRAC_BITS as i32);
        }

        let (h_mid, g_mid) = (ctx.mid(nh), ctx.mid(nkv));
        let group = nh / nkv.max(1);
        let rope_unit = Dyadic::pow2(-(ROPE_FRAC_BITS as i32));
        for l in 0..layers {
            let w = match ctx.rows {
                Some(r) => r.layer(model.layer(l), l, &c),
                None => model.layer(l),
            };
            let [rq, rk, rv, ro, rup, rgate, rdown] = MATS.map(|m| ctx.rows(&w, l, m));
            let (Some(rq), Some(rk), Some(rv), Some(ro), Some(rup), Some(rdown)) =
                (rq, rk, rv, ro, rup, rdown)
            else {
                return;
            };

            // Attention RMSNorm (serial); the other core prefetches q/k/v.
            let mut a_scale = Dyadic::ZERO;
            ctx.serial(
                &mut || {
                    let xs = to_block_i32(x, RESID_SCALE, &mut y[..d]);
                    a_scale = rmsnorm_quantize(&y[..d], xs, w.attn_norm, eps, act);
                },
                NORM_CYCLES_PER_ELEMENT * d,
            );

            // q, k, v projections, RoPE, Q5 into q8 and the cache slots at position p.
            for m in [Mat::Q, Mat::K, Mat::V] {
                ctx.consume(l, m);
            }
            let scales = QkvScales {
                hd,
                rope_row: model.rope_row(p),
                qs: a_scale
                    .mul(w.wq.gamma)
                    .mul(rope_unit)
                    .mul(INV_127)
                    .mul(model.inv_sqrt_head_dim()),
                ks: a_scale.mul(w.wk.gamma).mul(rope_unit).mul(INV_127),
                vs: a_scale.mul(w.wv.gamma).mul(INV_127),
            };
            let slot = (l * tt + p) * nkv;
            {
                let x_in: &[i8] = act;
                let (y0, y1) = y[..d].split_at_mut(h_mid * hd);
                let (w0, w1) = wide[..d].split_at_mut(h_mid * hd);
                let (q80, q81) = q8[..d].split_at_mut(h_mid * hd);
                let (qs0, qs1) = q_scale[..nh].split_at_mut(h_mid);
                let (k0, k1) = halves(k_cache, slot * hd, (slot + nkv) * hd, g_mid * hd);
                let (v0, v1) = halves(v_cache, slot * hd, (slot + nkv) * hd, g_mid * hd);
                let (ks0, ks1) = k_scale[slot..slot + nkv].split_at_mut(g_mid);
                let (vs0, vs1) = v_scale[slot..slot + nkv].split_at_mut(g_mid);
                let (tmp0, tmp1) = (
                    w0.get_mut(..hd).unwrap_or(&mut []),
                    w1.get_mut(..hd).unwrap_or(&mut []),
                );
                let mut part0 = QkvPart {
                    heads: (0, h_mid),
                    groups: (0, g_mid),
                    y: y0,
                    tmp: tmp0,
                    q8: q80,
                    q_scale: qs0,
                    k8: k0,
                    k_scale: ks0,
                    v8: v0,
                    v_scale: vs0,
                };
                let mut part1 = QkvPart {
                    heads: (h_mid, nh),
                    groups: (g_mid, nkv),
                    y: y1,
                    tmp: tmp1,
                    q8: q81,
                    q_scale: qs1,
                    k8: k1,
                    k_scale: ks1,
                    v8: v1,
                    v_scale: vs1,
                };
                project_qkv(
                    &ctx,
                    &mut tables,
                    [rq, rk, rv],
                    x_in,
                    &scales,
                    &mut part0,
                    &mut part1,
                );
            }

            // Attention, heads split.
            {
                let first = l * tt * nkv;
                let input = AttendIn {
                    hd,
                    nkv,
                    group,
                    p,
                    first,
                    q8: &q8[..d],
                    q_scale: &q_scale[..nh],
                    keys: k_cache,
                    values: v_cache,
                    k_scale,
                    v_scale,
                };
                let (scores0, coef0) = (&mut scores[..], &mut coef[..]);
                let (scores1, coef1) = (&mut split.scores[..], &mut split.coef[..]);
                let (w0, w1) = wide[..d].split_at_mut(h_mid * hd);
                let (hs0, hs1) = head_scale[..nh].split_at_mut(h_mid);
                let mut part0 = AttendPart {
                    heads: (0, h_mid),
                    acc: w0,
                    head_scale: hs0,
                    scores: scores0,
                    coef: coef0,
                };
                let mut part1 = AttendPart {
                    heads: (h_mid, nh),
                    acc: w1,
                    head_scale: hs1,
                    scores: scores1,
                    coef: coef1,
                };
                ctx.join(&mut || part0.run(&input), &mut || part1.run(&input));
            }

            // Heads merged, sub-norm (serial); the other core prefetches Wo.
            let mut s_act = Dyadic::ZERO;
            ctx.serial(
                &mut || {
                    let m_scale = merge_heads(&wide[..d], &head_scale[..nh], hd, &mut y[..d]);
                    s_act = rmsnorm_quantize(&y[..d], m_scale, w.attn_sub_norm, eps, act);
                },
                SUBNORM_CYCLES_PER_ELEMENT * d,
            );

            // Wo and the residual update, rows split.
            let u = ctx.consume(l, Mat::O);
            let b = ctx.prefetch_in_job(0);
            let s_o = ctx.cut(
                d,
                ro.copied(),
                ro.m.row_bytes,
                1,
                u,
                STREAM_CYCLES_PER_BYTE,
                b,
            );
            let scale = s_act.mul(w.wo.gamma);
            {
                let x_in: &[i8] = act.get(..ro.m.input_len()).unwrap_or(&[]);
                let (y0, y1) = y[..d].split_at_mut(s_o);
                let (x0, x1) = x.split_at_mut(s_o);
                ctx.matvec(
                    &mut tables,
                    &ro,
                    x_in,
                    s_o,
                    y0,
                    y1,
                    &mut |yo| residual_add(x0, yo, scale),
                    &mut |yo| residual_add(x1, yo, scale),
                );
            }

            // FFN RMSNorm (serial); the other core prefetches up and gate.
            let mut s_f = Dyadic::ZERO;
            ctx.serial(
                &mut || {
                    let xs = to_block_i32(x, RESID_SCALE, &mut y[..d]);
                    s_f = rmsnorm_quantize(&y[..d], xs, w.ffn_norm, eps, act);
                },
                NORM_CYCLES_PER_ELEMENT * d,
            );

            // Up (and gate) projections, rows split.
            let u = ctx.consume(l, Mat::Up) + ctx.consume(l, Mat::Gate);
            let b = ctx.prefetch_in_job(0);
            let s_f_rows = ctx.cut(
                f,
                rgate.map_or(rup.copied(), |g| g.copied().min(rup.copied())),
                rup.m.row_bytes,
                1 + rgate.is_some() as usize,
                u,
                STREAM_CYCLES_PER_BYTE,
                b,
            );
            {
                let x_in: &[i8] = act;
                project_up_gate(
                    &ctx,
                    &mut tables,
                    &rup,
                    rgate.as_ref(),
                    x_in,
                    s_f_rows,
                    &mut y[..f],
                    gate,
                );
            }

            // ReLU² (gated: times up), cut, sub-norm (serial); the other core prefetches Wdown.
            let su = s_f.mul(w.w_up.gamma);
            let mut s_down = Dyadic::ZERO;
            ctx.serial(
                &mut || {
                    let yt = &mut y[..f];
                    let h_scale = match (&w.w_gate, gate.get_mut(..f)) {
                        (Some(w_gate), Some(gt)) => {
                            let (k1, k2) = gated_cut(gt, yt, &mut wide[..f]);
                            let sg = s_f.mul(w_gate.gamma);
                            sg.mul(sg).mul(su).mul(Dyadic::pow2((k1 + k2) as i32))
                        }
                        _ => {
                            let k = relu_sq_cut(yt, &mut wide[..f]);
                            su.mul(su).mul(Dyadic::pow2(k as i32))
                        }
                    };
                    s_down = rmsnorm_quantize(yt, h_scale, w.ffn_sub_norm, eps, act);
                },
                SUBNORM_CYCLES_PER_ELEMENT * f,
            );

            // Wdown and the residual update, rows split.
            let scale = s_down.mul(w.w_down.gamma);
            let u = ctx.consume(l, Mat::Down);
            let b = ctx.prefetch_in_job(0);
            let s_d = ctx.cut(
                d,
                rdown.copied(),
                rdown.m.row_bytes,
                1,
                u,
                if rdown.m.row_bytes > GROUPS {
                    STREAM_CHUNKED_CYCLES_PER_BYTE
                } else {
                    STREAM_CYCLES_PER_BYTE
                },
                b,
            );
            {
                let x_in: &[i8] = act.get(..rdown.m.input_len()).unwrap_or(&[]);
                let (y0, y1) = y[..d].split_at_mut(s_d);
                let (x0, x1) = x.split_at_mut(s_d);
                ctx.matvec(
                    &mut tables,
                    &rdown,
                    x_in,
                    s_d,
                    y0,
                    y1,
                    &mut |yo| residual_add(x0, yo, scale),
                    &mut |yo| residual_add(x1, yo, scale),
                );
            }
        }

        // Final norm (serial), then the LM head's vocabulary rows split.
        let (final_norm, emb_scales) = ctx
            .rows
            .and_then(|r| r.head_norm_and_scales(&c))
            .unwrap_or((model.final_norm(), model.embedding_scale_bytes()));
        let xs = to_block_i32(x, RESID_SCALE, &mut y[..d]);
        let s = rmsnorm_quantize(&y[..d], xs, final_norm, eps, act);
        let rb = int8_row_bytes(c.d_model);
        let emb: &[i8] = match ctx.rows {
            Some(r) if r.has_embedding() => as_i8(r.embedding),
            _ => model.embedding(),
        };
        let h: &[i8] = act.get(..rb).unwrap_or(&[]);
        let Some(out) = logits.get_mut(t * v..(t + 1) * v) else {
            return;
        };
        let vm = ctx.mid(v);
        let (l0, l1) = out.split_at_mut(vm);
        let head = |rows: (usize, usize), out: &mut [i32]| {
            let m = emb.get(rows.0 * rb..rows.1 * rb).unwrap_or(&[]);
            if out.is_empty() || m.is_empty() {
                return;
            }
            // |dot| ≤ 2^14 · d < 2^29.
            int8_matvec(m, rb, h, out);
            let scales = emb_scales.get(rows.0 * 8..).unwrap_or(&[]);
            for (logit, e) in out.iter_mut().zip(scales_of(scales)) {
                *logit = sat_i32(mul_round(*logit as i64, s.mul(e), LOGIT_FRAC_BITS as i32));
            }
        };
        ctx.join(&mut || head((0, vm), l0), &mut || head((vm, v), l1));
    }
}

/// The q, k, v projections of one token and their RoPE + Q5, split by heads: from one set of
/// tables built by both cores when the three are base-3 rows of one chunk, else each matrix on
/// its own (`Ctx::matvec`). `act`: the quantized input row (each matrix reads its
/// `input_len()` first entries).
#[allow(clippy::too_many_arguments)]
fn project_qkv(
    ctx: &Ctx<'_>,
    tables: &mut ChunkTables,
    r: [Rows<'_>; 3],
    act: &[i8],
    s: &QkvScales<'_>,
    part0: &mut QkvPart<'_>,
    part1: &mut QkvPart<'_>,
) {
    let hd = s.hd;
    let input = |r: &Rows<'_>| act.get(..r.m.input_len()).unwrap_or(&[]);
    if let Some(rb) = ctx.share(&[&r[0], &r[1], &r[2]]).filter(|&rb| rb <= GROUPS) {
        let x = input(&r[0]);
        tables.build_split(x, rb, (0, rb), ctx.mid(rb), |a, b| ctx.join(a, b));
        let t = &*tables;
        ctx.join(&mut || part0.project_shared(t, &r, s), &mut || {
            part1.project_shared(t, &r, s)
        });
        return;
    }
    // Each matrix on its own: the outputs of each core's heads at the start of its region.
    let (h0, g0) = (part0.heads.1, part0.groups.1);
    for (i, rows) in r.iter().enumerate() {
        let x = input(rows);
        let split_row = if i == 0 { h0 * hd } else { g0 * hd };
        let n0 = split_row;
        let n1 = rows.m.rows - split_row;
        let y0 = core::mem::take(&mut part0.y);
        let y1 = core::mem::take(&mut part1.y);
        {
            let (l0, l1) = (n0.min(y0.len()), n1.min(y1.len()));
            let (ya, yb) = (&mut y0[..l0], &mut y1[..l1]);
            let (p0, p1) = (&mut *part0, &mut *part1);
            match i {
                0 => ctx.matvec(
                    tables,
                    rows,
                    x,
                    split_row,
                    ya,
                    yb,
                    &mut |y| p0.quantize_q(y, s),
                    &mut |y| p1.quantize_q(y, s),
                ),
                1 => ctx.matvec(
                    tables,
                    rows,
                    x,
                    split_row,
                    ya,
                    yb,
                    &mut |y| p0.quantize_k(y, s),
                    &mut |y| p1.quantize_k(y, s),
                ),
                _ => ctx.matvec(
                    tables,
                    rows,
                    x,
                    split_row,
                    ya,
                    yb,
                    &mut |y| p0.quantize_v(y, s),
                    &mut |y| p1.quantize_v(y, s),
                ),
            }
        }
        part0.y = y0;
        part1.y = y1;
    }
}

/// The up (and gate) projections into `y` (and `gate`), rows split at `s`: one set of tables
/// for both when they are base-3 rows of one chunk.
#[allow(clippy::too_many_arguments)]
fn project_up_gate(
    ctx: &Ctx<'_>,
    tables: &mut ChunkTables,
    up: &Rows<'_>,
    gate_rows: Option<&Rows<'_>>,
    act: &[i8],
    s: usize,
    y: &mut [i32],
    gate: &mut [i32],
) {
    let f = up.m.rows;
    let input = |r: &Rows<'_>| act.get(..r.m.input_len()).unwrap_or(&[]);
    let x = input(up);
    let (y0, y1) = y.split_at_mut(s);
    let Some(g) = gate_rows else {
        return ctx.matvec(tables, up, x, s, y0, y1, &mut |_| {}, &mut |_| {});
    };
    let Some(gate) = gate.get_mut(..f) else {
        return;
    };
    let (gt0, gt1) = gate.split_at_mut(s);
    if let Some(rb) = ctx.share(&[up, g]).filter(|&rb| rb <= GROUPS) {
        tables.build_split(x, rb, (0, rb), ctx.mid(rb), |a, b| ctx.join(a, b));
        let t = &*tables;
        let pieces = ctx.job_prefetch.take();
        ctx.join(
            &mut || {
                y0.fill(0);
                up.add(t, 0, s, y0);
                gt0.fill(0);
                g.add(t, 0, s, gt0);
            },
            &mut || {
                y1.fill(0);
                up.add(t, s, f, y1);
                gt1.fill(0);
                g.add(t, s, f, gt1);
                pieces.iter().for_each(|p| touch(p));
            },
        );
        return;
    }
    ctx.matvec(tables, up, x, s, y0, y1, &mut |_| {}, &mut |_| {});
    ctx.matvec(tables, g, input(g), s, gt0, gt1, &mut |_| {}, &mut |_| {});
}

/// `c[a..b]` cut at `a + at`.
fn halves(c: &mut [i8], a: usize, b: usize, at: usize) -> (&mut [i8], &mut [i8]) {
    c.get_mut(a..b)
        .unwrap_or(&mut [])
        .split_at_mut(at.min(b.saturating_sub(a)))
}

/// Views bytes as `i8`.
fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: `u8` and `i8` have the same size and alignment and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}
