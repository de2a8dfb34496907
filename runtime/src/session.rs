//! A session: caller-owned working memory (activations, the KV cache, the token history) and
//! the position.

use crate::error::Error;
use crate::fixed::Dyadic;
use crate::format::{ternary_row_bytes, Config};
use crate::model::Model;

/// Working-memory bytes a session over `config` needs for `ctx_len` positions.
///
/// `const`, so firmware can size a `static` buffer at compile time from a known config. The
/// formula (`FORMAT.md`, "Working memory") is the sum of the regions below, each rounded up to
/// 8 bytes, plus 8 bytes of slack for aligning the start of the caller's buffer. Saturates
/// instead of overflowing (an absurd config gives `usize::MAX`).
pub const fn session_bytes(config: &Config, ctx_len: u32) -> usize {
    let r = region_sizes(config, ctx_len);
    let mut total = 8usize;
    let mut i = 0;
    while i < r.len() {
        total = total.saturating_add(round8(r[i]));
        i += 1;
    }
    total
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

/// Byte sizes of the regions, in carving order.
const fn region_sizes(c: &Config, ctx_len: u32) -> [usize; 15] {
    let d = c.d_model as usize;
    let f = c.ffn_dim as usize;
    let h = c.n_heads as usize;
    let t = ctx_len as usize;
    let wmax = max(d, f);
    let act = max(ternary_row_bytes(c.d_model), ternary_row_bytes(c.ffn_dim)).saturating_mul(4);
    // [L][T][Hkv] entries, each head_dim int8 values or one Dyadic.
    let kv_entries = (c.n_layers as usize)
        .saturating_mul(t)
        .saturating_mul(c.n_kv_heads as usize);
    let kv = kv_entries.saturating_mul(c.head_dim() as usize);
    let dy = core::mem::size_of::<Dyadic>();
    [
        d.saturating_mul(8),                       // x: i64[d]
        act,                                       // act: i8[max(pad64(d), pad64(F))]
        wmax.saturating_mul(4),                    // y: i32[max(d, F)]
        wmax.saturating_mul(8),                    // wide: i64[max(d, F)]
        d,                                         // q8: i8[d]
        h.saturating_mul(dy),                      // q_scale: Dyadic[H]
        h.saturating_mul(dy),                      // head_scale: Dyadic[H]
        kv,                                        // k_cache: i8[L][T][Hkv][hd]
        kv,                                        // v_cache
        kv_entries.saturating_mul(dy),             // k_scale: Dyadic[L][T][Hkv]
        kv_entries.saturating_mul(dy),             // v_scale
        t.saturating_mul(8),                       // scores: i64[T]
        t.saturating_mul(4),                       // coef: i32[T]
        (c.vocab_size as usize).saturating_mul(4), // logits: i32[V]
        t.saturating_mul(2),                       // tokens: u16[T]
    ]
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
    /// Residual stream `[d]`, Q31.32.
    pub(crate) x: &'b mut [i64],
    /// Quantized BitLinear input `[max(pad64(d), pad64(F))]`; padding may hold stale values
    /// (the weights' padding codes are zero).
    pub(crate) act: &'b mut [i8],
    /// Matrix-vector outputs and sub-norm inputs `[max(d, F)]`.
    pub(crate) y: &'b mut [i32],
    /// Wide scratch `[max(d, F)]`: rotated q/k, attention accumulators, ReLU² values.
    pub(crate) wide: &'b mut [i64],
    /// Quantized queries `[H][hd]`.
    pub(crate) q8: &'b mut [i8],
    /// Per query head: real value of one `q8` unit times `1/sqrt(hd)`.
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
    /// Logits `[V]`, Q15.16 nats.
    pub(crate) logits: &'b mut [i32],
    /// The token fed at each position `[T]` (valid below `pos`).
    pub(crate) tokens: &'b mut [u16],
}

impl<'m, 'b> Session<'m, 'b> {
    /// A session of `ctx_len` positions (`1..=config.ctx_len`) over `buf`, which must hold at
    /// least [`session_bytes`]`(config, ctx_len)` bytes. Any alignment is fine. The buffer is
    /// zeroed.
    pub fn new(model: Model<'m>, ctx_len: u32, buf: &'b mut [u8]) -> Result<Self, Error> {
        let c = *model.config();
        if ctx_len == 0 || ctx_len > c.ctx_len {
            return Err(Error::BadContextLength {
                requested: ctx_len,
                max: c.ctx_len,
            });
        }
        let needed = session_bytes(&c, ctx_len);
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
        let r = region_sizes(&c, ctx_len);
        let dy = core::mem::size_of::<Dyadic>();
        let b = &mut rest;
        Ok(Session {
            model,
            ctx_len: ctx_len as usize,
            pos: 0,
            x: carve(b, r[0] / 8).ok_or(too_small)?,
            act: carve(b, r[1]).ok_or(too_small)?,
            y: carve(b, r[2] / 4).ok_or(too_small)?,
            wide: carve(b, r[3] / 8).ok_or(too_small)?,
            q8: carve(b, r[4]).ok_or(too_small)?,
            q_scale: carve(b, r[5] / dy).ok_or(too_small)?,
            head_scale: carve(b, r[6] / dy).ok_or(too_small)?,
            k_cache: carve(b, r[7]).ok_or(too_small)?,
            v_cache: carve(b, r[8]).ok_or(too_small)?,
            k_scale: carve(b, r[9] / dy).ok_or(too_small)?,
            v_scale: carve(b, r[10] / dy).ok_or(too_small)?,
            scores: carve(b, r[11] / 8).ok_or(too_small)?,
            coef: carve(b, r[12] / 4).ok_or(too_small)?,
            logits: carve(b, r[13] / 4).ok_or(too_small)?,
            tokens: carve(b, r[14] / 2).ok_or(too_small)?,
        })
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

    /// The logits of the last `forward` (all zero before the first).
    pub fn logits(&self) -> &[i32] {
        self.logits
    }
}
