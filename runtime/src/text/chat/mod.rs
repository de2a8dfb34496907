//! The interactive line protocol, shared by the firmware (USB CDC serial, UART) and
//! `tools chat` (stdin/stdout), so that it is tested on the host.
//!
//! A line of text is a prompt: the reply is exactly what `tools generate` prints for it with
//! the current settings (the prompt, then the continuation), followed by a line end. Every
//! prompt starts from the current settings with the seed applied afresh, so the same line
//! gives the same text each time. Commands:
//!
//! | line | effect |
//! |---|---|
//! | `/temp 0.8` | sampling temperature, `0` = greedy (0 to 100, at most 3 decimals) |
//! | `/topk 40` | sample among the 40 most likely tokens, `0` = all |
//! | `/seed 3` | sampler seed |
//! | `/tokens 200` | tokens generated per prompt |
//! | `/cores 2` | cores sharing each token's work (1, or 2 where the session has two-core workers; `/cores` alone reports them) |
//! | `/stats` | the last run's tokens/s (with two cores, the other core's busy time too) and the memory in use |
//! | `/help` | the commands and the current settings |
//!
//! In a prompt `\n` stands for a newline, `\\` for a backslash and `\/` for a slash (so a
//! prompt can start with one). Bad input (a character outside the vocabulary, a line over
//! [`MAX_LINE`] bytes, a bad number, an unknown command) gets one line `error: …` and the
//! protocol goes on. Ctrl-C (byte `0x03`) stops a generation between two tokens, or throws
//! away the line being typed. Ctrl-D (byte `0x04`) ends the input: a line typed before it
//! still runs, then [`Chat::ended`] is true (the QEMU twin exits; a board ignores it). After each reply the prompt marker `> ` asks for the next line.
//!
//! The host side is a [`Terminal`]: byte output, non-blocking byte input (polled between
//! tokens, for Ctrl-C and type-ahead), a clock for `/stats`. Everything is integer
//! arithmetic, nothing allocates, nothing panics.

mod flashed;
mod line;
mod out;
mod parse;
mod run;
#[cfg(test)]
mod tests;

use core::fmt::{self, Write as _};

pub use flashed::flashed_model;
pub use line::{Edit, LineEditor, Typeahead, CTRL_C, CTRL_D, MAX_LINE, TYPEAHEAD};
pub use parse::{
    parse_line, parse_milli, parse_u64, unescape, LineError, Request, MAX_TEMPERATURE_MILLI,
    MAX_TOKENS,
};

use out::Out;
use run::Run;

use crate::{LoadError, SamplerConfig, Session};

/// The host of a chat: where the text goes, where input comes from, what the time is.
pub trait Terminal {
    /// Why output failed (the peer is gone); it ends the chat.
    type Error;

    /// Writes all of `bytes`.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Pushes written bytes out (called after each token and each reply).
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A received byte if one is waiting; never blocks. Polled between tokens.
    fn read(&mut self) -> Option<u8>;

    /// A free-running counter for `/stats` (see [`Terminal::clock`]).
    fn now(&mut self) -> u64;

    /// What [`Terminal::now`] counts.
    fn clock(&self) -> Clock;

    /// Echo typed bytes back (serial terminals do not echo by themselves; a host tty does).
    fn echo(&self) -> bool {
        false
    }

    /// Write every `\n` as `\r\n` (what serial terminals expect).
    fn crlf(&self) -> bool {
        false
    }

    /// Deepest stack use so far in bytes, if the host can tell (`/stats`).
    fn stack_used(&mut self) -> Option<usize> {
        None
    }
}

/// The unit of a [`Terminal`]'s counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Counts per second.
    pub per_second: u64,
    /// What one count is, e.g. "cycles".
    pub unit: &'static str,
    /// How to read a rate computed from it, e.g. "DWT cycle counter at 150 MHz".
    pub note: &'static str,
}

/// The settings every prompt starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Temperature in thousandths (0 = greedy).
    pub temperature_milli: u32,
    /// Top-k cut-off (0 = none).
    pub top_k: u32,
    /// Sampler seed, applied afresh to every prompt.
    pub seed: u64,
    /// Tokens generated per prompt.
    pub tokens: u32,
}

impl Settings {
    /// The defaults of `tools generate`: temperature 0.8, all tokens, seed 0, 100 tokens.
    pub const DEFAULT: Settings = Settings {
        temperature_milli: 800,
        top_k: 0,
        seed: 0,
        tokens: 100,
    };

    /// The sampler config of one prompt.
    pub const fn sampler(&self) -> SamplerConfig {
        SamplerConfig {
            temperature_milli: self.temperature_milli,
            top_k: self.top_k,
            seed: self.seed,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "temperature {}.{:03}, top-k {}, seed {}, tokens {}",
            self.temperature_milli / 1000,
            self.temperature_milli % 1000,
            self.top_k,
            self.seed,
            self.tokens
        )
    }
}

/// Why there is no model to run: prompts get this as their error; commands still work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModelProblem {
    /// The flash partition is erased (no model was flashed).
    Absent {
        /// Address of the partition.
        address: u32,
    },
    /// The blob was refused by the loader.
    Invalid(LoadError),
    /// Its working memory for the whole context does not fit the board's arena.
    TooBig {
        /// Bytes the session needs.
        needed: u32,
        /// Bytes the arena has.
        available: u32,
    },
    /// The blob is longer than the partition (its prefix says so).
    TooLong {
        /// Blob length from the prefix.
        length: u32,
        /// Partition size.
        partition: u32,
    },
}

impl fmt::Display for ModelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ModelProblem::Absent { address } => write!(
                f,
                "no model: the model partition at {address:#010x} is empty \
                 (write one: tools uf2 MODEL.bin --out MODEL.uf2, then copy it to the board in BOOTSEL mode)"
            ),
            ModelProblem::Invalid(e) => write!(f, "the model is not valid: {e}"),
            ModelProblem::TooBig { needed, available } => write!(
                f,
                "the flashed model needs {needed} bytes of working memory, the board has {available}"
            ),
            ModelProblem::TooLong { length, partition } => write!(
                f,
                "the flashed model says it has {length} bytes, more than the {partition}-byte partition"
            ),
        }
    }
}

/// What the last run cost, for `/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Prompt tokens of the prefill.
    pub prompt_tokens: u32,
    /// Counts spent on the prefill and the first token.
    pub prefill_counts: u64,
    /// Tokens generated after the first.
    pub decode_tokens: u32,
    /// Counts spent on them.
    pub decode_counts: u64,
    /// The run was stopped by Ctrl-C.
    pub interrupted: bool,
    /// Cores the run used.
    pub cores: u32,
    /// Counts the other core spent on the run's jobs, when its workers measure them.
    pub other_core_counts: Option<u64>,
}

/// `tokens` per `counts` at `per_second` counts/s, in thousandths (`None` when no time passed).
pub fn milli_rate(tokens: u32, counts: u64, per_second: u64) -> Option<u64> {
    let scaled = u128::from(tokens) * u128::from(per_second) * 1000;
    scaled
        .checked_div(u128::from(counts))
        .map(|r| u64::try_from(r).unwrap_or(u64::MAX))
}

/// One chat: the settings, the model's session (or why there is none), the input state.
pub struct Chat<'m, 'b> {
    session: Result<Session<'m, 'b>, ModelProblem>,
    settings: Settings,
    editor: LineEditor,
    typeahead: Typeahead,
    prompt: [u16; MAX_LINE],
    stats: Option<Stats>,
    ended: bool,
}

impl<'m, 'b> Chat<'m, 'b> {
    /// A chat over `session` (its context decides the window, as in `tools generate`), or one
    /// that explains `problem` to every prompt.
    pub fn new(session: Result<Session<'m, 'b>, ModelProblem>, settings: Settings) -> Self {
        Chat {
            session,
            settings,
            editor: LineEditor::new(),
            typeahead: Typeahead::new(),
            prompt: [0; MAX_LINE],
            stats: None,
            ended: false,
        }
    }

    /// True once Ctrl-D (byte `0x04`) ended the input.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Writes the greeting (model or problem, `/help` hint) and the first `> `.
    pub fn greet<T: Terminal>(&mut self, term: &mut T) -> Result<(), T::Error> {
        let mut out = Out::new(term);
        match &self.session {
            Ok(s) => {
                let c = s.model().config();
                let _ = writeln!(
                    out,
                    "bitnet-mcu chat: model vocab {}, d {}, layers {}, context {}; {}",
                    c.vocab_size,
                    c.d_model,
                    c.n_layers,
                    s.ctx_len(),
                    self.settings
                );
            }
            Err(problem) => {
                let _ = writeln!(out, "bitnet-mcu chat: {problem}");
            }
        }
        let _ = writeln!(out, "type a prompt, or /help");
        let _ = out.write_str("> ");
        out.finish()
    }

    /// Handles the next waiting byte (type-ahead first, then the terminal). `Ok(false)` when
    /// there was none, so the caller may sleep.
    pub fn poll<T: Terminal>(&mut self, term: &mut T) -> Result<bool, T::Error> {
        match self.typeahead.pop().or_else(|| term.read()) {
            Some(byte) => self.feed(byte, term).map(|()| true),
            None => Ok(false),
        }
    }

    /// Handles one input byte; a line end runs the line (a prompt generates right here,
    /// polling the terminal between tokens).
    pub fn feed<T: Terminal>(&mut self, byte: u8, term: &mut T) -> Result<(), T::Error> {
        let edit = self.editor.feed(byte);
        let echo = term.echo();
        let mut out = Out::new(term);
        match edit {
            Edit::Nothing => {}
            Edit::Added if echo => out.bytes(&[byte]),
            Edit::Added => {}
            Edit::Erased if echo => out.bytes(b"\x08 \x08"),
            Edit::Erased => {}
            Edit::Cancelled => {
                let _ = out.write_str("^C\n> ");
            }
            Edit::TooLong => {
                if echo {
                    out.bytes(b"\n");
                }
                let _ = write!(out, "error: line longer than {MAX_LINE} bytes\n> ");
            }
            Edit::Line => {
                if echo {
                    out.bytes(b"\n");
                }
                self.run_line(&mut out);
                let _ = out.write_str("> ");
            }
            Edit::End => {
                if !self.editor.line().is_empty() {
                    if echo {
                        out.bytes(b"\n");
                    }
                    self.run_line(&mut out);
                    let _ = out.write_str("> ");
                }
                self.ended = true;
            }
        }
        out.finish()
    }

    /// Runs the complete line in the editor.
    fn run_line<T: Terminal>(&mut self, out: &mut Out<'_, T>) {
        let Chat {
            session,
            settings,
            editor,
            typeahead,
            prompt,
            stats,
            ..
        } = self;
        let line = editor.line();
        let request = match parse_line(line) {
            Ok(request) => request,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return;
            }
        };
        let is_setting = matches!(
            request,
            Request::Temperature(_) | Request::TopK(_) | Request::Seed(_) | Request::Tokens(_)
        );
        match request {
            Request::Empty => {}
            Request::Temperature(t) => settings.temperature_milli = t,
            Request::TopK(k) => settings.top_k = k,
            Request::Seed(s) => settings.seed = s,
            Request::Tokens(n) => settings.tokens = n,
            Request::Help => write_help(out, *settings),
            Request::Cores(n) => match (session.as_mut(), n) {
                (Err(problem), _) => {
                    let _ = writeln!(out, "error: {problem}");
                }
                (Ok(s), None) => {
                    let _ = writeln!(out, "cores: {} of {}", s.cores(), s.max_cores());
                }
                (Ok(s), Some(n)) => match s.set_cores(n) {
                    Ok(()) => {
                        let _ = writeln!(out, "ok: cores {n}");
                    }
                    Err(max) => {
                        let _ = writeln!(
                            out,
                            "error: /cores {n}: this build runs the model on at most {max} core{}",
                            if max == 1 { "" } else { "s" }
                        );
                    }
                },
            },
            Request::Stats => write_stats(out, stats.as_ref(), session.as_ref().ok()),
            Request::Prompt(_) => {
                let text_len = match unescape(line) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writeln!(out, "error: {e}");
                        return;
                    }
                };
                let text = line.get(..text_len).unwrap_or(&[]);
                match session {
                    Ok(session) => {
                        let run = Run {
                            session,
                            prompt,
                            typeahead,
                            settings: *settings,
                        };
                        if let Some(s) = run.generate(text, out) {
                            *stats = Some(s);
                        }
                    }
                    Err(problem) => {
                        let _ = writeln!(out, "error: {problem}");
                    }
                }
            }
        }
        if is_setting {
            let _ = writeln!(out, "ok: {settings}");
        }
    }
}

fn write_help<T: Terminal>(out: &mut Out<'_, T>, settings: Settings) {
    let _ = write!(
        out,
        "a line of text is a prompt: its continuation streams back (\\n in a prompt is a newline,\n\
         \\\\ a backslash, \\/ a slash). Ctrl-C stops a generation. Commands:\n\
         \x20 /temp T     sampling temperature, 0 = greedy (0 to 100, at most 3 decimals)\n\
         \x20 /topk K     sample among the K most likely tokens, 0 = all\n\
         \x20 /seed S     sampler seed, applied afresh to every prompt\n\
         \x20 /tokens N   tokens generated per prompt (0 to {MAX_TOKENS})\n\
         \x20 /cores N    cores sharing each token's work: 1, or 2 on a two-core board\n\
         \x20 /stats      speed of the last run, memory in use\n\
         \x20 /help       this list\n\
         settings: {settings}\n"
    );
}

fn write_stats<T: Terminal>(
    out: &mut Out<'_, T>,
    stats: Option<&Stats>,
    session: Option<&Session>,
) {
    let clock = out.term.clock();
    match stats {
        None => {
            let _ = writeln!(out, "stats: no run yet");
        }
        Some(s) => {
            let _ = write!(
                out,
                "stats: prompt {} tokens and the first token in {} {}, then {} tokens in {} {}",
                s.prompt_tokens,
                s.prefill_counts,
                clock.unit,
                s.decode_tokens,
                s.decode_counts,
                clock.unit
            );
            if let Some(rate) = milli_rate(s.decode_tokens, s.decode_counts, clock.per_second) {
                let _ = write!(out, ": {}.{:03} tokens/s", rate / 1000, rate % 1000);
            }
            let _ = write!(
                out,
                " ({}){}",
                clock.note,
                if s.interrupted { ", interrupted" } else { "" }
            );
            let total = s.prefill_counts.saturating_add(s.decode_counts);
            match (s.cores, s.other_core_counts) {
                (2, Some(busy)) => {
                    let permille = busy.saturating_mul(1000).checked_div(total).unwrap_or(0);
                    let _ = writeln!(
                        out,
                        "; 2 cores: core 1 busy {busy} {} of the run's {total} ({}.{}%)",
                        clock.unit,
                        permille / 10,
                        permille % 10
                    );
                }
                (cores, _) => {
                    let _ = writeln!(out, "; {cores} core{}", if cores == 1 { "" } else { "s" });
                }
            }
        }
    }
    match session {
        Some(s) => {
            let _ = write!(
                out,
                "memory: working memory {} bytes (context {})",
                s.model().session_bytes(s.ctx_len()),
                s.ctx_len()
            );
        }
        None => {
            let _ = write!(out, "memory: no model loaded");
        }
    }
    match out.term.stack_used() {
        Some(stack) => {
            let _ = writeln!(out, ", stack {stack} bytes");
        }
        None => {
            let _ = writeln!(out);
        }
    }
}
