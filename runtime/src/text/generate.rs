//! Streaming generation: one token per call, no allocation, a sliding window over the context.

use crate::error::Error;
use crate::pass::session::Session;
use crate::text::sampler::{Sampler, SamplerConfig};

/// Feeds a prompt into a session, then samples one token per [`next_token`] call for as long as
/// the caller asks: the context slides, so the generator never ends by itself (bound it, e.g.
/// with `.take(n)`). Also an [`Iterator`] of `Result<u16, Error>`.
///
/// The prompt is processed on the first call. Each later call forwards the previously returned
/// token and samples the next.
///
/// # Sliding window
///
/// With context `T` (the session's [`ctx_len`]) let `keep = max(T / 2, 1)`:
/// - When the context is full and the previous token must be forwarded, the generator *slides*:
///   it resets the session, re-feeds the last `keep` tokens of the context (recorded by the
///   session, [`Session::tokens`]) at positions `0..keep`, then forwards the pending token at
///   position `keep` and samples as usual. Positions restart at 0: RoPE positions are absolute
///   within the window, as in training. (With `T = 1` nothing is re-fed: the only position holds
///   the pending token.)
/// - A prompt longer than `T` is cut to its last `keep` tokens before the prefill.
///
/// Cost: each slide is a re-prefill of `keep` tokens, once every `T − keep` generated tokens
/// (for even `T`: `T/2` extra forwards every `T/2` tokens, so past the first window generation
/// does about twice the forwards; the slide's call takes `keep + 1` forwards instead of one). No
/// memory beyond the session. The tokens are a function of the model, the prompt, `T` and the
/// sampler config alone: the same on every platform. [`slides`] counts the slides so far.
///
/// [`next_token`]: Generator::next_token
/// [`ctx_len`]: Session::ctx_len
/// [`slides`]: Generator::slides
pub struct Generator<'s, 'm, 'b, 'p> {
    session: &'s mut Session<'m, 'b>,
    prompt: &'p [u16],
    sampler: Sampler,
    pending: Option<u16>,
    started: bool,
    done: bool,
    slides: u32,
}

/// Tokens kept when the window slides or a long prompt is cut: `max(ctx_len / 2, 1)`.
const fn keep(ctx_len: usize) -> usize {
    if ctx_len / 2 > 1 {
        ctx_len / 2
    } else {
        1
    }
}

impl<'s, 'm, 'b, 'p> Generator<'s, 'm, 'b, 'p> {
    /// A generator continuing `prompt` in `session` (reset first). The prompt must not be empty;
    /// one longer than the context is cut to its last `max(ctx_len / 2, 1)` tokens.
    pub fn new(
        session: &'s mut Session<'m, 'b>,
        prompt: &'p [u16],
        config: SamplerConfig,
    ) -> Generator<'s, 'm, 'b, 'p> {
        session.reset();
        Generator {
            session,
            prompt,
            sampler: Sampler::new(config),
            pending: None,
            started: false,
            done: false,
            slides: 0,
        }
    }

    /// The next token. `Ok(None)` only after a prompt error; otherwise there is always a next
    /// token (the window slides when the context is full).
    ///
    /// Errors: [`Error::EmptyPrompt`], [`Error::TokenOutOfRange`] (a prompt token outside the
    /// vocabulary); after either the generator is finished.
    pub fn next_token(&mut self) -> Result<Option<u16>, Error> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            if let Err(e) = self.prefill() {
                self.done = true;
                return Err(e);
            }
        } else if let Some(tok) = self.pending {
            if self.session.pos >= self.session.ctx_len {
                self.slide()?;
            }
            self.session.forward(tok)?;
        }
        let tok = self.sampler.sample(self.session.logits());
        self.pending = Some(tok);
        Ok(Some(tok))
    }

    /// Feeds the prompt, or its last `keep` tokens if it is longer than the context, in blocks
    /// of the session's [`block`](Session::block).
    fn prefill(&mut self) -> Result<(), Error> {
        if self.prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let t = self.session.ctx_len;
        let start = if self.prompt.len() > t {
            self.prompt.len().saturating_sub(keep(t))
        } else {
            0
        };
        self.session
            .prefill(self.prompt.get(start..).unwrap_or(&[]))?;
        Ok(())
    }

    /// Resets the full session and re-feeds its last `keep` tokens (at most `ctx_len − 1`, to
    /// leave a position for the pending token) at positions `0..keep`.
    fn slide(&mut self) -> Result<(), Error> {
        let s = &mut *self.session;
        let end = s.pos;
        let n = keep(s.ctx_len).min(s.ctx_len.saturating_sub(1)).min(end);
        let from = end.saturating_sub(n);
        // Move the kept tokens to positions 0..n, then run them in blocks (a re-prefill).
        s.tokens.copy_within(from..end, 0);
        s.reset();
        s.run_recorded(n);
        self.slides = self.slides.saturating_add(1);
        Ok(())
    }

    /// How many times the window has slid so far (each one a re-prefill of `keep` tokens).
    pub fn slides(&self) -> u32 {
        self.slides
    }

    /// The session (for the model, to decode tokens).
    pub fn session(&self) -> &Session<'m, 'b> {
        self.session
    }
}

impl Iterator for Generator<'_, '_, '_, '_> {
    type Item = Result<u16, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_token().transpose()
    }
}
