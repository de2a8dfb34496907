//! `tools bench`: whole-model speed of a blob on this host, through the integer runtime, and
//! the ternary matvec kernel alone at the model's largest shape and at 2048×2048: the kernel and
//! matrix layout the model runs (the row-tiled copy at the x86-64 SIMD levels, the blob's 2-bit
//! rows elsewhere).
//!
//! Kernel speed is reported in multiply-accumulates per second and, on x86-64, in TSC cycles
//! per MAC: `rdtsc` read around the same timed loop as the wall clock, so the TSC rate
//! (`tsc_hz`) is measured, not assumed. TSC cycles are reference cycles at the TSC's fixed
//! rate, not core cycles: a core that boosts above it does more work per TSC cycle.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use runtime::format::ternary_row_bytes;
use runtime::kernels::tiled::{tile_packed2, tiled_len, TiledMatrix};
use runtime::kernels::{
    level, set_level, supported_levels, ternary_matvec, ternary_matvec_tiled, tiled_level, Level,
};
use runtime::{session_bytes_prefill, Model, Session};

use crate::term::shown;
use serde::Serialize;

/// Rows and columns of the large matvec shape (`matvec_large_*`): the 2048×2048 GEMV that
/// bitnet.cpp publishes per-thread figures for.
pub const LARGE_MATVEC: usize = 2048;

/// What [`bench()`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Context length of the session.
    pub ctx_len: u32,
    /// Timed rounds.
    pub rounds: usize,
    /// Prompt tokens per round (half the context).
    pub prefill_tokens: usize,
    /// Prefill throughput (all rounds).
    pub prefill_tokens_per_s: f64,
    /// Prefill throughput of the median round (a busy machine's preemptions hit few rounds).
    pub prefill_tokens_per_s_median: f64,
    /// Decode tokens per round (the rest of the context).
    pub decode_tokens: usize,
    /// Decode throughput (forward pass plus greedy pick).
    pub decode_tokens_per_s: f64,
    /// Decode throughput at the median latency (`10^6 / decode_latency_median_us`): a token
    /// takes tens of microseconds, so most run between a busy machine's preemptions.
    pub decode_tokens_per_s_median: f64,
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
    /// per second (rows × columns per call), in the median of ~0.1 ms windows over 0.3 s.
    pub matvec_macs_per_s: f64,
    /// Shape `[rows, cols]` of that matrix.
    pub matvec_shape: [usize; 2],
    /// TSC cycles per multiply-accumulate of that matvec, median window (x86-64 only; `null`
    /// elsewhere).
    pub matvec_tsc_cycles_per_mac: Option<f64>,
    /// The same, fastest window.
    pub matvec_tsc_cycles_per_mac_min: Option<f64>,
    /// The same kernel on a random 2048×2048 ternary matrix (1 MiB of 2-bit codes):
    /// multiply-accumulates per second.
    pub matvec_large_macs_per_s: f64,
    /// Shape `[rows, cols]` of the large matrix.
    pub matvec_large_shape: [usize; 2],
    /// TSC cycles per multiply-accumulate of the large matvec, median window (x86-64 only).
    pub matvec_large_tsc_cycles_per_mac: Option<f64>,
    /// The same, fastest window.
    pub matvec_large_tsc_cycles_per_mac_min: Option<f64>,
    /// TSC ticks per second, measured over the timed matvec loops against the OS's monotonic
    /// clock (x86-64 only).
    pub tsc_hz: Option<f64>,
    /// The kernel family that ran (`avx512vnni`, `avxvnni`, `avx2`, `neon`, `portable`).
    pub kernels: String,
    /// The matrix layout the matvec figures read: `tiled` (the row-tiled copy of the x86-64
    /// SIMD levels) or `blob` (the blob's 2-bit rows).
    pub matvec_layout: String,
    /// Prefill session RAM: working memory of the timed session, which prefills blocks of half
    /// the context (`tools inspect`'s "prefill RAM"; its "session RAM" runs one token per pass).
    pub prefill_session_ram_bytes: usize,
    /// Bytes of the copy of the model's matrices made in memory for this CPU's SIMD kernels:
    /// the row-tiled copy at the x86-64 levels, a base-3 blob repacked to 2-bit at the others
    /// (0: the blob ran as stored).
    pub matrix_copy_bytes: u64,
    /// Blob size, bytes.
    pub flash_bytes: usize,
}

/// A [`BenchReport`] as the text `tools bench` prints, for the blob at `model`.
pub struct Text<'a> {
    /// The report.
    pub report: &'a BenchReport,
    /// Where the blob came from.
    pub model: &'a std::path::Path,
}

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.report;
        writeln!(f, "model              {}", shown(self.model))?;
        writeln!(
            f,
            "prefill            {:.0} tokens/s ({} tokens × {} rounds; median round {:.0})",
            r.prefill_tokens_per_s, r.prefill_tokens, r.rounds, r.prefill_tokens_per_s_median
        )?;
        writeln!(
            f,
            "decode             {:.0} tokens/s ({} tokens × {} rounds; at the median latency {:.0})",
            r.decode_tokens_per_s, r.decode_tokens, r.rounds, r.decode_tokens_per_s_median
        )?;
        writeln!(
            f,
            "decode latency     median {:.1} µs, p99 {:.1} µs",
            r.decode_latency_median_us, r.decode_latency_p99_us
        )?;
        writeln!(
            f,
            "decode, all cores  {:.0} tokens/s ({} sessions at once)",
            r.decode_tokens_per_s_all_cores, r.threads
        )?;
        let per_mac = |c: Option<f64>, m: Option<f64>| match (c, m) {
            (Some(c), Some(m)) => format!(", {c:.4} TSC cycles/MAC, best {m:.4}"),
            _ => String::new(),
        };
        writeln!(
            f,
            "ternary matvec     {:.2} G MACs/s ({}×{}, {} kernels, {} layout{})",
            r.matvec_macs_per_s / 1e9,
            r.matvec_shape[0],
            r.matvec_shape[1],
            r.kernels,
            r.matvec_layout,
            per_mac(r.matvec_tsc_cycles_per_mac, r.matvec_tsc_cycles_per_mac_min)
        )?;
        writeln!(
            f,
            "                   {:.2} G MACs/s ({}×{}{})",
            r.matvec_large_macs_per_s / 1e9,
            r.matvec_large_shape[0],
            r.matvec_large_shape[1],
            per_mac(
                r.matvec_large_tsc_cycles_per_mac,
                r.matvec_large_tsc_cycles_per_mac_min
            )
        )?;
        if let Some(hz) = r.tsc_hz {
            writeln!(f, "TSC                {:.3} GHz (measured)", hz / 1e9)?;
        }
        writeln!(
            f,
            "prefill RAM        {} bytes (ctx {}, prefill in blocks of {})",
            r.prefill_session_ram_bytes, r.ctx_len, r.prefill_tokens
        )?;
        if r.matrix_copy_bytes > 0 {
            let copy = if r.matvec_layout == "tiled" {
                "matrices copied to the row-tiled layout"
            } else {
                "base-3 matrices repacked to 2-bit"
            };
            writeln!(
                f,
                "weights            {copy} in memory ({} bytes) for the {} kernels",
                r.matrix_copy_bytes, r.kernels
            )?;
        }
        writeln!(f, "flash              {} bytes", r.flash_bytes)?;
        Ok(())
    }
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
/// per core for the all-cores decode, the latency samples and the large matvec's matrix (and
/// its row-tiled copy).
pub fn bench_bytes(config: &runtime::Config, rounds: usize) -> u64 {
    let ctx = config.ctx_len as usize;
    let prefill = (ctx / 2).max(1);
    let decode = ctx - prefill.min(ctx);
    let samples = (rounds as u64)
        .saturating_mul(decode as u64)
        .saturating_mul(8);
    let session = session_bytes_prefill(config, config.ctx_len, prefill as u32) as u64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let cols = ternary_row_bytes(LARGE_MATVEC as u32) * 4;
    let large =
        (LARGE_MATVEC * cols / 4 + tiled_len(LARGE_MATVEC, cols) + LARGE_MATVEC * (1 + 4)) as u64;
    session
        .saturating_mul(threads.saturating_add(1))
        .saturating_add(samples)
        .saturating_add(large)
}

/// Runs the kernels at the level named `name` (`portable`, `avx2`, `avxvnni`, `avx512vnni`,
/// `neon`) from now on; a level this CPU cannot run is refused with the levels it can.
pub fn force_level(name: &str) -> Result<Level> {
    let all = [
        Level::Portable,
        Level::Avx2,
        Level::AvxVnni,
        Level::Avx512Vnni,
        Level::Neon,
    ];
    let Some(l) = all.into_iter().find(|l| l.name() == name) else {
        bail!(
            "--kernels {name}: no such kernel level (known: {})",
            all.map(Level::name).join(", ")
        );
    };
    set_level(l).map_err(|e| {
        let have: Vec<&str> = supported_levels().map(Level::name).collect();
        anyhow!("--kernels {name}: {e} (it runs: {})", have.join(", "))
    })?;
    Ok(l)
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

/// One timed kernel, run in windows of about 2^22 multiply-accumulates (0.1 ms at 40 G
/// MACs/s) for about 0.3 s: the median window gives the throughput (the preemptions of a busy
/// machine land in a few windows only), the fastest window the best case.
struct Timed {
    /// Multiply-accumulates per second of the median window.
    macs_per_s: f64,
    /// TSC cycles per MAC of the median and of the fastest window (x86-64).
    tsc_per_mac: Option<(f64, f64)>,
    /// TSC ticks and seconds over all windows (x86-64).
    tsc_total: Option<(u64, f64)>,
}

/// The time-stamp counter (x86-64), `None` elsewhere.
#[inline]
fn tsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC exists on every x86-64 CPU and has no preconditions.
    #[allow(unused_unsafe)]
    return Some(unsafe { core::arch::x86_64::_rdtsc() });
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The median of `v` (sorted in place); 0 for none.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The matrix a matvec figure times: the blob's 2-bit rows or the row-tiled copy.
enum Matrix<'a> {
    Blob { w: &'a [u8], row_bytes: usize },
    Tiled(TiledMatrix<'a>),
}

impl Matrix<'_> {
    /// Length of the input vector.
    fn input_len(&self) -> usize {
        match self {
            Matrix::Blob { row_bytes, .. } => row_bytes * 4,
            Matrix::Tiled(t) => t.cols(),
        }
    }

    fn matvec(&self, x: &[i8], y: &mut [i32]) {
        match self {
            Matrix::Blob { w, row_bytes } => ternary_matvec(w, *row_bytes, x, y),
            Matrix::Tiled(t) => ternary_matvec_tiled(t, x, y),
        }
    }
}

/// The matvec kernel on `w` (`rows` outputs, `cols` real columns), timed in windows.
fn time_matvec(w: &Matrix<'_>, rows: usize, cols: usize) -> Timed {
    let x: Vec<i8> = (0..w.input_len()).map(|i| (i * 37 % 255) as i8).collect();
    let mut y = vec![0i32; rows];
    let per_window = (1 << 22) / (rows * cols).max(1) + 1;
    let macs = (rows * cols * per_window) as f64;
    let mut run = || {
        for _ in 0..per_window {
            w.matvec(std::hint::black_box(&x), &mut y);
        }
    };
    run();
    let (mut secs, mut ticks) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let c_start = tsc();
    while start.elapsed().as_secs_f64() < 0.3 {
        let (c0, t0) = (tsc(), Instant::now());
        run();
        let (s, c1) = (t0.elapsed().as_secs_f64(), tsc());
        secs.push(s);
        if let (Some(a), Some(b)) = (c0, c1) {
            ticks.push(b.wrapping_sub(a) as f64);
        }
    }
    let total = (tsc(), start.elapsed().as_secs_f64());
    std::hint::black_box(&y);
    let fastest = ticks.iter().copied().fold(f64::INFINITY, f64::min);
    let per_mac = (!ticks.is_empty()).then(|| (median(&mut ticks) / macs, fastest / macs));
    let s = median(&mut secs);
    Timed {
        macs_per_s: if s > 0.0 { macs / s } else { 0.0 },
        tsc_per_mac: per_mac,
        tsc_total: c_start
            .zip(total.0)
            .map(|(a, b)| (b.wrapping_sub(a), total.1)),
    }
}

/// The model's largest ternary matrix (by `rows · cols`).
fn largest_matrix<'a>(model: &Model<'a>) -> runtime::model::TernaryMatrix<'a> {
    let c = model.config();
    let mut best = model.layer(0).wq;
    for l in 0..c.n_layers as usize {
        let w = model.layer(l);
        for m in [w.wq, w.wk, w.wv, w.wo, w.w_up, w.w_down]
            .into_iter()
            .chain(w.w_gate)
        {
            if m.rows * m.cols > best.rows * best.cols {
                best = m;
            }
        }
    }
    best
}

/// A random 2048×2048 ternary matrix in the 2-bit encoding (SplitMix64, fixed seed; a third of
/// each of −1, 0, +1).
fn large_matrix() -> (Vec<u8>, usize) {
    let rb = ternary_row_bytes(LARGE_MATVEC as u32);
    let mut w = vec![0u8; LARGE_MATVEC * rb];
    let mut rng = runtime::SplitMix64(0x9E37_79B9_7F4A_7C15);
    for r in 0..LARGE_MATVEC {
        for k in 0..LARGE_MATVEC {
            let code = [0u8, 1, 3][rng.below(3) as usize];
            w[r * rb + k / 4] |= code << (2 * (k % 4));
        }
    }
    (w, rb)
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
    let mut prefill_rounds = Vec::with_capacity(rounds);
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
            prefill_rounds.push(p);
            latencies.extend(lat);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (all_cores_tps, threads) = all_cores(model, ctx, block, prefill, decode, threads)?;
    let m = largest_matrix(&model);
    let tiled = tiled_level();
    let small = match m.tiled.filter(|_| tiled) {
        Some(t) => time_matvec(&Matrix::Tiled(t), m.rows, m.cols),
        None => time_matvec(
            &Matrix::Blob {
                w: m.data,
                row_bytes: m.row_bytes,
            },
            m.rows,
            m.cols,
        ),
    };
    let (lw, lrb) = large_matrix();
    let mut buf = Vec::new();
    let large_tiled = if tiled {
        buf = crate::memory::zeroed(tiled_len(LARGE_MATVEC, lrb * 4))?;
        tile_packed2(&lw, lrb, LARGE_MATVEC, &mut buf).map(Matrix::Tiled)
    } else {
        None
    };
    let large = time_matvec(
        &large_tiled.unwrap_or(Matrix::Blob {
            w: &lw,
            row_bytes: lrb,
        }),
        LARGE_MATVEC,
        LARGE_MATVEC,
    );
    drop(buf);
    drop(lw);
    let tsc_hz = match (small.tsc_total, large.tsc_total) {
        (Some((t0, s0)), Some((t1, s1))) => Some((t0 + t1) as f64 / (s0 + s1)),
        _ => None,
    };
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
        prefill_tokens_per_s_median: match median(&mut prefill_rounds) {
            p if p > 0.0 => prefill as f64 / p,
            _ => 0.0,
        },
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
        decode_tokens_per_s_median: if pct(0.5) > 0.0 { 1e6 / pct(0.5) } else { 0.0 },
        decode_latency_median_us: pct(0.5),
        decode_latency_p99_us: pct(0.99),
        decode_tokens_per_s_all_cores: all_cores_tps,
        threads,
        matvec_macs_per_s: small.macs_per_s,
        matvec_shape: [m.rows, m.cols],
        matvec_tsc_cycles_per_mac: small.tsc_per_mac.map(|c| c.0),
        matvec_tsc_cycles_per_mac_min: small.tsc_per_mac.map(|c| c.1),
        matvec_large_macs_per_s: large.macs_per_s,
        matvec_large_shape: [LARGE_MATVEC, LARGE_MATVEC],
        matvec_large_tsc_cycles_per_mac: large.tsc_per_mac.map(|c| c.0),
        matvec_large_tsc_cycles_per_mac_min: large.tsc_per_mac.map(|c| c.1),
        tsc_hz,
        kernels: level().name().to_string(),
        matvec_layout: if tiled && m.tiled.is_some() {
            "tiled"
        } else {
            "blob"
        }
        .to_string(),
        prefill_session_ram_bytes: ram,
        matrix_copy_bytes: 0,
        flash_bytes,
    })
}
