//! One suite for every kernel implementation: each must equal the scalar reference exactly.

use super::{decode_base3, decode_ternary, dsp, encode_base3, encode_ternary, fast, lut, lut2};
use super::{reference, tiled, Level};
use crate::blob::format::{ternary5_row_bytes, ternary_row_bytes, MAX_WIDTH};
use std::vec;
use std::vec::Vec;

use crate::rng::SplitMix64 as Rng;

/// Packs `[rows][cols]` weights in {-1,0,1} into padded 2-bit rows.
fn pack(weights: &[i8], rows: usize, cols: usize) -> (Vec<u8>, usize) {
    let rb = ternary_row_bytes(cols as u32);
    let mut out = vec![0u8; rows * rb];
    for r in 0..rows {
        for c in 0..cols {
            out[r * rb + c / 4] |= encode_ternary(weights[r * cols + c]) << (2 * (c % 4));
        }
    }
    (out, rb)
}

/// Packs `[rows][cols]` weights in {-1,0,1} into base-3 rows (format v2): weight `c` is
/// digit `c / rb` of byte `c % rb`.
fn pack5(weights: &[i8], rows: usize, cols: usize) -> (Vec<u8>, usize) {
    let rb = ternary5_row_bytes(cols as u32);
    let mut out = vec![0u8; rows * rb];
    for r in 0..rows {
        for c in 0..cols {
            out[r * rb + c % rb] += encode_base3(weights[r * cols + c]) * 3u8.pow((c / rb) as u32);
        }
    }
    (out, rb)
}

/// Every base-3 kernel against the 2-bit reference result `want` for the same weights. The
/// input's padding entries hold garbage: they meet zero digits.
fn check_matvec5(weights: &[i8], rows: usize, cols: usize, x: &[i8], want: &[i32]) {
    let (w, rb) = pack5(weights, rows, cols);
    let mut xp = vec![-77i8; rb * 5];
    xp[..cols].copy_from_slice(x);
    let kernels: [(&str, MatVec); 3] = [
        ("base3 reference", reference::ternary5_matvec),
        ("base3 lut", lut::ternary5_matvec),
        ("base3 dispatch", super::ternary5_matvec),
    ];
    for (name, f) in kernels {
        let mut got = vec![-7i32; rows];
        f(&w, rb, &xp, &mut got);
        assert_eq!(got, want, "{name} rows={rows} cols={cols}");
    }
    // Two tokens through the block entry point.
    let mut x2 = xp.clone();
    x2.extend_from_slice(&xp);
    let mut got = vec![-7i32; 2 * rows];
    super::ternary5_matmul(&w, rb, &x2, &mut got);
    assert_eq!(&got[..rows], want, "base3 matmul rows={rows} cols={cols}");
    assert_eq!(&got[rows..], want, "base3 matmul rows={rows} cols={cols}");
    // The tiled copy of the base-3 rows, as wide as the 2-bit encoding pads them (the pass's
    // activation stride), its padding activations holding garbage.
    let tc = ternary_row_bytes(cols as u32) * 4;
    let mut buf = vec![0x5Au8; tiled::tiled_len(rows, tc)];
    let m = tiled::tile_base3(&w, rb, rows, tc, &mut buf).expect("tiled shapes");
    let weight = |r: usize, c: usize| {
        if c < cols {
            weights[r * cols + c] as i32
        } else {
            0
        }
    };
    let mut xt: Vec<i8> = (0..2 * tc).map(|k| (k as i8).wrapping_mul(23)).collect();
    xt[..cols].copy_from_slice(x);
    xt[tc..tc + cols].copy_from_slice(x);
    let mut want2 = want.to_vec();
    want2.extend_from_slice(want);
    check_tiled_matrix(&m, &weight, &xt, 2, &want2);
}

type MatVec = fn(&[u8], usize, &[i8], &mut [i32]);
type Dot = fn(&[i8], &[i8]) -> i32;
type Int8MatVec = fn(&[i8], usize, &[i8], &mut [i32]);

/// Runs `f` at `level` through the public dispatching entry points, or returns false when
/// this CPU lacks the level. Levels are process-wide, but every level returns the same
/// results, so tests running in parallel cannot disturb one another.
fn at_level<R>(level: Level, f: impl FnOnce() -> R) -> Option<R> {
    super::set_level(level).ok()?;
    let r = f();
    let _ = super::set_level(super::detected());
    Some(r)
}

/// The matvec variants this CPU can run, by name.
fn matvecs() -> Vec<(&'static str, MatVec)> {
    let mut v: Vec<(&'static str, MatVec)> = vec![
        ("fast", fast::ternary_matvec),
        ("dsp lanes (portable SMLAD)", dsp::ternary_matvec_lanes),
        (
            "lut (tables over groups of 4 activations)",
            lut2::ternary_matvec,
        ),
        #[cfg(runtime_dsp)]
        ("dsp", dsp::ternary_matvec),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        use super::x86_64 as x;
        if Level::Avx2.supported() {
            v.push(("avx2", |w, rb, xs, y| {
                // SAFETY: AVX2 is supported (checked above).
                unsafe { x::ternary_matvec_avx2(w, rb, xs, y) }
            }));
            v.push(("avx2 matmul (one token)", |w, rb, xs, y| {
                let mut scratch = vec![0i8; super::matmul_scratch_bytes(rb * 4, 1)];
                // SAFETY: as above.
                unsafe { x::ternary_matmul_avx2(w, rb, xs, y, &mut scratch) }
            }));
        }
        if Level::Avx512Vnni.supported() {
            v.push(("avx512vnni", |w, rb, xs, y| {
                // SAFETY: AVX-512 VNNI is supported (checked above).
                unsafe { x::ternary_matvec_vnni(w, rb, xs, y) }
            }));
            v.push(("avx512vnni matmul (one token)", |w, rb, xs, y| {
                let mut scratch = vec![0i8; super::matmul_scratch_bytes(rb * 4, 1)];
                // SAFETY: as above.
                unsafe { x::ternary_matmul_vnni(w, rb, xs, y, &mut scratch) }
            }));
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    v.push(("neon", super::aarch64::ternary_matvec_neon));
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    v.push(("simd128", super::wasm32::ternary_matvec_simd128));
    v
}

/// The int8 matrix-vector variants this CPU can run.
fn int8_matvecs() -> Vec<(&'static str, Int8MatVec)> {
    let mut v: Vec<(&'static str, Int8MatVec)> = vec![("fast", fast::int8_matvec)];
    #[cfg(target_arch = "x86_64")]
    if Level::Avx2.supported() {
        v.push(("avx2", |m, stride, x, y| {
            // SAFETY: AVX2 is supported (checked above).
            unsafe { super::x86_64::int8_matvec_avx2(m, stride, x, y) }
        }));
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    v.push(("neon", super::aarch64::int8_matvec_neon));
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    v.push(("simd128", super::wasm32::int8_matvec_simd128));
    #[cfg(runtime_dsp)]
    v.push(("dsp", dsp::int8_matvec));
    v
}

const DOTS: &[(&str, Dot)] = &[
    ("fast", fast::int8_dot),
    ("dsp pairs (portable SXTB16/SMLAD)", dsp::int8_dot_pairs),
    #[cfg(runtime_dsp)]
    ("dsp", dsp::int8_dot),
];

type TiledKernel = fn(&tiled::TiledMatrix<'_>, &[i8], &mut [i32]);

/// The tiled kernels this CPU can run: `(name, kernel, block kernel)`.
fn tiled_kernels() -> Vec<(&'static str, TiledKernel, bool)> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut v: Vec<(&'static str, TiledKernel, bool)> = vec![
        ("tiled reference", reference::ternary_matvec_tiled, false),
        ("tiled dispatch", super::ternary_matvec_tiled, false),
        ("tiled dispatch matmul", super::ternary_matmul_tiled, true),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        use super::x86_64 as x;
        if Level::Avx2.supported() {
            v.push((
                "tiled avx2",
                |m, xs, y| {
                    // SAFETY: AVX2 is supported (checked above).
                    unsafe { x::tiled_matvec_avx2(m, xs, y) }
                },
                false,
            ));
            v.push((
                "tiled avx2 matmul",
                |m, xs, y| {
                    // SAFETY: as above.
                    unsafe { x::tiled_matmul_avx2(m, xs, y) }
                },
                true,
            ));
        }
        if Level::AvxVnni.supported() {
            v.push((
                "tiled avxvnni",
                |m, xs, y| {
                    // SAFETY: AVX-VNNI is supported (checked above).
                    unsafe { x::tiled_matvec_avxvnni(m, xs, y) }
                },
                false,
            ));
            v.push((
                "tiled avxvnni matmul",
                |m, xs, y| {
                    // SAFETY: as above.
                    unsafe { x::tiled_matmul_avxvnni(m, xs, y) }
                },
                true,
            ));
        }
        if Level::Avx512Vnni.supported() {
            // The AVX-VNNI kernel's EVEX twin: the same code with the other encoding of
            // `vpdpbusd`, so its arithmetic is tested where AVX-VNNI is missing.
            v.push((
                "tiled vnni256 (the avxvnni kernel's twin)",
                |m, xs, y| {
                    // SAFETY: AVX-512 VNNI (with VL) is supported (checked above).
                    unsafe { x::tiled_matvec_vnni256(m, xs, y) }
                },
                false,
            ));
            v.push((
                "tiled vnni256 matmul (the avxvnni kernel's twin)",
                |m, xs, y| {
                    // SAFETY: as above.
                    unsafe { x::tiled_matmul_vnni256(m, xs, y) }
                },
                true,
            ));
            v.push((
                "tiled avx512vnni",
                |m, xs, y| {
                    // SAFETY: AVX-512 VNNI is supported (checked above).
                    unsafe { x::tiled_matvec_vnni(m, xs, y) }
                },
                false,
            ));
            v.push((
                "tiled avx512vnni matmul",
                |m, xs, y| {
                    // SAFETY: as above.
                    unsafe { x::tiled_matmul_vnni(m, xs, y) }
                },
                true,
            ));
        }
    }
    v
}

/// The 2-bit matrix `w` rewritten in the tiled layout, through every tiled kernel (and the
/// dispatchers at every level) for the `n` tokens `xs [n][rb·4]`, against the blob reference's
/// `want [n][rows]`. The buffer starts dirty: tiling must write every byte.
fn check_tiled(w: &[u8], rb: usize, rows: usize, xs: &[i8], n: usize, want: &[i32]) {
    let cols = rb * 4;
    let mut buf = vec![0xA5u8; tiled::tiled_len(rows, cols)];
    let m = tiled::tile_packed2(w, rb, rows, &mut buf).expect("tiled shapes");
    let weight = |r: usize, c: usize| decode_ternary(w[r * rb + c / 4] >> (2 * (c % 4)));
    check_tiled_matrix(&m, &weight, xs, n, want);
}

/// A tiled matrix `m`, whose weight `(r, c)` must be `weight(r, c)`, through every tiled kernel
/// (and the dispatchers at every level) for the `n` tokens `xs [n][m.cols()]`, against `want
/// [n][rows]`.
fn check_tiled_matrix(
    m: &tiled::TiledMatrix<'_>,
    weight: &dyn Fn(usize, usize) -> i32,
    xs: &[i8],
    n: usize,
    want: &[i32],
) {
    let (rows, cols) = (m.rows(), m.cols());
    for r in 0..rows.div_ceil(16) * 16 {
        for c in 0..cols {
            let w = if r < rows { weight(r, c) } else { 0 };
            assert_eq!(m.weight(r, c), w, "weight ({r}, {c})");
        }
    }
    let run = |name: &str, f: TiledKernel, block: bool| {
        let mut got = vec![-7i32; n * rows];
        if block {
            f(m, xs, &mut got);
        } else {
            for (xt, yt) in xs.chunks_exact(cols).zip(got.chunks_exact_mut(rows)) {
                f(m, xt, yt);
            }
        }
        assert_eq!(got, want, "{name} rows={rows} cols={cols} n={n}");
    };
    for (name, f, block) in tiled_kernels() {
        run(name, f, block);
    }
    for level in super::supported_levels() {
        at_level(level, || {
            run(level.name(), super::ternary_matvec_tiled, false);
            run(level.name(), super::ternary_matmul_tiled, true);
        });
    }
}

fn check_matvec(weights: &[i8], rows: usize, cols: usize, x: &[i8]) {
    let (w, rb) = pack(weights, rows, cols);
    let mut xp = vec![0i8; rb * 4];
    xp[..cols].copy_from_slice(x);
    let mut want = vec![0i32; rows];
    reference::ternary_matvec(&w, rb, &xp, &mut want);
    // The reference against the plain definition on unpacked weights.
    for r in 0..rows {
        let d: i32 = (0..cols)
            .map(|c| weights[r * cols + c] as i32 * x[c] as i32)
            .sum();
        assert_eq!(want[r], d);
    }
    for (name, f) in matvecs() {
        let mut got = vec![-7i32; rows];
        f(&w, rb, &xp, &mut got);
        assert_eq!(got, want, "{name} rows={rows} cols={cols}");
    }
    // Through the dispatcher at every level this CPU has.
    for level in super::supported_levels() {
        let got = at_level(level, || {
            let mut got = vec![-7i32; rows];
            super::ternary_matvec(&w, rb, &xp, &mut got);
            got
        });
        if let Some(got) = got {
            assert_eq!(got, want, "dispatch {level} rows={rows} cols={cols}");
        }
    }
    check_matvec5(weights, rows, cols, x, &want);
    // The tiled layout, its padding activations holding garbage (they meet zero weights).
    let mut xg = xp.clone();
    for (k, v) in xg[cols..].iter_mut().enumerate() {
        *v = (k as i8).wrapping_mul(-59);
    }
    check_tiled(&w, rb, rows, &xg, 1, &want);
}

/// A block of `n` tokens through every matrix kernel, against the reference token by token.
fn check_matmul(weights: &[i8], rows: usize, cols: usize, xs: &[i8], n: usize) {
    let (w, rb) = pack(weights, rows, cols);
    let a = rb * 4;
    let mut xp = vec![0i8; n * a];
    for t in 0..n {
        xp[t * a..t * a + cols].copy_from_slice(&xs[t * cols..(t + 1) * cols]);
        // Padding activations may hold anything (the weights' padding codes are zero).
        for (k, v) in xp[t * a + cols..(t + 1) * a].iter_mut().enumerate() {
            *v = (k as i8).wrapping_mul(37);
        }
    }
    let mut want = vec![0i32; n * rows];
    reference::ternary_matmul(&w, rb, &xp, &mut want);
    for t in 0..n {
        let mut one = vec![0i32; rows];
        reference::ternary_matvec(&w, rb, &xp[t * a..(t + 1) * a], &mut one);
        assert_eq!(one, want[t * rows..(t + 1) * rows]);
    }
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut kernels: Vec<(&str, MatMul)> = vec![("dispatch", super::ternary_matmul)];
    #[cfg(target_arch = "x86_64")]
    {
        if Level::Avx2.supported() {
            kernels.push(("avx2", |w, rb, x, y, s| {
                // SAFETY: AVX2 is supported (checked above).
                unsafe { super::x86_64::ternary_matmul_avx2(w, rb, x, y, s) }
            }));
        }
        if Level::Avx512Vnni.supported() {
            kernels.push(("avx512vnni", |w, rb, x, y, s| {
                // SAFETY: AVX-512 VNNI is supported (checked above).
                unsafe { super::x86_64::ternary_matmul_vnni(w, rb, x, y, s) }
            }));
        }
    }
    for (name, f) in kernels {
        let mut scratch = vec![1i8; super::matmul_scratch_bytes(a, n)];
        let mut got = vec![-7i32; n * rows];
        f(&w, rb, &xp, &mut got, &mut scratch);
        assert_eq!(got, want, "{name} rows={rows} cols={cols} n={n}");
    }
    check_tiled(&w, rb, rows, &xp, n, &want);
    // Too little scratch: still exact (token by token).
    let mut got = vec![-7i32; n * rows];
    super::ternary_matmul(&w, rb, &xp, &mut got, &mut []);
    assert_eq!(got, want, "no scratch rows={rows} cols={cols} n={n}");
    for level in super::supported_levels() {
        if let Some(got) = at_level(level, || {
            let mut scratch = vec![0i8; super::matmul_scratch_bytes(a, n)];
            let mut got = vec![-7i32; n * rows];
            super::ternary_matmul(&w, rb, &xp, &mut got, &mut scratch);
            got
        }) {
            assert_eq!(got, want, "dispatch {level} rows={rows} cols={cols} n={n}");
        }
    }
}

type MatMul = fn(&[u8], usize, &[i8], &mut [i32], &mut [i8]);

/// `y[r] = m[r·stride..][..len] · x` through every variant.
fn check_int8_matvec(m: &[i8], stride: usize, x: &[i8], rows: usize) {
    let mut want = vec![0i32; rows];
    reference::int8_matvec(m, stride, x, &mut want);
    for (r, w) in want.iter().enumerate() {
        let plain: i64 = (0..x.len())
            .map(|j| m[r * stride + j] as i64 * x[j] as i64)
            .sum();
        assert_eq!(*w as i64, plain);
    }
    for (name, f) in int8_matvecs() {
        let mut got = vec![-7i32; rows];
        f(m, stride, x, &mut got);
        assert_eq!(
            got,
            want,
            "{name} len={} stride={stride} rows={rows}",
            x.len()
        );
    }
    for level in super::supported_levels() {
        if let Some(got) = at_level(level, || {
            let mut got = vec![-7i32; rows];
            super::int8_matvec(m, stride, x, &mut got);
            got
        }) {
            assert_eq!(got, want, "dispatch {level} len={}", x.len());
        }
    }
}

fn check_dot(a: &[i8], b: &[i8]) {
    let want = reference::int8_dot(a, b);
    let plain: i64 = a.iter().zip(b).map(|(x, y)| *x as i64 * *y as i64).sum();
    assert_eq!(want as i64, plain);
    for &(name, f) in DOTS {
        assert_eq!(f(a, b), want, "{name} len={}", a.len());
    }
}

#[test]
fn ternary_random_shapes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..200 {
        let rows = 1 + rng.below(9) as usize;
        let cols = 1 + rng.below(300) as usize;
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        let x: Vec<i8> = (0..cols).map(|_| rng.next_u64() as i8).collect();
        check_matvec(&w, rows, cols, &x);
    }
}

#[test]
fn ternary_long_rows_cross_dsp_chunks() {
    // Rows longer than one packed chunk, with lengths around its multiples.
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let c = dsp::CHUNK;
    for cols in [c - 1, c, c + 1, c + 64, 2 * c - 3, 2 * c + 100, 3 * c + 17] {
        let rows = 1 + rng.below(5) as usize;
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        let x: Vec<i8> = (0..cols).map(|_| rng.next_u64() as i8).collect();
        check_matvec(&w, rows, cols, &x);
    }
}

#[test]
fn dsp_lane_table_and_packing() {
    for b in 0..=255u8 {
        let [lo, hi] = dsp::LANES[b as usize];
        let lanes = [lo as i16, (lo >> 16) as i16, hi as i16, (hi >> 16) as i16];
        for (j, l) in lanes.iter().enumerate() {
            assert_eq!(
                *l as i32,
                decode_ternary(b >> (2 * j)),
                "byte {b:#04x} weight {j}"
            );
        }
    }
    let x: Vec<i8> = vec![-128, 127, -1, 0, 5, -7, 1, -128];
    let mut p = vec![0u32; 4];
    dsp::pack_pairs(&x, &mut p);
    for (k, w) in p.iter().enumerate() {
        assert_eq!(*w as i16, x[2 * k] as i16);
        assert_eq!((*w >> 16) as i16, x[2 * k + 1] as i16);
    }
    // SMLAD: signed 16-bit halves, products summed, wrapping.
    let h = |lo: i16, hi: i16| (lo as u16) as u32 | ((hi as u16) as u32) << 16;
    assert_eq!(dsp::smlad(10, h(-1, 1), h(-128, 127)), 10 + 128 + 127);
    assert_eq!(
        dsp::smlad(0, h(-32768, -32768), h(-32768, -32768)),
        i32::MIN
    );
    assert_eq!(dsp::smlad(-5, h(3, -2), h(-7, 9)), -5 - 21 - 18);
}

#[test]
fn ternary_extremes() {
    let cols = MAX_WIDTH as usize; // the longest row
    for (wv, xv) in [(1i8, 127i8), (1, -128), (-1, -128), (-1, 127)] {
        let w = vec![wv; 3 * cols];
        let x = vec![xv; cols];
        check_matvec(&w, 3, cols, &x);
    }
    // Alternating signs, and mixed rows.
    let w: Vec<i8> = (0..2 * 130)
        .map(|i| if i % 2 == 0 { 1 } else { -1 })
        .collect();
    let x: Vec<i8> = (0..130)
        .map(|i| if i % 3 == 0 { -128 } else { 127 })
        .collect();
    check_matvec(&w, 2, 130, &x);
}

#[test]
fn ternary_row_groups_and_i16_bounds() {
    // The SIMD kernels' groups of four and eight rows and their remainders, on 128-column rows
    // (activations held in registers, eight rows reduced in i16) and on rows of several chunks
    // and passes; then the extremes of the i16 sums: every q = w + 1 = 2 against -128 gives
    // exactly -32768 for a 128-column row.
    let mut rng = Rng(0xC0FF_EE00_D15E_A5E5);
    for rows in [7, 8, 9, 12, 16, 17, 23, 336] {
        for cols in [64, 100, 128, 192, 336, 384, 2048] {
            let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
            let x: Vec<i8> = (0..cols).map(|_| rng.next_u64() as i8).collect();
            check_matvec(&w, rows, cols, &x);
        }
    }
    for (wv, xv) in [(1i8, -128i8), (1, 127), (-1, -128), (-1, 127), (0, -128)] {
        for (rows, cols) in [(17, 128), (9, 384), (8, 2048), (5, 1024 + 128)] {
            check_matvec(&vec![wv; rows * cols], rows, cols, &vec![xv; cols]);
        }
    }
}

#[test]
fn int8_dot_random_and_extremes() {
    let mut rng = Rng(12345);
    for _ in 0..200 {
        let n = rng.below(200) as usize;
        let a: Vec<i8> = (0..n).map(|_| rng.next_u64() as i8).collect();
        let b: Vec<i8> = (0..n).map(|_| rng.next_u64() as i8).collect();
        check_dot(&a, &b);
    }
    let n = MAX_WIDTH as usize;
    check_dot(&vec![-128; n], &vec![-128; n]);
    check_dot(&vec![127; n], &vec![-128; n]);
    check_dot(&vec![127; n + 1], &vec![127; n + 1]);
}

#[test]
fn ternary_matmul_random_blocks() {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    for _ in 0..60 {
        let rows = 1 + rng.below(11) as usize;
        let cols = 1 + rng.below(600) as usize;
        let n = 1 + rng.below(9) as usize;
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        let x: Vec<i8> = (0..n * cols).map(|_| rng.next_u64() as i8).collect();
        check_matmul(&w, rows, cols, &x, n);
    }
    // More tokens than one tile, rows wider than one pass.
    for (rows, cols, n) in [(5, 128, 70), (3, 1100, 5), (4, 2048 + 64, 3), (2, 64, 130)] {
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        let x: Vec<i8> = (0..n * cols).map(|_| rng.next_u64() as i8).collect();
        check_matmul(&w, rows, cols, &x, n);
    }
}

#[test]
fn ternary_matmul_extremes() {
    for (wv, xv) in [(1i8, 127i8), (1, -128), (-1, -128), (-1, 127)] {
        for cols in [64, 128, 192, 1024 + 64, MAX_WIDTH as usize] {
            // Five rows: the one-row loops; seventeen: two groups of eight and one more.
            for (rows, n) in [(5, 3), (17, 5)] {
                check_matmul(&vec![wv; rows * cols], rows, cols, &vec![xv; n * cols], n);
            }
        }
    }
}

#[test]
fn ternary_wide_passes_and_all_ones_rows() {
    // Rows across the SIMD kernels' 1024-column passes, and whole rows of +1 / -1.
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for cols in [960, 1024, 1088, 2047, 3000] {
        for rows in [1, 4, 7] {
            let w: Vec<i8> = (0..rows * cols)
                .map(|i| if (i / cols) % 2 == 0 { 1 } else { -1 })
                .collect();
            let x: Vec<i8> = (0..cols).map(|_| rng.next_u64() as i8).collect();
            check_matvec(&w, rows, cols, &x);
        }
    }
}

#[test]
fn int8_matvec_random_and_extremes() {
    let mut rng = Rng(0x1357_9BDF_2468_ACE0);
    for _ in 0..100 {
        let len = rng.below(150) as usize;
        let stride = len + rng.below(40) as usize;
        let rows = rng.below(10) as usize;
        let m: Vec<i8> = (0..rows * stride + len)
            .map(|_| rng.next_u64() as i8)
            .collect();
        let x: Vec<i8> = (0..len).map(|_| rng.next_u64() as i8).collect();
        check_int8_matvec(&m, stride, &x, rows);
    }
    let n = MAX_WIDTH as usize;
    for (a, b) in [(-128i8, -128i8), (127, -128), (127, 127)] {
        for len in [1, 15, 16, 17, 33, n] {
            check_int8_matvec(&vec![a; 3 * len], len, &vec![b; len], 3);
        }
    }
}

#[test]
fn dispatch_levels() {
    let best = super::detected();
    assert!(best.supported());
    assert!(Level::Portable.supported());
    let levels: Vec<Level> = super::supported_levels().collect();
    assert_eq!(levels.first(), Some(&Level::Portable));
    assert_eq!(levels.last(), Some(&best));
    #[cfg(target_arch = "x86_64")]
    {
        assert!(!Level::Neon.supported());
        assert_eq!(
            super::set_level(Level::Neon),
            Err(super::dispatch::Unsupported(Level::Neon))
        );
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(best, Level::Neon);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    assert_eq!(best, Level::Simd128);
    #[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
    assert_eq!(best, Level::Portable);
    at_level(Level::Portable, || {
        assert_eq!(super::level(), Level::Portable)
    })
    .unwrap();
}

#[test]
fn int8_matvec_head_rows() {
    // Rows of 32 (one attention head): the AVX2 kernel's eight-rows path and its remainder.
    let mut rng = Rng(0x1832);
    for rows in [1, 7, 8, 9, 16, 23, 130] {
        for stride in [32, 128] {
            let m: Vec<i8> = (0..rows * stride).map(|_| rng.next_u64() as i8).collect();
            let x: Vec<i8> = (0..32).map(|_| rng.next_u64() as i8).collect();
            check_int8_matvec(&m, stride, &x, rows);
            // Every entry −128: the largest products.
            check_int8_matvec(&vec![-128; rows * stride], stride, &[-128; 32], rows);
        }
    }
}

#[test]
fn int8_weighted_sum_random_and_extremes() {
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let check = |coef: &[i32], v: &[i8], stride: usize, hd: usize| {
        let mut want = vec![0i64; hd];
        reference::int8_weighted_sum(coef, v, stride, &mut want);
        let mut got = vec![-3i64; hd];
        fast::int8_weighted_sum(coef, v, stride, &mut got);
        assert_eq!(got, want, "fast");
        let mut got = vec![7i64; want.len()];
        fast::int8_weighted_sum_blocked(coef, v, stride, &mut got);
        assert_eq!(got, want, "blocked");
        assert_eq!(got, want, "fast");
        #[cfg(target_arch = "x86_64")]
        if Level::Avx2.supported() {
            let mut got = vec![-3i64; hd];
            // SAFETY: AVX2 is supported (checked above).
            unsafe { super::x86_64::int8_weighted_sum_avx2(coef, v, stride, &mut got) };
            assert_eq!(got, want, "avx2");
        }
        #[cfg(target_arch = "x86_64")]
        if Level::Avx512Vnni.supported() {
            let mut got = vec![-3i64; hd];
            // SAFETY: AVX-512 is supported (checked above).
            unsafe { super::x86_64::int8_weighted_sum_avx512(coef, v, stride, &mut got) };
            assert_eq!(got, want, "avx512");
        }
        for level in super::supported_levels() {
            let got = at_level(level, || {
                let mut got = vec![-3i64; hd];
                super::int8_weighted_sum(coef, v, stride, &mut got);
                got
            });
            assert_eq!(got, Some(want.clone()), "dispatch {level}");
        }
    };
    for _ in 0..100 {
        let hd = if rng.below(2) == 0 {
            8 * (1 + rng.below(9) as usize)
        } else {
            1 + rng.below(70) as usize
        };
        let stride = hd + rng.below(3) as usize * hd;
        let t = 1 + rng.below(140) as usize;
        let coef: Vec<i32> = (0..t)
            .map(|_| match rng.below(5) {
                0 => 0,
                // Negative coefficients: the contract allows |c| ≤ 2^24.
                1 => -((rng.next_u64() % (1 << 24)) as i32),
                _ => (rng.next_u64() % (1 << 24)) as i32,
            })
            .collect();
        let v: Vec<i8> = (0..t * stride).map(|_| rng.next_u64() as i8).collect();
        check(&coef, &v, stride, hd);
    }
    // Largest coefficients against -128 / +127 over the longest context.
    let t = crate::blob::format::MAX_CTX as usize;
    for x in [-128i8, 127] {
        check(&vec![1 << 24; t], &vec![x; t * 32], 32, 32);
        check(&vec![-(1 << 24); t], &vec![x; t * 32], 32, 32);
        check(&vec![-(1 << 24); t - 1], &vec![x; t * 48], 48, 48);
        check(&vec![-(1 << 24); t], &vec![x; t * 40], 40, 40);
    }
}

#[test]
fn softmax_coefficients_twins() {
    use super::softmax::{softmax_coefficients, softmax_coefficients_scalar};
    use crate::fixed::Dyadic;
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    // `vector`: whether the x86-64 twins must take the inputs (else they decline with `None`).
    let run_with = |scores: &[i64], v_scale: &[Dyadic], nkv: usize, vector: bool| {
        let _ = vector; // only the x86-64 twins use it
        let len = scores.len();
        let (mut s_want, mut c_want) = (scores.to_vec(), vec![-1i32; len]);
        let want = softmax_coefficients_scalar(&mut s_want, &mut c_want, v_scale, nkv);
        let (mut s, mut c) = (scores.to_vec(), vec![-1i32; len]);
        let got = super::softmax32::softmax_coefficients_32(&mut s, &mut c, v_scale, nkv);
        assert_eq!(
            (got, s, c),
            (want, s_want.clone(), c_want.clone()),
            "32-bit twin: len {len} nkv {nkv}"
        );
        #[cfg(target_arch = "x86_64")]
        for level in [Level::Avx2, Level::Avx512Vnni] {
            if !level.supported() {
                continue;
            }
            let (mut s, mut c) = (scores.to_vec(), vec![-1i32; len]);
            // SAFETY: the level is supported (checked above).
            let got = unsafe {
                match level {
                    Level::Avx2 => {
                        super::x86_64::softmax_coefficients_avx2(&mut s, &mut c, v_scale, nkv)
                    }
                    _ => super::x86_64::softmax_coefficients_avx512(&mut s, &mut c, v_scale, nkv),
                }
            };
            if vector {
                assert_eq!(got, Some(want), "{level} len {len} nkv {nkv}");
                assert_eq!(
                    (s, c),
                    (s_want.clone(), c_want.clone()),
                    "{level} len {len} nkv {nkv}"
                );
            } else {
                assert_eq!(got, None, "{level}");
            }
        }
        for level in super::supported_levels() {
            let got = at_level(level, || {
                let (mut s, mut c) = (scores.to_vec(), vec![-1i32; len]);
                let r = softmax_coefficients(&mut s, &mut c, v_scale, nkv);
                (r, s, c)
            });
            assert_eq!(got, Some((want, s_want.clone(), c_want.clone())), "{level}");
        }
    };
    let normal = |rng: &mut Rng, lo: i32, hi: i32| Dyadic {
        mant: (1 << 31) | (rng.next_u64() as u32 >> 1),
        exp: lo + rng.below((hi - lo + 1) as u64) as i32,
    };
    for _ in 0..300 {
        let len = 1 + rng.below(150) as usize;
        let nkv = 1 + rng.below(4) as usize;
        // Scores in Q24 nats: a spread of a few nats, or tens (weights underflow), or extremes.
        let spread: i64 = [1 << 24, 8 << 24, 40 << 24, 1 << 62][rng.below(4) as usize];
        let base = rng.next_u64() as i64 >> 3;
        let scores: Vec<i64> = (0..len)
            .map(|_| match rng.below(20) {
                0 => -(1 << 62),
                1 => 1 << 62,
                _ => base.saturating_sub((rng.next_u64() >> 1) as i64 % spread),
            })
            .collect();
        let (lo, hi) =
            [(-80, 20), (-2000, -1900), (1950, 2000), (-2000, 2000)][rng.below(4) as usize];
        let v_scale: Vec<Dyadic> = (0..len * nkv)
            .map(|_| match rng.below(10) {
                0 => Dyadic::ZERO,
                _ => normal(&mut rng, lo, hi),
            })
            .collect();
        run_with(&scores, &v_scale, nkv, true);
    }
    // Every weight and scale zero; one key; the largest scales.
    run_with(&[5, 5, 5], &[Dyadic::ZERO; 3], 1, true);
    run_with(&[0], &[Dyadic::ONE], 1, true);
    run_with(
        &[7; 9],
        &[Dyadic {
            mant: u32::MAX,
            exp: 2000,
        }; 9],
        1,
        true,
    );
    // A non-normalized scale: the vector twin declines, the dispatcher still matches.
    run_with(
        &[0, -3, 9, 1 << 30],
        &[Dyadic { mant: 3, exp: 0 }; 4],
        1,
        false,
    );
    // One value scale out of the clamp among good ones, at the start, middle and end.
    for at in [0, 5, 8] {
        let mut vs = vec![Dyadic::ONE; 9];
        vs[at] = Dyadic {
            mant: 1 << 31,
            exp: 2001,
        };
        run_with(&[3, -7, 11, 0, 1 << 20, -9, 4, 2, 1], &vs, 1, false);
    }
}

#[test]
fn attention_scores_twins() {
    use super::softmax::{attention_scores, attention_scores_scalar};
    use crate::fixed::Dyadic;
    let mut rng = Rng(0xA77E_4710_5C0B_E5ED);
    let run = |dots: &[i32], q: Dyadic, ks: &[Dyadic], nkv: usize, vector: bool| {
        let _ = vector; // only the x86-64 twins use it
        let len = dots.len();
        let mut want = vec![-1i64; len];
        attention_scores_scalar(dots, q, ks, nkv, &mut want);
        let mut got = vec![-1i64; len];
        super::softmax32::attention_scores_32(dots, q, ks, nkv, &mut got);
        assert_eq!(got, want, "32-bit twin: q {q:?}");
        #[cfg(target_arch = "x86_64")]
        for level in [Level::Avx2, Level::Avx512Vnni] {
            if !level.supported() {
                continue;
            }
            let mut got = vec![-1i64; len];
            // SAFETY: the level is supported (checked above).
            let took = unsafe {
                match level {
                    Level::Avx2 => super::x86_64::attention_scores_avx2(dots, q, ks, nkv, &mut got),
                    _ => super::x86_64::attention_scores_avx512(dots, q, ks, nkv, &mut got),
                }
            };
            assert_eq!(took, vector, "{level}");
            if vector {
                assert_eq!(got, want, "{level} q {q:?}");
            }
        }
        for level in super::supported_levels() {
            let got = at_level(level, || {
                let mut got = vec![-1i64; len];
                attention_scores(dots, q, ks, nkv, &mut got);
                got
            });
            assert_eq!(got.as_ref(), Some(&want), "{level}");
        }
    };
    let normal = |rng: &mut Rng, lo: i32, hi: i32| Dyadic {
        mant: (1 << 31) | (rng.next_u64() as u32 >> 1),
        exp: lo + rng.below((hi - lo + 1) as u64) as i32,
    };
    for _ in 0..400 {
        let len = 1 + rng.below(140) as usize;
        let nkv = 1 + rng.below(4) as usize;
        // Exponent ranges: typical, shifts far right (0), far left (saturation), clamps.
        let (lo, hi) = [
            (-90, -40),
            (-200, -100),
            (-40, 40),
            (-2000, 2000),
            (1990, 2000),
        ][rng.below(5) as usize];
        let q = match rng.below(8) {
            0 => Dyadic::ZERO,
            _ => normal(&mut rng, lo / 2, hi / 2),
        };
        let ks: Vec<Dyadic> = (0..len * nkv)
            .map(|_| match rng.below(8) {
                0 => Dyadic::ZERO,
                _ => normal(&mut rng, lo / 2, hi / 2),
            })
            .collect();
        let dots: Vec<i32> = (0..len)
            .map(|_| match rng.below(10) {
                0 => 0,
                1 => -(1 << 29),
                2 => (1 << 29) - 1,
                _ => (rng.next_u64() as i32) >> (2 + rng.below(25)),
            })
            .collect();
        run(&dots, q, &ks, nkv, true);
    }
    run(
        &[5, -5],
        Dyadic { mant: 7, exp: 0 },
        &[Dyadic::ONE; 2],
        1,
        false,
    );
    // One key scale the vector twins do not take, after and among good ones (the AVX2 twin
    // finds it while writing: the dispatcher's scalar run must write every score again).
    for bad in [
        Dyadic { mant: 3, exp: 0 },
        Dyadic {
            mant: 1 << 31,
            exp: 2001,
        },
        Dyadic {
            mant: 1 << 31,
            exp: -2001,
        },
    ] {
        for at in [0, 5, 8] {
            let mut ks = vec![Dyadic::ONE; 9];
            ks[at] = bad;
            run(
                &[3, -7, 11, 0, 1 << 20, -9, 4, 2, 1],
                Dyadic::ONE,
                &ks,
                1,
                false,
            );
        }
    }
}

#[test]
fn lut_tables_and_chunk_boundaries() {
    // Every entry of a group's table is BIAS + the group's sum for that byte's codes.
    let x: Vec<i8> = vec![-128, 127, -1, 5, 0, -128, 127, 127];
    let mut table = vec![core::mem::MaybeUninit::<u32>::uninit(); 2 * 128];
    lut2::build(&x, &mut table);
    // SAFETY: `build` wrote both groups' 128 words.
    let words: Vec<u32> = table.iter().map(|w| unsafe { w.assume_init() }).collect();
    for g in 0..2 {
        for b in 0..=255u8 {
            let w = words[g * 128 + b as usize / 2];
            let entry = if b % 2 == 0 {
                w as u16
            } else {
                (w >> 16) as u16
            };
            let want: i32 = (0..4)
                .map(|i| decode_ternary(b >> (2 * i)) * x[4 * g + i] as i32)
                .sum();
            assert_eq!(
                entry as i32,
                lut::BIAS as i32 + want,
                "group {g} byte {b:#04x}"
            );
        }
    }
    // Rows around the chunk width (GROUPS groups of 4 activations).
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let c = 4 * lut::GROUPS;
    for cols in [c - 1, c, c + 1, 2 * c - 4, 2 * c + 3, 4 * c, 4 * c + 60] {
        let rows = 1 + rng.below(7) as usize;
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        let x: Vec<i8> = (0..cols).map(|_| rng.next_u64() as i8).collect();
        check_matvec(&w, rows, cols, &x);
    }
}

#[test]
fn base3_digits_and_tables() {
    // Every byte below 243 decodes to the digits that encode it.
    for v in 0..243u32 {
        let ws: Vec<i8> = (0..5).map(|k| decode_base3(v as u8, k) as i8).collect();
        let back: u32 = ws
            .iter()
            .enumerate()
            .map(|(k, w)| encode_base3(*w) as u32 * 3u32.pow(k as u32))
            .sum();
        assert_eq!(back, v);
    }
    assert_eq!(decode_base3(0, 0), 0);
    assert_eq!(decode_base3(1, 0), 1);
    assert_eq!(decode_base3(2, 0), -1);
    assert_eq!(decode_base3(2 * 81, 4), -1);
    // Every entry of a group's table is BIAS5 + the group's sum, for strided groups.
    let c = 3; // 3 bytes per row: group g holds columns g, g + 3, ..., g + 12
    let x: Vec<i8> = vec![
        -128, 127, -1, 5, 0, -128, 127, 127, 3, -9, 100, -100, 1, 2, -3,
    ];
    let mut table = vec![core::mem::MaybeUninit::<u32>::uninit(); 3 * 128];
    lut::build5(&x, c, 0, 3, &mut table);
    // SAFETY: `build5` wrote all three groups' 128 words.
    let words: Vec<u32> = table.iter().map(|w| unsafe { w.assume_init() }).collect();
    for g in 0..3 {
        // Entries 243..256 are never read (no valid byte indexes them).
        for v in 0..243usize {
            let w = words[g * 128 + v / 2];
            let entry = if v % 2 == 0 {
                w as u16
            } else {
                (w >> 16) as u16
            };
            let want: i32 = (0..5)
                .map(|k| decode_base3(v as u8, k) * x[g + k * c] as i32)
                .sum();
            assert_eq!(entry as i32, lut::BIAS5 as i32 + want, "group {g} byte {v}");
        }
    }
    // Rows around the LUT chunk (GROUPS bytes of 5 weights) and its word tails.
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let g = 5 * lut::GROUPS;
    for cols in [
        1,
        4,
        5,
        6,
        19,
        20,
        21,
        g - 5,
        g - 1,
        g,
        g + 1,
        g + 5,
        2 * g + 13,
        512,
    ] {
        let rows = 1 + rng.below(7) as usize;
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        let x: Vec<i8> = (0..cols).map(|_| rng.next_u64() as i8).collect();
        check_matvec(&w, rows, cols, &x);
    }
}
