//! `tools chat`: the firmware's serial protocol ([`runtime::chat`]) on stdin/stdout, so the
//! board's prompt can be tried, and tested, without a board.
//!
//! Lines come from stdin (a terminal or a pipe); replies go to stdout. Ctrl-C (SIGINT) stops
//! a generation (as byte `0x03` does on the board's serial port); at the `> ` prompt, or while
//! input is read, it quits. SIGTERM and SIGHUP end the process at once, during a generation too
//! ([`crate::signals`]). End of input (or a Ctrl-D byte in it) ends the chat.

use std::io::{Read, Write};
use std::time::Instant;

use anyhow::{anyhow, Result};
use runtime::chat::{Chat, Clock, Settings, Terminal, CTRL_C, CTRL_D};
use runtime::workers::Threads;
use runtime::{session_bytes_workers, Model, Session};

use crate::signals;

/// stdout as a [`Terminal`]: no echo (the tty echoes), plain `\n`, a nanosecond clock.
pub struct StdTerminal<W: Write> {
    out: W,
    start: Instant,
}

impl<W: Write> StdTerminal<W> {
    /// A terminal writing to `out`.
    pub fn new(out: W) -> Self {
        StdTerminal {
            out,
            start: Instant::now(),
        }
    }
}

impl<W: Write> Terminal for StdTerminal<W> {
    type Error = std::io::Error;

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn read(&mut self) -> Option<u8> {
        signals::take_interrupt().then_some(CTRL_C)
    }

    fn now(&mut self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn clock(&self) -> Clock {
        Clock {
            per_second: 1_000_000_000,
            unit: "ns",
            note: "host timer",
        }
    }
}

/// Runs the protocol over `model` with `input` as the typed bytes and `term` as the screen,
/// until the input ends. The session spans the model's whole context, as in `tools generate`.
/// It runs on one core; `/cores 2` splits each token between two threads (the split pass of
/// the two-core boards, `runtime::workers`), with the same text.
pub fn chat<T: Terminal<Error = std::io::Error>>(
    model: Model<'_>,
    settings: Settings,
    input: &mut impl Read,
    term: &mut T,
) -> Result<()> {
    let ctx = model.config().ctx_len;
    let mut mem = crate::memory::zeroed(session_bytes_workers(model.config(), ctx, 1))?;
    let mut session =
        Session::with_workers(model, ctx, 1, &Threads, &mut mem).map_err(|e| anyhow!("{e}"))?;
    session
        .set_cores(1)
        .map_err(|_| anyhow!("the session has no core"))?;
    let mut chat = Chat::new(Ok(session), settings);
    chat.greet(term)?;
    let mut buf = [0u8; 4096];
    let mut last = b'\n';
    'input: loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        for &byte in &buf[..n] {
            // Only a line end (or Ctrl-D) runs a line: Ctrl-C stops that line's generation.
            // While other bytes stream in (say from /dev/zero), Ctrl-C quits.
            let fed = if matches!(byte, b'\n' | b'\r' | CTRL_D) {
                let _running = signals::interruptible();
                chat.feed(byte, term)
            } else {
                chat.feed(byte, term)
            };
            fed?;
            last = byte;
            if chat.ended() {
                break 'input;
            }
        }
    }
    // A last line without its line end still runs.
    if !chat.ended() && last != b'\n' && last != b'\r' {
        let _running = signals::interruptible();
        chat.feed(b'\n', term)?;
    }
    term.write(b"\n")?;
    term.flush()?;
    Ok(())
}

/// The starting settings from `tools chat`'s flags (those of `tools generate`).
pub fn settings(temperature: f64, top_k: u32, seed: u64, tokens: u32) -> Result<Settings> {
    let sampler = crate::generate::sampler(temperature, top_k, seed)?;
    if tokens > runtime::chat::MAX_TOKENS {
        anyhow::bail!("--tokens must be at most {}", runtime::chat::MAX_TOKENS);
    }
    Ok(Settings {
        temperature_milli: sampler.temperature_milli,
        top_k,
        seed,
        tokens,
    })
}
