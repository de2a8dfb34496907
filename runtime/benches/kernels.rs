//! Kernel benchmarks: `cargo bench -p runtime --bench kernels`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runtime::format::ternary_row_bytes;
use runtime::kernels::{fast, reference};
use std::hint::black_box;

fn matvec(c: &mut Criterion) {
    // The mcu preset's shapes: [128][128] attention, [512][128] up, [128][512] down.
    for (rows, cols) in [(128u32, 128u32), (512, 128), (128, 512)] {
        let rb = ternary_row_bytes(cols);
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        // Random valid codes (0b00, 0b01, 0b11) in the real columns, zero padding.
        let mut w = vec![0u8; rows as usize * rb];
        for r in 0..rows as usize {
            for k in 0..cols as usize {
                let code = [0u8, 1, 3][(next() % 3) as usize];
                w[r * rb + k / 4] |= code << (2 * (k % 4));
            }
        }
        let x: Vec<i8> = (0..rb * 4).map(|_| next() as i8).collect();
        let mut y = vec![0i32; rows as usize];
        let mut g = c.benchmark_group(format!("ternary_matvec_{rows}x{cols}"));
        g.throughput(Throughput::Elements(rows as u64 * cols as u64));
        g.bench_function("reference", |b| {
            b.iter(|| reference::ternary_matvec(black_box(&w), rb, black_box(&x), &mut y))
        });
        g.bench_function("fast", |b| {
            b.iter(|| fast::ternary_matvec(black_box(&w), rb, black_box(&x), &mut y))
        });
        g.finish();
    }
}

criterion_group!(benches, matvec);
criterion_main!(benches);
