//! Golden test: fixed tiny models from the writer (a plain FFN, and a gated one in format v3),
//! greedy and seeded sampled decoding, byte-exact against `tests/golden/*.txt`. Regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! runtime --test golden` when a change is intended (and say why in the commit).

mod common;

use common::{random_model, TINY};
use runtime::{decode, encode, Generator, Model, SamplerConfig, Session};
use std::path::PathBuf;

fn check(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(got, want, "{name} differs (UPDATE_GOLDEN=1 regenerates)");
}

fn run(blob: &[u8], cfg: SamplerConfig) -> String {
    let m = Model::from_bytes(blob).unwrap();
    let mut mem = vec![0u8; m.session_bytes(TINY.ctx_len)];
    let mut s = Session::new(m, TINY.ctx_len, &mut mem).unwrap();
    let mut toks = [0u16; 16];
    let n = encode(&m, b"ROMEO:\n", &mut toks).unwrap();
    // T − P + 1 tokens: the window never slides, so the expected text predates sliding.
    let out: Vec<u8> = Generator::new(&mut s, &toks[..n], cfg)
        .take(TINY.ctx_len as usize - n + 1)
        .flat_map(|t| decode(&m, t.unwrap()).to_vec())
        .collect();
    String::from_utf8(out).unwrap()
}

/// The blob's length and CRC, greedy and sampled text of `c`'s random model 2024, against the
/// files `{name}_blob.txt`, `{name}_greedy.txt` and `{name}_sampled.txt`.
fn golden(name: &str, c: runtime::Config) {
    let blob = random_model(c, 2024).to_blob().unwrap();
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&blob);
    check(
        &format!("{name}_blob.txt"),
        &format!("len {} crc32 {crc:08x}\n", blob.len()),
    );
    check(
        &format!("{name}_greedy.txt"),
        &run(&blob, SamplerConfig::GREEDY),
    );
    let sampled = SamplerConfig {
        temperature_milli: 4000,
        top_k: 40,
        seed: 7,
    };
    check(&format!("{name}_sampled.txt"), &run(&blob, sampled));
}

#[test]
fn golden_tiny_model() {
    golden("tiny", TINY);
}

#[test]
fn golden_tiny_gated_model() {
    golden(
        "tiny_gated",
        runtime::Config {
            ffn_gated: true,
            ..TINY
        },
    );
}
