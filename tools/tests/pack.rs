//! `tools pack` on synthetic run directories: a good one packs into a blob the runtime loads;
//! an incomplete, inconsistent or unknown-version one is refused with an error naming the
//! problem, and no output file is left behind.

mod common;

use std::path::Path;

use common::{tmp, write_run, D, F, L};
use runtime::Model;

fn pack_err(dir: &Path) -> String {
    let out = dir.join("model.bin");
    let err = tools::pack::pack(dir, &out).unwrap_err();
    assert!(!out.exists(), "a failed pack left {}", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    format!("{err:#}")
}

#[test]
fn a_complete_run_packs_into_a_loadable_blob() {
    let dir = tmp("ok");
    write_run(&dir);
    let out = dir.join("model.bin");
    let blob = tools::pack::pack(&dir, &out).unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    assert_eq!(model.config().n_kv_heads, 1);
    assert_eq!(model.val_loss_micro_nats(), Some(1_250_000));
    assert_eq!(model.token_bytes(2), Some(&b"a"[..]));
    let report = tools::inspect::inspect(&model, &blob);
    assert_eq!(
        report.ternary_weights as usize,
        L * (D * D * 2 + 2 * D * D / 2 + 2 * D * F)
    );
    assert!(report.bits_per_ternary_weight >= 2.0);
}

#[test]
fn a_gated_run_packs_as_format_v3_and_runs() {
    let dir = tmp("gated-ok");
    common::write_gated_run(&dir);
    let run = dir.display().to_string();
    let out = dir.join("g.bin").display().to_string();
    let packed = common::tools(&["pack", "--run", &run, "--out", &out]);
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let blob = std::fs::read(&out).unwrap();
    let model = Model::from_bytes(&blob).unwrap();
    assert!(model.config().ffn_gated);
    assert_eq!(model.version_major(), 3);
    let report = tools::inspect::inspect(&model, &blob);
    assert!(report.ffn_gated);
    // q, k, v, o, up, down, and the gate.
    assert_eq!(
        report.ternary_weights as usize,
        L * (D * D * 2 + 2 * D * D / 2 + 3 * D * F)
    );
    let text = common::tools(&["inspect", &out]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("format        v3.0") && text.contains("ffn 16 gated"),
        "{text}"
    );
    assert!(text.contains("w_gate") || text.contains("WGate"), "{text}");
    let json = common::tools(&["inspect", &out, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ffn_gated"], serde_json::json!(true));
    let gen = common::tools(&[
        "generate", "--model", &out, "--prompt", "ab", "--tokens", "8",
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    // A gated blob repacks both ways, byte for byte back.
    let b2 = dir.join("g2.bin").display().to_string();
    let back = dir.join("back.bin").display().to_string();
    for args in [
        ["repack", &out, "--out", &b2, "--ternary", "2bit"],
        ["repack", &b2, "--out", &back, "--ternary", "base3"],
    ] {
        let o = common::tools(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(std::fs::read(&back).unwrap() == blob);
}

#[test]
fn missing_files_are_named() {
    for missing in [
        "config.json",
        "vocab.json",
        "summary.json",
        "weights.safetensors",
    ] {
        let dir = tmp(&format!("missing-{missing}"));
        write_run(&dir);
        std::fs::remove_file(dir.join(missing)).unwrap();
        let e = pack_err(&dir);
        assert!(
            e.contains(missing) && e.contains("incomplete"),
            "{missing}: {e}"
        );
    }
}

#[test]
fn unknown_export_version_is_refused() {
    let dir = tmp("version");
    write_run(&dir);
    let c = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        c.replace("\"export_version\":1", "\"export_version\":2"),
    )
    .unwrap();
    let e = pack_err(&dir);
    assert!(e.contains("export_version 2"), "{e}");
}

#[test]
fn inconsistent_runs_are_refused() {
    // vocab.json disagrees with config.json
    let dir = tmp("vocab");
    write_run(&dir);
    std::fs::write(dir.join("vocab.json"), r#"["a", "b"]"#).unwrap();
    assert!(pack_err(&dir).contains("vocab_size"));

    // a tensor shape that does not match the config
    let dir = tmp("shape");
    write_run(&dir);
    let c = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        c.replace("\"ffn_dim\":16", "\"ffn_dim\":32"),
    )
    .unwrap();
    let e = pack_err(&dir);
    assert!(e.contains("w_up") || e.contains("ffn_sub_norm"), "{e}");

    // corrupted weights file
    let dir = tmp("corrupt");
    write_run(&dir);
    std::fs::write(dir.join("weights.safetensors"), b"not safetensors").unwrap();
    assert!(pack_err(&dir).contains("safetensors"));

    // heads that do not divide d_model
    let dir = tmp("heads");
    write_run(&dir);
    let c = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        c.replace("\"n_heads\":2", "\"n_heads\":3"),
    )
    .unwrap();
    assert!(pack_err(&dir).contains("n_heads"));
}

#[test]
fn an_existing_blob_survives_a_failed_pack() {
    let dir = tmp("keep");
    write_run(&dir);
    let out = dir.join("model.bin");
    std::fs::write(&out, b"an older model").unwrap();
    std::fs::remove_file(dir.join("weights.safetensors")).unwrap();
    assert!(tools::pack::pack(&dir, &out).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), b"an older model");
}

#[test]
fn pack_writes_base3_by_default_and_2bit_on_request_with_the_same_outputs() {
    let dir = tmp("encodings");
    write_run(&dir);
    let run = dir.display().to_string();
    let path = |name: &str| dir.join(name).display().to_string();
    let (b3, b2, mixed) = (path("b3.bin"), path("b2.bin"), path("mixed.bin"));
    for args in [
        vec!["pack", "--run", &run, "--out", &b3],
        vec!["pack", "--run", &run, "--out", &b2, "--ternary", "2bit"],
        vec![
            "pack",
            "--run",
            &run,
            "--out",
            &mixed,
            "--ternary-for",
            "w_down=2bit",
            "--ternary-for",
            "wq=2bit",
        ],
    ] {
        let out = common::tools(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (b3, b2, mixed) = (
        std::fs::read(b3).unwrap(),
        std::fs::read(b2).unwrap(),
        std::fs::read(mixed).unwrap(),
    );
    let (m3, m2, mm) = (
        Model::from_bytes(&b3).unwrap(),
        Model::from_bytes(&b2).unwrap(),
        Model::from_bytes(&mixed).unwrap(),
    );
    assert_eq!(
        (m3.version_major(), m2.version_major(), mm.version_major()),
        (2, 1, 2)
    );
    use runtime::TernaryEncoding::{Base3, Packed2};
    // The six matrices of a plain FFN (the seventh slot, a gated FFN's gate, is not held).
    assert_eq!(m3.layout().encodings()[..6], [Base3; 6]);
    assert_eq!(
        mm.layout().encodings()[..6],
        [Packed2, Base3, Base3, Base3, Base3, Packed2]
    );
    let bits = |m: &Model<'_>, b: &[u8]| tools::inspect::inspect(m, b).bits_per_ternary_weight;
    // This run's matrices are tiny, so the 48 bytes of scales per layer dominate the bits per
    // weight (the shipped shape's figures are in runtime/tests/format_v2.rs); base 3 is still
    // the smaller.
    assert!(
        bits(&m3, &b3) < bits(&m2, &b2),
        "{} vs {}",
        bits(&m3, &b3),
        bits(&m2, &b2)
    );
    assert!(b3.len() < b2.len());
    // The same weights: the same logits, bit for bit.
    let logits = |m: Model<'_>| {
        let mut mem = vec![0u8; m.session_bytes(8)];
        let mut s = runtime::Session::new(m, 8, &mut mem).unwrap();
        [2u16, 3, 2, 4]
            .iter()
            .map(|t| s.forward(*t).unwrap().to_vec())
            .collect::<Vec<_>>()
    };
    let want = logits(m2);
    assert_eq!(logits(m3), want);
    assert_eq!(logits(mm), want);
    // repack turns one into the other, byte for byte.
    let again = path("again.bin");
    let out = common::tools(&[
        "repack",
        &path("b3.bin"),
        "--out",
        &again,
        "--ternary",
        "2bit",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&again).unwrap() == b2,
        "repack to 2-bit differs from pack --ternary 2bit"
    );
}

#[test]
fn bad_encodings_are_refused_with_the_choices() {
    let dir = tmp("bad-encodings");
    write_run(&dir);
    let run = dir.display().to_string();
    let out_path = dir.join("x.bin").display().to_string();
    for (args, want) in [
        (vec!["--ternary", "3bit"], "2bit or base3"),
        (vec!["--ternary-for", "w_foo=2bit"], "w_down, w_gate"),
        (vec!["--ternary-for", "w_down"], "MATRIX=ENCODING"),
        (vec!["--ternary-for", "wq=ternary"], "2bit or base3"),
    ] {
        let mut all = vec!["pack", "--run", &run, "--out", &out_path];
        all.extend(args.iter().copied());
        let out = common::tools(&all);
        let err = common::fails_with(&out, 2);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!dir.join("x.bin").exists());
    }
    // A matrix this (plain) run does not hold: refused once its config is read.
    let all = [
        "pack",
        "--run",
        &run,
        "--out",
        &out_path,
        "--ternary-for",
        "w_gate=2bit",
    ];
    let err = common::fails_with(&common::tools(&all), 1);
    assert!(err.contains("w_gate") && err.contains("gated FFN"), "{err}");
    assert!(!dir.join("x.bin").exists());
}
