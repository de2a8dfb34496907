//! Matrix products on plain `f32` slices through the `gemm` crate (the one burn-flex uses), for
//! the flex kernels: strided operands (transposes cost nothing), accumulation into the
//! destination, and fresh outputs that are never zero-filled first.

/// An operand: the slice, its row stride and its column stride (in elements).
pub type Operand<'a> = (&'a [f32], usize, usize);

fn last(rows: usize, rs: usize, cols: usize, cs: usize) -> usize {
    (rows - 1) * rs + (cols - 1) * cs
}

/// Products of at least this many multiply-adds are split over rayon's threads by gemm (flex's
/// threshold too); smaller ones run on the calling thread.
const PARALLEL_MACS: usize = 192 * 192 * 192;

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst = (acc ? dst : 0) + lhs·rhs` on raw pointers; `dst` is row-major with row stride `dst_rs`.
///
/// # Safety
/// Every element the product reads (operands, and `dst` when `acc`) or writes (`m×n` elements of
/// `dst`) must be in bounds, and `dst` must not alias the operands.
unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    (lhs, lhs_rs, lhs_cs): Operand,
    (rhs, rhs_rs, rhs_cs): Operand,
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            acc,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// Checks that both operands of an `m×k` by `k×n` product lie inside their slices.
fn check_operands((m, n, k): (usize, usize, usize), lhs: Operand, rhs: Operand) {
    assert!(m > 0 && n > 0 && k > 0);
    assert!(last(m, lhs.1, k, lhs.2) < lhs.0.len(), "lhs out of bounds");
    assert!(last(k, rhs.1, n, rhs.2) < rhs.0.len(), "rhs out of bounds");
}

/// `dst = (acc ? dst : 0) + lhs·rhs` for an `m×k` by `k×n` product; `dst` has row stride `dst_rs`.
/// Bounds are checked here, which is what makes the `gemm` call sound.
pub fn matmul(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: Operand,
    rhs: Operand,
) {
    check_operands(mnk, lhs, rhs);
    let (m, n, _) = mnk;
    assert!(last(m, dst_rs, n, 1) < dst.len(), "dst out of bounds");
    assert!(dst_rs >= n, "dst rows overlap");
    // SAFETY: every element the product reads or writes lies inside its slice (checked above);
    // `dst` is exclusively borrowed and its rows do not overlap, so it aliases nothing.
    unsafe { gemm_raw(mnk, dst.as_mut_ptr(), dst_rs, acc, lhs, rhs) }
}

/// `lhs·rhs` as a new row-major `m×n` buffer (not zero-filled first: gemm writes every element).
pub fn matmul_new(mnk: (usize, usize, usize), lhs: Operand, rhs: Operand) -> Vec<f32> {
    check_operands(mnk, lhs, rhs);
    let (m, n, _) = mnk;
    let mut out = Vec::with_capacity(m * n);
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<f32>();
    // SAFETY: operands are in bounds (checked above) and `dst` holds `m·n` elements of fresh
    // capacity. With `acc = false` and `k > 0`, gemm writes all `m·n` elements of the destination
    // without reading them, so the first `m·n` elements are initialized afterwards.
    unsafe {
        gemm_raw(mnk, dst, n, false, lhs, rhs);
        out.set_len(m * n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn strided_products_match_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.7).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 1.3).cos()).collect();
        let want = naive(m, n, k, &a, &b);
        // aᵀ stored as [k, m], bᵀ as [n, k]
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let got = matmul_new((m, n, k), (&at, 1, m), (&bt, 1, k));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5);
        }
        // accumulate into a wider destination (row stride n + 2)
        let mut dst = vec![1f32; m * (n + 2)];
        matmul((m, n, k), &mut dst, n + 2, true, (&a, k, 1), (&b, n, 1));
        for i in 0..m {
            for j in 0..n + 2 {
                let want = if j < n { 1.0 + want[i * n + j] } else { 1.0 };
                assert!((dst[i * (n + 2) + j] - want).abs() < 1e-5);
            }
        }
    }
}
