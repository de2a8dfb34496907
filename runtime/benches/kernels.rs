//! Kernel benchmarks: `cargo bench -p runtime --bench kernels` (filter with a name, e.g.
//! `-- ternary_matvec_512x128`). Every dispatching kernel runs at each level this CPU has
//! (`portable`, `avx2`, `avx512vnni`, `neon`), next to the scalar reference; the ternary ones
//! also on the row-tiled copy (`tiled avx2`, `tiled avx512vnni`) at the levels that read it.
//! Throughput is in multiply-accumulates ("elements").

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runtime::format::ternary_row_bytes;
use runtime::kernels::tiled::{tile_packed2, tiled_len};
use runtime::kernels::{self, fast, reference, Level};
use std::hint::black_box;

/// The mcu preset's shapes ([128][128] attention, [336][128] gated up and gate, [128][336]
/// down), and the 2048×2048 GEMV that bitnet.cpp publishes per-thread figures for.
const SHAPES: [(u32, u32); 4] = [(128, 128), (336, 128), (128, 336), (2048, 2048)];

use runtime::SplitMix64 as Rng;

/// Random valid codes (0b00, 0b01, 0b11) in the real columns, zero padding.
fn ternary_matrix(rng: &mut Rng, rows: u32, cols: u32) -> (Vec<u8>, usize) {
    let rb = ternary_row_bytes(cols);
    let mut w = vec![0u8; rows as usize * rb];
    for r in 0..rows as usize {
        for k in 0..cols as usize {
            let code = [0u8, 1, 3][(rng.next_u64() % 3) as usize];
            w[r * rb + k / 4] |= code << (2 * (k % 4));
        }
    }
    (w, rb)
}

/// Runs `f` under each supported level, named by it.
fn at_levels(mut f: impl FnMut(Level)) {
    for level in kernels::supported_levels() {
        kernels::set_level(level).unwrap();
        f(level);
    }
    kernels::set_level(kernels::detected()).unwrap();
}

fn matvec(c: &mut Criterion) {
    for (rows, cols) in SHAPES {
        let mut rng = Rng(0x1234_5678);
        let (w, rb) = ternary_matrix(&mut rng, rows, cols);
        let x: Vec<i8> = (0..rb * 4).map(|_| rng.next_u64() as i8).collect();
        let mut y = vec![0i32; rows as usize];
        let mut g = c.benchmark_group(format!("ternary_matvec_{rows}x{cols}"));
        g.throughput(Throughput::Elements(rows as u64 * cols as u64));
        g.bench_function("reference", |b| {
            b.iter(|| reference::ternary_matvec(black_box(&w), rb, black_box(&x), &mut y))
        });
        g.bench_function("fast", |b| {
            b.iter(|| fast::ternary_matvec(black_box(&w), rb, black_box(&x), &mut y))
        });
        let mut buf = vec![0u8; tiled_len(rows as usize, rb * 4)];
        let t = tile_packed2(&w, rb, rows as usize, &mut buf).unwrap();
        at_levels(|level| {
            g.bench_function(level.name(), |b| {
                b.iter(|| kernels::ternary_matvec(black_box(&w), rb, black_box(&x), &mut y))
            });
            if kernels::tiled_level() {
                g.bench_function(format!("tiled {}", level.name()), |b| {
                    b.iter(|| kernels::ternary_matvec_tiled(black_box(&t), black_box(&x), &mut y))
                });
            }
        });
        g.finish();
    }
}

fn matmul(c: &mut Criterion) {
    // A prefill block of 64 tokens.
    let n = 64;
    for (rows, cols) in SHAPES {
        let mut rng = Rng(0x0BAD_5EED);
        let (w, rb) = ternary_matrix(&mut rng, rows, cols);
        let x: Vec<i8> = (0..n * rb * 4).map(|_| rng.next_u64() as i8).collect();
        let mut y = vec![0i32; n * rows as usize];
        let mut scratch = vec![0i8; kernels::matmul_scratch_bytes(rb * 4, n)];
        let mut g = c.benchmark_group(format!("ternary_matmul_{rows}x{cols}_block{n}"));
        g.throughput(Throughput::Elements(n as u64 * rows as u64 * cols as u64));
        let mut buf = vec![0u8; tiled_len(rows as usize, rb * 4)];
        let t = tile_packed2(&w, rb, rows as usize, &mut buf).unwrap();
        at_levels(|level| {
            g.bench_function(level.name(), |b| {
                b.iter(|| {
                    kernels::ternary_matmul(black_box(&w), rb, black_box(&x), &mut y, &mut scratch)
                })
            });
            if kernels::tiled_level() {
                g.bench_function(format!("tiled {}", level.name()), |b| {
                    b.iter(|| kernels::ternary_matmul_tiled(black_box(&t), black_box(&x), &mut y))
                });
            }
        });
        g.finish();
    }
}

fn int8(c: &mut Criterion) {
    // Attention scores: 128 keys of head_dim 32, 4 KV heads interleaved (stride 128); the LM
    // head: 65 rows of 128.
    for (name, rows, len, stride) in [
        ("scores_128x32", 128, 32, 128),
        ("lm_head_65x128", 65, 128, 128),
    ] {
        let mut rng = Rng(0xFACE_FEED);
        let m: Vec<i8> = (0..rows * stride).map(|_| rng.next_u64() as i8).collect();
        let x: Vec<i8> = (0..len).map(|_| rng.next_u64() as i8).collect();
        let mut y = vec![0i32; rows];
        let mut g = c.benchmark_group(format!("int8_matvec_{name}"));
        g.throughput(Throughput::Elements((rows * len) as u64));
        g.bench_function("reference", |b| {
            b.iter(|| reference::int8_matvec(black_box(&m), stride, black_box(&x), &mut y))
        });
        at_levels(|level| {
            g.bench_function(level.name(), |b| {
                b.iter(|| kernels::int8_matvec(black_box(&m), stride, black_box(&x), &mut y))
            });
        });
        g.finish();
    }
    // Value accumulation: 128 positions of head_dim 32, stride 128.
    let (t, hd, stride) = (128, 32, 128);
    let mut rng = Rng(0xABCD_0123);
    let coef: Vec<i32> = (0..t).map(|_| (rng.next_u64() >> 8) as i32).collect();
    let v: Vec<i8> = (0..t * stride).map(|_| rng.next_u64() as i8).collect();
    let mut acc = vec![0i64; hd];
    let mut g = c.benchmark_group("int8_weighted_sum_128x32");
    g.throughput(Throughput::Elements((t * hd) as u64));
    g.bench_function("reference", |b| {
        b.iter(|| reference::int8_weighted_sum(black_box(&coef), black_box(&v), stride, &mut acc))
    });
    at_levels(|level| {
        g.bench_function(level.name(), |b| {
            b.iter(|| kernels::int8_weighted_sum(black_box(&coef), black_box(&v), stride, &mut acc))
        });
    });
    g.finish();
}

criterion_group!(benches, matvec, matmul, int8);
criterion_main!(benches);
