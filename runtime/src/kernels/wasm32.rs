//! WebAssembly SIMD128 kernels (the `simd128` target feature, fixed at compile time: a
//! WebAssembly module cannot test for it at run time). Each has the contract of its twin in
//! [`reference`](super::reference) and is checked against it by the shared suite (run for
//! `wasm32-wasip1` in Node's WASI in CI).
//!
//! Ternary matvec: WebAssembly has no de-interleaving load, so the weights are laid out in
//! the activations' order instead. For 16 activations `x[16q..16q + 16]` of a 64-weight chunk,
//! `i8x16.swizzle` repeats each of the code bytes `4q..4q + 4` four times, and lane `j` keeps
//! the two bits of weight `j % 4` (AND with `0x03, 0x0C, 0x30, 0xC0`). Comparing with the
//! masks of `−1` (`0b11`) and `+1` (`0b01`) gives all-ones lanes, and `eq(−1) − eq(+1)` is the
//! weight itself (`0b10`, never stored, gives 0 as in [`decode_ternary`](super::decode_ternary)).
//! `i16x8.extmul` multiplies exactly (`|w · x| ≤ 128`); a 64-weight chunk sums 8 products per
//! 16-bit lane (`≤ 1024`) before `i32x4.extadd_pairwise` widens it.

use core::arch::wasm32::*;

/// `row_bytes` the SIMD128 kernel accepts (whole 16-byte code vectors).
pub const fn row_bytes_ok(row_bytes: usize) -> bool {
    row_bytes.is_multiple_of(16) && row_bytes > 0
}

/// Bits of weight `j % 4` in lane `j`; also the pattern of a `−1` (`0b11`) weight.
const FIELD: v128 = u8x16(
    3, 12, 48, 192, 3, 12, 48, 192, 3, 12, 48, 192, 3, 12, 48, 192,
);
/// The pattern of a `+1` (`0b01`) weight in lane `j`.
const PLUS: v128 = u8x16(1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64);
/// Swizzles that repeat code bytes `4q..4q + 4` four times each, `q = 0..4`.
const SPREAD: [v128; 4] = [
    u8x16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
    u8x16(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
    u8x16(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
    u8x16(
        12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15,
    ),
];

/// Sum of the four `i32` lanes (exact: the kernels' bounds keep it in range).
#[inline(always)]
fn sum_lanes(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        .wrapping_add(i32x4_extract_lane::<1>(v))
        .wrapping_add(i32x4_extract_lane::<2>(v))
        .wrapping_add(i32x4_extract_lane::<3>(v))
}

/// `y = W · x`: the contract of [`reference::ternary_matvec`](super::reference::ternary_matvec)
/// for [`row_bytes_ok`] rows.
pub fn ternary_matvec_simd128(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert!(row_bytes_ok(row_bytes));
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    if x.len() < row_bytes * 4 || !row_bytes_ok(row_bytes) {
        return;
    }
    for (out, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
        let mut acc = i32x4_splat(0);
        for (c, codes) in row.chunks_exact(16).enumerate() {
            // SAFETY: `codes` is 16 bytes; `x` has `4 · row_bytes ≥ 64c + 64` bytes (checked
            // above), so each 16-byte load at `64c + 16q`, `q < 4`, is in bounds. WebAssembly
            // loads need no alignment.
            let (codes, xs) = unsafe {
                let p = x.as_ptr().add(64 * c) as *const v128;
                (
                    v128_load(codes.as_ptr() as *const v128),
                    [
                        v128_load(p),
                        v128_load(p.add(1)),
                        v128_load(p.add(2)),
                        v128_load(p.add(3)),
                    ],
                )
            };
            let mut s16 = i16x8_splat(0);
            for (spread, xq) in SPREAD.iter().zip(xs) {
                let fields = v128_and(i8x16_swizzle(codes, *spread), FIELD);
                let wq = i8x16_sub(i8x16_eq(fields, FIELD), i8x16_eq(fields, PLUS));
                s16 = i16x8_add(s16, i16x8_extmul_low_i8x16(wq, xq));
                s16 = i16x8_add(s16, i16x8_extmul_high_i8x16(wq, xq));
            }
            acc = i32x4_add(acc, i32x4_extadd_pairwise_i16x8(s16));
        }
        *out = sum_lanes(acc);
    }
}

/// `y[r] = Σ_j m[r·stride + j] · x[j]`: the contract of
/// [`reference::int8_matvec`](super::reference::int8_matvec). Each 16-bit product is exact
/// (`≤ 2^14`) and widened into `i32` at once.
pub fn int8_matvec_simd128(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    let len = x.len();
    let body = len & !15;
    for (r, out) in y.iter_mut().enumerate() {
        let Some(row) = m.get(r * stride..r * stride + len) else {
            return;
        };
        let mut acc = i32x4_splat(0);
        for j in (0..body).step_by(16) {
            // SAFETY: bytes `j..j + 16 ≤ body ≤ len` of `row` and `x`, both `len` long.
            let (a, b) = unsafe {
                (
                    v128_load(row.as_ptr().add(j) as *const v128),
                    v128_load(x.as_ptr().add(j) as *const v128),
                )
            };
            acc = i32x4_add(
                acc,
                i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, b)),
            );
            acc = i32x4_add(
                acc,
                i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, b)),
            );
        }
        let mut s = sum_lanes(acc);
        for (a, b) in row[body..].iter().zip(&x[body..]) {
            s += *a as i32 * *b as i32;
        }
        *out = s;
    }
}
