//! `tools pack` on synthetic run directories: a good one packs into a blob the runtime loads;
//! an incomplete, inconsistent or unknown-version one is refused with an error naming the
//! problem, and no output file is left behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runtime::schema;
use runtime::Model;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

const V: usize = 5;
const D: usize = 8;
const F: usize = 16;
const L: usize = 1;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tools-pack-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Writes a complete run dir for a 1-layer model.
fn write_run(dir: &Path) {
    let config = serde_json::json!({
        "export_version": 1, "trainer_version": "test", "preset": "test",
        "vocab_size": V, "d_model": D, "n_layers": L, "n_heads": 2, "n_kv_heads": 1,
        "ffn_dim": F, "ctx_len": 16, "rope_theta": 10000.0, "norm_eps": 1e-5, "seed": 1,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("vocab.json"), r#"["\n", " ", "a", "b", "c"]"#).unwrap();
    std::fs::write(
        dir.join("summary.json"),
        r#"{"steps": 10, "quantized_val_loss": 1.25, "tokens_seen": 100}"#,
    )
    .unwrap();
    // Every trainer tensor the schema declares, with its run-dir shape.
    let config = runtime::Config {
        vocab_size: V as u32,
        d_model: D as u32,
        n_layers: L as u32,
        n_heads: 2,
        n_kv_heads: 1,
        ffn_dim: F as u32,
        ctx_len: 16,
        rope_theta: 10000,
    };
    let dims = |s: &schema::TensorSpec| -> Vec<usize> {
        let t = s.trainer_shape(&config).unwrap();
        t.dims().iter().map(|&d| d as usize).collect()
    };
    let mut shapes: Vec<(String, Vec<usize>)> = schema::GLOBAL
        .iter()
        .filter_map(|s| Some((s.trainer_name()?.to_string(), dims(s))))
        .collect();
    for l in 0..L {
        for s in schema::LAYER {
            if let Some(n) = s.trainer_name() {
                shapes.push((format!("layers.{l}.{n}"), dims(s)));
            }
        }
    }
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            let v = if name.contains("norm") {
                vec![1.0f32; n]
            } else {
                values(n, i as u32)
            };
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views: HashMap<String, TensorView<'_>> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(&views, None, &dir.join("weights.safetensors")).unwrap();
}

fn pack_err(dir: &Path) -> String {
    let out = dir.join("model.bin");
    let err = tools::pack::pack(dir, &out).unwrap_err();
    assert!(!out.exists(), "a failed pack left {}", out.display());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
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
