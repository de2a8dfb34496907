//! `tools chat` (the binary, stdin → stdout): every prompt's reply is byte for byte what
//! `tools generate` prints with the settings in force; errors are one line and the chat goes on.

use std::io::Write;
use std::process::{Command, Stdio};

use runtime::Model;

fn chat(input: &str) -> (String, std::process::ExitStatus) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tools"))
        .arg("chat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (String::from_utf8(out.stdout).unwrap(), out.status)
}

fn generate(prompt: &str, tokens: usize, seed: u64, temperature: f64, top_k: u32) -> String {
    let bytes = std::fs::read(tools::blob::shipped_model()).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let config = tools::generate::sampler(temperature, top_k, seed).unwrap();
    let mut out = Vec::new();
    tools::generate::generate(model, prompt, tokens, config, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn replies_match_tools_generate_and_errors_do_not_stop_the_chat() {
    let script = "/tokens 30\nROMEO:\n/temp 1.2\n/topk 10\n/seed 7\nJULIET:\\n\n\
                  /temp lukewarm\nROMEO: \u{2603}\n/nope\n/stats\nKING:";
    let (out, status) = chat(script);
    assert!(status.success());
    // The vocabulary has no '>', so "\n> " separates the replies.
    let replies: Vec<&str> = out.split("\n> ").collect();
    assert!(
        replies[0].starts_with("bitnet-mcu chat: model vocab 65"),
        "{out}"
    );
    assert_eq!(
        replies[1],
        "ok: temperature 0.800, top-k 0, seed 0, tokens 30"
    );
    assert_eq!(replies[2], generate("ROMEO:", 30, 0, 0.8, 0));
    assert_eq!(
        replies[5],
        "ok: temperature 1.200, top-k 10, seed 7, tokens 30"
    );
    assert_eq!(replies[6], generate("JULIET:\n", 30, 7, 1.2, 10));
    assert!(
        replies[7].starts_with("error: /temp expects"),
        "{}",
        replies[7]
    );
    assert!(
        replies[8].starts_with("error: character '\u{2603}'"),
        "{}",
        replies[8]
    );
    assert_eq!(replies[9], "error: unknown command \"/nope\" (try /help)");
    assert!(
        replies[10].contains("tokens/s (host timer)"),
        "{}",
        replies[10]
    );
    // The last line had no line end: it still runs; then the chat ends with a newline.
    assert_eq!(replies[11], generate("KING:", 30, 7, 1.2, 10));
    assert_eq!(replies[12], "\n");
    assert_eq!(replies.len(), 13);
}

#[test]
fn cores_2_runs_on_two_threads_with_the_same_text() {
    let (out, status) =
        chat("/tokens 40\n/cores\n/cores 2\nROMEO:\n/stats\n/cores 1\nROMEO:\n/cores 3");
    assert!(status.success());
    let replies: Vec<&str> = out.split("\n> ").collect();
    assert_eq!(replies[2], "cores: 1 of 2");
    assert_eq!(replies[3], "ok: cores 2");
    assert_eq!(replies[4], generate("ROMEO:", 40, 0, 0.8, 0));
    assert!(
        replies[5].contains("(host timer); 2 cores"),
        "{}",
        replies[5]
    );
    assert_eq!(replies[6], "ok: cores 1");
    assert_eq!(replies[7], generate("ROMEO:", 40, 0, 0.8, 0));
    assert!(
        replies[8].starts_with("error: /cores expects 1 or 2"),
        "{}",
        replies[8]
    );
}
