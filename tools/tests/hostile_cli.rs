//! Hostile command lines and blobs for `tools inspect/generate/eval/bench`, run through the
//! built binary: every one ends with a one-line error
//! (status 1) or a usage error (status 2), never a panic, an abort or a signal.

mod common;

use std::path::{Path, PathBuf};

use common::{blob, fails_with, tmp, tools, tools_limited, TINY};
use runtime::{session_bytes_prefill, Config};

/// Bytes of the copies of `blob`'s matrices that the tools keep beside it on this CPU: the
/// row-tiled copy at the x86-64 SIMD levels, none elsewhere (a 2-bit blob needs no repack).
fn host_copies(blob: &[u8]) -> u64 {
    let m = runtime::Model::from_bytes(blob).unwrap();
    if runtime::kernels::tiled_level() {
        m.tiled_bytes() as u64
    } else {
        0
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A small blob (about 11 MB) whose session over its whole context needs more than 1 GiB.
fn greedy_config() -> Config {
    Config {
        vocab_size: 5,
        d_model: 64,
        n_layers: 512,
        n_heads: 1,
        n_kv_heads: 1,
        ffn_dim: 16,
        ctx_len: 32768,
        rope_theta: 10000,
        ffn_gated: false,
    }
}

#[test]
fn a_session_larger_than_the_cap_is_refused_before_allocating() {
    // Item 1: generate, eval and bench aborted with "memory allocation of … failed".
    let c = greedy_config();
    // generate prefills half a context per block, eval a whole window.
    let need = session_bytes_prefill(&c, c.ctx_len, c.ctx_len / 2) as u64;
    let eval_need = session_bytes_prefill(&c, c.ctx_len, c.ctx_len) as u64;
    assert!(need > 1 << 30, "{need}");
    let dir = tmp("greedy");
    let b = blob(c, "greedy");
    // The session and the model's host copies are counted together.
    let held = host_copies(&b);
    let (need, eval_need) = (need + held, eval_need + held);
    let model = write(&dir, "greedy.bin", &b);
    let data = write(&dir, "data.txt", &b"abcde".repeat(20_000));
    let m = model.to_str().unwrap();
    let d = data.to_str().unwrap();
    let bench_need = tools::bench::bench_bytes(&c, 1) + held;
    for (args, need) in [
        (
            vec!["generate", "--model", m, "--prompt", "ab", "--tokens", "3"],
            need,
        ),
        (vec!["eval", "--model", m, "--data", d], eval_need),
        (vec!["bench", "--model", m, "--rounds", "1"], bench_need),
    ] {
        // Under a 3 GiB address-space limit an allocation of the session would fail.
        let out = tools_limited(3 << 20, &args);
        let e = fails_with(&out, 1);
        assert!(
            e.contains(&need.to_string()) && e.contains(&(1u64 << 30).to_string()),
            "{args:?}: {e}"
        );
        assert!(e.contains("--max-memory"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn max_memory_is_a_flag_with_units() {
    let dir = tmp("maxmem");
    let b = blob(TINY, "tiny");
    let model = write(&dir, "tiny.bin", &b);
    let m = model.to_str().unwrap();
    // The first thing over the cap: the model's row-tiled copy where the tools make one, else
    // the session.
    let need = match host_copies(&b) {
        0 => session_bytes_prefill(&TINY, TINY.ctx_len, TINY.ctx_len / 2),
        copies => copies as usize,
    };
    assert!(need > 64);
    let out = tools(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "ab",
        "--max-memory",
        "64",
    ]);
    let e = fails_with(&out, 1);
    assert!(
        e.contains(&need.to_string()) && e.contains("cap of 64 bytes"),
        "{e}"
    );
    let out = tools(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "ab",
        "--tokens",
        "5",
        "--max-memory",
        "1M",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 7);
    for bad in ["-1", "1.5G", "12Q", "99999999999999999999", "16777216T"] {
        let out = tools(&["bench", "--model", m, &format!("--max-memory={bad}")]);
        fails_with(&out, 2);
    }
}

#[test]
fn bench_rounds_are_bounded() {
    // Item 2: `capacity overflow` or an allocation abort.
    let dir = tmp("rounds");
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let m = model.to_str().unwrap();
    for r in [
        "0",
        "1000001",
        "18446744073709551615",
        "99999999999999999999999",
        "-3",
    ] {
        let e = fails_with(
            &tools(&["bench", "--model", m, &format!("--rounds={r}")]),
            2,
        );
        assert!(e.contains("--rounds"), "{r}: {e}");
    }
    // Within bounds, but the latency samples exceed the cap: refused, not aborted.
    let out = tools(&[
        "bench",
        "--model",
        m,
        "--rounds",
        "1000000",
        "--max-memory",
        "1M",
    ]);
    let e = fails_with(&out, 1);
    assert!(e.contains("latency") && e.contains("--max-memory"), "{e}");
    let out = tools(&["bench", "--model", m, "--rounds", "2", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_kernel_levels() {
    let dir = tmp("kernels");
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let m = model.to_str().unwrap();
    // An unknown level, and a level this CPU lacks (NEON on x86-64, AVX2 on aarch64): one line.
    let e = fails_with(&tools(&["bench", "--model", m, "--kernels", "sse9"]), 1);
    assert!(
        e.contains("--kernels sse9") && e.contains("no such kernel level"),
        "{e}"
    );
    let missing = if cfg!(target_arch = "x86_64") {
        "neon"
    } else {
        "avx2"
    };
    let e = fails_with(&tools(&["bench", "--model", m, "--kernels", missing]), 1);
    assert!(e.contains("cannot run") && e.contains("portable"), "{e}");
    // Every level this CPU runs is reported as the one that ran, with both matvec shapes.
    for level in runtime::kernels::supported_levels() {
        let out = tools(&[
            "bench",
            "--model",
            m,
            "--rounds",
            "1",
            "--json",
            "--kernels",
            level.name(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kernels"], level.name());
        assert_eq!(v["matvec_large_shape"], serde_json::json!([2048, 2048]));
        assert!(v["matvec_large_macs_per_s"].as_f64().unwrap() > 0.0);
        let per_mac = v["matvec_tsc_cycles_per_mac"].as_f64();
        assert_eq!(per_mac.is_some(), cfg!(target_arch = "x86_64"), "{v}");
        assert!(per_mac.is_none_or(|c| c > 0.0), "{v}");
    }
    // generate and eval take the flag too: the same text at every level.
    let texts: Vec<Vec<u8>> = runtime::kernels::supported_levels()
        .map(|level| {
            let args = [
                "generate",
                "--model",
                m,
                "--prompt",
                "ab",
                "--tokens",
                "40",
                "--kernels",
                level.name(),
            ];
            let out = tools(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        })
        .collect();
    assert!(texts.windows(2).all(|w| w[0] == w[1]), "{texts:?}");
    let e = fails_with(&tools(&["generate", "--model", m, "--kernels", missing]), 1);
    assert!(e.contains("cannot run"), "{e}");
}

#[test]
fn files_are_checked_before_they_are_read() {
    // Item 6: /dev/zero was read until memory ran out; a 2 GB file cost 2 GB before "bad magic".
    let e = fails_with(&tools(&["inspect", "/dev/zero"]), 1);
    assert!(e.contains("not a regular file"), "{e}");
    let dir = tmp("files");
    let e = fails_with(&tools(&["inspect", dir.to_str().unwrap()]), 1);
    assert!(e.contains("directory"), "{e}");
    // Sparse files: no disk used. Under a 512 MiB address-space limit reading one whole fails.
    let big = dir.join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let e = fails_with(
        &tools_limited(512 << 10, &["inspect", big.to_str().unwrap()]),
        1,
    );
    assert!(e.contains("bad magic"), "{e}");
    // The right magic and a prefix declaring another length.
    let mut tiny = blob(TINY, "tiny");
    let huge = dir.join("huge.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&huge).unwrap();
        f.write_all(&tiny).unwrap();
        f.set_len(3 << 30).unwrap();
    }
    let e = fails_with(
        &tools_limited(512 << 10, &["inspect", huge.to_str().unwrap()]),
        1,
    );
    assert!(
        e.contains("declares") && e.contains(&tiny.len().to_string()),
        "{e}"
    );
    // Over the format's 4 GiB.
    std::fs::File::options()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let e = fails_with(
        &tools_limited(512 << 10, &["inspect", huge.to_str().unwrap()]),
        1,
    );
    assert!(e.contains("4 GiB"), "{e}");
    // Non-zero flags: named as flags, not "header does not decode".
    tiny[28] = 1;
    let flagged = write(&dir, "flags.bin", &tiny);
    let e = fails_with(&tools(&["inspect", flagged.to_str().unwrap()]), 1);
    assert!(e.contains("flags") && !e.contains("does not decode"), "{e}");
    // eval's corpus: a device, and a corpus larger than the cap.
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let m = model.to_str().unwrap();
    let e = fails_with(&tools(&["eval", "--model", m, "--data", "/dev/zero"]), 1);
    assert!(e.contains("not a regular file"), "{e}");
    let e = fails_with(
        &tools_limited(
            512 << 10,
            &["eval", "--model", m, "--data", big.to_str().unwrap()],
        ),
        1,
    );
    assert!(e.contains("--max-memory"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eval_threads_are_bounded_and_spawn_failures_are_errors() {
    // Item 10: `failed to spawn thread` panicked.
    let dir = tmp("threads");
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let m = model.to_str().unwrap();
    // 1500 windows of 17 characters in the validation tenth.
    let text: String = (0..300_000)
        .map(|i| (b'a' + (i * 7 % 5) as u8) as char)
        .collect();
    let data = write(&dir, "data.txt", text.as_bytes());
    let d = data.to_str().unwrap();
    for t in ["0", "1025", "100000000", "-1"] {
        let e = fails_with(
            &tools(&["eval", "--model", m, "--data", d, &format!("--threads={t}")]),
            2,
        );
        assert!(e.contains("--threads"), "{t}: {e}");
    }
    // A spawn failure itself is not provoked here: under an address-space limit tight enough
    // to refuse a thread, std may also fail to map a started thread's signal stack, and that
    // aborts the process (std's own behaviour), so such a test flakes. The path is the
    // `spawn_scoped` error in `eval::evaluate`, which names --threads.
    let out = tools(&[
        "eval",
        "--model",
        m,
        "--data",
        d,
        "--threads",
        "3",
        "--max-windows",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn max_windows_zero_is_a_usage_error() {
    // Item 12: it claimed the validation split was too short.
    let dir = tmp("maxwin");
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let data = write(&dir, "data.txt", &b"abcde".repeat(1000));
    let out = tools(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--max-windows",
        "0",
    ]);
    let e = fails_with(&out, 2);
    assert!(
        e.contains("--max-windows") && !e.contains("too short") && !e.contains("fewer"),
        "{e}"
    );
}

#[test]
fn inspect_escapes_metadata() {
    // Item 11: escape sequences in the header reached the terminal.
    let dir = tmp("escape");
    let model = write(
        &dir,
        "esc.bin",
        &blob(TINY, "run \x1b]0;pwned\x07 \x1b[2J\u{9b}31m \u{202e}x"),
    );
    let out = tools(&["inspect", model.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
        assert!(!text.contains(bad), "{bad:?} reached the terminal: {text}");
    }
    assert!(text.contains("run \\u{1b}]0;pwned\\u{7}"), "{text}");
    // JSON keeps the exact string (escaped by JSON itself).
    let out = tools(&["inspect", "--json", model.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["metadata"].as_str().unwrap().contains("\x1b[2J"));
}

#[test]
fn a_repeated_token_gets_one_rule_in_eval_and_generate() {
    // Item 13: eval mapped a repeated character to a different id than generate. The loader
    // now refuses such a blob, so both commands say the same thing.
    let dir = tmp("duptok");
    let mut b = blob(TINY, "dup");
    let m = runtime::Model::from_bytes(&b).unwrap();
    let data_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let at = data_offset + m.layout().entry(1).unwrap().offset as usize;
    b[at + 3] = b[at + 1]; // token 3 := token 1 ("b")
    let crc = crc32(&b[32..]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    let model = write(&dir, "dup.bin", &b);
    let data = write(&dir, "data.txt", &b"abcde".repeat(1000));
    let m = model.to_str().unwrap();
    for args in [
        vec!["generate", "--model", m, "--prompt", "b"],
        vec!["eval", "--model", m, "--data", data.to_str().unwrap()],
        vec!["inspect", m],
    ] {
        let e = fails_with(&tools(&args), 1);
        assert!(e.contains("Vocab"), "{args:?}: {e}");
    }
}

fn crc32(b: &[u8]) -> u32 {
    // CRC-32/ISO-HDLC, bitwise (test-only; the runtime uses the `crc` crate).
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn a_wrong_tensor_count_is_not_entry_4294967295() {
    // Item 12. The count is the header's last varint before the table: find it by trying.
    let dir = tmp("count");
    let b = blob(TINY, "count");
    let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let n = runtime::Model::from_bytes(&b).unwrap().layout().n_tensors() as u8;
    let mut found = false;
    for at in 32..32 + header_len {
        if b[at] != n {
            continue;
        }
        let mut c = b.clone();
        c[at] = 0x7f;
        let crc = crc32(&c[32..]);
        c[24..28].copy_from_slice(&crc.to_le_bytes());
        if let Err(runtime::LoadError::TensorCount { found: 127, .. }) =
            runtime::Model::from_bytes(&c)
        {
            let model = write(&dir, "count.bin", &c);
            let e = fails_with(&tools(&["inspect", model.to_str().unwrap()]), 1);
            assert!(
                e.contains("127") && e.contains(&n.to_string()) && !e.contains("4294967295"),
                "{e}"
            );
            found = true;
            break;
        }
    }
    assert!(found);
}

/// A base-3 blob of about 13 MB (67 M zero weights, 2 layers of d 2048, F 4096) with a small
/// session (ctx 16): its in-memory repack to 2-bit unpacks every weight to a byte.
fn big_base3_blob(dir: &Path) -> PathBuf {
    let c = Config {
        vocab_size: 5,
        d_model: 2048,
        n_layers: 2,
        n_heads: 16,
        n_kv_heads: 16,
        ffn_dim: 4096,
        ctx_len: 16,
        rope_theta: 10000,
        ffn_gated: false,
    };
    let enc = [runtime::TernaryEncoding::Base3; runtime::schema::MATRICES_PER_LAYER];
    write(dir, "big-base3.bin", &common::zero_blob(c, enc))
}

#[test]
fn the_base3_repack_counts_against_max_memory() {
    // The in-memory repack (generate/chat/bench/eval on a SIMD host) and `tools repack`
    // unpacked every weight with infallible allocations: past the cap, or under a memory
    // limit, "memory allocation of … failed" and an abort.
    let dir = tmp("repack-cap");
    let model = big_base3_blob(&dir);
    let m = model.to_str().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let loaded = runtime::Model::from_bytes(&bytes).unwrap();
    let need = tools::blob::repack_bytes(&loaded, Default::default());
    assert!(need > 67_000_000 && need < 128 << 20, "{need}");
    let out = dir.join("out.bin");
    let o = out.to_str().unwrap();
    let mut commands = vec![vec![
        "repack",
        m,
        "--out",
        o,
        "--ternary",
        "2bit",
        "--max-memory",
        "64M",
    ]];
    let (m64, b64) = (
        vec![
            "generate",
            "--model",
            m,
            "--tokens",
            "1",
            "--max-memory",
            "64M",
        ],
        vec![
            "bench",
            "--model",
            m,
            "--rounds",
            "1",
            "--max-memory",
            "64M",
        ],
    );
    if runtime::kernels::tiled_level() {
        // The x86-64 SIMD levels copy the matrices to the row-tiled layout instead (two bits a
        // weight, no unpacking): that copy counts against the cap, beside the session.
        let tiled = loaded.tiled_bytes();
        assert!(tiled > 8 << 20 && tiled < 64 << 20, "{tiled}");
        for mut args in [m64.clone(), b64.clone()] {
            *args.last_mut().unwrap() = "8M";
            let e = fails_with(&tools(&args), 1);
            assert!(
                e.contains("row-tiled copy")
                    && e.contains(&format!("({tiled} bytes)"))
                    && e.contains("cap of 8388608"),
                "{args:?}: {e}"
            );
        }
    } else if runtime::kernels::level() != runtime::kernels::Level::Portable {
        // Other SIMD hosts repack base 3 to 2-bit in memory (the portable kernels read it as
        // it is).
        commands.push(m64);
        commands.push(b64);
    } else {
        eprintln!("NOTE: portable kernels: generate/bench run base 3 as it is, only `tools repack` is checked");
    }
    for args in commands {
        let e = fails_with(&tools(&args), 1);
        assert!(
            e.contains("repacking")
                && e.contains(&need.to_string())
                && e.contains("cap of 67108864"),
            "{args:?}: {e}"
        );
        assert!(!out.exists());
    }
    // Within the cap but not within the process's address space (ulimit -v 64 MiB: the binary
    // and its libraries, under 8 MiB, and the 13 MB blob fit; the 67 MB of unpacked weights do
    // not): a one-line refusal by the system, not an abort.
    let e = fails_with(
        &tools_limited(64 << 10, &["repack", m, "--out", o, "--max-memory", "1T"]),
        1,
    );
    assert!(e.contains("the system refused"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!out.exists());
    // With room, it works.
    let ok = tools(&["repack", m, "--out", o, "--ternary", "2bit"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_max_memory_advice_fits_the_machine() {
    // Following "raise it with --max-memory N" got the process OOM-killed when N was more
    // than the machine had. The advice now names what the machine has, and a need beyond it is
    // refused whatever the cap.
    let dir = tmp("advice");
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let m = model.to_str().unwrap();
    // The session, and the row-tiled copy of the matrices at the x86-64 SIMD levels.
    let bytes = std::fs::read(&model).unwrap();
    let copy = match runtime::kernels::tiled_level() {
        true => runtime::Model::from_bytes(&bytes).unwrap().tiled_bytes(),
        false => 0,
    };
    let need = session_bytes_prefill(&TINY, TINY.ctx_len, TINY.ctx_len / 2) + copy;
    let args = [
        "generate",
        "--model",
        m,
        "--prompt",
        "ab",
        "--max-memory",
        "64",
    ];
    // The real machine: the figure is a plausible byte count (1 MiB .. 1 PiB).
    let e = fails_with(&tools(&args), 1);
    let available: u64 = e
        .split("this machine has ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no machine figure in: {e}"));
    assert!((1 << 20..1 << 50).contains(&available), "{e}");
    assert!(e.contains(&format!("--max-memory {need}")), "{e}");
    // A machine with less than the need (the test hook stands in for /proc/meminfo): no
    // advice to raise the cap, and a high cap does not let it through.
    let small = (need / 2).to_string();
    for cap in ["64", "1T"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tools"))
            .args([
                "generate",
                "--model",
                m,
                "--prompt",
                "ab",
                "--max-memory",
                cap,
            ])
            .env("TOOLS_TEST_AVAILABLE_MEMORY", &small)
            .output()
            .unwrap();
        let e = fails_with(&out, 1);
        assert!(
            e.contains(&format!(
                "more than the {small} bytes this machine has available"
            )) && e.contains("cannot run here")
                && !e.contains("raise it"),
            "{cap}: {e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn absurd_numbers_get_a_short_message_naming_the_range() {
    // `--temperature 1e308` echoed a 309-digit number; `chat --tokens -1` named 0..=4294967295.
    for args in [
        vec!["generate", "--temperature", "1e308"],
        vec!["generate", "--temperature=-0.5"],
        vec!["generate", "--temperature", "NaN"],
        vec!["generate", "--temperature", "inf"],
        vec!["chat", "--temperature", "100.5"],
        vec!["chat", "--temperature=-1e-300"],
    ] {
        let e = fails_with(&tools(&args), 1);
        assert!(
            e.contains("between 0 and 100") && e.len() < 100,
            "{args:?}: {e}"
        );
        assert!(!e.contains(&"0".repeat(20)), "{args:?}: {e}");
    }
    for t in ["-1", "1000001", "4294967296"] {
        let e = fails_with(&tools(&["chat", &format!("--tokens={t}")]), 2);
        assert!(e.contains("0..=1000000"), "{t}: {e}");
    }
}

#[test]
fn a_bad_section_names_its_tensor_and_layer() {
    // "invalid value in Ternary section at byte 8735" did not say it was layer 5's w_gate.
    let dir = tmp("bad-section");
    let c = Config {
        n_layers: 3,
        ffn_gated: true,
        ..TINY
    };
    let mut b = blob(c, "gated");
    let m = runtime::Model::from_bytes(&b).unwrap();
    let e = m
        .layout()
        .layer_entry(2, runtime::TensorKind::WGate)
        .unwrap();
    let data_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    b[data_offset + e.offset as usize + 5] = 0b10; // an invalid 2-bit code
    let crc = crc32(&b[32..]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    let model = write(&dir, "bad.bin", &b);
    let e = fails_with(&tools(&["inspect", model.to_str().unwrap()]), 1);
    assert!(
        e.contains("layer 2 w_gate") && e.contains("byte 5 of its section"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eval_gives_the_same_loss_for_any_thread_count() {
    // The loss changed in its last digits with --threads: the per-thread sums were added in
    // an order that depended on the split.
    let dir = tmp("eval-threads");
    let model = write(&dir, "tiny.bin", &blob(TINY, "tiny"));
    let text: String = (0..300_000u64)
        .map(|i| (b'a' + ((i * 7 + i / 13) % 5) as u8) as char)
        .collect();
    let data = write(&dir, "data.txt", text.as_bytes());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let loss = |threads: &str| -> String {
        let out = tools(&[
            "eval",
            "--model",
            m,
            "--data",
            d,
            "--json",
            "--threads",
            threads,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["windows"], 1764);
        // The exact decimal form serde_json prints (shortest round trip): equal bits.
        v["integer_val_loss"].to_string()
    };
    let one = loss("1");
    for t in ["2", "3", "7", "16"] {
        assert_eq!(loss(t), one, "--threads {t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_qemu_refuses_a_model_larger_than_the_partition() {
    // QEMU's loader placed it past the partition's end and the firmware locked up.
    let dir = tmp("qemu-big");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/run-qemu.sh");
    let big = dir.join("big.bin");
    let partition = tools::uf2::MODEL_PARTITION_BYTES as u64;
    std::fs::File::create(&big)
        .unwrap()
        .set_len(partition + 1)
        .unwrap();
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args(["--serial", big.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{e}");
    assert!(
        e.contains(&(partition + 1).to_string()) && e.contains(&partition.to_string()),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
