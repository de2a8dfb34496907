//! The run directory against hostile or damaged contents, through the built binary: `--out`
//! never writes over someone's files, `--resume` checks the run's files against what the run
//! recorded (the corpus by its hash, `vocab.json` against that corpus, each checkpoint file by
//! its CRC-32, the checkpoint's model shape against `config.json`) before anything is
//! decoded, and paths with control characters are escaped in every message.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-rundir-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Words in a fixed pseudo-random order (about 12 KB).
fn corpus(dir: &Path) -> PathBuf {
    const WORDS: [&str; 6] = ["alpha ", "bravo ", "charlie ", "delta ", "echo ", "golf\n"];
    let text: String = (0..2000usize).map(|i| WORDS[(i * 7 + i / 5) % 6]).collect();
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the trainer; (exit code, stderr).
fn trainer(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .args(["--backend", "cpu", "--quiet"])
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh tiny run of 4 steps (a checkpoint after each) into `out`, stopped after `stop`.
fn start(data: &Path, out: &Path, stop: &str, extra: &[&str]) -> (i32, String) {
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["--data", d, "--out", o, "--preset", "tiny", "--ctx", "32"];
    args.extend([
        "--batch",
        "2",
        "--steps",
        "4",
        "--val-batches",
        "1",
        "--eval-every",
        "2",
    ]);
    args.extend(["--checkpoint-every", "1", "--stop-after", stop]);
    args.extend_from_slice(extra);
    trainer(&args)
}

/// `--resume` of the run in `out` with `extra` flags.
fn resume(out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--out", out.to_str().unwrap(), "--resume"];
    args.extend_from_slice(extra);
    trainer(&args)
}

/// The single `error:` line of a run that failed with exit 1 (never a panic's 101).
fn error_line(code: i32, err: &str) -> String {
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert_eq!(err.lines().last(), Some(lines[0]), "{err}");
    lines[0].to_string()
}

#[test]
fn out_never_writes_over_someone_elses_files() {
    // Only config.json was checked: a user's directory was filled with run files.
    let d = tmp("foreign");
    let data = corpus(&d);
    let out = d.join("mine");
    std::fs::create_dir(&out).unwrap();
    for f in ["notes.txt", "vocab.json", "metrics.csv"] {
        std::fs::write(out.join(f), f).unwrap();
    }
    let (code, err) = start(&data, &out, "1", &[]);
    let line = error_line(code, &err);
    assert!(
        line.contains("is not empty and holds no run") && line.contains("notes.txt"),
        "{line}"
    );
    for f in ["notes.txt", "vocab.json", "metrics.csv"] {
        assert_eq!(
            std::fs::read_to_string(out.join(f)).unwrap(),
            f,
            "{f} changed"
        );
    }
    assert!(!out.join("config.json").exists() && !out.join("checkpoint").exists());
    // A directory holding a run is refused as such (continue it with --resume) ...
    let run = d.join("run");
    let (code, err) = start(&data, &run, "1", &[]);
    assert_eq!(code, 0, "{err}");
    let line = error_line_of(start(&data, &run, "1", &[]));
    assert!(line.contains("already holds a run"), "{line}");
    // ... and an empty directory, or one holding only what a start killed before its first
    // file leaves, takes a new run.
    for (name, leftovers) in [
        ("empty", &[][..]),
        ("killed", &[".write-test", "config.json.tmp"][..]),
    ] {
        let out = d.join(name);
        std::fs::create_dir(&out).unwrap();
        for f in leftovers {
            std::fs::write(out.join(f), "x").unwrap();
        }
        let (code, err) = start(&data, &out, "1", &[]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.join("checkpoint/state.json").exists(), "{name}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn resume_restores_a_reversed_or_deleted_vocabulary() {
    // A reversed vocab.json resumed, packed and generated garbage with exit 0; a deleted one
    // resumed with exit 0 and then pack said the run was incomplete.
    let d = tmp("vocab");
    let data = corpus(&d);
    let out = d.join("run");
    let (code, err) = start(&data, &out, "1", &[]);
    assert_eq!(code, 0, "{err}");
    let vocab = std::fs::read(out.join("vocab.json")).unwrap();
    let mut tokens: Vec<String> = serde_json::from_slice(&vocab).unwrap();
    tokens.reverse();
    std::fs::write(out.join("vocab.json"), serde_json::to_vec(&tokens).unwrap()).unwrap();
    let (code, err) = resume(&out, &["--stop-after", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("is not the vocabulary of the run's corpus: rewritten"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("vocab.json")).unwrap(), vocab);
    std::fs::remove_file(out.join("vocab.json")).unwrap();
    let (code, err) = resume(&out, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("vocab.json is missing: rewritten"), "{err}");
    assert_eq!(std::fs::read(out.join("vocab.json")).unwrap(), vocab);
    assert!(out.join("weights.safetensors").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn resume_without_data_reads_the_recorded_corpus_and_checks_it() {
    // `--resume` without `--data` read the default corpus, not the run's.
    let d = tmp("recorded");
    let data = corpus(&d);
    let out = d.join("run");
    let (code, err) = start(&data, &out, "1", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = resume(&out, &["--stop-after", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming at step 1"), "{err}");
    // The recorded file changed: refused by its hash, naming it.
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, text.replacen("alpha", "ALPHA", 1)).unwrap();
    let line = error_line_of(resume(&out, &[]));
    assert!(
        line.contains("is not the corpus this run was trained on")
            && line.contains(data.to_str().unwrap()),
        "{line}"
    );
    // Moved away: the message says where the run recorded it and how to point elsewhere.
    std::fs::write(d.join("moved.txt"), &text).unwrap();
    std::fs::remove_file(&data).unwrap();
    let line = error_line_of(resume(&out, &[]));
    assert!(
        line.contains("does not exist") && line.contains("--data"),
        "{line}"
    );
    let moved = d.join("moved.txt");
    let (code, err) = resume(
        &out,
        &["--data", moved.to_str().unwrap(), "--stop-after", "3"],
    );
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

fn error_line_of((code, err): (i32, String)) -> String {
    error_line(code, &err)
}

#[test]
fn a_damaged_checkpoint_is_refused_before_it_is_decoded() {
    // One flipped byte in a checkpoint file resumed with exit 0 and other weights.
    let d = tmp("flip");
    let data = corpus(&d);
    let out = d.join("run");
    let (code, err) = start(&data, &out, "2", &[]);
    assert_eq!(code, 0, "{err}");
    let ck = out.join("checkpoint");
    for name in ["model.bin", "opt_decay.bin", "opt_rest.bin", "state.json"] {
        let path = ck.join(name);
        let good = std::fs::read(&path).unwrap();
        for at in [good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let line = error_line_of(resume(&out, &[]));
            assert!(
                line.contains("is damaged") && line.contains(name) && line.contains("CRC-32"),
                "{name} byte {at}: {line}"
            );
        }
        // Truncated by one byte.
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        let line = error_line_of(resume(&out, &[]));
        assert!(
            line.contains(&format!("{} bytes", good.len() - 1)),
            "{line}"
        );
        std::fs::write(&path, &good).unwrap();
    }
    // The record itself: a flipped digit breaks a checksum or the JSON; deleted, refused too.
    let manifest = ck.join("checksums.json");
    let good = std::fs::read(&manifest).unwrap();
    let at = good.iter().position(|&b| b == b'"').unwrap() + 1;
    let mut bad = good.clone();
    bad[at] ^= 0x20;
    std::fs::write(&manifest, &bad).unwrap();
    let line = error_line_of(resume(&out, &[]));
    assert!(line.contains("checksums.json"), "{line}");
    std::fs::remove_file(&manifest).unwrap();
    let line = error_line_of(resume(&out, &[]));
    assert!(line.contains("no checksums.json"), "{line}");
    std::fs::write(&manifest, &good).unwrap();
    // Intact again: it resumes from step 2.
    let (code, err) = resume(&out, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resuming at step 2"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_checkpoint_of_another_model_is_named_not_decoded() {
    // Another shape panicked in burn's record loader (exit 101); another FFN width resumed and
    // failed later in pack.
    let d = tmp("shape");
    let data = corpus(&d);
    let out = d.join("run");
    let (code, err) = start(&data, &out, "1", &[]);
    assert_eq!(code, 0, "{err}");
    for (name, flags, field, theirs) in [
        ("ffn", &["--ffn", "64"][..], "ffn_dim", "64"),
        ("layers", &["--layers", "3"][..], "n_layers", "3"),
        ("gated", &["--ffn-gated"][..], "ffn_gated", "true"),
        ("muon", &["--optimizer", "muon"][..], "optimizer", "muon"),
    ] {
        let other = d.join(name);
        let (code, err) = start(&data, &other, "1", flags);
        assert_eq!(code, 0, "{name}: {err}");
        let mine = out.join("checkpoint");
        std::fs::rename(&mine, d.join("mine")).unwrap();
        std::fs::rename(other.join("checkpoint"), &mine).unwrap();
        let line = error_line_of(resume(&out, &[]));
        assert!(
            line.contains("holds another model")
                && line.contains(&format!("its {field} is {theirs}")),
            "{name}: {line}"
        );
        std::fs::remove_dir_all(&mine).unwrap();
        std::fs::rename(d.join("mine"), &mine).unwrap();
    }
    // config.json edited instead: the same check, the other way round.
    let config = out.join("config.json");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("\"ffn_dim\": 128", "\"ffn_dim\": 96")).unwrap();
    let line = error_line_of(resume(&out, &[]));
    assert!(
        line.contains("its ffn_dim is 128, the run's config.json says 96"),
        "{line}"
    );
    std::fs::write(&config, good).unwrap();
    let (code, err) = resume(&out, &["--stop-after", "2"]);
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn control_characters_in_paths_are_escaped() {
    let d = tmp("escape");
    let data = corpus(&d);
    let evil = "x\x1b]0;T\x07\u{9b}31m\u{202e}\r";
    let clean = |line: &str| {
        for c in ['\x1b', '\x07', '\u{9b}', '\u{202e}', '\r'] {
            assert!(!line.contains(c), "{c:?} reached the terminal: {line:?}");
        }
        assert!(line.contains("x\\u{1b}]0;T\\u{7}"), "{line}");
    };
    let missing = d.join(format!("nope{evil}.txt"));
    clean(&error_line_of(start(&missing, &d.join("a"), "1", &[])));
    let file = d.join(format!("file{evil}"));
    std::fs::write(&file, "keep").unwrap();
    clean(&error_line_of(start(&data, &file, "1", &[])));
    let full = d.join(format!("full{evil}"));
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join(format!("n{evil}")), "x").unwrap();
    clean(&error_line_of(start(&data, &full, "1", &[])));
    clean(&error_line_of(resume(&d.join(format!("none{evil}")), &[])));
    let _ = std::fs::remove_dir_all(&d);
}
