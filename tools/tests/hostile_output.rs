//! Output and input paths through the built binary: an output that is one of the command's
//! inputs is refused for every writer (also through a symlink or a hard link), an output name
//! of up to 255 bytes works (its temporary name is kept short), and control characters in
//! paths never reach the terminal.

mod common;

use std::path::Path;

use common::{blob, fails_with, tmp, tools, write_run, TINY};

fn no_temporaries(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn an_input_is_never_replaced_by_its_own_output() {
    // `tools uf2 m.bin --out m.bin` replaced the model with its UF2.
    let dir = tmp("same-file");
    let model = dir.join("m.bin");
    let bytes = blob(TINY, "tiny");
    std::fs::write(&model, &bytes).unwrap();
    let symlink = dir.join("link.bin");
    std::os::unix::fs::symlink(&model, &symlink).unwrap();
    let hard = dir.join("hard.bin");
    std::fs::hard_link(&model, &hard).unwrap();
    let m = model.to_str().unwrap();
    for out in [&model, &symlink, &hard] {
        let o = out.to_str().unwrap();
        for args in [vec!["uf2", m, "--out", o], vec!["repack", m, "--out", o]] {
            let e = fails_with(&tools(&args), 1);
            assert!(
                e.contains("is the input") && e.contains("same file"),
                "{args:?}: {e}"
            );
            assert_eq!(
                std::fs::read(&model).unwrap(),
                bytes,
                "{args:?} changed the model"
            );
        }
    }
    assert!(std::fs::symlink_metadata(&symlink).unwrap().is_symlink());
    // pack: each file of the run dir it reads.
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    write_run(&run);
    for f in [
        "config.json",
        "vocab.json",
        "summary.json",
        "weights.safetensors",
    ] {
        let before = std::fs::read(run.join(f)).unwrap();
        let link = dir.join(format!("to-{f}"));
        std::os::unix::fs::symlink(run.join(f), &link).unwrap();
        for out in [run.join(f), link] {
            let args = [
                "pack",
                "--run",
                run.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ];
            let e = fails_with(&tools(&args), 1);
            assert!(e.contains("is the input") && e.contains(f), "{f}: {e}");
            assert_eq!(std::fs::read(run.join(f)).unwrap(), before, "{f} changed");
        }
    }
    // Another name is fine, and so is replacing an earlier output.
    let other = dir.join("m.uf2");
    for _ in 0..2 {
        let out = tools(&["uf2", m, "--out", other.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    no_temporaries(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn output_names_up_to_255_bytes_work() {
    // A 230-255-byte name failed with "File name too long" on the temporary name.
    let dir = tmp("long-names");
    write_run(&dir);
    let model = dir.join("m.bin");
    std::fs::write(&model, blob(TINY, "tiny")).unwrap();
    let m = model.to_str().unwrap();
    for len in [230, 250, 255] {
        // ASCII, and a name of two-byte characters cut inside the temporary name's prefix.
        for unit in ["a", "é"] {
            let stem = unit.repeat((len - 4) / unit.len());
            let name = format!("{stem}{}.bin", "x".repeat(len - 4 - stem.len()));
            assert_eq!(name.len(), len);
            let out = dir.join(&name);
            let o = out.to_str().unwrap();
            for args in [
                vec!["uf2", m, "--out", o],
                vec!["repack", m, "--out", o],
                vec!["pack", "--run", dir.to_str().unwrap(), "--out", o],
            ] {
                let r = tools(&args);
                assert!(
                    r.status.success(),
                    "{len}: {}",
                    String::from_utf8_lossy(&r.stderr)
                );
                assert!(out.exists());
                std::fs::remove_file(&out).unwrap();
            }
        }
    }
    // 256 bytes is over the file system's limit: the message is about the user's name.
    let out = dir.join(format!("{}.bin", "a".repeat(252)));
    let e = fails_with(&tools(&["uf2", m, "--out", out.to_str().unwrap()]), 1);
    assert!(e.contains(&"a".repeat(252)), "{e}");
    no_temporaries(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Control characters a path may carry: OSC (set the title), CSI (colours), BEL, CSI as one
/// C1 character, a right-to-left override.
const HOSTILE: [char; 5] = ['\x1b', '\x07', '\u{9b}', '\u{202e}', '\r'];

fn clean(text: &str, what: &str) {
    for bad in HOSTILE {
        assert!(
            !text.contains(bad),
            "{what}: {bad:?} reached the terminal: {text:?}"
        );
    }
}

#[test]
fn control_characters_in_paths_are_escaped() {
    let dir = tmp("escaped-paths");
    let model = dir.join("m.bin");
    std::fs::write(&model, blob(TINY, "tiny")).unwrap();
    let m = model.to_str().unwrap();
    let evil = "x\x1b]0;T\x07\u{9b}31m\u{202e}\r.bin";
    let out = dir.join(evil);
    let o = out.to_str().unwrap();
    let missing = dir.join(format!("nope{evil}"));
    let n = missing.to_str().unwrap();
    let run = dir.join(format!("run{evil}"));
    std::fs::create_dir(&run).unwrap();
    write_run(&run);
    let r = run.to_str().unwrap();
    // Successes name the output on stderr (and bench names the model on stdout).
    for args in [
        vec!["uf2", m, "--out", o],
        vec!["repack", m, "--out", o],
        vec!["pack", "--run", r, "--out", o],
        vec!["bench", "--model", o, "--rounds", "1"],
    ] {
        let res = tools(&args);
        assert!(res.status.success(), "{args:?}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr),
        );
        clean(&stdout, &format!("{args:?} stdout"));
        clean(&stderr, &format!("{args:?} stderr"));
        assert!(
            stderr.contains("\\u{1b}]0;T\\u{7}") || stdout.contains("\\u{1b}"),
            "{args:?}: {stderr}"
        );
    }
    // Failures: a missing model, data file or run dir; a blob that does not load.
    let bad = dir.join(format!("bad{evil}"));
    std::fs::write(&bad, b"not a blob at all, but long enough for a prefix").unwrap();
    let b = bad.to_str().unwrap();
    for args in [
        vec!["inspect", n],
        vec!["inspect", b],
        vec!["generate", "--model", n],
        vec!["eval", "--model", m, "--data", n],
        vec!["uf2", n, "--out", o],
        vec!["pack", "--run", n, "--out", o],
        vec!["repack", b, "--out", o],
    ] {
        let e = fails_with(&tools(&args), 1);
        clean(&e, &format!("{args:?}"));
        assert!(e.contains("\\u{1b}]0;T\\u{7}"), "{args:?}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
