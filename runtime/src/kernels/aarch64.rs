//! aarch64 NEON kernels (NEON is part of the base aarch64 target, so no run-time check is
//! needed beyond [`dispatch`](super::dispatch)). Each has the contract of its twin in
//! [`reference`](super::reference) and is checked against it by the shared suite (run under
//! `qemu-aarch64` in CI).
//!
//! Ternary matvec: `vld4q_s8` de-interleaves 64 activations so that register `s` holds
//! `x[4i + s]`, exactly the weights a 16-byte code vector shifted right by `2s` and masked
//! holds; `vqtbl1q_s8` turns codes into `{-1, 0, 1}`; `vmull_s8`/`vmlal_s8` sum four products
//! per 16-bit lane (`|Σ| ≤ 4 · 128`), `vpadalq_s16` widens into `i32`.
//!
//! `sdot` (FEAT_DotProd) would halve the multiply count, but its intrinsics are not stable in
//! Rust yet; the widening multiplies are exact for every `i8`, `-128 · -128` included.

use core::arch::aarch64::*;

/// `row_bytes` the NEON kernel accepts (whole 16-byte code vectors).
pub const fn row_bytes_ok(row_bytes: usize) -> bool {
    row_bytes.is_multiple_of(16) && row_bytes > 0
}

/// Code → weight table for `vqtbl1q_s8` (code `0b10`, never stored, maps to 0).
const WEIGHT_OF_CODE: [i8; 16] = [0, 1, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// `y = W · x`: the contract of [`reference::ternary_matvec`](super::reference::ternary_matvec)
/// for [`row_bytes_ok`] rows.
pub fn ternary_matvec_neon(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert!(row_bytes_ok(row_bytes));
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    if x.len() < row_bytes * 4 {
        return;
    }
    // SAFETY: NEON is enabled for the whole target (`cfg(target_feature = "neon")` gates this
    // module). Every load reads 16 bytes of `row` (`row_bytes` is a multiple of 16) or 64 of
    // `x` at `64c` for `c < row_bytes / 16` (`x` has `4 · row_bytes` bytes, checked above).
    unsafe {
        let table = vld1q_s8(WEIGHT_OF_CODE.as_ptr());
        let three = vdupq_n_u8(3);
        for (out, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
            let mut acc = vdupq_n_s32(0);
            for (c, codes) in row.chunks_exact(16).enumerate() {
                let xs = vld4q_s8(x.as_ptr().add(64 * c));
                let codes = vld1q_u8(codes.as_ptr());
                let w0 = vqtbl1q_s8(table, vandq_u8(codes, three));
                let w1 = vqtbl1q_s8(table, vandq_u8(vshrq_n_u8::<2>(codes), three));
                let w2 = vqtbl1q_s8(table, vandq_u8(vshrq_n_u8::<4>(codes), three));
                let w3 = vqtbl1q_s8(table, vshrq_n_u8::<6>(codes));
                let mut lo = vmull_s8(vget_low_s8(w0), vget_low_s8(xs.0));
                lo = vmlal_s8(lo, vget_low_s8(w1), vget_low_s8(xs.1));
                lo = vmlal_s8(lo, vget_low_s8(w2), vget_low_s8(xs.2));
                lo = vmlal_s8(lo, vget_low_s8(w3), vget_low_s8(xs.3));
                let mut hi = vmull_high_s8(w0, xs.0);
                hi = vmlal_high_s8(hi, w1, xs.1);
                hi = vmlal_high_s8(hi, w2, xs.2);
                hi = vmlal_high_s8(hi, w3, xs.3);
                acc = vpadalq_s16(acc, lo);
                acc = vpadalq_s16(acc, hi);
            }
            *out = vaddvq_s32(acc);
        }
    }
}

/// `y[r] = Σ_j m[r·stride + j] · x[j]`: the contract of
/// [`reference::int8_matvec`](super::reference::int8_matvec). Each 16-bit product is exact
/// (`≤ 2^14`) and widened into `i32` at once.
pub fn int8_matvec_neon(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    let len = x.len();
    let body = len & !15;
    for (r, out) in y.iter_mut().enumerate() {
        let Some(row) = m.get(r * stride..r * stride + len) else {
            return;
        };
        // SAFETY: NEON is enabled for the target; loads read bytes `j..j+16 ≤ body ≤ len` of
        // `row` and `x`, both `len` long.
        let mut s = unsafe {
            let mut acc = vdupq_n_s32(0);
            for j in (0..body).step_by(16) {
                let a = vld1q_s8(row.as_ptr().add(j));
                let b = vld1q_s8(x.as_ptr().add(j));
                acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
                acc = vpadalq_s16(acc, vmull_high_s8(a, b));
            }
            vaddvq_s32(acc)
        };
        for (a, b) in row[body..].iter().zip(&x[body..]) {
            s += *a as i32 * *b as i32;
        }
        *out = s;
    }
}
