//! Byte-level BPE run directories (`trainer/EXPORT.md`, export_version 2): `tools pack` turns
//! one into a format-v4 blob, `inspect` shows its tokenizer, `generate`, `chat` and `eval` take
//! any UTF-8 through the built binary; inconsistent or hostile BPE run dirs are refused with an
//! error naming the problem and no output file.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{set_config, tmp, write_run, write_weights_for};
use runtime::Model;

/// The merges of the test vocabulary: " t", "he", " the", "é" (as its two bytes).
const MERGES: [[u16; 2]; 4] = [[32, 116], [104, 101], [256, 257], [0xc3, 0xa9]];

/// `vocab.json` of a BPE run: each token's bytes as ISO-8859-1 characters.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn tokens(merges: &[[u16; 2]]) -> Vec<Vec<u8>> {
    let mut t: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for &[l, r] in merges {
        let s = [t[l as usize].clone(), t[r as usize].clone()].concat();
        t.push(s);
    }
    t
}

/// A complete BPE run dir (the 1-layer model of `common::write_run`, vocabulary 256 + 4).
fn write_bpe_run(dir: &Path) {
    write_run(dir);
    let v = 256 + MERGES.len();
    set_config(dir, "export_version", serde_json::json!(2));
    set_config(dir, "tokenizer", serde_json::json!("bpe"));
    set_config(dir, "bpe_vocab", serde_json::json!(512));
    set_config(dir, "vocab_size", serde_json::json!(v));
    write_vocab(dir, &tokens(&MERGES));
    write_tokenizer(dir, serde_json::json!(MERGES));
    write_weights_for(dir, v, false);
}

fn write_vocab(dir: &Path, tokens: &[Vec<u8>]) {
    let strings: Vec<String> = tokens.iter().map(|t| latin1(t)).collect();
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&strings).unwrap(),
    )
    .unwrap();
}

fn write_tokenizer(dir: &Path, merges: serde_json::Value) {
    let t = serde_json::json!({
        "kind": "bpe", "byte_tokens": 256, "merges": merges,
        "train_tokens": 1000, "val_tokens": 100,
        "train_chars_per_token": 2.6, "val_chars_per_token": 2.5,
    });
    std::fs::write(dir.join("tokenizer.json"), t.to_string()).unwrap();
}

fn set_tokenizer_key(dir: &Path, key: &str, value: serde_json::Value) {
    let p = dir.join("tokenizer.json");
    let mut t: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    t[key] = value;
    std::fs::write(p, t.to_string()).unwrap();
}

fn run(args: &[&str]) -> (String, String) {
    let out = common::tools(args);
    assert!(
        out.status.success(),
        "tools {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bpe_run_packs_as_v4_and_takes_any_text() {
    let dir = tmp("bpe-ok");
    write_bpe_run(&dir);
    let d = dir.display().to_string();
    let out = dir.join("bpe.bin").display().to_string();
    run(&["pack", "--run", &d, "--out", &out]);
    let blob = std::fs::read(&out).unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    assert_eq!(model.version_major(), 4);
    let merges: Vec<[u16; 2]> = model
        .merges()
        .unwrap()
        .iter()
        .map(|(l, r)| [l, r])
        .collect();
    assert_eq!(merges, MERGES);
    assert_eq!(model.chars_per_kilotoken(), Some(2500));
    assert_eq!(model.token_bytes(258), Some(&b" the"[..]));

    // inspect: text and JSON name the tokenizer.
    let (text, _) = run(&["inspect", &out]);
    assert!(text.contains("format        v4.0"), "{text}");
    assert!(
        text.contains("byte-level BPE: 256 byte tokens + 4 merges, 2.500 chars/token"),
        "{text}"
    );
    assert!(text.contains(r#"" t"+"he"=" the""#), "{text}");
    assert!(text.contains(r#"b"\xc3"+b"\xa9"="é""#), "{text}");
    assert!(text.contains("nats/token"), "{text}");
    let (json, _) = run(&["inspect", &out, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tokenizer"], "bpe");
    assert_eq!(v["merges"], serde_json::json!(MERGES));
    assert_eq!(v["chars_per_token"], 2.5);

    // generate: characters no token names, never "not in the vocabulary".
    let prompt = "Caf\u{e9} \u{2603} \u{1f600} the";
    let (gen, _) = run(&[
        "generate", "--model", &out, "--prompt", prompt, "--tokens", "20", "--seed", "3",
    ]);
    assert!(gen.starts_with(prompt), "{gen:?}");

    // chat: the same protocol, any line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tools"))
        .args(["chat", "--model", &out, "--tokens", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("na\u{ef}ve \u{fc}ber \u{65e5}\u{672c}\n".as_bytes())
        .unwrap();
    let done = child.wait_with_output().unwrap();
    let reply = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{reply}");
    assert!(reply.contains("vocab 260"), "{reply}");
    assert!(!reply.contains("error"), "{reply}");

    // eval: nats per character over a text with characters outside every merge.
    let data = dir.join("text.txt");
    let text: String = "the theme of the \u{e9}t\u{e9}, \u{2603}\n".repeat(200);
    std::fs::write(&data, &text).unwrap();
    let (json, _) = run(&[
        "eval",
        "--model",
        &out,
        "--data",
        &data.display().to_string(),
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["tokenizer"], "bpe");
    let per_token = r["integer_val_loss"].as_f64().unwrap();
    let per_char = r["nats_per_char"].as_f64().unwrap();
    let (positions, chars) = (
        r["positions"].as_f64().unwrap(),
        r["scored_chars"].as_f64().unwrap(),
    );
    assert!(chars > positions, "{r}");
    assert!((per_char * chars - per_token * positions).abs() < 1e-6 * per_token * positions);
    assert!(r["chars_per_token"].as_f64().unwrap() > 1.0);
    let (text, _) = run(&[
        "eval",
        "--model",
        &out,
        "--data",
        &data.display().to_string(),
    ]);
    assert!(
        text.contains("nats/char over") && text.contains("bpe tokenizer"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tools pack` on `dir` fails: the error, with no output (or temporary) file left.
fn pack_err(dir: &Path) -> String {
    let out = dir.join("model.bin");
    let err = tools::pack::pack(dir, &out).unwrap_err();
    assert!(!out.exists(), "a failed pack left {}", out.display());
    format!("{err:#}")
}

#[test]
fn inconsistent_bpe_runs_are_refused() {
    type Break = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "v2-without-tokenizer",
            Box::new(|d| set_config(d, "tokenizer", serde_json::Value::Null)),
            "export_version 2 with tokenizer None",
        ),
        (
            "v1-with-bpe",
            Box::new(|d| set_config(d, "export_version", serde_json::json!(1))),
            "export_version 1 with tokenizer Some(\"bpe\")",
        ),
        (
            "no-tokenizer-json",
            Box::new(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap()),
            "tokenizer.json is missing",
        ),
        (
            "kind",
            Box::new(|d| set_tokenizer_key(d, "kind", serde_json::json!("wordpiece"))),
            "kind \"wordpiece\"",
        ),
        (
            "byte-tokens",
            Box::new(|d| set_tokenizer_key(d, "byte_tokens", serde_json::json!(255))),
            "byte_tokens is 255",
        ),
        (
            "count",
            Box::new(|d| write_tokenizer(d, serde_json::json!(&MERGES[..3]))),
            "vocab.json has 260 tokens but",
        ),
        (
            "self-reference",
            Box::new(|d| {
                write_tokenizer(
                    d,
                    serde_json::json!([[32, 116], [104, 101], [258, 257], [0xc3, 0xa9]]),
                )
            }),
            "merge 2 names token 258",
        ),
        (
            "out-of-range",
            Box::new(|d| {
                write_tokenizer(
                    d,
                    serde_json::json!([[32, 116], [104, 101], [256, 65535], [0xc3, 0xa9]]),
                )
            }),
            "merge 2 names token 65535",
        ),
        (
            "not-a-concatenation",
            Box::new(|d| {
                let mut t = tokens(&MERGES);
                t[259] = b"xyz".to_vec();
                write_vocab(d, &t);
            }),
            "token 259 is not the concatenation of merge 3",
        ),
        (
            "byte-token",
            Box::new(|d| {
                let mut t = tokens(&MERGES);
                t[65] = b"AA".to_vec();
                write_vocab(d, &t);
            }),
            "token 65 must be the single byte 0x41",
        ),
        (
            "not-latin1",
            Box::new(|d| {
                let mut strings: Vec<String> = tokens(&MERGES).iter().map(|t| latin1(t)).collect();
                strings[259] = "\u{e9}".into();
                std::fs::write(
                    d.join("vocab.json"),
                    serde_json::to_string(&strings).unwrap(),
                )
                .unwrap();
            }),
            // "é" as one ISO-8859-1 character is the byte 0xe9: token 233, not c3 a9.
            "token 259 \"é\" repeats token 233",
        ),
        (
            "above-latin1",
            Box::new(|d| {
                let mut strings: Vec<String> = tokens(&MERGES).iter().map(|t| latin1(t)).collect();
                strings[259] = "\u{2603}".into();
                std::fs::write(
                    d.join("vocab.json"),
                    serde_json::to_string(&strings).unwrap(),
                )
                .unwrap();
            }),
            "character above U+00FF",
        ),
        (
            "unknown-version",
            Box::new(|d| set_config(d, "export_version", serde_json::json!(3))),
            "export_version 3 is unknown",
        ),
    ];
    for (name, break_it, want) in cases {
        let dir = tmp(&format!("bpe-bad-{name}"));
        write_bpe_run(&dir);
        break_it(&dir);
        let err = pack_err(&dir);
        eprintln!("{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_character_run_still_packs_as_before() {
    let dir = tmp("char-still");
    write_run(&dir);
    let blob = tools::pack::pack(&dir, &dir.join("c.bin")).unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    assert!(m.merges().is_none());
    assert_eq!(m.version_major(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
