//! Each core's share of the q/k/v projections and of attention, and the shared-table
//! projections of q/k/v and of up/gate.

use super::ctx::*;
use crate::fixed::Dyadic;
use crate::kernels::lut::{ChunkTables, GROUPS};
use crate::kernels::{attention_scores, int8_matvec, int8_weighted_sum, softmax_coefficients};
use crate::pass::attention::rope;
use crate::pass::norm::absmax_quantize;

/// One core's share of the query, key and value heads and where their results go.
pub(super) struct QkvPart<'a> {
    /// Query heads `h0..h1`, KV heads `g0..g1`.
    pub(super) heads: (usize, usize),
    pub(super) groups: (usize, usize),
    /// Matrix outputs (at least as long as the larger of the two shares).
    pub(super) y: &'a mut [i32],
    /// RoPE / quantizer scratch, `hd` entries.
    pub(super) tmp: &'a mut [i64],
    pub(super) q8: &'a mut [i8],
    pub(super) q_scale: &'a mut [Dyadic],
    pub(super) k8: &'a mut [i8],
    pub(super) k_scale: &'a mut [Dyadic],
    pub(super) v8: &'a mut [i8],
    pub(super) v_scale: &'a mut [Dyadic],
}

/// What both cores read to quantize their heads.
#[derive(Clone, Copy)]
pub(super) struct QkvScales<'a> {
    pub(super) hd: usize,
    pub(super) rope_row: &'a [u8],
    /// Per-unit scales of the rotated q, k and of v, before each head's maximum.
    pub(super) qs: Dyadic,
    pub(super) ks: Dyadic,
    pub(super) vs: Dyadic,
}

impl QkvPart<'_> {
    pub(super) fn query_rows(&self) -> (usize, usize) {
        (self.heads.0, self.heads.1)
    }

    /// RoPE and Q5 of the query heads from `y` (the projection's rows of those heads).
    pub(super) fn quantize_q(&mut self, y: &[i32], s: &QkvScales<'_>) {
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
    pub(super) fn quantize_k(&mut self, y: &[i32], s: &QkvScales<'_>) {
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
    pub(super) fn quantize_v(&mut self, y: &[i32], s: &QkvScales<'_>) {
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
    pub(super) fn project_shared(&mut self, t: &ChunkTables, r: &[Rows<'_>; 3], s: &QkvScales<'_>) {
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
pub(super) struct AttendPart<'a> {
    pub(super) heads: (usize, usize),
    /// Accumulators of heads `h0..h1` (`hd` each).
    pub(super) acc: &'a mut [i64],
    pub(super) head_scale: &'a mut [Dyadic],
    pub(super) scores: &'a mut [i64],
    pub(super) coef: &'a mut [i32],
}

/// What every head's attention reads.
#[derive(Clone, Copy)]
pub(super) struct AttendIn<'a> {
    pub(super) hd: usize,
    pub(super) nkv: usize,
    pub(super) group: usize,
    pub(super) p: usize,
    /// Cache entry of (layer, position 0, KV head 0).
    pub(super) first: usize,
    pub(super) q8: &'a [i8],
    pub(super) q_scale: &'a [Dyadic],
    pub(super) keys: &'a [i8],
    pub(super) values: &'a [i8],
    pub(super) k_scale: &'a [Dyadic],
    pub(super) v_scale: &'a [Dyadic],
}

impl AttendPart<'_> {
    /// Causal softmax attention of heads `h0..h1` (the one-core pass's `attend`, per head).
    pub(super) fn run(&mut self, a: &AttendIn<'_>) {
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

/// The q, k, v projections of one token and their RoPE + Q5, split by heads: from one set of
/// tables built by both cores when the three are base-3 rows of one chunk, else each matrix on
/// its own (`Ctx::matvec`). `act`: the quantized input row (each matrix reads its
/// `input_len()` first entries).
#[allow(clippy::too_many_arguments)]
pub(super) fn project_qkv(
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
pub(super) fn project_up_gate(
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
pub(super) fn halves(c: &mut [i8], a: usize, b: usize, at: usize) -> (&mut [i8], &mut [i8]) {
    c.get_mut(a..b)
        .unwrap_or(&mut [])
        .split_at_mut(at.min(b.saturating_sub(a)))
}

/// Views bytes as `i8`.
pub(super) fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: `u8` and `i8` have the same size and alignment and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}
