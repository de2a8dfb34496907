//! How a pass is split ([`Ctx`]): the joins, the row cuts balanced against what the other core
//! streams, and the prefetch schedule.

use super::place::*;
use crate::blob::format::TernaryEncoding;
use crate::blob::model::{LayerWeights, Model, TernaryMatrix};
use crate::kernels::lut::{ChunkTables, GROUPS};
use crate::kernels::{ternary5_matvec, ternary_matvec};
use crate::pass::workers::Workers;

/// Most bytes prefetched ahead of their use: half the XIP cache, so that the lines brought in
/// do not evict each other (2 ways of 8 KiB).
pub(super) const PREFETCH_AHEAD: usize = 8 * 1024;

// The placement's schedule (a heuristic: only speed depends on it, never a result). Cycles a
// Cortex-M33 on RP2350 XIP flash spends, as the cost model charges them (firmware/COST.md,
// "Two cores"): the serial steps per element (RMSNorm with its input's copy; head merge or
// ReLU² cut with the sub-norm), a prefetched byte (a chained 8-byte transfer of 48 cycles and
// the touch), a byte a rows job streams (chained when a row is read front to back; a new
// transfer per line when the rows are read chunk by chunk), and a byte computed from RAM (the
// lookup loop).
pub(super) const NORM_CYCLES_PER_ELEMENT: usize = 85;
pub(super) const SUBNORM_CYCLES_PER_ELEMENT: usize = 95;
pub(super) const PREFETCH_CYCLES_PER_BYTE_X2: usize = 13;
pub(super) const STREAM_CYCLES_PER_BYTE: usize = 6;
pub(super) const STREAM_CHUNKED_CYCLES_PER_BYTE: usize = 14;
pub(super) const LOOKUP_CYCLES_PER_BYTE_X2: usize = 7;

/// A matrix's rows: the first `k` from a [`RowCopy`] (`head`), the rest from the model.
#[derive(Clone, Copy)]
pub(super) struct Rows<'w> {
    pub(super) m: TernaryMatrix<'w>,
    pub(super) head: &'w [u8],
}

impl<'w> Rows<'w> {
    pub(super) fn copied(&self) -> usize {
        (self.head.len().checked_div(self.m.row_bytes)).map_or(0, |k| k.min(self.m.rows))
    }

    /// Rows `a..b` as (the copied ones, the model's ones).
    pub(super) fn parts(&self, a: usize, b: usize) -> [&'w [u8]; 2] {
        let (rb, k) = (self.m.row_bytes, self.copied());
        [
            self.head.get(a.min(k) * rb..b.min(k) * rb).unwrap_or(&[]),
            self.m.data.get(a.max(k) * rb..b.max(k) * rb).unwrap_or(&[]),
        ]
    }

    /// `y = W[a..b] · x` with the matrix's own kernel (which builds its own tables, if any).
    pub(super) fn matvec(&self, x: &[i8], a: usize, b: usize, y: &mut [i32]) {
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
    pub(super) fn add(&self, t: &ChunkTables, a: usize, b: usize, y: &mut [i32]) {
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
pub(super) fn touch(bytes: &[u8]) {
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
pub(super) struct Ctx<'c> {
    pub(super) model: Model<'c>,
    pub(super) workers: &'c dyn Workers,
    pub(super) two: bool,
    /// The other core's stack holds a kernel's own tables ([`KERNEL_STACK`]).
    pub(super) roomy: bool,
    pub(super) rows: Option<RowCopy<'c>>,
    pub(super) shared_tables: bool,
    /// The prefetch cursor: the next byte the model streams, in the pass's order, as (block,
    /// matrix in `MATS` order, offset into that matrix's streamed rows).
    pub(super) cursor: core::cell::Cell<(usize, usize, usize)>,
    /// Bytes prefetched and not yet used.
    pub(super) pending: core::cell::Cell<usize>,
    /// What the other core prefetches at the end of the next rows job ([`Ctx::matvec`]).
    pub(super) job_prefetch: core::cell::Cell<[&'c [u8]; 4]>,
    /// [`Ctx::streamed`]'s cache: two blocks' streamed rows.
    pub(super) streamed_block: [core::cell::Cell<usize>; 2],
    pub(super) streamed_cache: [[core::cell::Cell<&'c [u8]>; 7]; 2],
}

impl<'c> Ctx<'c> {
    #[inline(always)]
    pub(super) fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
        if self.two {
            self.workers.join(here, there);
        } else {
            here();
            there();
        }
    }

    /// Where `n` items are cut: this core takes `0..mid`, the other `mid..n`.
    #[inline(always)]
    pub(super) fn mid(&self, n: usize) -> usize {
        if self.two {
            n / 2
        } else {
            n
        }
    }

    pub(super) fn rows(&self, w: &LayerWeights<'c>, l: usize, m: Mat) -> Option<Rows<'c>> {
        let head = self.rows.map_or(&[][..], |r| r.head(l, m));
        matrix(w, m).map(|m| Rows { m, head })
    }

    /// The rows of matrix `m` of block `l` that the model streams (those not in the row copy),
    /// from a cache of two blocks (`Model::layer` is not free).
    pub(super) fn streamed(&self, l: usize, m: Mat) -> &'c [u8] {
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
    pub(super) fn consume(&self, l: usize, m: Mat) -> usize {
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
    pub(super) fn plan(&self, budget: usize) -> [&'c [u8]; 4] {
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
    pub(super) fn prefetch_in_job(&self, budget: usize) -> usize {
        let pieces = self.plan(budget);
        self.job_prefetch.set(pieces);
        pieces.iter().map(|p| p.len()).sum()
    }

    /// Runs the serial step `here` (about `cycles` long) on this core while the other one
    /// prefetches as many of the next streamed bytes as it can in that time (when a row copy
    /// says the model is in slow memory).
    pub(super) fn serial(&self, here: &mut dyn FnMut(), cycles: usize) {
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
    pub(super) fn cut(
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
    pub(super) fn share(&self, ms: &[&Rows<'_>]) -> Option<usize> {
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
    pub(super) fn matvec(
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
