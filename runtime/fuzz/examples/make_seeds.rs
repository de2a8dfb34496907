//! Writes the seed corpora of both fuzz targets: small valid blobs of several configs (MHA,
//! GQA, MQA, a minimal one with ctx_len 1, a multi-byte vocabulary with shared prefixes, a gated
//! FFN in format v3).
//!
//! `cargo run --manifest-path runtime/fuzz/Cargo.toml --example make_seeds -- OUT_DIR`
//! writes `OUT_DIR/load_and_generate/*.bin` (raw blobs) and `OUT_DIR/encode/*.bin`
//! (`[n][text][blob]`, the `encode` target's input). `make-seeds.sh` calls it.

#[path = "../../tests/common/mod.rs"]
mod common;

use runtime::Config;

fn config(v: u32, d: u32, l: u32, h: u32, kv: u32, f: u32, t: u32) -> Config {
    Config {
        vocab_size: v,
        d_model: d,
        n_layers: l,
        n_heads: h,
        n_kv_heads: kv,
        ffn_dim: f,
        ctx_len: t,
        rope_theta: 10000,
        ffn_gated: false,
    }
}

fn main() {
    let out = std::env::args().nth(1).expect("usage: make_seeds OUT_DIR");
    let out = std::path::Path::new(&out);
    let raw = out.join("load_and_generate");
    let enc = out.join("encode");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::create_dir_all(&enc).unwrap();

    let shared: Vec<Vec<u8>> = [
        "a", "b", "ab", "abc", "bc", " ", "\n", "é", "é!", "\u{2603}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // (name, config, seed, vocab: None = the tiny-Shakespeare characters)
    type Seed = (&'static str, Config, u64, Option<Vec<Vec<u8>>>);
    let seeds: Vec<Seed> = vec![
        ("mha-d16-l1", config(20, 16, 1, 2, 2, 32, 8), 1, None),
        ("gqa-d32-h4-kv2", config(24, 32, 1, 4, 2, 48, 12), 2, None),
        ("mqa-d16-h4-kv1", config(16, 16, 2, 4, 1, 16, 6), 3, None),
        ("min-d2-ctx1", config(1, 2, 1, 1, 1, 1, 1), 4, None),
        (
            "vocab-shared-prefix",
            config(10, 8, 1, 2, 1, 8, 4),
            5,
            Some(shared),
        ),
        (
            "gated-gqa-d32",
            Config {
                ffn_gated: true,
                ..config(24, 32, 1, 4, 2, 48, 12)
            },
            6,
            None,
        ),
    ];
    for (name, c, seed, vocab) in seeds {
        let mut p = common::random_model(c, seed);
        if let Some(v) = vocab {
            p.vocab = v;
        }
        p.metadata = format!("fuzz seed {name}");
        if seed % 2 == 0 {
            p.val_loss_micro_nats = None;
        }
        let blob = p.to_blob().expect("valid seed params");
        runtime::Model::from_bytes(&blob).expect("seed loads");
        std::fs::write(raw.join(format!("{name}.bin")), &blob).unwrap();
        for (i, text) in ["abcab é!\n", "ROMEO: hello", "\u{2603}\u{00ff}\x7f"]
            .iter()
            .enumerate()
        {
            let mut e = vec![text.len() as u8];
            e.extend_from_slice(text.as_bytes());
            e.extend_from_slice(&blob);
            std::fs::write(enc.join(format!("{name}-{i}.bin")), &e).unwrap();
        }
        eprintln!("{name}: {} bytes, {c:?}", blob.len());
    }
}
