//! `tools bench`: whole-model speed of a blob on this host, through the integer runtime.

use std::time::Instant;

use anyhow::{anyhow, Result};
use runtime::kernels::{level, ternary_matvec};
use runtime::{session_bytes_prefill, Model, Session};
use serde::Serialize;

/// What [`bench()`] measured.
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
    /// Decode throughput of independent sessions, one per core, all at once (tokens/s summed
    /// over `threads`; one round each).
    pub decode_tokens_per_s_all_cores: f64,
    /// Worker threads behind `decode_tokens_per_s_all_cores`.
    pub threads: usize,
    /// The ternary matvec kernel alone on the model's largest matrix: multiply-accumulates
    /// per second (rows × columns per call).
    pub matvec_macs_per_s: f64,
    /// Shape `[rows, cols]` of that matrix.
    pub matvec_shape: [usize; 2],
    /// The kernel family that ran (`avx512vnni`, `avx2`, `neon`, `portable`).
    pub kernels: String,
    /// Working memory of the session (prefill blocks of half the context), bytes.
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

/// Working memory [`bench()`] needs for `rounds` rounds: one session for the timed rounds, one
/// per core for the all-cores decode, and the latency samples.
pub fn bench_bytes(config: &runtime::Config, rounds: usize) -> u64 {
    let ctx = config.ctx_len as usize;
    let prefill = (ctx / 2).max(1);
    let decode = ctx - prefill.min(ctx);
    let samples = (rounds as u64)
        .saturating_mul(decode as u64)
        .saturating_mul(8);
    let session = session_bytes_prefill(config, config.ctx_len, prefill as u32) as u64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    session
        .saturating_mul(threads.saturating_add(1))
        .saturating_add(samples)
}

/// One round: prefill `prefill` tokens (a fixed pattern) as one block, then decode greedily
/// to the end of the context. Returns the prefill time and each decode step's time, seconds.
fn round(session: &mut Session<'_, '_>, prefill: usize, decode: usize) -> Result<(f64, Vec<f64>)> {
    let vocab = session.model().config().vocab_size as usize;
    let prompt: Vec<u16> = (0..prefill).map(|i| ((i * 7 + 3) % vocab) as u16).collect();
    session.reset();
    let t0 = Instant::now();
    let mut last = argmax(session.prefill(&prompt).map_err(|e| anyhow!("{e}"))?);
    let p = t0.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(decode);
    for _ in 0..decode {
        let t = Instant::now();
        last = argmax(session.forward(last).map_err(|e| anyhow!("{e}"))?);
        lat.push(t.elapsed().as_secs_f64());
    }
    Ok((p, lat))
}

/// Multiply-accumulates per second of [`ternary_matvec`] alone on the model's largest matrix
/// (by `rows · cols`), run for about 0.3 s; and its shape.
fn matvec_speed(model: &Model<'_>) -> ([usize; 2], f64) {
    let c = model.config();
    let mut best = model.layer(0).wq;
    for l in 0..c.n_layers as usize {
        let w = model.layer(l);
        for m in [w.wq, w.wk, w.wv, w.wo, w.w_up, w.w_down] {
            if m.rows * m.cols > best.rows * best.cols {
                best = m;
            }
        }
    }
    let x: Vec<i8> = (0..best.row_bytes * 4)
        .map(|i| (i * 37 % 255) as i8)
        .collect();
    let mut y = vec![0i32; best.rows];
    let mut calls = 0u64;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < 0.3 {
        for _ in 0..64 {
            ternary_matvec(best.data, best.row_bytes, std::hint::black_box(&x), &mut y);
        }
        calls += 64;
    }
    let s = t0.elapsed().as_secs_f64();
    let macs = (best.rows * best.cols) as f64 * calls as f64;
    ([best.rows, best.cols], macs / s)
}

/// Decode tokens/s of `threads` independent sessions running one round each at once (a
/// thread that cannot be spawned is skipped; none at all: one round here).
fn all_cores(
    model: Model<'_>,
    ctx: u32,
    block: u32,
    prefill: usize,
    decode: usize,
    threads: usize,
) -> Result<(f64, usize)> {
    let work = || -> Result<f64> {
        let mut mem = crate::memory::zeroed(session_bytes_prefill(model.config(), ctx, block))?;
        let mut session =
            Session::with_block(model, ctx, block, &mut mem).map_err(|e| anyhow!("{e}"))?;
        let (_, lat) = round(&mut session, prefill, decode)?;
        Ok(lat.iter().sum())
    };
    let results: Vec<Result<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
            .collect();
        if handles.is_empty() {
            return vec![work()];
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a bench thread panicked")))
            })
            .collect()
    });
    let n = results.len();
    let mut busiest = 0f64;
    for r in results {
        busiest = busiest.max(r?);
    }
    Ok(if busiest > 0.0 {
        ((n * decode) as f64 / busiest, n)
    } else {
        (0.0, n)
    })
}

/// Runs `rounds` rounds (plus one warm-up): prefill half the context with a fixed token pattern
/// (one block: batched prefill), then decode greedily to the end of the context, timing every
/// decode step. Then the same decode on every core at once, and the matvec kernel alone.
pub fn bench(model: Model<'_>, flash_bytes: usize, rounds: usize) -> Result<BenchReport> {
    let ctx = model.config().ctx_len;
    let prefill = (ctx as usize / 2).max(1);
    let decode = ctx as usize - prefill;
    let block = prefill as u32;
    let ram = session_bytes_prefill(model.config(), ctx, block);
    let mut mem = crate::memory::zeroed(ram)?;
    let mut session =
        Session::with_block(model, ctx, block, &mut mem).map_err(|e| anyhow!("{e}"))?;
    let mut prefill_s = 0.0;
    let mut latencies: Vec<f64> = Vec::new();
    latencies
        .try_reserve_exact(rounds.saturating_mul(decode))
        .map_err(|_| {
            anyhow!("--rounds {rounds}: no memory for {rounds} × {decode} latency samples")
        })?;
    for r in 0..=rounds {
        let (p, lat) = round(&mut session, prefill, decode)?;
        if r > 0 {
            prefill_s += p;
            latencies.extend(lat);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (all_cores_tps, threads) = all_cores(model, ctx, block, prefill, decode, threads)?;
    let (matvec_shape, matvec_macs_per_s) = matvec_speed(&model);
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
        decode_tokens_per_s_all_cores: all_cores_tps,
        threads,
        matvec_macs_per_s,
        matvec_shape,
        kernels: level().name().to_string(),
        session_ram_bytes: ram,
        flash_bytes,
    })
}
