//! One suite for every kernel implementation: each must equal the scalar reference exactly.

use super::{decode_ternary, dsp, encode_ternary, fast, lut, reference};
use crate::format::{ternary_row_bytes, MAX_WIDTH};
use std::vec;
use std::vec::Vec;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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

type MatVec = fn(&[u8], usize, &[i8], &mut [i32]);
type Dot = fn(&[i8], &[i8]) -> i32;
const MATVECS: &[(&str, MatVec)] = &[
    ("fast", fast::ternary_matvec),
    ("dsp lanes (portable SMLAD)", dsp::ternary_matvec_lanes),
    (
        "lut (tables over groups of 4 activations)",
        lut::ternary_matvec,
    ),
    #[cfg(runtime_dsp)]
    ("dsp", dsp::ternary_matvec),
];
const DOTS: &[(&str, Dot)] = &[
    ("fast", fast::int8_dot),
    ("dsp pairs (portable SXTB16/SMLAD)", dsp::int8_dot_pairs),
    #[cfg(runtime_dsp)]
    ("dsp", dsp::int8_dot),
];

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
    for &(name, f) in MATVECS {
        let mut got = vec![0i32; rows];
        f(&w, rb, &xp, &mut got);
        assert_eq!(got, want, "{name} rows={rows} cols={cols}");
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
        let x: Vec<i8> = (0..cols).map(|_| rng.next() as i8).collect();
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
        let x: Vec<i8> = (0..cols).map(|_| rng.next() as i8).collect();
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
fn int8_dot_random_and_extremes() {
    let mut rng = Rng(12345);
    for _ in 0..200 {
        let n = rng.below(200) as usize;
        let a: Vec<i8> = (0..n).map(|_| rng.next() as i8).collect();
        let b: Vec<i8> = (0..n).map(|_| rng.next() as i8).collect();
        check_dot(&a, &b);
    }
    let n = MAX_WIDTH as usize;
    check_dot(&vec![-128; n], &vec![-128; n]);
    check_dot(&vec![127; n], &vec![-128; n]);
    check_dot(&vec![127; n + 1], &vec![127; n + 1]);
}

#[test]
fn lut_tables_and_chunk_boundaries() {
    // Every entry of a group's table is BIAS + the group's sum for that byte's codes.
    let x: Vec<i8> = vec![-128, 127, -1, 5, 0, -128, 127, 127];
    let mut table = vec![core::mem::MaybeUninit::<u32>::uninit(); 2 * 128];
    lut::build(&x, &mut table);
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
        let x: Vec<i8> = (0..cols).map(|_| rng.next() as i8).collect();
        check_matvec(&w, rows, cols, &x);
    }
}
