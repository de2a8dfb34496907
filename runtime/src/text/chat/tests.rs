//! The protocol against a scripted terminal and the shipped model: replies equal a direct
//! `Generator` run, errors are one line and the chat goes on, Ctrl-C and type-ahead work.

use std::collections::VecDeque;
use std::string::String;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::{decode, encode, session_bytes, Generator, Model};

static BLOB: &[u8] = include_bytes!("../../../../models/shakespeare-mcu.bin");

/// A terminal with scripted input (read between tokens) and a clock that advances 1000
/// counts per reading.
#[derive(Default)]
struct Script {
    out: Vec<u8>,
    pending: VecDeque<u8>,
    /// Ctrl-C arrives on this `read` call (counting from 1).
    ctrl_c_on_read: Option<usize>,
    reads: usize,
    time: u64,
    echo: bool,
    crlf: bool,
    /// Writes fail after this many bytes.
    fail_after: Option<usize>,
}

#[derive(Debug, PartialEq)]
struct Gone;

impl Terminal for Script {
    type Error = Gone;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        if self
            .fail_after
            .is_some_and(|n| self.out.len() + bytes.len() > n)
        {
            return Err(Gone);
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
    fn read(&mut self) -> Option<u8> {
        self.reads += 1;
        if self.ctrl_c_on_read == Some(self.reads) {
            return Some(CTRL_C);
        }
        self.pending.pop_front()
    }
    fn now(&mut self) -> u64 {
        self.time += 1000;
        self.time
    }
    fn clock(&self) -> Clock {
        Clock {
            per_second: 1_000_000,
            unit: "µs",
            note: "test clock",
        }
    }
    fn echo(&self) -> bool {
        self.echo
    }
    fn crlf(&self) -> bool {
        self.crlf
    }
}

fn model() -> Model<'static> {
    Model::from_bytes(BLOB).unwrap()
}

fn with_chat<R>(f: impl FnOnce(&mut Chat<'_, '_>) -> R) -> R {
    let model = model();
    let ctx = model.config().ctx_len;
    let mut mem = vec![0u8; session_bytes(model.config(), ctx)];
    let session = Session::new(model, ctx, &mut mem).unwrap();
    let mut chat = Chat::new(Ok(session), Settings::DEFAULT);
    f(&mut chat)
}

/// What `tools generate` prints: the prompt, then the continuation.
fn reference(prompt: &[u8], s: Settings) -> Vec<u8> {
    let model = model();
    let ctx = model.config().ctx_len;
    let mut mem = vec![0u8; session_bytes(model.config(), ctx)];
    let mut session = Session::new(model, ctx, &mut mem).unwrap();
    let mut ids = vec![0u16; prompt.len()];
    let n = encode(&model, prompt, &mut ids).unwrap();
    let mut out = prompt.to_vec();
    for t in Generator::new(&mut session, &ids[..n], s.sampler()).take(s.tokens as usize) {
        out.extend_from_slice(decode(&model, t.unwrap()));
    }
    out
}

fn type_line(chat: &mut Chat<'_, '_>, term: &mut Script, line: &[u8]) -> Vec<u8> {
    let start = term.out.len();
    for &b in line.iter().chain(b"\n") {
        chat.feed(b, term).unwrap();
    }
    term.out[start..].to_vec()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_session_of_prompts_commands_and_errors() {
    with_chat(|chat| {
        let mut term = Script::default();
        chat.greet(&mut term).unwrap();
        let greeting = text(&term.out);
        assert!(
            greeting.starts_with("bitnet-mcu chat: model vocab 65"),
            "{greeting}"
        );
        assert!(
            greeting.ends_with("type a prompt, or /help\n> "),
            "{greeting}"
        );

        let mut s = Settings {
            tokens: 24,
            ..Settings::DEFAULT
        };
        assert_eq!(
            text(&type_line(chat, &mut term, b"/tokens 24")),
            "ok: temperature 0.800, top-k 0, seed 0, tokens 24\n> "
        );
        let first = type_line(chat, &mut term, b"ROMEO:");
        let mut want = reference(b"ROMEO:", s);
        want.extend_from_slice(b"\n> ");
        assert_eq!(text(&first), text(&want));

        for (line, change) in [
            (&b"/temp 1.2"[..], (1200, 0, 0)),
            (b"/topk 10", (1200, 10, 0)),
            (b"/seed 7", (1200, 10, 7)),
        ] {
            let reply = text(&type_line(chat, &mut term, line));
            assert!(reply.starts_with("ok: "), "{reply}");
            (s.temperature_milli, s.top_k, s.seed) = change;
        }
        assert_eq!(chat.settings(), s);
        let mut want = reference(b"JULIET:\n", s);
        want.extend_from_slice(b"\n> ");
        assert_eq!(
            text(&type_line(chat, &mut term, b"JULIET:\\n")),
            text(&want)
        );

        // Errors: one line each, settings untouched.
        for (line, starts) in [
            (
                &b"ROMEO: \xc3\xa9"[..],
                "error: character '\u{e9}' (byte 0xc3) at byte offset 7",
            ),
            (b"/temp hot", "error: /temp expects a decimal"),
            (b"/frob", "error: unknown command \"/frob\""),
            (b"a\\tb", "error: a backslash in a prompt"),
        ] {
            let reply = text(&type_line(chat, &mut term, line));
            assert!(reply.starts_with(starts), "{reply:?}");
            assert_eq!(reply.matches('\n').count(), 1, "{reply:?}");
            assert!(reply.ends_with("\n> "));
        }
        let reply = text(&type_line(chat, &mut term, &[b'a'; MAX_LINE + 1]));
        assert_eq!(reply, "error: line longer than 256 bytes\n> ");
        assert_eq!(chat.settings(), s);

        // The seed applies afresh: the same prompt gives the same text again.
        type_line(chat, &mut term, b"/seed 0");
        type_line(chat, &mut term, b"/temp 0.8");
        type_line(chat, &mut term, b"/topk 0");
        assert_eq!(type_line(chat, &mut term, b"ROMEO:"), first);
        assert_eq!(type_line(chat, &mut term, b"ROMEO:"), first);
        assert_eq!(
            chat.settings(),
            Settings {
                tokens: 24,
                ..Settings::DEFAULT
            }
        );

        let help = text(&type_line(chat, &mut term, b"/help"));
        for cmd in [
            "/temp", "/topk", "/seed", "/tokens", "/cores", "/stats", "/help", "Ctrl-C",
        ] {
            assert!(help.contains(cmd), "{help}");
        }
        assert!(help.contains("settings: temperature 0.800, top-k 0, seed 0, tokens 24"));

        // The clock advances 1000 counts per reading (two per token) at 1 MHz: 1000 tokens/s.
        let stats = text(&type_line(chat, &mut term, b"/stats"));
        assert!(
            stats.starts_with(
                "stats: prompt 6 tokens and the first token in 1000 µs, then 23 tokens in 23000 \
                 µs: 1000.000 tokens/s (test clock); 1 core\n"
            ),
            "{stats}"
        );
        assert!(stats.contains("memory: working memory "), "{stats}");
    });
}

#[test]
fn echo_and_crlf_are_what_a_serial_terminal_needs() {
    with_chat(|chat| {
        let mut term = Script {
            echo: true,
            crlf: true,
            ..Script::default()
        };
        type_line(chat, &mut term, b"/tokens 30");
        let reply = type_line(chat, &mut term, b"JULIET:\\n");
        let plain = reference(
            b"JULIET:\n",
            Settings {
                tokens: 30,
                ..Settings::DEFAULT
            },
        );
        let mut want = b"JULIET:\\n\r\n".to_vec();
        for &b in &plain {
            if b == b'\n' {
                want.push(b'\r');
            }
            want.push(b);
        }
        want.extend_from_slice(b"\r\n> ");
        assert_eq!(text(&reply), text(&want));
        // Backspace is echoed as erase; the edited line is what runs.
        let reply = type_line(chat, &mut term, b"/frox\x08b");
        assert!(text(&reply).starts_with("/frox\x08 \x08b\r\nerror: unknown command \"/frob\""));
    });
}

#[test]
fn ctrl_c_stops_a_generation_and_the_chat_goes_on() {
    with_chat(|chat| {
        let mut term = Script {
            ctrl_c_on_read: Some(5),
            ..Script::default()
        };
        let reply = type_line(chat, &mut term, b"ROMEO:");
        let full = reference(b"ROMEO:", Settings::DEFAULT);
        // Four tokens ran before the fifth poll saw Ctrl-C.
        let cut = reference(
            b"ROMEO:",
            Settings {
                tokens: 4,
                ..Settings::DEFAULT
            },
        );
        let mut want = cut.clone();
        want.extend_from_slice(b"^C\n> ");
        assert_eq!(text(&reply), text(&want));
        assert!(full.len() > cut.len());
        let stats = text(&type_line(chat, &mut term, b"/stats"));
        assert!(stats.contains("then 3 tokens"), "{stats}");
        assert!(stats.contains(", interrupted"), "{stats}");
        // Ctrl-C while typing throws the line away.
        let mut out = Vec::new();
        for &b in b"ROM\x03" {
            chat.feed(b, &mut term).unwrap();
        }
        out.extend_from_slice(&term.out[term.out.len() - 5..]);
        assert_eq!(text(&out), "^C\n> ");
        let mut want = full;
        want.extend_from_slice(b"\n> ");
        assert_eq!(text(&type_line(chat, &mut term, b"ROMEO:")), text(&want));
    });
}

#[test]
fn bytes_typed_during_a_generation_run_afterwards() {
    with_chat(|chat| {
        let mut term = Script::default();
        type_line(chat, &mut term, b"/tokens 5");
        term.pending.extend(b"/seed 9\nROMEO:\n");
        let start = term.out.len();
        type_line(chat, &mut term, b"ROMEO:");
        while chat.poll(&mut term).unwrap() {}
        let s = Settings {
            tokens: 5,
            ..Settings::DEFAULT
        };
        let mut want = reference(b"ROMEO:", s);
        want.extend_from_slice(b"\n> ok: temperature 0.800, top-k 0, seed 9, tokens 5\n> ");
        want.extend_from_slice(&reference(b"ROMEO:", Settings { seed: 9, ..s }));
        want.extend_from_slice(b"\n> ");
        assert_eq!(text(&term.out[start..]), text(&want));
    });
}

#[test]
fn without_a_model_prompts_explain_and_commands_work() {
    let mut chat = Chat::new(
        Err(ModelProblem::Absent {
            address: 0x1010_0000,
        }),
        Settings::DEFAULT,
    );
    let mut term = Script::default();
    chat.greet(&mut term).unwrap();
    assert!(text(&term.out)
        .starts_with("bitnet-mcu chat: no model: the model partition at 0x10100000 is empty"));
    let reply = text(&type_line(&mut chat, &mut term, b"ROMEO:"));
    assert!(reply.starts_with("error: no model: "), "{reply}");
    assert_eq!(reply.matches('\n').count(), 1);
    assert!(text(&type_line(&mut chat, &mut term, b"/help")).contains("/tokens N"));
    let stats = text(&type_line(&mut chat, &mut term, b"/stats"));
    assert_eq!(stats, "stats: no run yet\nmemory: no model loaded\n> ");
    let invalid = ModelProblem::Invalid(LoadError::BadMagic);
    assert_eq!(
        std::format!("{invalid}"),
        "the model is not valid: not a model blob (bad magic)"
    );
}

#[test]
fn a_closed_output_ends_the_chat_with_its_error() {
    with_chat(|chat| {
        let mut term = Script {
            fail_after: Some(10),
            ..Script::default()
        };
        let mut result = Ok(());
        for &b in b"ROMEO:\n" {
            result = chat.feed(b, &mut term);
        }
        assert_eq!(result, Err(Gone));
    });
}

#[test]
fn rates_are_exact_integers() {
    assert_eq!(milli_rate(99, 150_000_000, 150_000_000), Some(99_000));
    assert_eq!(milli_rate(1, 3, 1), Some(333));
    assert_eq!(milli_rate(5, 0, 1), None);
    assert_eq!(milli_rate(u32::MAX, 1, u64::MAX), Some(u64::MAX));
}

#[test]
fn cores_are_chosen_where_the_session_has_workers() {
    // Without workers: one core, and `/cores 2` says so; prompts are unchanged.
    with_chat(|chat| {
        let mut term = Script::default();
        assert_eq!(
            text(&type_line(chat, &mut term, b"/cores")),
            "cores: 1 of 1\n> "
        );
        assert_eq!(
            text(&type_line(chat, &mut term, b"/cores 2")),
            "error: /cores 2: this build runs the model on at most 1 core\n> "
        );
        assert_eq!(
            text(&type_line(chat, &mut term, b"/cores 1")),
            "ok: cores 1\n> "
        );
        let reply = text(&type_line(chat, &mut term, b"/cores 3"));
        assert!(reply.starts_with("error: /cores expects 1 or 2"), "{reply}");
    });
    // With two-core workers: both settings give `tools generate`'s text. The two halves take
    // turns on this thread (the split's schedule without threads: these tests also run under
    // WASI, which has none; runtime/tests/workers.rs runs them on two threads).
    struct TwoInTurn;
    impl crate::pass::workers::Workers for TwoInTurn {
        fn cores(&self) -> usize {
            2
        }
        fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
            here();
            there();
        }
    }
    let model = model();
    let ctx = model.config().ctx_len;
    let mut mem = vec![0u8; crate::session_bytes_workers(model.config(), ctx, 1)];
    let session = Session::with_workers(model, ctx, 1, &TwoInTurn, &mut mem).unwrap();
    let mut chat = Chat::new(Ok(session), Settings::DEFAULT);
    let mut term = Script::default();
    type_line(&mut chat, &mut term, b"/tokens 30");
    assert_eq!(
        text(&type_line(&mut chat, &mut term, b"/cores")),
        "cores: 2 of 2\n> "
    );
    let mut want = reference(
        b"ROMEO:",
        Settings {
            tokens: 30,
            ..Settings::DEFAULT
        },
    );
    want.extend_from_slice(b"\n> ");
    assert_eq!(
        text(&type_line(&mut chat, &mut term, b"ROMEO:")),
        text(&want)
    );
    let stats = text(&type_line(&mut chat, &mut term, b"/stats"));
    assert!(stats.contains("(test clock); 2 cores"), "{stats}");
    assert_eq!(
        text(&type_line(&mut chat, &mut term, b"/cores 1")),
        "ok: cores 1\n> "
    );
    assert_eq!(
        text(&type_line(&mut chat, &mut term, b"ROMEO:")),
        text(&want)
    );
    let stats = text(&type_line(&mut chat, &mut term, b"/stats"));
    assert!(stats.contains("(test clock); 1 core\n"), "{stats}");
}
