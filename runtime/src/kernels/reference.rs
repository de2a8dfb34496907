//! Scalar reference kernels: the obvious loops, the definition the fast ones must match.

use super::tiled::TiledMatrix;
use super::{decode_base3, decode_ternary};

/// `y[r] = Σ_j W[r][j] · x[j]` for a 2-bit ternary matrix. Shapes: `w [rows][row_bytes]`,
/// `x [row_bytes·4]` (zero padded), `y [rows]`.
///
/// Overflow: `|y[r]| ≤ 128 · row_bytes · 4 ≤ 128 · 2^15 < 2^31` for rows of at most
/// [`MAX_WIDTH`](crate::format::MAX_WIDTH) weights (+64 padding, which holds zeros).
pub fn ternary_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    for (r, out) in y.iter_mut().enumerate() {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        let mut acc = 0i32;
        for (j, xv) in x.iter().enumerate() {
            let code = row[j / 4] >> (2 * (j % 4));
            acc += decode_ternary(code) * *xv as i32;
        }
        *out = acc;
    }
}

/// `y[r] = Σ_j W[r][j] · x[j]` for a base-3 ternary matrix (format v2, `Ternary5`): byte `b`
/// of a row holds weights `b + k·row_bytes` for `k < 5` (digit `k`, see
/// [`decode_base3`]). Shapes: `w [rows][row_bytes]`, `x [row_bytes·5]`
/// (entries past the matrix's `cols` meet zero digits), `y [rows]`.
///
/// Overflow: as [`ternary_matvec`], `|y[r]| ≤ 128 · 5 · row_bytes < 2^31`.
pub fn ternary5_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert_eq!(x.len(), row_bytes * 5);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    for (r, out) in y.iter_mut().enumerate() {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        let mut acc = 0i32;
        for (j, xv) in x.iter().enumerate() {
            acc += decode_base3(row[j % row_bytes], j / row_bytes) * *xv as i32;
        }
        *out = acc;
    }
}

/// `y[r] = Σ_j W[r][j] · x[j]` for a matrix in the row-tiled layout
/// ([`tiled`](super::tiled)). Shapes: `x [m.cols()]`, `y [m.rows()]`. The same sums as
/// [`ternary_matvec`] on the blob's 2-bit rows of the same weights.
pub fn ternary_matvec_tiled(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    debug_assert_eq!(x.len(), m.cols());
    debug_assert_eq!(y.len(), m.rows());
    for (r, out) in y.iter_mut().enumerate() {
        let mut acc = 0i32;
        for (c, xv) in x.iter().enumerate() {
            acc += m.weight(r, c) * *xv as i32;
        }
        *out = acc;
    }
}

/// `Σ_j a[j] · b[j]` over int8 vectors of equal length.
///
/// Overflow: `|a·b| ≤ 2^14` per term, so the sum fits `i32` for up to `2^16` terms.
pub fn int8_dot(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = 0i32;
    for (x, y) in a.iter().zip(b) {
        acc += *x as i32 * *y as i32;
    }
    acc
}

/// `Y[t] = W · X[t]` for a block of `n` tokens: [`ternary_matvec`] per token. Shapes:
/// `w [rows][row_bytes]`, `x [n][row_bytes·4]`, `y [n][rows]` (token-major).
pub fn ternary_matmul(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    let rows = w.len() / row_bytes;
    for (xt, yt) in x.chunks_exact(row_bytes * 4).zip(y.chunks_exact_mut(rows)) {
        ternary_matvec(w, row_bytes, xt, yt);
    }
}

/// `y[r] = Σ_j m[r·stride + j] · x[j]` for `j < x.len()`: [`int8_dot`] against rows that start
/// `stride` elements apart (keys of one KV head across positions, the embedding rows).
pub fn int8_matvec(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    let len = x.len();
    for (r, out) in y.iter_mut().enumerate() {
        *out = int8_dot(&m[r * stride..r * stride + len], x);
    }
}

/// `acc[i] = Σ_s coef[s] · v[s·stride + i]` for `i < acc.len()`, `s < coef.len()`: the
/// attention's value accumulation over one KV head's positions.
///
/// Overflow: `|coef| ≤ 2^24`, `|v| ≤ 2^7`, `s < 2^15`, so `|acc| < 2^46`.
pub fn int8_weighted_sum(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    for (i, a) in acc.iter_mut().enumerate() {
        *a = 0;
        for (s, c) in coef.iter().enumerate() {
            *a += *c as i64 * v[s * stride + i] as i64;
        }
    }
}
