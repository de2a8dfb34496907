//! Writes a random-weight blob (for firmware bring-up before a trained model exists, and as a
//! fuzz seed).
//!
//! `cargo run -p runtime --features writer --example random_blob -- OUT.bin [--seed N] [--preset tiny|mcu|mcu-plain]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::exit;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut seed = 1u64;
    let mut preset = String::from("tiny");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--preset" => preset = args.next().unwrap_or_else(|| usage()),
            "-h" | "--help" => usage(),
            _ if out.is_none() && !a.starts_with('-') => out = Some(a),
            _ => usage(),
        }
    }
    let Some(out) = out else { usage() };
    let config = match preset.as_str() {
        "tiny" => common::TINY,
        "mcu" => runtime::Config {
            ffn_gated: true,
            ffn_dim: 336,
            ..common::MCU
        },
        "mcu-plain" => common::MCU,
        _ => usage(),
    };
    let mut params = common::random_model(config, seed);
    params.val_loss_micro_nats = None;
    params.metadata = format!("random weights, preset {preset}, seed {seed}");
    let blob = params.to_blob().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        exit(1)
    });
    if let Err(e) = std::fs::write(&out, &blob) {
        eprintln!("error: writing {out}: {e}");
        exit(1);
    }
    eprintln!(
        "wrote {out}: {} bytes, {config:?}; session for full context: {} bytes",
        blob.len(),
        runtime::session_bytes(&config, config.ctx_len)
    );
}

fn usage() -> ! {
    eprintln!(
        "usage: random_blob OUT.bin [--seed N] [--preset tiny|mcu|mcu-plain]\n  \
         tiny:      d 32, 2 layers, 2 heads, ffn 64, ctx 32, vocab 65\n  \
         mcu:       d 128, 6 layers, 4 heads, 4 kv heads, gated ffn 336, ctx 128, vocab 65 (format v3)\n  \
         mcu-plain: the same with the plain ffn 512 of the earlier mcu preset"
    );
    exit(2)
}
