//! The page's decode speed, natively: the same engine and the same measurement as the page
//! (`web/www/worker.js`), on this host, at the portable kernel level (what WebAssembly runs)
//! and at the best level this CPU has.
//!
//! ```sh
//! cargo run --release -p web --example speed -- [BLOB] [TOKENS] [ROUNDS]
//! ```
//!
//! Defaults: the shipped model, 500 tokens (greedy, prompt `ROMEO:`), 5 rounds per level,
//! alternated (portable, best, portable, best, …). Prints each round and the medians.

use std::time::Instant;

use bitnet_web::{Engine, Settings};
use runtime::kernels::{detected, force_portable, set_level, Level};

/// One generation; returns decode tokens/s (tokens after the first over the time after the
/// first step, as the page counts them) and the first step's milliseconds (prefill).
fn round(engine: &mut Engine, tokens: usize) -> (f64, f64) {
    let settings = Settings::parse(&format!("temperature=0\ntokens={tokens}")).unwrap();
    engine.start(b"ROMEO:", settings).unwrap();
    let t0 = Instant::now();
    engine.step().unwrap().unwrap();
    let first = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut n = 0usize;
    while engine.step().unwrap().is_some() {
        n += 1;
    }
    (n as f64 / t1.elapsed().as_secs_f64(), first * 1e3)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../models/shakespeare-mcu.bin"),
        |s| s.as_str(),
    );
    let tokens: usize = args.get(2).map_or(500, |s| s.parse().unwrap());
    let rounds: usize = args.get(3).map_or(5, |s| s.parse().unwrap());
    let mut engine = Engine::load(std::fs::read(path).unwrap()).unwrap();
    let best = detected();
    let levels: Vec<Level> = if best == Level::Portable {
        vec![Level::Portable]
    } else {
        vec![Level::Portable, best]
    };
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
    round(&mut engine, tokens); // warm-up
    for r in 0..rounds {
        for (i, &l) in levels.iter().enumerate() {
            if l == Level::Portable {
                force_portable();
            } else {
                set_level(l).unwrap();
            }
            let (tps, first) = round(&mut engine, tokens);
            println!(
                "round {r} {:<11} decode {tps:8.0} tokens/s, first step {first:.2} ms",
                l.name()
            );
            results[i].push(tps);
        }
    }
    for (l, v) in levels.iter().zip(results.iter_mut()) {
        println!(
            "median {:<10} {:8.0} tokens/s ({} rounds of {tokens} tokens)",
            l.name(),
            median(v),
            rounds
        );
    }
}
