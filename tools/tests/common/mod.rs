//! Shared fixtures of the tools tests: synthetic run directories and blobs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use runtime::schema::{self, Source};
use runtime::writer::{LayerParams, LayerTensor, ModelParams, TernaryParams};
use runtime::Config;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tools::convert::{dyadic, rope_table};

pub const V: usize = 5;
pub const D: usize = 8;
pub const F: usize = 16;
pub const L: usize = 1;

/// A fresh, empty directory for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tools-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut rng = runtime::SplitMix64(seed.into());
    (0..n)
        .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// The config.json of [`write_run`].
pub fn run_config() -> serde_json::Value {
    serde_json::json!({
        "export_version": 1, "trainer_version": "test", "preset": "test",
        "vocab_size": V, "d_model": D, "n_layers": L, "n_heads": 2, "n_kv_heads": 1,
        "ffn_dim": F, "ctx_len": 16, "rope_theta": 10000.0, "norm_eps": 1e-5, "seed": 1,
    })
}

/// Writes a complete run dir for a 1-layer model.
pub fn write_run(dir: &Path) {
    std::fs::write(dir.join("config.json"), run_config().to_string()).unwrap();
    std::fs::write(dir.join("vocab.json"), r#"["\n", " ", "a", "b", "c"]"#).unwrap();
    std::fs::write(
        dir.join("summary.json"),
        r#"{"steps": 10, "quantized_val_loss": 1.25, "tokens_seen": 100}"#,
    )
    .unwrap();
    write_weights(dir);
}

/// Writes a complete run dir for a 1-layer model with a gated FFN (`ffn_gated`, a `w_gate`
/// per layer).
pub fn write_gated_run(dir: &Path) {
    write_run(dir);
    set_config(dir, "ffn_gated", serde_json::json!(true));
    write_weights_with(dir, true);
}

/// Writes weights.safetensors for [`run_config`]'s shapes.
pub fn write_weights(dir: &Path) {
    write_weights_with(dir, false);
}

/// Writes weights.safetensors for [`run_config`]'s shapes, with a gated FFN or not.
fn write_weights_with(dir: &Path, ffn_gated: bool) {
    write_weights_for(dir, V, ffn_gated);
}

/// Writes weights.safetensors for [`run_config`]'s shapes with `vocab` tokens.
pub fn write_weights_for(dir: &Path, vocab: usize, ffn_gated: bool) {
    // Every trainer tensor the schema declares, with its run-dir shape.
    let config = Config {
        vocab_size: vocab as u32,
        d_model: D as u32,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 1,
        ffn_dim: F as u32,
        ctx_len: 16,
        rope_theta: 10000,
        ffn_gated,
    };
    let dims = |s: &schema::TensorSpec| -> Vec<usize> {
        let t = s.trainer_shape(&config).expect("a trainer tensor");
        t.dims().iter().map(|&d| d as usize).collect()
    };
    let mut shapes: Vec<(String, Vec<usize>)> = schema::GLOBAL
        .iter()
        .filter_map(|s| Some((s.trainer_name()?.to_string(), dims(s))))
        .collect();
    for s in schema::layer_specs(&config) {
        if let Some(n) = s.trainer_name() {
            shapes.push((format!("layers.0.{n}"), dims(s)));
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

/// Rewrites one key of config.json.
pub fn set_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c[key] = value;
    std::fs::write(path, c.to_string()).unwrap();
}

/// A blob of config `c` with small deterministic weights, `metadata` and the vocabulary
/// `a`, `b`, … (bytes 0x21.. for larger vocabularies).
pub fn blob(c: Config, metadata: &str) -> Vec<u8> {
    let v = c.vocab_size as usize;
    let vocab = (0..v)
        .map(|i| {
            if v <= 26 {
                vec![b'a' + i as u8]
            } else {
                char::from_u32(0x21 + i as u32)
                    .unwrap()
                    .to_string()
                    .into_bytes()
            }
        })
        .collect();
    blob_with_vocab(c, metadata, vocab)
}

/// [`blob`] with the given tokens (`c.vocab_size` of them).
pub fn blob_with_vocab(c: Config, metadata: &str, vocab: Vec<Vec<u8>>) -> Vec<u8> {
    let d = c.d_model as usize;
    let tern = |rows: usize, cols: usize, seed: u32| TernaryParams {
        weights: values(rows * cols, seed)
            .iter()
            .map(|v| (v * 1.5).round().clamp(-1.0, 1.0) as i8)
            .collect(),
        gamma: dyadic(1.0 / (cols as f64).sqrt()).unwrap(),
    };
    // Unit gains and pseudo-random matrices, seeded by layer and matrix index, in schema order.
    let layers = (0..c.n_layers as usize)
        .map(|l| {
            let mut m = 0;
            let tensors = schema::layer_specs(&c)
                .iter()
                .filter_map(|s| {
                    let (rows, cols) = (s.rows.eval(&c, 0) as usize, s.cols.eval(&c, 0) as usize);
                    let values = match s.source {
                        Source::Gain { .. } => LayerTensor::Gains(vec![1 << 16; cols]),
                        Source::Ternary { .. } => {
                            m += 1;
                            LayerTensor::Ternary(tern(rows, cols, 10 * l as u32 + m))
                        }
                        _ => return None,
                    };
                    Some((s.kind, values))
                })
                .collect();
            LayerParams { tensors }
        })
        .collect();
    let v = c.vocab_size as usize;
    ModelParams {
        config: c,
        norm_eps: dyadic(1e-5).unwrap(),
        val_loss_micro_nats: Some(1_500_000),
        metadata: metadata.to_string(),
        vocab,
        bpe: None,
        embedding: values(v * d, 99)
            .iter()
            .map(|x| (x * 127.0) as i8)
            .collect(),
        embedding_scales: vec![dyadic(1.0 / 127.0).unwrap(); v],
        rope: rope_table(
            c.ctx_len as usize,
            c.head_dim() as usize,
            c.rope_theta as f64,
        ),
        final_norm: vec![1 << 16; d],
        layers,
    }
    .to_blob()
    .unwrap()
}

/// A tiny config: vocab 5 (`a`..`e`), d 8, 1 layer, ctx 16.
pub const TINY: Config = Config {
    vocab_size: 5,
    d_model: 8,
    n_layers: 1,
    n_heads: 2,
    n_kv_heads: 1,
    ffn_dim: 16,
    ctx_len: 16,
    rope_theta: 10000,
    ffn_gated: false,
};

/// Runs the built `tools` binary.
pub fn tools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tools"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `tools` under `sh -c` with a virtual-memory limit in KiB (`ulimit -v`).
pub fn tools_limited(kib: u64, args: &[&str]) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {kib} && exec '{}' {}",
            env!("CARGO_BIN_EXE_tools"),
            quoted.join(" ")
        ))
        .output()
        .unwrap()
}

/// Stderr of a run that must fail with exit status `code` (1: a refusal; 2: a usage error)
/// and not by a signal or a panic (101).
pub fn fails_with(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}, stderr: {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A blob of config `c` with every ternary weight 0, its matrices stored as `encodings`
/// (fast to build at any size: no random values).
pub fn zero_blob(c: Config, encodings: runtime::schema::MatrixEncodings) -> Vec<u8> {
    let d = c.d_model as usize;
    let gamma = dyadic(1.0).unwrap();
    let layers = (0..c.n_layers as usize)
        .map(|_| LayerParams {
            tensors: schema::layer_specs(&c)
                .iter()
                .filter_map(|s| {
                    let (rows, cols) = (s.rows.eval(&c, 0) as usize, s.cols.eval(&c, 0) as usize);
                    let values = match s.source {
                        Source::Gain { .. } => LayerTensor::Gains(vec![1 << 16; cols]),
                        Source::Ternary { .. } => LayerTensor::Ternary(TernaryParams {
                            weights: vec![0; rows * cols],
                            gamma,
                        }),
                        _ => return None,
                    };
                    Some((s.kind, values))
                })
                .collect(),
        })
        .collect();
    let v = c.vocab_size as usize;
    ModelParams {
        config: c,
        norm_eps: dyadic(1e-5).unwrap(),
        val_loss_micro_nats: None,
        metadata: "zero".into(),
        vocab: (0..v).map(|i| vec![b'a' + i as u8]).collect(),
        bpe: None,
        embedding: vec![1; v * d],
        embedding_scales: vec![dyadic(1.0 / 127.0).unwrap(); v],
        rope: rope_table(
            c.ctx_len as usize,
            c.head_dim() as usize,
            c.rope_theta as f64,
        ),
        final_norm: vec![1 << 16; d],
        layers,
    }
    .to_blob_with(encodings)
    .unwrap()
}
