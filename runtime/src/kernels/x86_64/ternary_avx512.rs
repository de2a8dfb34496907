//! AVX-512 VNNI ternary kernels: matvec and block matmul (`vpdpbusd`, which multiplies
//! unsigned by signed bytes and accumulates straight into `i32` lanes, so there is no `i16`
//! budget to keep), on the activation layout of `ternary.rs`.
//!
//! # Matvec
//!
//! Rows of 128 columns decode `q = w + 1` with the `vpshufb` tables and run eight rows per
//! step in `ymm` registers (four `vpdpbusd` per row, one 8-way reduction). Longer rows decode
//! by masks instead: `v = codes ⊕ 0x55` turns each 2-bit code `c` into `c ⊕ 1 = 1 − w ∈ {0, 1,
//! 2}` (`0b10`, never stored, would give 3, i.e. `w = −2`, as in the portable kernel), and
//! `v & 0x03`, `v & 0x0C`, `v & 0x30`, `v & 0xC0` are the four fields times 1, 4, 16 and 64
//! (`≤ 128`: still a `u8` operand). Each field accumulates into its own `i32` register (four
//! per row), scaled back once per row by exact arithmetic shifts, and `Σ w·x = Σ x − Σ (1 −
//! w)·x`: five instructions decode 128 weights instead of seven, none of them a shuffle.
//! Overflow: `64 · 2 · 128 · cols < 2^31` for rows of at most `2^15 + 64` columns.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::ternary::{
    hsum1, hsum4, hsum8, load_codes_at, passes, permute_chunk, permute_tile, permute_to, q4,
    q_tables256, row_bytes_ok, shapes_ok, Tile, CHUNK, PASS,
};
use super::ternary_avx2::{chunk_x, rows_by_one};

/// `Σ_s vpdpbusd(q[s], x[s])` added to `acc`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpbusd4(acc: __m256i, q: &[__m256i; 4], x: &[__m256i; 4]) -> __m256i {
    let a = _mm256_dpbusd_epi32(acc, q[0], x[0]);
    let a = _mm256_dpbusd_epi32(a, q[1], x[1]);
    let a = _mm256_dpbusd_epi32(a, q[2], x[2]);
    _mm256_dpbusd_epi32(a, q[3], x[3])
}

/// The four field accumulators of one row, masks decode (see the module docs), added for the
/// code vector `codes` against the activation vectors `xs`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fields_dot(acc: &mut [__m256i; 4], codes: __m256i, xs: &[__m256i; 4]) {
    let v = _mm256_xor_si256(codes, _mm256_set1_epi8(0x55));
    for (s, (a, x)) in acc.iter_mut().zip(xs).enumerate() {
        let mask = _mm256_set1_epi8((3u8 << (2 * s)) as i8);
        *a = _mm256_dpbusd_epi32(*a, _mm256_and_si256(v, mask), *x);
    }
}

/// `Σ (1 − w)·x` of a row from its four field accumulators: `a₀ + a₁/4 + a₂/16 + a₃/64`
/// (each `a_s` is a sum of multiples of `4^s`, so the shifts are exact).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fields_total(a: &[__m256i; 4]) -> __m256i {
    _mm256_add_epi32(
        _mm256_add_epi32(a[0], _mm256_srai_epi32::<2>(a[1])),
        _mm256_add_epi32(_mm256_srai_epi32::<4>(a[2]), _mm256_srai_epi32::<6>(a[3])),
    )
}

/// `Σ (1 − w)·x` of `K` rows (`row_bytes` apart, from `r0`) over one pass of `nb` code bytes
/// against the permuted activations at `xp`, as `K` vectors of eight lanes.
///
/// # Safety
/// AVX-512 VNNI; each row valid for `nb` bytes (`nb` a multiple of 16, at most `PASS / 4`),
/// `xp` for `permuted_len(4·nb)` bytes.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows_fields<const K: usize>(
    r0: *const u8,
    row_bytes: usize,
    nb: usize,
    xp: *const i8,
) -> [__m256i; K] {
    let mut acc = [[_mm256_setzero_si256(); 4]; K];
    for c in 0..nb.div_ceil(32) {
        let xs = chunk_x(xp, c);
        for (k, a) in acc.iter_mut().enumerate() {
            fields_dot(a, load_codes_at(r0.add(k * row_bytes), nb, c), &xs);
        }
    }
    acc.map(|a| fields_total(&a))
}

/// `y = W · x` with AVX-512 VNNI (the module docs say how). The contract of
/// [`reference::ternary_matvec`](super::super::reference::ternary_matvec), for [`row_bytes_ok`]
/// rows; other shapes run the portable kernel.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn ternary_matvec_vnni(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    if !shapes_ok(w, row_bytes, x, y) {
        return super::super::fast::ternary_matvec(w, row_bytes, x, y);
    }
    if row_bytes == CHUNK / 4 {
        return matvec_128(w, x, y);
    }
    let mut buf = MaybeUninit::<[i8; PASS]>::uninit();
    let xp = buf.as_mut_ptr() as *mut i8;
    let rows = y.len();
    let full = rows & !3;
    for (pass, (b0, nb)) in passes(row_bytes).enumerate() {
        // SAFETY (this block): as in `ternary_matvec_avx2`: `shapes_ok` holds, a pass reads
        // bytes `b0..b0 + nb ≤ row_bytes` of each row and the bytes `permute_to` wrote.
        let sum_x = permute_to(x.get_unchecked(4 * b0..4 * (b0 + nb)), xp);
        for r in (0..full).step_by(4) {
            let a = rows_fields::<4>(w.as_ptr().add(r * row_bytes + b0), row_bytes, nb, xp);
            let s = _mm_sub_epi32(_mm_set1_epi32(sum_x), hsum4(a[0], a[1], a[2], a[3]));
            let out = y.as_mut_ptr().add(r) as *mut __m128i;
            let prev = if pass == 0 {
                _mm_setzero_si128()
            } else {
                _mm_loadu_si128(out)
            };
            _mm_storeu_si128(out, _mm_add_epi32(prev, s));
        }
        for r in full..rows {
            let [a] = rows_fields::<1>(w.as_ptr().add(r * row_bytes + b0), row_bytes, nb, xp);
            let o = y.get_unchecked_mut(r);
            let prev = if pass == 0 { 0 } else { *o };
            *o = prev.wrapping_add(sum_x.wrapping_sub(hsum1(a)));
        }
    }
}

/// [`ternary_matvec_vnni`] for rows of 128 columns: the activations stay in registers, `q`
/// from the `vpshufb` tables, eight rows per step.
///
/// # Safety
/// AVX-512 VNNI; `x` of 128 entries, `w` of `32 · y.len()` bytes at least.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn matvec_128(w: &[u8], x: &[i8], y: &mut [i32]) {
    let mut xp = [0i8; CHUNK];
    permute_chunk(&*(x.as_ptr() as *const [i8; CHUNK]), xp.as_mut_ptr());
    let xs = chunk_x(xp.as_ptr(), 0);
    let sum_x = hsum1(dpbusd4(
        _mm256_setzero_si256(),
        &[_mm256_set1_epi8(1); 4],
        &xs,
    ));
    let t = q_tables256();
    let rows = y.len();
    let full = rows & !7;
    let wp = w.as_ptr() as *const __m256i;
    let sx = _mm256_set1_epi32(sum_x);
    let zero = _mm256_setzero_si256();
    for r in (0..full).step_by(8) {
        let a: [__m256i; 8] =
            core::array::from_fn(|k| dpbusd4(zero, &q4(_mm256_loadu_si256(wp.add(r + k)), t), &xs));
        let out = y.as_mut_ptr().add(r) as *mut __m256i;
        _mm256_storeu_si256(out, _mm256_sub_epi32(hsum8(&a), sx));
    }
    for r in full..rows {
        let a = dpbusd4(zero, &q4(_mm256_loadu_si256(wp.add(r)), t), &xs);
        *y.get_unchecked_mut(r) = hsum1(a) - sum_x;
    }
}

/// [`q4`] on 64 bytes of codes (two rows' chunks side by side).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_512(codes: __m512i, t: [__m512i; 2]) -> [__m512i; 4] {
    let nib = _mm512_set1_epi8(15);
    let lo = _mm512_and_si512(codes, nib);
    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(codes), nib);
    [
        _mm512_shuffle_epi8(t[0], lo),
        _mm512_shuffle_epi8(t[1], lo),
        _mm512_shuffle_epi8(t[0], hi),
        _mm512_shuffle_epi8(t[1], hi),
    ]
}

/// The `q` vectors of chunk `c` of eight rows (`g..g + 8`, two rows per register), pass bytes
/// `b0..b0 + nb`.
///
/// # Safety
/// AVX-512 VNNI; rows `g..g + 8` of `row_bytes` bytes at `w` exist, `nb - 32c ≥ 16`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q_rows8(
    w: *const u8,
    row_bytes: usize,
    (g, c): (usize, usize),
    (b0, nb): (usize, usize),
    table: [__m512i; 2],
) -> [[__m512i; 4]; 4] {
    core::array::from_fn(|k| {
        let ra = w.add((g + 2 * k) * row_bytes + b0);
        let codes = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(load_codes_at(ra, nb, c)),
            load_codes_at(ra.add(row_bytes), nb, c),
        );
        q4_512(codes, table)
    })
}

/// Adds `W[g..g+8] · X[t]` (chunk `c` of the pass) for every token of `tile` into `y`, from
/// the eight rows' `q` vectors.
///
/// # Safety
/// AVX-512 VNNI; `y` holds `n · rows` entries, `g + 8 ≤ rows`, the tile's tokens are `< n`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tokens_by_rows8(
    q: &[[__m512i; 4]; 4],
    tile: &Tile<'_>,
    c: usize,
    (g, rows): (usize, usize),
    y: &mut [i32],
) {
    for tt in 0..tile.nt {
        let px = tile.xp.as_ptr().add(tt * tile.plen + c * CHUNK) as *const __m256i;
        let xs = [0, 1, 2, 3].map(|s| _mm512_broadcast_i64x4(_mm256_loadu_si256(px.add(s))));
        let acc = q.map(|qk| {
            let a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qk[0], xs[0]);
            let a = _mm512_dpbusd_epi32(a, qk[1], xs[1]);
            let a = _mm512_dpbusd_epi32(a, qk[2], xs[2]);
            _mm512_dpbusd_epi32(a, qk[3], xs[3])
        });
        let out = y.as_mut_ptr().add((tile.t0 + tt) * rows + g) as *mut __m256i;
        _mm256_storeu_si256(
            out,
            _mm256_add_epi32(_mm256_loadu_si256(out), hsum8_pairs(acc)),
        );
    }
}

/// The block kernel with `vpdpbusd`, eight rows at a time: for each chunk the eight rows' `q`
/// vectors are built once (16 `zmm`, two rows per register) and stay in registers while every
/// token of the tile streams past (four broadcasts, 16 `vpdpbusd`, one 8-way reduction and one
/// `ymm` add into `y[t][r..r + 8]` per token). Rows beyond a multiple of eight take the AVX2
/// loop. The contract and scratch of
/// [`ternary_matmul_avx2`](super::ternary_matmul_avx2).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn ternary_matmul_vnni(
    w: &[u8],
    row_bytes: usize,
    x: &[i8],
    y: &mut [i32],
    scratch: &mut [i8],
) {
    let cols = row_bytes * 4;
    debug_assert!(row_bytes_ok(row_bytes));
    let rows = w.len() / row_bytes;
    let n = x.len() / cols;
    debug_assert_eq!(y.len(), n * rows);
    if y.len() < n * rows || w.len() < rows * row_bytes {
        return;
    }
    y.fill(0);
    let full = rows & !7;
    let t = q_tables256();
    let table = [0, 1].map(|k| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(t[k]), t[k]));
    for t0 in (0..n).step_by(super::ternary::TILE) {
        let nt = (n - t0).min(super::ternary::TILE);
        for (b0, nb) in passes(row_bytes) {
            let Some(tile) = permute_tile(x, cols, (t0, nt), (b0, nb), scratch) else {
                return;
            };
            for g in (0..full).step_by(8) {
                for c in 0..nb.div_ceil(32) {
                    // SAFETY: rows `g..g+8 ≤ rows` exist (checked); each read stays within
                    // bytes `b0..b0 + nb` of its row (`nb - 32c ≥ 16`); `y` holds `n · rows`.
                    unsafe {
                        let q = q_rows8(w.as_ptr(), row_bytes, (g, c), (b0, nb), table);
                        tokens_by_rows8(&q, &tile, c, (g, rows), y);
                    }
                }
                for tt in 0..nt {
                    let sx = tile.sum_x[tt];
                    if let Some(out) = y.get_mut((t0 + tt) * rows + g..(t0 + tt) * rows + g + 8) {
                        out.iter_mut().for_each(|o| *o = o.wrapping_sub(sx));
                    }
                }
            }
            rows_by_one(w, row_bytes, (full, rows), (b0, nb), &tile, y);
        }
    }
}

/// The lane sums of four register pairs: `[Σ lo(a0), Σ hi(a0), Σ lo(a1), …, Σ hi(a3)]` (the
/// eight rows of a [`ternary_matmul_vnni`] group, in order).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum8_pairs(a: [__m512i; 4]) -> __m256i {
    let lo = |v: __m512i| _mm512_castsi512_si256(v);
    let hi = |v: __m512i| _mm512_extracti64x4_epi64::<1>(v);
    hsum8(&[
        lo(a[0]),
        hi(a[0]),
        lo(a[1]),
        hi(a[1]),
        lo(a[2]),
        hi(a[2]),
        lo(a[3]),
        hi(a[3]),
    ])
}
