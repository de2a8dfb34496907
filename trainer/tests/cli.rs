//! Bad inputs: each gives one clear `error:` line and a non-zero exit before any training.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn corpus(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the trainer and returns (exit code, stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .args(["--backend", "cpu", "--quiet"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn expect_error(args: &[&str], needle: &str) {
    let (code, err) = run(args);
    assert_ne!(code, 0, "args {args:?} should fail; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

/// `--data DATA --preset tiny --out OUT` followed by `extra`.
fn tiny<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--data", data, "--preset", "tiny", "--out", out];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let d = tmp("bad");
    let good = corpus(&d, &"to be or not to be, that is the question. ".repeat(40));
    let good = good.to_str().unwrap();
    let out = d.join("run");
    let out = out.to_str().unwrap();

    let missing = d.join("nope.txt");
    expect_error(&tiny(missing.to_str().unwrap(), out, &[]), "does not exist");

    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    expect_error(&tiny(empty.to_str().unwrap(), out, &[]), "empty");

    let short = d.join("short.txt");
    std::fs::write(&short, "abcdefghijklmnopqrstuvwxyz").unwrap();
    expect_error(&tiny(short.to_str().unwrap(), out, &[]), "needs at least");

    // An output dir below a regular file cannot be created (root can write anywhere else).
    let blocked = d.join("file-not-dir");
    std::fs::write(&blocked, "x").unwrap();
    let unwritable = blocked.join("run");
    expect_error(&tiny(good, unwritable.to_str().unwrap(), &[]), "output dir");

    expect_error(
        &tiny(good, out, &["--heads", "3"]),
        "must be n_heads (3) times",
    );
    expect_error(
        &tiny(good, out, &["--kv-heads", "3"]),
        "multiple of n_kv_heads (3)",
    );
    expect_error(
        &tiny(good, out, &["--dropout", "1"]),
        "dropout must be in [0, 1)",
    );
    expect_error(
        &tiny(good, out, &["--d-model", "60", "--heads", "4"]),
        "even head_dim",
    );
    expect_error(&tiny(good, out, &["--steps", "0"]), "steps");
    expect_error(
        &tiny(good, out, &["--steps", "20", "--float-steps", "20"]),
        "float-steps 20 must be less than steps 20",
    );
    expect_error(&tiny(good, out, &["--resume"]), "no run to resume");
    expect_error(&tiny(good, out, &["--ema", "0.9,1"]), "EMA decay");
    expect_error(&tiny(good, out, &["--ema", "nan"]), "EMA decay");
    expect_error(
        &tiny(good, out, &["--lr-stage2-end", "1.5"]),
        "lr stage-2 end must be in [0, 1]",
    );
    expect_error(
        &tiny(good, out, &["--ema", "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"]),
        "at most 8",
    );

    // An existing run is not overwritten.
    std::fs::create_dir_all(d.join("run")).unwrap();
    std::fs::write(d.join("run/config.json"), "{}").unwrap();
    expect_error(&tiny(good, out, &[]), "already holds a run");
    assert!(!Path::new(out).join("weights.safetensors").exists());
    let _ = std::fs::remove_dir_all(&d);
}

/// A two-step run of `preset` on `data` into `out` (batch 2, one validation batch) with `extra`
/// flags; (exit code, stderr).
fn run_short(data: &str, preset: &str, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "--data",
        data,
        "--preset",
        preset,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(["--steps", "2", "--batch", "2", "--val-batches", "1"]);
    args.extend_from_slice(extra);
    run(&args)
}

/// A run dir's JSON file `name`, parsed.
fn json_file(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
}

/// The `mcu` preset averages its weights (`ema_decays` [0.99] in config.json, one average in
/// summary.json); `--ema 0` turns that off and `--ema a,b` replaces it.
#[test]
fn ema_flag_sets_and_clears_the_averages() {
    let d = tmp("ema");
    let text = "to be or not to be, that is the question. ".repeat(40);
    let data = corpus(&d, &text);
    let data = data.to_str().unwrap();
    for (name, extra, want) in [
        ("preset", &[][..], vec![0.99]),
        ("off", &["--ema", "0"][..], vec![]),
        ("two", &["--ema", "0.5,0.9"][..], vec![0.5, 0.9]),
    ] {
        let out = d.join(name);
        let (code, err) = run_short(data, "mcu", &out, extra);
        assert_eq!(code, 0, "{err}");
        let json = |f: &str| json_file(&out, f);
        let decays: Vec<f64> =
            serde_json::from_value(json("config.json")["ema_decays"].clone()).unwrap();
        assert_eq!(decays, want, "{name}");
        let averages = json("summary.json")["averages"].as_array().unwrap().len();
        assert_eq!(averages, want.len(), "{name}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The `mcu` preset's FFN is gated at F 336; `--ffn-gated false` turns the gate off (config.json
/// then has no `ffn_gated`, as before it existed), `--ffn-gated` turns it on for another preset.
#[test]
fn ffn_gated_flag_follows_the_preset_and_switches() {
    let d = tmp("gated");
    let text = "to be or not to be, that is the question. ".repeat(40);
    let data = corpus(&d, &text);
    let data = data.to_str().unwrap();
    for (name, preset, extra, want) in [
        ("mcu", "mcu", &[][..], Some(true)),
        ("mcu-off", "mcu", &["--ffn-gated", "false"][..], None),
        ("tiny-on", "tiny", &["--ffn-gated"][..], Some(true)),
        ("tiny", "tiny", &[][..], None),
    ] {
        let out = d.join(name);
        let (code, err) = run_short(data, preset, &out, extra);
        assert_eq!(code, 0, "{name}: {err}");
        let config = json_file(&out, "config.json");
        assert_eq!(config["ffn_gated"].as_bool(), want, "{name}");
        if preset == "mcu" {
            assert_eq!(config["ffn_dim"], 336, "{name}");
        }
    }
    let (code, err) = run(&["--data", data, "--ffn-gated", "maybe"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("maybe"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `--tokenizer bpe --vocab N` writes a byte-level BPE run (export_version 2, `tokenizer` and
/// `bpe_vocab` in config.json, tokenizer.json, vocab.json as ISO-8859-1 byte strings, nats per
/// character in summary.json) that resumes; a character run's files stay as they were; bad
/// combinations are one line.
#[test]
fn bpe_tokenizer_writes_a_bpe_run_that_resumes() {
    let d = tmp("bpe");
    let text = "to be or not to be, that is the question: caf\u{e9}? ".repeat(200);
    let data = corpus(&d, &text);
    let data = data.to_str().unwrap();
    let out = d.join("bpe");
    let (code, err) = run_short(
        data,
        "tiny",
        &out,
        &["--tokenizer", "bpe", "--vocab", "300"],
    );
    assert_eq!(code, 0, "{err}");
    let config = json_file(&out, "config.json");
    assert_eq!(config["export_version"], 2);
    assert_eq!(config["tokenizer"], "bpe");
    assert_eq!(config["bpe_vocab"], 300);
    let v = config["vocab_size"].as_u64().unwrap() as usize;
    assert!(v > 256 && v <= 300, "{v}");
    let tokenizer = json_file(&out, "tokenizer.json");
    assert_eq!(tokenizer["kind"], "bpe");
    assert_eq!(tokenizer["merges"].as_array().unwrap().len(), v - 256);
    let vocab: Vec<String> = serde_json::from_value(json_file(&out, "vocab.json")).unwrap();
    assert_eq!(vocab.len(), v);
    assert_eq!(
        vocab[0xc3], "\u{c3}",
        "a byte token is its byte as a code point"
    );
    assert!(vocab.contains(&"caf\u{c3}\u{a9}".to_string()) || vocab.contains(&" be".to_string()));
    let summary = json_file(&out, "summary.json");
    let cpt = summary["val_chars_per_token"].as_f64().unwrap();
    assert!(cpt > 1.5, "{cpt}");
    let (per_token, per_char) = (
        summary["quantized_val_loss"].as_f64().unwrap(),
        summary["quantized_val_nats_per_char"].as_f64().unwrap(),
    );
    let (positions, chars) = (
        summary["quantized_val_positions"].as_f64().unwrap(),
        summary["quantized_val_chars"].as_f64().unwrap(),
    );
    assert!(chars > positions);
    assert!((per_char * chars - per_token * positions).abs() < 1e-9 * per_token * positions);
    // It resumes: the vocabulary is learned again from the same text, and a tokenizer.json that
    // was edited (two merges swapped) or deleted is rewritten from it, as vocab.json would be.
    let tokenizer_bytes = std::fs::read(out.join("tokenizer.json")).unwrap();
    let mut edited = tokenizer.clone();
    edited["merges"].as_array_mut().unwrap().swap(0, 1);
    std::fs::write(
        out.join("tokenizer.json"),
        serde_json::to_vec_pretty(&edited).unwrap(),
    )
    .unwrap();
    let resume = |steps: &str| {
        run(&[
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--steps",
            steps,
        ])
    };
    let (code, err) = resume("3");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("tokenizer.json is not the vocabulary of the run's corpus: rewritten"),
        "{err}"
    );
    assert!(!err.contains("vocab.json"), "{err}");
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        tokenizer_bytes
    );
    std::fs::remove_file(out.join("tokenizer.json")).unwrap();
    let (code, err) = resume("4");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("tokenizer.json is missing: rewritten"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        tokenizer_bytes
    );
    assert_eq!(json_file(&out, "summary.json")["steps"], 4);

    // A character run: no tokenizer keys, export_version 1, one character per token.
    let chars_out = d.join("chars");
    let (code, err) = run_short(data, "tiny", &chars_out, &[]);
    assert_eq!(code, 0, "{err}");
    let config = json_file(&chars_out, "config.json");
    assert_eq!(config["export_version"], 1);
    assert!(config.get("tokenizer").is_none() && config.get("bpe_vocab").is_none());
    assert!(!chars_out.join("tokenizer.json").exists());
    let summary = json_file(&chars_out, "summary.json");
    assert_eq!(summary["val_chars_per_token"], 1.0);
    assert_eq!(
        summary["quantized_val_nats_per_char"],
        summary["quantized_val_loss"]
    );

    let bad = d.join("bad").to_str().unwrap().to_string();
    expect_error(
        &tiny(data, &bad, &["--vocab", "300"]),
        "needs --tokenizer bpe",
    );
    expect_error(
        &tiny(data, &bad, &["--tokenizer", "bpe", "--vocab", "100"]),
        "--vocab must be in 256..=65535",
    );
    expect_error(
        &[
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--tokenizer",
            "char",
        ],
        "only --steps may change",
    );
    let short_dir = d.join("short");
    std::fs::create_dir_all(&short_dir).unwrap();
    let short = corpus(&short_dir, &"ab ".repeat(300));
    expect_error(
        &tiny(
            short.to_str().unwrap(),
            &bad,
            &["--tokenizer", "bpe", "--vocab", "400"],
        ),
        "validation tokens",
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Hostile trainer inputs: overrides far out of range, a 2 GB corpus, /dev/zero, a corpus
/// that is not UTF-8 or has one distinct character, `--steps 0`, an output dir that is a file.
/// Each one line, before any allocation the input could make huge.
#[test]
fn hostile_inputs_fail_with_one_line() {
    let d = tmp("hostile");
    let good = corpus(&d, &"to be or not to be, that is the question. ".repeat(40));
    let good = good.to_str().unwrap();
    let out = d.join("run");
    let out = out.to_str().unwrap();

    for (flag, value, needle) in [
        ("--d-model", "1000000000", "d_model"),
        ("--layers", "1000000000000", "layers"),
        ("--ffn", "4294967296", "ffn"),
        ("--ctx", "100000000", "ctx"),
        ("--ctx", "32768", "attention scores"),
        ("--batch", "1000000000000", "tokens per step"),
        ("--val-batches", "1000000000", "validation tokens"),
        ("--steps", "18446744073709551615", "steps"),
        ("--steps", "0", "steps"),
        ("--weight-decay", "NaN", "weight decay"),
        ("--grad-clip", "inf", "grad clip"),
        ("--lr", "1e999", "lr"),
        ("--dropout", "NaN", "dropout"),
        ("--dropout-from", "18446744073709551615", "dropout-from"),
        ("--weight-decay-stage2", "inf", "weight decay"),
        ("--input-noise", "1", "input noise"),
        ("--input-noise", "NaN", "input noise"),
    ] {
        expect_error(&tiny(good, out, &[flag, value]), needle);
    }
    // Within each limit, too many parameters together.
    expect_error(
        &tiny(
            good,
            out,
            &[
                "--d-model",
                "32768",
                "--heads",
                "128",
                "--kv-heads",
                "128",
                "--layers",
                "1024",
            ],
        ),
        "parameters",
    );

    expect_error(&tiny("/dev/zero", out, &[]), "not a regular file");
    expect_error(&tiny(d.to_str().unwrap(), out, &[]), "not a regular file");
    // A sparse 2 GB file: refused from its size, nothing read.
    let big = d.join("big.txt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2_000_000_000)
        .unwrap();
    expect_error(&tiny(big.to_str().unwrap(), out, &[]), "more than");
    let latin1 = d.join("latin1.txt");
    let mut bytes = b"caf\xe9 ".repeat(500);
    bytes.extend(b"\xff\xfe");
    std::fs::write(&latin1, bytes).unwrap();
    expect_error(&tiny(latin1.to_str().unwrap(), out, &[]), "not UTF-8");
    let single = d.join("single.txt");
    std::fs::write(&single, "a".repeat(5000)).unwrap();
    expect_error(
        &tiny(single.to_str().unwrap(), out, &[]),
        "single distinct character",
    );
    // The default corpus's error says where tiny Shakespeare comes from.
    let missing = d.join("tinyshakespeare.txt");
    expect_error(
        &tiny(missing.to_str().unwrap(), out, &[]),
        "karpathy/char-rnn",
    );

    // An output "directory" that is a file is refused, and left alone.
    let file = d.join("a-file");
    std::fs::write(&file, "keep").unwrap();
    expect_error(&tiny(good, file.to_str().unwrap(), &[]), "is a file");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    expect_error(
        &tiny(good, file.to_str().unwrap(), &["--resume"]),
        "no run to resume",
    );
    assert!(
        !Path::new(out).exists(),
        "a refused run created its output dir"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// An absurd learning rate blows the weights up: the run stops with a clear error and the
/// last good checkpoint stays.
#[test]
fn non_finite_loss_stops_and_keeps_checkpoint() {
    let d = tmp("nan");
    let words = ["alpha ", "bravo ", "charlie ", "delta "];
    let text: String = (0..3000).map(|i| words[(i * 7 + i / 3) % 4]).collect();
    let data = corpus(&d, &text);
    let out = d.join("run");
    let (code, err) = run(&[
        "--data",
        data.to_str().unwrap(),
        "--preset",
        "tiny",
        "--ctx",
        "32",
        "--steps",
        "20",
        "--lr",
        "1e30",
        "--warmup",
        "1",
        "--grad-clip",
        "0",
        "--checkpoint-every",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("error: training loss became"), "{err}");
    assert!(last.contains("last good checkpoint"), "{err}");
    let state = std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap();
    assert!(state.contains("\"step\":"), "{state}");
    assert!(!out.join("weights.safetensors").exists());
    // A resume takes the run's hyper-parameters: new ones are refused, the checkpoint untouched.
    let (data, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());
    for (flag, value) in [
        ("--dropout-from", "3"),
        ("--weight-decay-stage2", "0.1"),
        ("--input-noise", "0.1"),
    ] {
        let args = ["--data", data, "--out", out_s, "--resume", flag, value];
        expect_error(&args, "only --steps may change");
    }
    let after = std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap();
    assert_eq!(after, state, "a refused resume touched the checkpoint");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn help_explains_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data",
        "--preset",
        "--out",
        "--steps",
        "--resume",
        "--devices",
        "--kv-heads",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
