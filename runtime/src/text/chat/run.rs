//! One prompt's generation: encode, stream the tokens, watch for Ctrl-C, time it.

use core::fmt::Write as _;

use super::out::Out;
use super::{Settings, Stats, Terminal, Typeahead, CTRL_C, MAX_LINE};
use crate::{decode, encode, EncodeError, Error, Generator, Session, Utf8Stream};

/// One generation: the borrowed parts of a [`Chat`](super::Chat) it needs.
pub(super) struct Run<'c, 'm, 'b> {
    pub(super) session: &'c mut Session<'m, 'b>,
    pub(super) prompt: &'c mut [u16; MAX_LINE],
    pub(super) typeahead: &'c mut Typeahead,
    pub(super) settings: Settings,
}

impl Run<'_, '_, '_> {
    /// Writes the prompt and its continuation (exactly `tools generate`'s output) and a line
    /// end. `None` when the prompt could not be encoded (an error line was written instead).
    pub(super) fn generate<T: Terminal>(self, text: &[u8], out: &mut Out<'_, T>) -> Option<Stats> {
        let model = *self.session.model();
        let n = match encode(&model, text, self.prompt) {
            Ok(n) => n,
            Err(e @ EncodeError::Unknown { .. }) => {
                let _ = writeln!(out, "error: {e}");
                return None;
            }
            // Cannot happen: a token is at least one byte and the line at most MAX_LINE.
            Err(EncodeError::OutputFull { .. }) => {
                let _ = writeln!(out, "error: line longer than {MAX_LINE} bytes");
                return None;
            }
        };
        out.bytes(text);
        out.flush();
        let mut stats = Stats {
            prompt_tokens: n as u32,
            cores: self.session.cores(),
            ..Stats::default()
        };
        let busy_before = other_core_counts(self.session);
        let prompt = self.prompt.get(..n).unwrap_or(&[]);
        let mut generator = Generator::new(self.session, prompt, self.settings.sampler());
        let mut failure: Option<Error> = None;
        // A byte-level token may end inside a UTF-8 character: hold it until it is whole.
        let mut text_out = Utf8Stream::new();
        for i in 0..self.settings.tokens {
            if interrupted(out.term, self.typeahead) {
                stats.interrupted = true;
                break;
            }
            let t0 = out.term.now();
            let token = match generator.next_token() {
                Ok(Some(token)) => token,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let spent = out.term.now().wrapping_sub(t0);
            if i == 0 {
                stats.prefill_counts = spent;
            } else {
                stats.decode_tokens += 1;
                stats.decode_counts = stats.decode_counts.saturating_add(spent);
            }
            let _ = text_out.push(decode(&model, token), |b| {
                out.bytes(b);
                Ok::<(), ()>(())
            });
            out.flush();
            if out.failed() {
                break;
            }
        }
        let _ = text_out.finish(|b| {
            out.bytes(b);
            Ok::<(), ()>(())
        });
        if let (Some(a), Some(b)) = (busy_before, other_core_counts(generator.session())) {
            stats.other_core_counts = Some(b.wrapping_sub(a));
        }
        if stats.interrupted {
            let _ = out.write_str("^C");
        }
        out.bytes(b"\n");
        if let Some(e) = failure {
            let _ = writeln!(out, "error: {e}");
        }
        Some(stats)
    }
}

/// What the session's other core has spent on jobs so far (`None` without such a counter).
fn other_core_counts(session: &Session<'_, '_>) -> Option<u64> {
    #[cfg(feature = "workers")]
    if let Some(w) = session.workers() {
        return w.busy_counts();
    }
    let _ = session;
    None
}

/// Reads what the terminal has without blocking: true on Ctrl-C (the type-ahead is dropped
/// with it); other bytes queue up for after the run, until the queue is full.
fn interrupted<T: Terminal>(term: &mut T, typeahead: &mut Typeahead) -> bool {
    while !typeahead.is_full() {
        match term.read() {
            Some(CTRL_C) => {
                typeahead.clear();
                return true;
            }
            Some(byte) => {
                typeahead.push(byte);
            }
            None => break,
        }
    }
    false
}
