//! The page's decode speed, natively: the same engine and the same count as the page
//! (`web/www/worker.js`: tokens after the first over the time after the first step, window
//! slides included), on this host.
//!
//! ```sh
//! cargo run --release -p web --example speed -- LEVEL [TOKENS] [ROUNDS]
//! ```
//!
//! `LEVEL`: `portable` runs the shipped blob (base-3 matrices) with the portable kernels, as
//! WebAssembly does; `best` runs it at this CPU's best kernel level with the page's engine
//! (base-3 matrices repacked to 2-bit in memory when that level has SIMD kernels; without the
//! row-tiled copy `tools generate` makes on x86-64, so slower there than `tools`).
//! Greedy, prompt `ROMEO:`, 1000 tokens, 3 rounds after a warm-up by default; prints one
//! line per round (`web/speed.py` alternates it with the browser).

use std::time::Instant;

use bitnet_web::{Engine, Settings};
use runtime::kernels::{detected, force_portable, set_level};

/// One generation: decode tokens/s as the page counts them.
fn round(engine: &mut Engine, tokens: usize) -> f64 {
    let settings = Settings::parse(&format!("temperature=0\ntokens={tokens}")).unwrap();
    engine.start(b"ROMEO:", settings).unwrap();
    engine.step().unwrap().unwrap(); // the prompt's prefill and the first token
    let t = Instant::now();
    let mut n = 0usize;
    while engine.step().unwrap().is_some() {
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let level = args.first().map_or("portable", String::as_str);
    let tokens: usize = args.get(1).map_or(1000, |s| s.parse().expect("TOKENS"));
    let rounds: usize = args.get(2).map_or(3, |s| s.parse().expect("ROUNDS"));
    let shipped = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/shakespeare-mcu.bin"
    ))
    .unwrap();
    match level {
        "portable" => force_portable(),
        // The engine repacks base-3 matrices to 2-bit for SIMD kernels (no row-tiled copy).
        "best" => set_level(detected()).unwrap(),
        other => panic!("LEVEL is portable or best, not {other:?}"),
    }
    let mut engine = Engine::load(shipped).unwrap();
    round(&mut engine, tokens); // warm-up
    for _ in 0..rounds {
        let tps = round(&mut engine, tokens);
        println!("{} {tps:.1}", engine.kernels());
    }
}
