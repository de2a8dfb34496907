//! The firmware's interactive mode under QEMU (`firmware/run-qemu.sh --serial`): the chat
//! protocol on the UART, the model read from the flash partition at 0x10100000 (placed there
//! by QEMU's generic loader, as `tools uf2` places it on a Pico 2).
//!
//! A scripted session (prompts, commands, errors, a prompt again) must give exactly the
//! transcript the same protocol gives on the host (`runtime::chat`, with the board's echo and
//! CRLF line ends), and every prompt's reply must be `tools generate`'s output byte for byte.
//!
//! Needs `qemu-system-arm` and the `thumbv8m.main-none-eabihf` target (`.ci/run` installs
//! both); without QEMU the tests say so LOUDLY on stderr and pass without checking anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// Random-weight models (the runtime's test support).
#[path = "../../runtime/tests/common/mod.rs"]
mod common;

use runtime::chat::{Chat, Clock, Settings, Terminal, CTRL_D};
use runtime::{session_bytes, Model, Session};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have_qemu() -> bool {
    let ok = Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "\n*** SKIPPED qemu_serial: qemu-system-arm is not installed \
             (apt-get install qemu-system-arm); the serial protocol was NOT checked on the firmware ***\n"
        );
    }
    ok
}

/// The firmware's own target dir (see qemu_parity.rs).
fn firmware_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("firmware"),
        None => repo().join("firmware/target"),
    }
}

/// Runs `run-qemu.sh --serial MODEL` with `input` on stdin; returns stdout.
fn run_serial(model: &str, input: &[u8]) -> Vec<u8> {
    run_serial_on("qemu", model, input)
}

/// [`run_serial`] on `board` (`qemu`: mps2-an505, one core; `an521`: mps2-an521, two cores).
fn run_serial_on(board: &str, model: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(repo().join("firmware/run-qemu.sh"))
        .args(["--serial", model])
        .env("BOARD", board)
        .env_remove("FIRMWARE_CORES")
        .env("CARGO_TARGET_DIR", firmware_target_dir())
        .env("DEFMT_QUIET", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run firmware/run-qemu.sh");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Write from a thread: the firmware reads as it goes, so a long script can fill the pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "run-qemu.sh --serial failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A terminal like the board's: echo, CRLF, nothing typed during generation.
#[derive(Default)]
struct BoardLike(Vec<u8>);

impl Terminal for BoardLike {
    type Error = std::convert::Infallible;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
    fn read(&mut self) -> Option<u8> {
        None
    }
    fn now(&mut self) -> u64 {
        0
    }
    fn clock(&self) -> Clock {
        Clock {
            per_second: 1,
            unit: "",
            note: "",
        }
    }
    fn echo(&self) -> bool {
        true
    }
    fn crlf(&self) -> bool {
        true
    }
}

/// The transcript of `input` (then Ctrl-D, as run-qemu.sh sends at the end) on the host.
fn host_transcript(model: Model<'_>, input: &[u8]) -> Vec<u8> {
    let ctx = model.config().ctx_len;
    let mut mem = vec![0u8; session_bytes(model.config(), ctx)];
    let session = Session::new(model, ctx, &mut mem).unwrap();
    let mut chat = Chat::new(Ok(session), Settings::DEFAULT);
    let mut term = BoardLike::default();
    let Ok(()) = chat.greet(&mut term);
    for &b in input.iter().chain(&[CTRL_D]) {
        let Ok(()) = chat.feed(b, &mut term);
    }
    term.0
}

/// `/stats` lines hold timings and stack depths, which differ between host and board.
fn mask_stats(transcript: &[u8]) -> String {
    String::from_utf8_lossy(transcript)
        .split("\r\n")
        .map(|line| {
            if line.starts_with("stats: ") || line.starts_with("memory: ") {
                "<stats>"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn a_serial_session_matches_the_host_and_tools_generate() {
    if !have_qemu() {
        return;
    }
    let model_path = tools::blob::shipped_model();
    let bytes = std::fs::read(&model_path).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let long_line = "a".repeat(300);
    let script = format!(
        "/tokens 40\nROMEO:\n/temp 1.2\n/topk 10\n/seed 7\nJULIET:\\n\n\
         /temp lukewarm\nROMEO: \u{e9}\n/nope\n{long_line}\n/stats\n\
         /tokens 300\n/temp 0.6\n/topk 40\n/seed 42\nFirst\n/help\n/tokens 40\n/temp 0.8\n/topk 0\n/seed 0\nROMEO:"
    );
    let device = run_serial(model_path.to_str().unwrap(), script.as_bytes());
    let host = host_transcript(model, script.as_bytes());
    assert_eq!(
        mask_stats(&device),
        mask_stats(&host),
        "the QEMU firmware's transcript differs from the host protocol's"
    );

    // Each prompt's reply is `tools generate`'s output, after the echoed line.
    let device_text = String::from_utf8_lossy(&device).into_owned();
    for (typed, prompt, tokens, seed, temp, top_k) in [
        ("ROMEO:", "ROMEO:", 40, 0, 0.8, 0),
        ("JULIET:\\n", "JULIET:\n", 40, 7, 1.2, 10),
        ("First", "First", 300, 42, 0.6, 40),
    ] {
        let config = tools::generate::sampler(temp, top_k, seed).unwrap();
        let mut host = Vec::new();
        tools::generate::generate(model, prompt, tokens, config, &mut host).unwrap();
        let mut want = format!("> {typed}\r\n").into_bytes();
        want.extend(crlf(&host));
        want.extend_from_slice(b"\r\n> ");
        let want = String::from_utf8(want).unwrap();
        let found = device_text.matches(&want).count();
        eprintln!(
            "{prompt:?} tokens {tokens} seed {seed} T {temp} top-k {top_k}: {} bytes, {}",
            host.len(),
            if found > 0 { "identical" } else { "DIFFERENT" }
        );
        assert!(
            found > 0,
            "no reply equal to tools generate for {prompt:?}:\nwant {want:?}\nin {device_text:?}"
        );
    }
    // The same prompt with the same settings again gives the same text (the seed applies afresh).
    assert_eq!(device_text.matches("> ROMEO:\r\nROMEO:").count(), 2);
    // The errors were one line each and the session went on.
    for error in [
        "error: /temp expects a decimal",
        "error: character '\u{e9}' (byte 0xc3) at byte offset 7 is not in the vocabulary",
        "error: unknown command \"/nope\" (try /help)",
        "error: line longer than 256 bytes",
    ] {
        assert!(device_text.contains(error), "{error}");
    }
    assert!(device_text.contains("tokens/s (QEMU instructions taken as 150 MHz cycles"));
}

#[test]
fn without_a_valid_model_the_board_says_why_and_keeps_serving() {
    if !have_qemu() {
        return;
    }
    let out = String::from_utf8(run_serial("none", b"ROMEO:\n/help\n")).unwrap();
    assert!(
        out.starts_with(
            "bitnet-mcu chat: no model: the model partition at 0x10100000 is empty (write one: \
             tools uf2 MODEL.bin --out MODEL.uf2"
        ),
        "{out}"
    );
    assert!(out.contains("> ROMEO:\r\nerror: no model: "), "{out}");
    assert!(
        out.contains("/tokens N   tokens generated per prompt"),
        "{out}"
    );

    // A corrupted blob in the partition: refused by its checksum.
    let mut blob = std::fs::read(tools::blob::shipped_model()).unwrap();
    let middle = blob.len() / 2;
    blob[middle] ^= 0x40;
    let dir = std::env::temp_dir().join(format!("qemu-serial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("corrupt.bin");
    std::fs::write(&bad, &blob).unwrap();
    let out = String::from_utf8(run_serial(bad.to_str().unwrap(), b"ROMEO:\n")).unwrap();

    // A valid model whose session (context 512) does not fit the board's arena (less than its
    // 512 KiB of SRAM: build.rs keeps reserves for the stack, statics and RAM code).
    let config = runtime::Config {
        ctx_len: 512,
        ..common::MCU
    };
    let big = dir.join("big.bin");
    std::fs::write(&big, common::random_model(config, 1).to_blob().unwrap()).unwrap();
    let too_big = String::from_utf8(run_serial(big.to_str().unwrap(), b"/help\n")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let needed = session_bytes(&config, 512);
    let head = format!(
        "bitnet-mcu chat: the flashed model needs {needed} bytes of working memory, the board has "
    );
    assert!(too_big.starts_with(&head), "{too_big}");
    let available: usize = too_big[head.len()..]
        .split("\r\n")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no arena size in {too_big:?}"));
    assert!(available < needed && available < 512 * 1024, "{too_big}");
    assert!(
        too_big.contains("/stats      speed of the last run"),
        "{too_big}"
    );

    assert!(
        out.starts_with("bitnet-mcu chat: the model is not valid: checksum mismatch"),
        "{out}"
    );
    assert!(
        out.contains("> ROMEO:\r\nerror: the model is not valid: checksum mismatch"),
        "{out}"
    );
}

#[test]
fn ctrl_c_stops_a_generation_without_a_reset() {
    if !have_qemu() {
        return;
    }
    // A million tokens would run for hours: only Ctrl-C (byte 0x03) can end this prompt in time.
    let out = String::from_utf8(run_serial(
        tools::blob::shipped_model().to_str().unwrap(),
        b"/tokens 1000000\nROMEO:\n\x03/tokens 5\nJULIET:\n",
    ))
    .unwrap();
    let bytes = std::fs::read(tools::blob::shipped_model()).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let config = tools::generate::sampler(0.8, 0, 0).unwrap();
    let mut juliet = Vec::new();
    tools::generate::generate(model, "JULIET:", 5, config, &mut juliet).unwrap();
    let after = format!(
        "^C\r\n> /tokens 5\r\nok: temperature 0.800, top-k 0, seed 0, tokens 5\r\n> JULIET:\r\n{}\r\n> ",
        String::from_utf8(crlf(&juliet)).unwrap()
    );
    assert!(out.contains("> ROMEO:\r\nROMEO:"), "{out}");
    assert!(
        out.ends_with(&after),
        "{out:?}\ndoes not end with\n{after:?}"
    );
}

/// A byte-level BPE model (format v4, random weights) in the partition: prompts of characters
/// no token names run without an error, and the transcript (its replies stream through the
/// UTF-8 hold-back, then the CRLF translation) is the host protocol's byte for byte; each reply
/// is `tools generate`'s output.
#[test]
fn a_bpe_model_takes_any_text_on_the_serial_line_as_on_the_host() {
    if !have_qemu() {
        return;
    }
    let config = runtime::Config {
        ffn_gated: true,
        ..common::TINY
    };
    let blob = common::random_bpe_model(config, 300, 21).to_blob().unwrap();
    let dir = std::env::temp_dir().join(format!("qemu-serial-bpe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bpe.bin");
    std::fs::write(&path, &blob).unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    let script = "/tokens 40\nCaf\u{e9} na\u{ef}ve \u{2603}\n/seed 3\n\u{65e5}\u{672c}\u{8a9e}\u{1f600} the\n";
    let device = run_serial(path.to_str().unwrap(), script.as_bytes());
    let host = host_transcript(model, script.as_bytes());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        device,
        host,
        "the QEMU firmware's transcript differs from the host protocol's:\n{:?}\n{:?}",
        String::from_utf8_lossy(&device),
        String::from_utf8_lossy(&host)
    );
    assert!(!String::from_utf8_lossy(&device).contains("error"));
    for (prompt, seed) in [
        ("Caf\u{e9} na\u{ef}ve \u{2603}", 0),
        ("\u{65e5}\u{672c}\u{8a9e}\u{1f600} the", 3),
    ] {
        let sampler = tools::generate::sampler(0.8, 0, seed).unwrap();
        let mut text = Vec::new();
        tools::generate::generate(model, prompt, 40, sampler, &mut text).unwrap();
        let mut want = format!("> {prompt}\r\n").into_bytes();
        want.extend(crlf(&text));
        want.extend_from_slice(b"\r\n> ");
        assert!(
            device.windows(want.len()).any(|w| w == want.as_slice()),
            "no reply equal to tools generate for {prompt:?}"
        );
    }
}

#[test]
fn the_two_core_twin_switches_cores_with_the_same_text() {
    if !have_qemu() {
        return;
    }
    // The two-core board starts on both cores; `/cores 1` and `/cores 2` switch between
    // prompts, and the text stays `tools generate`'s.
    let model_path = tools::blob::shipped_model();
    let out = String::from_utf8(run_serial_on(
        "an521",
        model_path.to_str().unwrap(),
        b"/cores\n/tokens 60\n/temp 0.9\n/topk 20\n/seed 5\nJULIET:\n/stats\n/cores 1\n/cores\n\
          JULIET:\n/stats\n/cores 3\n/cores 2\nJULIET:\n",
    ))
    .unwrap();
    let bytes = std::fs::read(&model_path).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let config = tools::generate::sampler(0.9, 20, 5).unwrap();
    let mut host = Vec::new();
    tools::generate::generate(model, "JULIET:", 60, config, &mut host).unwrap();
    let reply = format!(
        "> JULIET:\r\n{}\r\n> ",
        String::from_utf8(crlf(&host)).unwrap()
    );
    assert_eq!(
        out.matches(&reply).count(),
        3,
        "the replies on two cores, one core and two again are not all tools generate's \
         {reply:?}:\n{out}"
    );
    let expect_in_order = [
        "> /cores\r\ncores: 2 of 2\r\n",
        "; 2 cores",
        "> /cores 1\r\nok: cores 1\r\n",
        "> /cores\r\ncores: 1 of 2\r\n",
        "; 1 core\r\n",
        "> /cores 3\r\nerror: /cores expects 1 or 2",
        "> /cores 2\r\nok: cores 2\r\n",
    ];
    let mut at = 0;
    for want in expect_in_order {
        let found = out[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing (in order) from:\n{out}"));
        at += found + want.len();
    }
}
