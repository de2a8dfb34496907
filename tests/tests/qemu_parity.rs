//! The firmware under QEMU (`mps2-an505`, Cortex-M33) writes exactly the bytes that
//! `tools generate` writes on the host, for the shipped model and several settings.
//!
//! Needs `qemu-system-arm` and the `thumbv8m.main-none-eabihf` target (`.ci/run` installs
//! both); without them the test says so on stderr and passes without checking anything, so
//! that `cargo test` works on a machine that has neither.

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::Model;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have_qemu() -> bool {
    Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A target dir of its own for the firmware (a nested cargo must not wait on the lock of the
/// `cargo test` that runs this), next to the workspace's when one is set, so CI keeps it warm.
fn firmware_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("firmware"),
        None => repo().join("firmware/target"),
    }
}

fn run_qemu(
    model: &Path,
    prompt: &str,
    tokens: usize,
    seed: u64,
    temp: &str,
    top_k: u32,
) -> Vec<u8> {
    let out = Command::new(repo().join("firmware/run-qemu.sh"))
        .args([
            model.to_str().unwrap(),
            prompt,
            &tokens.to_string(),
            &seed.to_string(),
            temp,
            &top_k.to_string(),
        ])
        .env("CARGO_TARGET_DIR", firmware_target_dir())
        .env("DEFMT_QUIET", "1")
        .output()
        .expect("run firmware/run-qemu.sh");
    assert!(
        out.status.success(),
        "run-qemu.sh failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn qemu_output_matches_host_byte_for_byte() {
    if !have_qemu() {
        eprintln!("SKIPPED qemu_parity: qemu-system-arm is not installed (apt-get install qemu-system-arm)");
        return;
    }
    let model_path = tools::blob::shipped_model();
    let bytes = std::fs::read(&model_path)
        .unwrap_or_else(|e| panic!("the shipped model {}: {e}", model_path.display()));
    let model = Model::from_bytes(&bytes).unwrap();
    let ctx = model.config().ctx_len as usize;
    // (prompt, tokens, seed, temperature, top_k): greedy and sampled, and one run long enough
    // to slide the context window twice.
    let cases: [(&str, usize, u64, &str, u32); 4] = [
        ("ROMEO:", 80, 0, "0", 0),
        ("JULIET:\n", 80, 1, "0.8", 0),
        ("KING HENRY:", 80, 7, "1.2", 10),
        ("First", ctx * 2, 42, "0.6", 40),
    ];
    for (prompt, tokens, seed, temp, top_k) in cases {
        let config = tools::generate::sampler(temp.parse().unwrap(), top_k, seed).unwrap();
        let mut host = Vec::new();
        tools::generate::generate(model, prompt, tokens, config, &mut host).unwrap();
        let device = run_qemu(&model_path, prompt, tokens, seed, temp, top_k);
        eprintln!(
            "{prompt:?} tokens {tokens} seed {seed} T {temp} top-k {top_k}: {} bytes, {}",
            host.len(),
            if host == device {
                "identical"
            } else {
                "DIFFERENT"
            }
        );
        assert_eq!(
            String::from_utf8_lossy(&device),
            String::from_utf8_lossy(&host),
            "QEMU and host differ for {prompt:?} seed {seed} T {temp} top-k {top_k}"
        );
    }
}
