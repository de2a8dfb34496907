//! Streaming generation: one token per call, no allocation.

use crate::error::Error;
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::Session;

/// Feeds a prompt into a session, then samples one token per [`next_token`] call.
///
/// The prompt is processed on the first call. Each later call forwards the previously
/// returned token and samples the next. When the session's context is full the generator
/// ends (`Ok(None)`): with `P` prompt tokens and context `T` it yields `T − P + 1` tokens.
/// Also an [`Iterator`] of `Result<u16, Error>`.
///
/// [`next_token`]: Generator::next_token
pub struct Generator<'s, 'm, 'b, 'p> {
    session: &'s mut Session<'m, 'b>,
    prompt: &'p [u16],
    sampler: Sampler,
    pending: Option<u16>,
    started: bool,
    done: bool,
}

impl<'s, 'm, 'b, 'p> Generator<'s, 'm, 'b, 'p> {
    /// A generator continuing `prompt` in `session` (reset first). The prompt must not be empty.
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
        }
    }

    /// The next token, `Ok(None)` once the context is full.
    ///
    /// Errors: [`Error::EmptyPrompt`], [`Error::ContextFull`] (prompt longer than the context),
    /// [`Error::TokenOutOfRange`] (a prompt token outside the vocabulary).
    pub fn next_token(&mut self) -> Result<Option<u16>, Error> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            if self.prompt.is_empty() {
                self.done = true;
                return Err(Error::EmptyPrompt);
            }
            for &tok in self.prompt {
                if let Err(e) = self.session.forward(tok) {
                    self.done = true;
                    return Err(e);
                }
            }
        } else if let Some(tok) = self.pending {
            if self.session.position() >= self.session.ctx_len() {
                self.done = true;
                return Ok(None);
            }
            self.session.forward(tok)?;
        }
        let tok = self.sampler.sample(self.session.logits());
        self.pending = Some(tok);
        Ok(Some(tok))
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
