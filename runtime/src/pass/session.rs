//! A session: caller-owned working memory (activations, the KV cache, the token history) and
//! the position.

use crate::blob::format::{ternary_row_bytes, Config};
use crate::blob::model::Model;
use crate::error::Error;
use crate::fixed::Dyadic;
use crate::kernels::matmul_scratch_bytes;

/// Working-memory bytes a session over `config` needs for `ctx_len` positions, one token per
/// forward pass (what [`Session::new`] takes; the firmware sizes its static arena with it).
///
/// `const`, so firmware can size a `static` buffer at compile time from a known config. The
/// formula (`FORMAT.md`, "Working memory") is the sum of the regions below, each rounded up to
/// 8 bytes, plus 8 bytes of slack for aligning the start of the caller's buffer. Saturates
/// instead of overflowing (an absurd config gives `usize::MAX`).
pub const fn session_bytes(config: &Config, ctx_len: u32) -> usize {
    Regions::new(config, ctx_len, 1).total_bytes()
}

/// Working-memory bytes a session needs to run blocks of up to `block` tokens per forward
/// pass ([`Session::with_block`], [`Session::prefill`]): the per-token regions times `block`,
/// plus the block matrix kernel's scratch. `block` is clamped to `1..=ctx_len`;
/// `session_bytes_prefill(c, t, 1) == session_bytes(c, t)`.
pub const fn session_bytes_prefill(config: &Config, ctx_len: u32, block: u32) -> usize {
    Regions::new(config, ctx_len, block).total_bytes()
}

/// Working-memory bytes a session with workers ([`Session::with_workers`]) needs: those of
/// [`session_bytes_prefill`] plus the second core's attention scratch (scores `i64 [T]` and
/// coefficients `i32 [T]`, each rounded up to 8 bytes).
#[cfg(feature = "workers")]
pub const fn session_bytes_workers(config: &Config, ctx_len: u32, block: u32) -> usize {
    let t = ctx_len as usize;
    Regions::new(config, ctx_len, block)
        .total_bytes()
        .saturating_add(round8(t.saturating_mul(8)))
        .saturating_add(round8(t.saturating_mul(4)))
}

impl Model<'_> {
    /// Session working-memory size for a context of `ctx_len` positions ([`session_bytes`]
    /// of this model's config).
    pub fn session_bytes(&self, ctx_len: u32) -> usize {
        session_bytes(self.config(), ctx_len)
    }
}

const fn round8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// `block` clamped to `1..=ctx_len`.
const fn clamp_block(block: u32, ctx_len: u32) -> usize {
    let b = if block > ctx_len { ctx_len } else { block };
    if b == 0 {
        1
    } else {
        b as usize
    }
}

/// Element counts of the working-memory regions (`B` = block, `T` = ctx_len, `W = max(d, F)`,
/// `A` = padded activation width), in carving order.
struct Regions {
    /// `i64 [B][d]`: the residual stream of each token of the block.
    x: usize,
    /// `i8 [B][A]`: quantized BitLinear inputs.
    act: usize,
    /// `i32 [B][W]`: matrix outputs, sub-norm inputs.
    y: usize,
    /// `i64 [W]`: one token's wide scratch.
    wide: usize,
    /// `i8 [B][d]`: quantized queries.
    q8: usize,
    /// `Dyadic [B][H]`: query scales.
    q_scale: usize,
    /// `Dyadic [H]`: one token's head scales.
    head_scale: usize,
    /// `i8 [L][T][Hkv][hd]` each: the KV cache.
    kv: usize,
    /// `Dyadic [L][T][Hkv]` each: its scales.
    kv_scale: usize,
    /// `i64 [T]`: attention scores.
    scores: usize,
    /// `i32 [T]`: value coefficients.
    coef: usize,
    /// `i32 [B][V]`: logits.
    logits: usize,
    /// `u16 [T]`: token history.
    tokens: usize,
    /// `Dyadic [B]`: the scale of each token's quantized activations.
    act_scale: usize,
    /// `i8`: the block matrix kernel's scratch (none for one token).
    scratch: usize,
    /// `i32 [B][F]`: the gate's outputs of a gated FFN (none for the plain FFN).
    gate: usize,
}

impl Regions {
    const fn new(c: &Config, ctx_len: u32, block: u32) -> Regions {
        let b = clamp_block(block, ctx_len);
        let d = c.d_model as usize;
        let h = c.n_heads as usize;
        let t = ctx_len as usize;
        let wmax = max(d, c.ffn_dim as usize);
        let act = act_width(c);
        // [L][T][Hkv] entries, each head_dim int8 values or one Dyadic.
        let kv_entries = (c.n_layers as usize)
            .saturating_mul(t)
            .saturating_mul(c.n_kv_heads as usize);
        Regions {
            x: b.saturating_mul(d),
            act: b.saturating_mul(act).saturating_add(ACT_SLACK),
            y: b.saturating_mul(wmax),
            wide: wmax,
            q8: b.saturating_mul(d),
            q_scale: b.saturating_mul(h),
            head_scale: h,
            kv: kv_entries.saturating_mul(c.head_dim() as usize),
            kv_scale: kv_entries,
            scores: t,
            coef: t,
            logits: b.saturating_mul(c.vocab_size as usize),
            tokens: t,
            act_scale: b,
            scratch: if b > 1 {
                matmul_scratch_bytes(act, b)
            } else {
                0
            },
            gate: if c.ffn_gated {
                b.saturating_mul(c.ffn_dim as usize)
            } else {
                0
            },
        }
    }

    /// `8 + Σ round8(bytes)` over the regions (the slack aligns the buffer's start).
    const fn total_bytes(&self) -> usize {
        let dy = core::mem::size_of::<Dyadic>();
        let bytes = [
            self.x.saturating_mul(8),
            self.act,
            self.y.saturating_mul(4),
            self.wide.saturating_mul(8),
            self.q8,
            self.q_scale.saturating_mul(dy),
            self.head_scale.saturating_mul(dy),
            self.kv,
            self.kv,
            self.kv_scale.saturating_mul(dy),
            self.kv_scale.saturating_mul(dy),
            self.scores.saturating_mul(8),
            self.coef.saturating_mul(4),
            self.logits.saturating_mul(4),
            self.tokens.saturating_mul(2),
            self.act_scale.saturating_mul(dy),
            self.scratch,
            self.gate.saturating_mul(4),
        ];
        let mut total = 8usize;
        let mut i = 0;
        while i < bytes.len() {
            total = total.saturating_add(round8(bytes[i]));
            i += 1;
        }
        total
    }
}

/// Bytes after the last token's activations that a base-3 matrix may read as input: its input
/// is `5 · ceil(n / 5) ≤ n + 4` entries, the 2-bit stride `4 · rb(n) ≥ n` (the extra entries
/// meet zero digits, so their values never matter).
pub(crate) const ACT_SLACK: usize = 4;

/// Padded activation width `A = 4 · max(rb(d), rb(F))`: a token's stride in the activations.
pub(crate) const fn act_width(c: &Config) -> usize {
    max(ternary_row_bytes(c.d_model), ternary_row_bytes(c.ffn_dim)).saturating_mul(4)
}

/// A read-only view of a session's KV cache (entries `[L][T][Hkv]`, positions at and beyond
/// [`Session::position`] hold stale data).
#[derive(Clone, Copy, Debug)]
pub struct KvCache<'s> {
    /// Keys `[L][T][Hkv][hd]`, int8.
    pub keys: &'s [i8],
    /// Values `[L][T][Hkv][hd]`, int8.
    pub values: &'s [i8],
    /// Real value of one key unit `[L][T][Hkv]`.
    pub key_scales: &'s [Dyadic],
    /// Real value of one value unit `[L][T][Hkv]`.
    pub value_scales: &'s [Dyadic],
}

/// Element types the working memory is cut into: any bit pattern is a valid value.
///
/// # Safety
/// Implementors must be plain data with no invalid bit patterns and no padding.
unsafe trait Pod: Copy {}
// SAFETY: integers have no invalid bit patterns.
unsafe impl Pod for i8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: `#[repr(C)]` pair of a `u32` and an `i32`, no padding.
unsafe impl Pod for Dyadic {}

/// Cuts the next region of `n` elements (8-byte granular) off the front of `buf`.
fn carve<'b, T: Pod>(buf: &mut &'b mut [u8], n: usize) -> Option<&'b mut [T]> {
    let bytes = round8(n.checked_mul(core::mem::size_of::<T>())?);
    if bytes > buf.len() {
        return None;
    }
    let (head, tail) = core::mem::take(buf).split_at_mut(bytes);
    *buf = tail;
    // SAFETY: `T: Pod` accepts any bit pattern; `align_to_mut` only hands out aligned `T`s.
    let (pre, mid, _) = unsafe { head.align_to_mut::<T>() };
    if !pre.is_empty() {
        return None;
    }
    mid.get_mut(..n)
}

/// Inference state over caller-owned memory: the residual stream, scratch vectors, the KV cache,
/// the token fed at each position ([`tokens`]) and the current position. Positions run
/// `0..ctx_len`; when all are used, [`forward`] returns [`Error::ContextFull`] until [`reset`].
/// The session itself does not slide; [`Generator`](crate::Generator) does, from [`tokens`].
///
/// [`forward`]: Session::forward
/// [`reset`]: Session::reset
/// [`tokens`]: Session::tokens
pub struct Session<'m, 'b> {
    pub(crate) model: Model<'m>,
    pub(crate) ctx_len: usize,
    pub(crate) pos: usize,
    /// Tokens per forward pass at most (`B`, 1 for [`Session::new`]).
    pub(crate) block: usize,
    /// Residual streams `[B][d]`, Q31.32.
    pub(crate) x: &'b mut [i64],
    /// Quantized BitLinear inputs `[B][A]` (`A = 4 · max(rb(d), rb(F))`; a block's rows are
    /// packed at the consuming matrix's padded width); padding may hold stale values (the
    /// weights' padding codes are zero).
    pub(crate) act: &'b mut [i8],
    /// Real value of one unit of each token's `act` row `[B]`.
    pub(crate) act_scale: &'b mut [Dyadic],
    /// Matrix outputs and sub-norm inputs `[B][max(d, F)]` (rows packed at the matrix's height).
    pub(crate) y: &'b mut [i32],
    /// One token's wide scratch `[max(d, F)]`: rotated q/k, attention accumulators, ReLU².
    pub(crate) wide: &'b mut [i64],
    /// Quantized queries `[B][H][hd]`.
    pub(crate) q8: &'b mut [i8],
    /// Per token and query head `[B][H]`: real value of one `q8` unit times `1/sqrt(hd)`.
    pub(crate) q_scale: &'b mut [Dyadic],
    /// Per head: real value of one unit of that head's attention accumulator.
    pub(crate) head_scale: &'b mut [Dyadic],
    /// Keys `[L][T][Hkv][hd]` int8.
    pub(crate) k_cache: &'b mut [i8],
    /// Values `[L][T][Hkv][hd]` int8.
    pub(crate) v_cache: &'b mut [i8],
    /// Real value of one key unit `[L][T][Hkv]`.
    pub(crate) k_scale: &'b mut [Dyadic],
    /// Real value of one value unit `[L][T][Hkv]`.
    pub(crate) v_scale: &'b mut [Dyadic],
    /// Attention scores `[T]`, Q24 nats; then the products `w_s · v_scale_s` (packed Dyadics).
    pub(crate) scores: &'b mut [i64],
    /// Value coefficients `[T]`.
    pub(crate) coef: &'b mut [i32],
    /// Logits `[B][V]`, Q15.16 nats (the tokens of the last forward pass).
    pub(crate) logits: &'b mut [i32],
    /// The token fed at each position `[T]` (valid below `pos`).
    pub(crate) tokens: &'b mut [u16],
    /// Scratch of the block matrix kernel (empty for `B = 1`).
    pub(crate) scratch: &'b mut [i8],
    /// The gate's outputs `[B][F]` of a gated FFN (empty for the plain FFN).
    pub(crate) gate: &'b mut [i32],
    /// Tokens in the last forward pass (whose logits `logits` holds).
    pub(crate) last_n: usize,
    /// The split pass's workers and scratch ([`Session::with_workers`]); `None`: one core.
    #[cfg(feature = "workers")]
    pub(crate) split: Option<super::workers::Split<'b>>,
}

impl<'m, 'b> Session<'m, 'b> {
    /// A session of `ctx_len` positions (`1..=config.ctx_len`) over `buf`, which must hold at
    /// least [`session_bytes`]`(config, ctx_len)` bytes, running one token per forward pass.
    /// Any alignment is fine. The buffer is zeroed.
    pub fn new(model: Model<'m>, ctx_len: u32, buf: &'b mut [u8]) -> Result<Self, Error> {
        Session::with_block(model, ctx_len, 1, buf)
    }

    /// A session that runs up to `block` tokens per forward pass ([`Session::prefill`],
    /// [`Session::forward_block`]) so that each weight is read once per block: `buf` must hold
    /// [`session_bytes_prefill`]`(config, ctx_len, block)` bytes. `block` is clamped to
    /// `1..=ctx_len`. Results are bit-identical to token-by-token [`Session::forward`].
    pub fn with_block(
        model: Model<'m>,
        ctx_len: u32,
        block: u32,
        buf: &'b mut [u8],
    ) -> Result<Self, Error> {
        let c = *model.config();
        if ctx_len == 0 || ctx_len > c.ctx_len {
            return Err(Error::BadContextLength {
                requested: ctx_len,
                max: c.ctx_len,
            });
        }
        let r = Regions::new(&c, ctx_len, block);
        let needed = r.total_bytes();
        let too_small = Error::BufferTooSmall {
            needed: u32::try_from(needed).unwrap_or(u32::MAX),
            given: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        };
        if buf.len() < needed {
            return Err(too_small);
        }
        buf.fill(0);
        let skip = buf.as_ptr().align_offset(8).min(8);
        let mut rest = buf.get_mut(skip..).ok_or(too_small)?;
        let b = &mut rest;
        Ok(Session {
            model,
            ctx_len: ctx_len as usize,
            pos: 0,
            block: clamp_block(block, ctx_len),
            x: carve(b, r.x).ok_or(too_small)?,
            act: carve(b, r.act).ok_or(too_small)?,
            y: carve(b, r.y).ok_or(too_small)?,
            wide: carve(b, r.wide).ok_or(too_small)?,
            q8: carve(b, r.q8).ok_or(too_small)?,
            q_scale: carve(b, r.q_scale).ok_or(too_small)?,
            head_scale: carve(b, r.head_scale).ok_or(too_small)?,
            k_cache: carve(b, r.kv).ok_or(too_small)?,
            v_cache: carve(b, r.kv).ok_or(too_small)?,
            k_scale: carve(b, r.kv_scale).ok_or(too_small)?,
            v_scale: carve(b, r.kv_scale).ok_or(too_small)?,
            scores: carve(b, r.scores).ok_or(too_small)?,
            coef: carve(b, r.coef).ok_or(too_small)?,
            logits: carve(b, r.logits).ok_or(too_small)?,
            tokens: carve(b, r.tokens).ok_or(too_small)?,
            act_scale: carve(b, r.act_scale).ok_or(too_small)?,
            scratch: carve(b, r.scratch).ok_or(too_small)?,
            gate: carve(b, r.gate).ok_or(too_small)?,
            last_n: 0,
            #[cfg(feature = "workers")]
            split: None,
        })
    }

    /// A session whose forward passes are split between this core and the other of
    /// `workers` (matrix rows, attention heads, table groups: see
    /// [`workers`](crate::workers)), with the same bits as the one-core pass. `buf` must hold
    /// [`session_bytes_workers`]`(config, ctx_len, block)` bytes. Both cores are used from the
    /// start when `workers` has two ([`Session::set_cores`] changes it).
    #[cfg(feature = "workers")]
    pub fn with_workers(
        model: Model<'m>,
        ctx_len: u32,
        block: u32,
        workers: &'b dyn crate::pass::workers::Workers,
        buf: &'b mut [u8],
    ) -> Result<Self, Error> {
        let needed =
            session_bytes_workers(model.config(), ctx_len.min(model.config().ctx_len), block);
        let given = buf.len();
        let too_small = Error::BufferTooSmall {
            needed: u32::try_from(needed).unwrap_or(u32::MAX),
            given: u32::try_from(given).unwrap_or(u32::MAX),
        };
        if ctx_len == 0 || ctx_len > model.config().ctx_len {
            return Err(Error::BadContextLength {
                requested: ctx_len,
                max: model.config().ctx_len,
            });
        }
        if given < needed {
            return Err(too_small);
        }
        let t = ctx_len as usize;
        let extra = round8(t * 8) + round8(t * 4);
        let (main, rest) = buf.split_at_mut(given - extra);
        let (s, c) = rest.split_at_mut(round8(t * 8));
        // SAFETY (both): any bit pattern is a valid i64 / i32; `align_to_mut` only hands out
        // aligned elements.
        let (pre, scores, _) = unsafe { s.align_to_mut::<i64>() };
        let scores_ok = pre.is_empty() && scores.len() >= t;
        let (pre, coef, _) = unsafe { c.align_to_mut::<i32>() };
        let coef_ok = pre.is_empty() && coef.len() >= t;
        // Unaligned ends: carve from the front instead (the buffer's tail may be misaligned).
        let (scores, coef) = if scores_ok && coef_ok {
            (&mut scores[..t], &mut coef[..t])
        } else {
            return Err(too_small);
        };
        scores.fill(0);
        coef.fill(0);
        let mut session = Session::with_block(model, ctx_len, block, main)?;
        session.split = Some(super::workers::Split {
            workers,
            cores: workers.cores().clamp(1, 2),
            rows: None,
            shared_tables: true,
            scores,
            coef,
        });
        Ok(session)
    }

    /// Cores the forward pass runs on now: 1, or 2 for a session with two-core workers.
    pub fn cores(&self) -> u32 {
        #[cfg(feature = "workers")]
        if let Some(s) = &self.split {
            return s.cores as u32;
        }
        1
    }

    /// The most cores this session can use (its workers' count; 1 without workers).
    pub fn max_cores(&self) -> u32 {
        #[cfg(feature = "workers")]
        if let Some(s) = &self.split {
            return s.workers.cores().clamp(1, 2) as u32;
        }
        1
    }

    /// Runs the following passes on `cores` cores (1 to [`max_cores`](Session::max_cores));
    /// `Err(max_cores)` and no change otherwise. Results never change.
    pub fn set_cores(&mut self, cores: u32) -> Result<(), u32> {
        let max = self.max_cores();
        if cores == 0 || cores > max {
            return Err(max);
        }
        #[cfg(feature = "workers")]
        if let Some(s) = &mut self.split {
            s.cores = cores as usize;
        }
        Ok(())
    }

    /// The workers of a session made with [`Session::with_workers`].
    #[cfg(feature = "workers")]
    pub fn workers(&self) -> Option<&'b dyn crate::pass::workers::Workers> {
        self.split.as_ref().map(|s| s.workers)
    }

    /// Reads the first rows of every matrix (and the LM head's embedding) from `rows` from now
    /// on, in the split pass ([`RowCopy`](crate::workers::RowCopy)); `false` (nothing changes)
    /// for a session without workers.
    #[cfg(feature = "workers")]
    pub fn set_row_copy(&mut self, rows: crate::pass::workers::RowCopy<'b>) -> bool {
        match &mut self.split {
            Some(s) => {
                s.rows = Some(rows);
                true
            }
            None => false,
        }
    }

    /// Whether the split pass builds one set of lookup tables with both cores and shares it
    /// (`true`, the default) or lets each core build the tables it needs (for measurements;
    /// the results are the same).
    #[cfg(feature = "workers")]
    #[doc(hidden)]
    pub fn set_shared_tables(&mut self, shared: bool) {
        if let Some(s) = &mut self.split {
            s.shared_tables = shared;
        }
    }

    /// Tokens per forward pass at most (1 for [`Session::new`]).
    pub fn block(&self) -> u32 {
        self.block as u32
    }

    /// The KV cache as the forward passes wrote it (for tests and tools: a block pass must
    /// leave exactly what token-by-token passes leave).
    pub fn kv_cache(&self) -> KvCache<'_> {
        KvCache {
            keys: self.k_cache,
            values: self.v_cache,
            key_scales: self.k_scale,
            value_scales: self.v_scale,
        }
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Tokens processed since the last reset (the position the next `forward` fills).
    pub fn position(&self) -> u32 {
        self.pos as u32
    }

    /// Positions this session holds.
    pub fn ctx_len(&self) -> u32 {
        self.ctx_len as u32
    }

    /// The tokens fed since the last reset, one per position (`position()` of them).
    pub fn tokens(&self) -> &[u16] {
        self.tokens.get(..self.pos).unwrap_or(&[])
    }

    /// Forgets the context (the next `forward` is position 0). O(1).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// The logits after the last token fed (all zero before the first).
    pub fn logits(&self) -> &[i32] {
        let v = self.model.config().vocab_size as usize;
        let at = self.last_n.saturating_sub(1).saturating_mul(v);
        self.logits.get(at..at.saturating_add(v)).unwrap_or(&[])
    }
}
