//! `tools bench`: whole-model speed of a blob on this host, through the integer runtime.

use std::time::Instant;

use anyhow::{anyhow, Result};
use runtime::{session_bytes, Model, Session};
use serde::Serialize;

/// What [`bench`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Context length of the session.
    pub ctx_len: u32,
    /// Timed rounds.
    pub rounds: usize,
    /// Prompt tokens per round (half the context).
    pub prefill_tokens: usize,
    /// Prefill throughput.
    pub prefill_tokens_per_s: f64,
    /// Decode tokens per round (the rest of the context).
    pub decode_tokens: usize,
    /// Decode throughput (forward pass plus greedy pick).
    pub decode_tokens_per_s: f64,
    /// Median decode latency per token, microseconds.
    pub decode_latency_median_us: f64,
    /// 99th percentile decode latency per token, microseconds.
    pub decode_latency_p99_us: f64,
    /// Working memory of the session, bytes.
    pub session_ram_bytes: usize,
    /// Blob size, bytes.
    pub flash_bytes: usize,
}

fn argmax(logits: &[i32]) -> u16 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u16
}

/// Working memory [`bench`] needs for `rounds` rounds: the session and the latency samples.
pub fn bench_bytes(config: &runtime::Config, rounds: usize) -> u64 {
    let ctx = config.ctx_len as usize;
    let decode = ctx - (ctx / 2).max(1).min(ctx);
    let samples = (rounds as u64)
        .saturating_mul(decode as u64)
        .saturating_mul(8);
    (session_bytes(config, config.ctx_len) as u64).saturating_add(samples)
}

/// Runs `rounds` rounds (plus one warm-up): prefill half the context with a fixed token pattern,
/// then decode greedily to the end of the context, timing every decode step.
pub fn bench(model: Model<'_>, flash_bytes: usize, rounds: usize) -> Result<BenchReport> {
    let ctx = model.config().ctx_len;
    let vocab = model.config().vocab_size as u16;
    let ram = session_bytes(model.config(), ctx);
    let mut mem = crate::memory::zeroed(ram)?;
    let mut session = Session::new(model, ctx, &mut mem).map_err(|e| anyhow!("{e}"))?;
    let prefill = (ctx as usize / 2).max(1);
    let decode = ctx as usize - prefill;
    let mut prefill_s = 0.0;
    let mut latencies: Vec<f64> = Vec::new();
    latencies
        .try_reserve_exact(rounds.saturating_mul(decode))
        .map_err(|_| {
            anyhow!("--rounds {rounds}: no memory for {rounds} × {decode} latency samples")
        })?;
    for round in 0..=rounds {
        session.reset();
        let t0 = Instant::now();
        let mut last = 0;
        for i in 0..prefill {
            let tok = ((i * 7 + 3) % vocab as usize) as u16;
            last = argmax(session.forward(tok).map_err(|e| anyhow!("{e}"))?);
        }
        let p = t0.elapsed().as_secs_f64();
        let mut lat = Vec::with_capacity(decode);
        for _ in 0..decode {
            let t = Instant::now();
            last = argmax(session.forward(last).map_err(|e| anyhow!("{e}"))?);
            lat.push(t.elapsed().as_secs_f64());
        }
        if round > 0 {
            prefill_s += p;
            latencies.extend(lat);
        }
    }
    let decode_s: f64 = latencies.iter().sum();
    let n_latencies = latencies.len();
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        if sorted.is_empty() {
            0.0
        } else {
            sorted[((sorted.len() - 1) as f64 * q).round() as usize] * 1e6
        }
    };
    Ok(BenchReport {
        ctx_len: ctx,
        rounds,
        prefill_tokens: prefill,
        prefill_tokens_per_s: if prefill_s > 0.0 {
            prefill as f64 * rounds as f64 / prefill_s
        } else {
            0.0
        },
        decode_tokens: decode,
        decode_tokens_per_s: if decode_s > 0.0 {
            n_latencies as f64 / decode_s
        } else {
            0.0
        },
        decode_latency_median_us: pct(0.5),
        decode_latency_p99_us: pct(0.99),
        session_ram_bytes: ram,
        flash_bytes,
    })
}
