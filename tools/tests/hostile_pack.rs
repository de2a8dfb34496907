//! Hostile run directories and output paths for `tools pack`: each is refused with a message naming the problem, quickly, without a panic,
//! and without touching anything but the output.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{fails_with, set_config, tmp, tools, write_run};
use serde_json::json;

fn pack_err(dir: &Path) -> String {
    let out = dir.join("model.bin");
    let err = tools::pack::pack(dir, &out).unwrap_err();
    assert!(!out.exists(), "a failed pack left {}", out.display());
    no_temp_files(dir);
    format!("{err:#}")
}

fn no_temp_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        left.is_empty(),
        "temporary files left in {}: {left:?}",
        dir.display()
    );
}

#[test]
fn metadata_is_cut_at_a_character_boundary() {
    // Item 3: 1024 bytes of metadata end inside a two-byte character.
    // One of the two paddings puts byte 1024 inside an `é`, whatever the prefix's length.
    for pad in ["", "x"] {
        let dir = tmp(&format!("utf8-meta-{}", pad.len()));
        write_run(&dir);
        set_config(&dir, "preset", json!(format!("{pad}{}", "é".repeat(700))));
        let out = dir.join("model.bin");
        let blob = tools::pack::pack(&dir, &out).unwrap();
        let m = runtime::Model::from_bytes(&blob).unwrap();
        assert!(m.metadata().len() <= 1024 && m.metadata().ends_with('é'));
    }
    // Odd offsets too: the name of the run dir shifts the cut by one byte.
    let dir = tmp("utf8-meta-€");
    write_run(&dir);
    set_config(&dir, "trainer_version", json!("€".repeat(400)));
    tools::pack::pack(&dir, &dir.join("model.bin")).unwrap();
}

#[test]
fn config_fields_are_checked_against_the_format_before_anything_is_built() {
    // Item 4: each would build a huge tensor list or RoPE table first.
    for (key, value, named) in [
        ("n_layers", json!(1_000_000_000_000u64), "n_layers"),
        ("ctx_len", json!(100_000_000), "ctx_len"),
        ("d_model", json!(1u64 << 40), "d_model"),
        ("ffn_dim", json!(0), "ffn_dim"),
        ("vocab_size", json!(70_000), "vocab_size"),
        ("n_heads", json!(u64::MAX), "n_heads"),
        ("rope_theta", json!(1e300), "rope_theta"),
        ("rope_theta", json!(0.5), "rope_theta"),
    ] {
        let dir = tmp(&format!("limit-{key}"));
        write_run(&dir);
        set_config(&dir, key, value.clone());
        let e = pack_err(&dir);
        assert!(e.contains(named), "{key} = {value}: {e}");
        assert!(e.len() < 300, "{key} = {value}: a long message: {e}");
    }
    // A config within every per-field limit whose blob would exceed 4 GiB.
    let dir = tmp("limit-size");
    write_run(&dir);
    set_config(&dir, "n_layers", json!(1024));
    set_config(&dir, "d_model", json!(32768));
    set_config(&dir, "ffn_dim", json!(32768));
    set_config(&dir, "n_heads", json!(2));
    let e = pack_err(&dir);
    assert!(e.contains("4 GiB"), "{e}");
}

#[test]
fn a_gated_ffn_run_without_its_gates_is_refused() {
    // A config.json that says `ffn_gated` needs a `w_gate` per layer: a run dir whose weights
    // lack it is refused by name instead of packed without the gate.
    let dir = tmp("gated");
    write_run(&dir);
    set_config(&dir, "ffn_gated", json!(true));
    let e = pack_err(&dir);
    assert!(e.contains("layers.0.w_gate"), "{e}");
    set_config(&dir, "ffn_gated", json!(false));
    tools::pack::pack(&dir, &dir.join("model.bin")).unwrap();
}

#[test]
fn a_bad_norm_eps_is_named_in_a_short_message() {
    // Item 12.
    for eps in [json!(1e-300), json!(-1.0), json!(1e300), json!(0.0)] {
        let dir = tmp("eps");
        write_run(&dir);
        set_config(&dir, "norm_eps", eps.clone());
        let e = pack_err(&dir);
        assert!(e.contains("norm_eps") && e.len() < 200, "{eps}: {e}");
    }
}

#[test]
fn json_errors_have_one_separator() {
    // Item 12: "is not valid: : expected …".
    let dir = tmp("json");
    write_run(&dir);
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let e = pack_err(&dir);
    assert!(
        e.contains("config.json is not valid: ") && !e.contains(": :"),
        "{e}"
    );
}

#[test]
fn a_file_given_as_run_dir_is_called_a_file() {
    // Item 12: it said "does not exist".
    let dir = tmp("runfile");
    let file = dir.join("config.json");
    std::fs::write(&file, "{}").unwrap();
    let e = format!(
        "{:#}",
        tools::pack::pack(&file, &dir.join("m.bin")).unwrap_err()
    );
    assert!(
        e.contains("not a directory") && !e.contains("does not exist"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        tools::pack::pack(&dir.join("nothing"), &dir.join("m.bin")).unwrap_err()
    );
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn repeated_tokens_are_refused() {
    // Item 13.
    let dir = tmp("dup");
    write_run(&dir);
    std::fs::write(dir.join("vocab.json"), r#"["\n", "a", "b", "a", "c"]"#).unwrap();
    let e = pack_err(&dir);
    assert!(e.contains("token 3") && e.contains("token 1"), "{e}");
}

#[test]
fn oversized_run_files_are_not_read() {
    // Item 6 for run dirs: a sparse 8 GiB weights file is refused from its size.
    let dir = tmp("big-weights");
    write_run(&dir);
    let f = std::fs::File::create(dir.join("weights.safetensors")).unwrap();
    f.set_len(8 << 30).unwrap();
    let e = pack_err(&dir);
    assert!(
        e.contains("weights.safetensors") && e.contains("bytes"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // config.json as a FIFO (never written): refused without blocking on it.
    let dir = tmp("fifo-config");
    write_run(&dir);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    mkfifo(&dir.join("config.json"));
    let e = pack_err(&dir);
    assert!(e.contains("not a regular file"), "{e}");
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

#[test]
fn an_output_that_is_not_a_regular_file_is_refused() {
    // Item 7: a FIFO stands in for a device node (renaming over /dev/null as root would
    // destroy it); a directory too.
    let dir = tmp("out-fifo");
    write_run(&dir);
    let fifo = dir.join("out.bin");
    mkfifo(&fifo);
    let e = format!("{:#}", tools::pack::pack(&dir, &fifo).unwrap_err());
    assert!(e.contains("not a regular file"), "{e}");
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&ft),
        "the FIFO was replaced"
    );
    let e = format!("{:#}", tools::pack::pack(&dir, &dir).unwrap_err());
    assert!(e.contains("directory"), "{e}");
    // A symlink to a device node is refused the same way.
    let link = dir.join("null.bin");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let e = format!("{:#}", tools::pack::pack(&dir, &link).unwrap_err());
    assert!(e.contains("not a regular file"), "{e}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    no_temp_files(&dir);
}

#[test]
fn planted_symlinks_at_temporary_names_are_not_followed() {
    // Item 8: pack used to write `.OUT.tmp` with a plain create, following a symlink there.
    let dir = tmp("symlink");
    write_run(&dir);
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    for name in [".model.bin.tmp", ".model.bin.tmp.1", ".model.bin.tmp.new"] {
        std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
    }
    let out = dir.join("model.bin");
    tools::pack::pack(&dir, &out).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    runtime::Model::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
}

/// Starts `tools pack` with its write stalled before the rename, waits for the temporary file,
/// sends `signal` and returns the exit status.
fn interrupted_pack(dir: &Path, signal: &str) -> std::process::ExitStatus {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tools"))
        .args(["pack", "--run"])
        .arg(dir)
        .arg("--out")
        .arg(dir.join("model.bin"))
        .env("TOOLS_TEST_STALL_BEFORE_RENAME_MS", "60000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let temp_exists = || {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".model.bin.tmp")
            })
    };
    // Polls for an event, never asserts on time: the stall is a minute, the poll up to two.
    for _ in 0..12_000 {
        if temp_exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(temp_exists(), "pack never created its temporary file");
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    child.wait().unwrap()
}

#[test]
fn an_interrupted_pack_leaves_nothing_behind() {
    // Item 9: 19 of 20 interrupted runs left `.OUT.tmp`.
    // Exit status 128 + the signal number (tests/signals.rs: every writer, SIGHUP too).
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let dir = tmp(&format!("interrupt{signal}"));
        write_run(&dir);
        let status = interrupted_pack(&dir, signal);
        assert_eq!(status.code(), Some(code), "{signal}: {status:?}");
        assert!(!dir.join("model.bin").exists());
        no_temp_files(&dir);
    }
}

#[test]
fn the_cli_reports_pack_errors_in_one_line() {
    let dir = tmp("cli-pack");
    write_run(&dir);
    set_config(&dir, "n_layers", json!(1_000_000_000_000u64));
    let out = tools(&[
        "pack",
        "--run",
        dir.to_str().unwrap(),
        "--out",
        dir.join("m.bin").to_str().unwrap(),
    ]);
    let e = fails_with(&out, 1);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("n_layers"), "{e}");
}
