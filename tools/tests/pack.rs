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
    std::fs::write(&out, b"previous model").unwrap();
    std::fs::remove_file(dir.join("weights.safetensors")).unwrap();
    assert!(tools::pack::pack(&dir, &out).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), b"previous model");
}
