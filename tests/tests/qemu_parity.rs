//! The firmware under QEMU writes exactly the bytes that `tools generate` writes on the host,
//! for the shipped model and several settings: on `mps2-an505` (board `qemu`, one Cortex-M33)
//! and on `mps2-an521` (board `an521`, two Cortex-M33: the two-core twin of the Pico 2, each
//! token's work split between the cores).
//!
//! Needs `qemu-system-arm` (`.ci/run` installs it) and the `thumbv8m.main-none-eabihf` target.
//! rustup does not add `rust-toolchain.toml`'s targets to a toolchain that is already installed,
//! so the test adds the target itself (`rustup target add`); without qemu, or when the target
//! cannot be added (no rustup, no network), it says why on stderr and passes without checking
//! anything, so that `cargo test` works on a machine that has neither.

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::Model;

// Random-weight models (the runtime's test support).
#[path = "../../runtime/tests/common/mod.rs"]
mod common;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have_qemu() -> bool {
    Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The firmware's target triple.
const THUMB: &str = "thumbv8m.main-none-eabihf";

/// Whether the active toolchain has the standard library of `target` (its `core`).
fn target_installed(target: &str) -> bool {
    let out = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "target-libdir", "--target", target])
        .current_dir(repo().join("firmware"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            std::fs::read_dir(dir).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
            })
        }
        _ => false,
    }
}

/// `Ok` when `target` is installed or `rustup target add` installed it; else the reason.
fn ensure_target(target: &str) -> Result<(), String> {
    if target_installed(target) {
        return Ok(());
    }
    eprintln!("qemu_parity: the {target} target is missing; running `rustup target add {target}`");
    let out = Command::new("rustup")
        .args(["target", "add", target])
        .current_dir(repo().join("firmware"))
        .output()
        .map_err(|e| format!("rustup is not available ({e}); install the target with `rustup target add {target}`"))?;
    if !out.status.success() {
        return Err(format!(
            "`rustup target add {target}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if target_installed(target) {
        Ok(())
    } else {
        Err(format!(
            "`rustup target add {target}` succeeded but the target's core is still missing"
        ))
    }
}

/// A target dir of its own for the firmware (a nested cargo must not wait on the lock of the
/// `cargo test` that runs this), next to the workspace's when one is set, so CI keeps it warm.
fn firmware_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("firmware"),
        None => repo().join("firmware/target"),
    }
}

/// A firmware run: its UART text (stdout) and its log (stderr: the defmt log when
/// `defmt-print` is installed).
struct Run {
    text: Vec<u8>,
    log: String,
}

fn run_qemu(
    board: &str,
    model: &Path,
    prompt: &str,
    tokens: usize,
    seed: u64,
    temp: &str,
    top_k: u32,
) -> Run {
    let out = Command::new(repo().join("firmware/run-qemu.sh"))
        .args([
            model.to_str().unwrap(),
            prompt,
            &tokens.to_string(),
            &seed.to_string(),
            temp,
            &top_k.to_string(),
        ])
        .env("BOARD", board)
        .env("CARGO_TARGET_DIR", firmware_target_dir())
        .env_remove("FIRMWARE_CORES")
        .output()
        .expect("run firmware/run-qemu.sh");
    assert!(
        out.status.success(),
        "run-qemu.sh (BOARD={board}) failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        text: out.stdout,
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn have_defmt_print() -> bool {
    Command::new("defmt-print")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the shipped model on `board` for greedy and sampled settings and one run long enough
/// to slide the context window twice; each text must equal `tools generate`'s. Returns the
/// firmware logs.
fn check_board(board: &str) -> Vec<String> {
    let model_path = tools::blob::shipped_model();
    let bytes = std::fs::read(&model_path)
        .unwrap_or_else(|e| panic!("the shipped model {}: {e}", model_path.display()));
    let model = Model::from_bytes(&bytes).unwrap();
    let ctx = model.config().ctx_len as usize;
    // (prompt, tokens, seed, temperature, top_k)
    let cases: [(&str, usize, u64, &str, u32); 4] = [
        ("ROMEO:", 80, 0, "0", 0),
        ("JULIET:\n", 80, 1, "0.8", 0),
        ("KING HENRY:", 80, 7, "1.2", 10),
        ("First", ctx * 2, 42, "0.6", 40),
    ];
    let mut logs = Vec::new();
    for (prompt, tokens, seed, temp, top_k) in cases {
        let config = tools::generate::sampler(temp.parse().unwrap(), top_k, seed).unwrap();
        let mut host = Vec::new();
        tools::generate::generate(model, prompt, tokens, config, &mut host).unwrap();
        let device = run_qemu(board, &model_path, prompt, tokens, seed, temp, top_k);
        eprintln!(
            "{board}: {prompt:?} tokens {tokens} seed {seed} T {temp} top-k {top_k}: {} bytes, {}",
            host.len(),
            if host == device.text {
                "identical"
            } else {
                "DIFFERENT"
            }
        );
        assert_eq!(
            String::from_utf8_lossy(&device.text),
            String::from_utf8_lossy(&host),
            "QEMU ({board}) and host differ for {prompt:?} seed {seed} T {temp} top-k {top_k}"
        );
        logs.push(device.log);
    }
    logs
}

#[test]
fn qemu_output_matches_host_byte_for_byte() {
    if !have_qemu() {
        eprintln!("SKIPPED qemu_parity: qemu-system-arm is not installed (apt-get install qemu-system-arm)");
        return;
    }
    if let Err(why) = ensure_target(THUMB) {
        eprintln!("SKIPPED qemu_parity: {why}");
        return;
    }
    check_board("qemu");
}

#[test]
fn the_two_core_twin_matches_host_byte_for_byte() {
    if !have_qemu() {
        eprintln!(
            "\n*** SKIPPED qemu_parity (two cores): qemu-system-arm is not installed \
             (apt-get install qemu-system-arm); the two-core split was NOT checked on the firmware ***\n"
        );
        return;
    }
    if let Err(why) = ensure_target(THUMB) {
        eprintln!("\n*** SKIPPED qemu_parity (two cores): {why} ***\n");
        return;
    }
    let logs = check_board("an521");
    // The board's default is both cores: the split pass ran, not the one-core pass.
    if have_defmt_print() {
        for log in &logs {
            assert!(
                log.contains("cores: 2 of 2"),
                "the an521 firmware did not run on two cores:\n{log}"
            );
        }
    } else {
        eprintln!(
            "qemu_parity (two cores): defmt-print is not installed, so the log's core count \
             was not checked (cargo install defmt-print --locked)"
        );
    }
}

/// A byte-level BPE model (format v4, random weights, embedded): non-ASCII prompts encode with
/// its merges on the Cortex-M33 as on the host, and the streamed bytes (a random model writes
/// broken UTF-8 too: the hold-back must pass it on identically) are the same.
#[test]
fn qemu_output_matches_host_for_a_bpe_model_and_non_ascii_prompts() {
    if !have_qemu() {
        eprintln!("SKIPPED qemu_parity (BPE): qemu-system-arm is not installed (apt-get install qemu-system-arm)");
        return;
    }
    if let Err(why) = ensure_target(THUMB) {
        eprintln!("SKIPPED qemu_parity (BPE): {why}");
        return;
    }
    let config = runtime::Config {
        ffn_gated: true,
        ..common::TINY
    };
    let blob = common::random_bpe_model(config, 300, 8)
        .to_blob_with([runtime::TernaryEncoding::Base3; 7])
        .unwrap();
    let dir = std::env::temp_dir().join(format!("qemu-parity-bpe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bpe.bin");
    std::fs::write(&path, &blob).unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    let ctx = model.config().ctx_len as usize;
    for (prompt, tokens, seed, temp, top_k) in [
        ("Caf\u{e9} \u{2603} the", 60, 1, "0.8", 0),
        (
            "\u{65e5}\u{672c}\u{8a9e} \u{1f600}\n\u{fc}ber",
            ctx * 2,
            5,
            "1.0",
            50,
        ),
    ] {
        let config = tools::generate::sampler(temp.parse().unwrap(), top_k, seed).unwrap();
        let mut host = Vec::new();
        tools::generate::generate(model, prompt, tokens, config, &mut host).unwrap();
        let device = run_qemu("qemu", &path, prompt, tokens, seed, temp, top_k).text;
        eprintln!(
            "BPE {prompt:?} tokens {tokens} seed {seed}: {} bytes, {}",
            host.len(),
            if host == device {
                "identical"
            } else {
                "DIFFERENT"
            }
        );
        assert!(
            host == device,
            "QEMU and host differ for {prompt:?}:\n{host:?}\n{device:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_target_is_detected_and_explained() {
    // A triple no toolchain has: detected as missing; `rustup target add` refuses it, and the
    // reason comes back instead of a build failure ("can't find crate for core").
    assert!(!target_installed("thumbv8m.main-none-eabihf-nonexistent"));
    let why = ensure_target("thumbv8m.main-none-eabihf-nonexistent").unwrap_err();
    assert!(why.contains("rustup"), "{why}");
}

#[test]
fn run_qemu_sampling_defaults_match_tools_generate() {
    // One default temperature everywhere: `run-qemu.sh MODEL PROMPT TOKENS SEED` used to be
    // greedy while `tools generate` and the firmware's build sample at 0.8.
    use clap::CommandFactory;
    let script = std::fs::read_to_string(repo().join("firmware/run-qemu.sh")).unwrap();
    let default_of = |var: &str| {
        let at = script
            .find(&format!("{var}=\"${{"))
            .unwrap_or_else(|| panic!("{var} in run-qemu.sh"));
        let rest = &script[at..];
        let from = rest.find(":-").unwrap() + 2;
        rest[from..from + rest[from..].find('}').unwrap()].to_string()
    };
    let cli = tools::cli::Cli::command();
    let generate = cli.find_subcommand("generate").unwrap();
    let tools_default = |id: &str| {
        let arg = generate.get_arguments().find(|a| a.get_id() == id).unwrap();
        arg.get_default_values()[0].to_string_lossy().into_owned()
    };
    let t: f64 = default_of("FIRMWARE_TEMPERATURE").parse().unwrap();
    assert_eq!(t, tools_default("temperature").parse::<f64>().unwrap());
    assert_eq!(default_of("FIRMWARE_TOP_K"), tools_default("top_k"));
    let build = std::fs::read_to_string(repo().join("firmware/build.rs")).unwrap();
    assert!(
        build.contains("None => 800,"),
        "firmware/build.rs's default temperature is no longer 800/1000"
    );
    assert_eq!((t * 1000.0).round(), 800.0);
}
