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

use super::attention::merge_heads;
use super::ffn::{gated_cut, relu_sq_cut};
use super::forward::{residual_add, RESID_SCALE};
use super::norm::{rmsnorm_quantize, to_block_i32};
use super::workers::KERNEL_STACK;
use crate::blob::format::{int8_row_bytes, LOGIT_FRAC_BITS, RESID_FRAC_BITS, ROPE_FRAC_BITS};
use crate::blob::model::{scales_of, Gains, LayerWeights};
use crate::fixed::{mul_round, sat_i32, Dyadic, INV_127};
use crate::kernels::int8_matvec;
use crate::kernels::lut::{ChunkTables, GROUPS};
use crate::pass::session::Session;

mod ctx;
mod parts;
mod place;

use ctx::*;
use parts::*;
pub use place::RowCopy;
use place::*;

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
        let c = *model.config();
        let d = c.d_model as usize;
        let p = *pos + t;
        let mut pass = Token {
            ctx,
            c,
            p,
            tt: *ctx_len,
            eps: model.norm_eps(),
            tables: ChunkTables::new(),
            x: &mut x[..d],
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
            gate,
            other_scores: split.scores,
            other_coef: split.coef,
        };
        pass.embed(tokens.get(p).copied().unwrap_or(0));
        for l in 0..c.n_layers as usize {
            if pass.block(l).is_none() {
                return;
            }
        }
        let v = c.vocab_size as usize;
        if let Some(out) = logits.get_mut(t * v..(t + 1) * v) {
            pass.lm_head(out);
        }
    }
}

/// One token's split pass: the split ([`Ctx`]), the position, and the session's working
/// memory borrowed apart (the fields of [`Session`] it writes).
struct Token<'s, 'c> {
    ctx: Ctx<'c>,
    c: crate::blob::format::Config,
    /// The token's position.
    p: usize,
    /// The session's context length (KV cache slots per layer).
    tt: usize,
    eps: Dyadic,
    tables: ChunkTables,
    x: &'s mut [i64],
    act: &'s mut [i8],
    y: &'s mut [i32],
    wide: &'s mut [i64],
    q8: &'s mut [i8],
    q_scale: &'s mut [Dyadic],
    head_scale: &'s mut [Dyadic],
    k_cache: &'s mut [i8],
    v_cache: &'s mut [i8],
    k_scale: &'s mut [Dyadic],
    v_scale: &'s mut [Dyadic],
    scores: &'s mut [i64],
    coef: &'s mut [i32],
    gate: &'s mut [i32],
    /// The other core's attention scores and coefficients.
    other_scores: &'s mut [i64],
    other_coef: &'s mut [i32],
}

impl Token<'_, '_> {
    /// Embedding (Q3) of token `tok` into the residual stream.
    #[inline(always)]
    fn embed(&mut self, tok: u16) {
        let (row, e) = self.ctx.model.embedding_row(tok as usize);
        for (xi, q) in self.x.iter_mut().zip(row) {
            *xi = mul_round(*q as i64, e, RESID_FRAC_BITS as i32);
        }
    }

    /// Block `l`: attention and FFN halves, each with its residual update. `None` when a
    /// matrix is missing (a validated model has them all).
    #[inline(always)]
    fn block(&mut self, l: usize) -> Option<()> {
        let model = self.ctx.model;
        let w = match self.ctx.rows {
            Some(r) => r.layer(model.layer(l), l, &self.c),
            None => model.layer(l),
        };
        let [rq, rk, rv, ro, rup, rgate, rdown] = MATS.map(|m| self.ctx.rows(&w, l, m));
        let a_scale = self.residual_norm(w.attn_norm);
        self.qkv(l, &w, [rq?, rk?, rv?], a_scale);
        self.attend(l);
        self.attention_out(l, &w, &ro?);
        let s_f = self.residual_norm(w.ffn_norm);
        self.up_gate(l, &rup?, rgate.as_ref());
        self.down(l, &w, &rdown?, s_f);
        Some(())
    }

    /// The RMSNorm of the residual stream with `gain` into `act` (serial; meanwhile the other
    /// core prefetches the next matrices: q/k/v, or up and gate). Returns the scale.
    #[inline(always)]
    fn residual_norm(&mut self, gain: Gains<'_>) -> Dyadic {
        let Token {
            ctx,
            x,
            y,
            act,
            eps,
            ..
        } = self;
        let d = x.len();
        let mut scale = Dyadic::ZERO;
        ctx.serial(
            &mut || {
                let xs = to_block_i32(x, RESID_SCALE, &mut y[..d]);
                scale = rmsnorm_quantize(&y[..d], xs, gain, *eps, act);
            },
            NORM_CYCLES_PER_ELEMENT * d,
        );
        scale
    }

    /// q, k, v projections, RoPE, Q5 into q8 and the cache slots at this position.
    #[inline(always)]
    fn qkv(&mut self, l: usize, w: &LayerWeights<'_>, rows: [Rows<'_>; 3], a_scale: Dyadic) {
        let (c, model) = (self.c, self.ctx.model);
        let (d, hd) = (c.d_model as usize, c.head_dim() as usize);
        let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
        let (h_mid, g_mid) = (self.ctx.mid(nh), self.ctx.mid(nkv));
        for m in [Mat::Q, Mat::K, Mat::V] {
            self.ctx.consume(l, m);
        }
        let rope_unit = Dyadic::pow2(-(ROPE_FRAC_BITS as i32));
        let scales = QkvScales {
            hd,
            rope_row: model.rope_row(self.p),
            qs: a_scale
                .mul(w.wq.gamma)
                .mul(rope_unit)
                .mul(INV_127)
                .mul(model.inv_sqrt_head_dim()),
            ks: a_scale.mul(w.wk.gamma).mul(rope_unit).mul(INV_127),
            vs: a_scale.mul(w.wv.gamma).mul(INV_127),
        };
        let slot = (l * self.tt + self.p) * nkv;
        let x_in: &[i8] = self.act;
        let (y0, y1) = self.y[..d].split_at_mut(h_mid * hd);
        let (w0, w1) = self.wide[..d].split_at_mut(h_mid * hd);
        let (q80, q81) = self.q8[..d].split_at_mut(h_mid * hd);
        let (qs0, qs1) = self.q_scale[..nh].split_at_mut(h_mid);
        let (k0, k1) = halves(self.k_cache, slot * hd, (slot + nkv) * hd, g_mid * hd);
        let (v0, v1) = halves(self.v_cache, slot * hd, (slot + nkv) * hd, g_mid * hd);
        let (ks0, ks1) = self.k_scale[slot..slot + nkv].split_at_mut(g_mid);
        let (vs0, vs1) = self.v_scale[slot..slot + nkv].split_at_mut(g_mid);
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
            &self.ctx,
            &mut self.tables,
            rows,
            x_in,
            &scales,
            &mut part0,
            &mut part1,
        );
    }

    /// Attention of this position's queries over the cache, heads split.
    #[inline(always)]
    fn attend(&mut self, l: usize) {
        let c = self.c;
        let (d, hd) = (c.d_model as usize, c.head_dim() as usize);
        let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
        let h_mid = self.ctx.mid(nh);
        let input = AttendIn {
            hd,
            nkv,
            group: nh / nkv.max(1),
            p: self.p,
            first: l * self.tt * nkv,
            q8: &self.q8[..d],
            q_scale: &self.q_scale[..nh],
            keys: self.k_cache,
            values: self.v_cache,
            k_scale: self.k_scale,
            v_scale: self.v_scale,
        };
        let (w0, w1) = self.wide[..d].split_at_mut(h_mid * hd);
        let (hs0, hs1) = self.head_scale[..nh].split_at_mut(h_mid);
        let mut part0 = AttendPart {
            heads: (0, h_mid),
            acc: w0,
            head_scale: hs0,
            scores: &mut self.scores[..],
            coef: &mut self.coef[..],
        };
        let mut part1 = AttendPart {
            heads: (h_mid, nh),
            acc: w1,
            head_scale: hs1,
            scores: &mut self.other_scores[..],
            coef: &mut self.other_coef[..],
        };
        self.ctx
            .join(&mut || part0.run(&input), &mut || part1.run(&input));
    }

    /// Heads merged, sub-norm (serial; the other core prefetches Wo), then Wo and the
    /// residual update, rows split.
    #[inline(always)]
    fn attention_out(&mut self, l: usize, w: &LayerWeights<'_>, ro: &Rows<'_>) {
        let c = self.c;
        let (d, hd, nh) = (
            c.d_model as usize,
            c.head_dim() as usize,
            c.n_heads as usize,
        );
        let mut s_act = Dyadic::ZERO;
        {
            let Token {
                ctx,
                y,
                act,
                wide,
                head_scale,
                eps,
                ..
            } = self;
            ctx.serial(
                &mut || {
                    let m_scale = merge_heads(&wide[..d], &head_scale[..nh], hd, &mut y[..d]);
                    s_act = rmsnorm_quantize(&y[..d], m_scale, w.attn_sub_norm, *eps, act);
                },
                SUBNORM_CYCLES_PER_ELEMENT * d,
            );
        }
        let u = self.ctx.consume(l, Mat::O);
        let b = self.ctx.prefetch_in_job(0);
        let cut = self.ctx.cut(
            d,
            ro.copied(),
            ro.m.row_bytes,
            1,
            u,
            STREAM_CYCLES_PER_BYTE,
            b,
        );
        self.rows_residual(ro, cut, s_act.mul(w.wo.gamma));
    }

    /// `x += scale · (ro · act)`, rows `0..cut` here and the rest on the other core.
    #[inline(always)]
    fn rows_residual(&mut self, r: &Rows<'_>, cut: usize, scale: Dyadic) {
        let d = self.c.d_model as usize;
        let x_in: &[i8] = self.act.get(..r.m.input_len()).unwrap_or(&[]);
        let (y0, y1) = self.y[..d].split_at_mut(cut);
        let (x0, x1) = self.x.split_at_mut(cut);
        self.ctx.matvec(
            &mut self.tables,
            r,
            x_in,
            cut,
            y0,
            y1,
            &mut |yo| residual_add(x0, yo, scale),
            &mut |yo| residual_add(x1, yo, scale),
        );
    }

    /// Up (and gate) projections, rows split.
    #[inline(always)]
    fn up_gate(&mut self, l: usize, rup: &Rows<'_>, rgate: Option<&Rows<'_>>) {
        let f = self.c.ffn_dim as usize;
        let u = self.ctx.consume(l, Mat::Up) + self.ctx.consume(l, Mat::Gate);
        let b = self.ctx.prefetch_in_job(0);
        let cut = self.ctx.cut(
            f,
            rgate.map_or(rup.copied(), |g| g.copied().min(rup.copied())),
            rup.m.row_bytes,
            1 + rgate.is_some() as usize,
            u,
            STREAM_CYCLES_PER_BYTE,
            b,
        );
        let x_in: &[i8] = self.act;
        project_up_gate(
            &self.ctx,
            &mut self.tables,
            rup,
            rgate,
            x_in,
            cut,
            &mut self.y[..f],
            self.gate,
        );
    }

    /// ReLU² (gated: times up), cut, sub-norm (serial; the other core prefetches Wdown), then
    /// Wdown and the residual update, rows split.
    #[inline(always)]
    fn down(&mut self, l: usize, w: &LayerWeights<'_>, rdown: &Rows<'_>, s_f: Dyadic) {
        let (d, f) = (self.c.d_model as usize, self.c.ffn_dim as usize);
        let su = s_f.mul(w.w_up.gamma);
        let mut s_down = Dyadic::ZERO;
        {
            let Token {
                ctx,
                y,
                act,
                wide,
                gate,
                eps,
                ..
            } = self;
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
                    s_down = rmsnorm_quantize(yt, h_scale, w.ffn_sub_norm, *eps, act);
                },
                SUBNORM_CYCLES_PER_ELEMENT * f,
            );
        }
        let u = self.ctx.consume(l, Mat::Down);
        let b = self.ctx.prefetch_in_job(0);
        let cut = self.ctx.cut(
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
        self.rows_residual(rdown, cut, s_down.mul(w.w_down.gamma));
    }

    /// Final norm (serial), then the LM head's vocabulary rows split, into `out` (`[V]`).
    #[inline(always)]
    fn lm_head(&mut self, out: &mut [i32]) {
        let (ctx, c) = (&self.ctx, self.c);
        let (d, v) = (c.d_model as usize, c.vocab_size as usize);
        let model = ctx.model;
        let (final_norm, emb_scales) = ctx
            .rows
            .and_then(|r| r.head_norm_and_scales(&c))
            .unwrap_or((model.final_norm(), model.embedding_scale_bytes()));
        let xs = to_block_i32(self.x, RESID_SCALE, &mut self.y[..d]);
        let s = rmsnorm_quantize(&self.y[..d], xs, final_norm, self.eps, self.act);
        let rb = int8_row_bytes(c.d_model);
        let emb: &[i8] = match ctx.rows {
            Some(r) if r.has_embedding() => as_i8(r.embedding),
            _ => model.embedding(),
        };
        let h: &[i8] = self.act.get(..rb).unwrap_or(&[]);
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
