//! AVX2 ternary kernels: matvec and block matmul (`vpmaddubsw`), on the activation layout of
//! `ternary.rs`.
//!
//! # Matvec
//!
//! Eight rows per step, one chunk (128 columns) at a time: the chunk's four activation vectors
//! are loaded once for the eight rows; each row's 32 code bytes become four `q` vectors (7
//! instructions) and four `vpmaddubsw` whose `i16` lanes are summed in `i16` over the whole
//! pass (≤ 8 chunks, see below), widened once per row and pass (`vpmaddwd`), and the eight
//! rows reduced into one vector (`vphaddd`). Rows of exactly 128 columns (the `d_model` of
//! the shipped model: six of its seven matrices) have a path of their own: the activations
//! stay in registers for the whole matrix and the eight rows are reduced in `i16`
//! (`vphaddw`), three `vphaddw` instead of eight `vpmaddwd` and six `vphaddd`.
//!
//! `i16` bounds: a `vpmaddubsw` lane is `q₀x₀ + q₁x₁` with `q ≤ 2`, `|x| ≤ 128`, so
//! `|lane| ≤ 512` and the four lanes added per chunk `≤ 2048`. Sixteen chunks stay within
//! `[−32768, 32512]` (`−2·2·128·4·16 = −32768` exactly); a pass has at most eight. For a
//! 128-column row the whole sum `Σ q·x` lies in `[−32768, 32512]`, so its 16 lanes may be
//! added in `i16` too. Wrapping `i16` additions in between do not matter: the final value is
//! in range and addition modulo `2^16` is associative.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::ternary::{
    decode_rows8, hsum1, hsum4, hsum8, hsum8_i16, load_codes_at, passes, permute_chunk,
    permute_tile, permute_to, permuted_len, q4, q_tables256, row_bytes_ok, shapes_ok, sum_chunk,
    QRows8, Tile, CHUNK, PASS, TILE,
};

/// `Σ_s vpmaddubsw(q[s], x[s])`: 16 `i16` lanes, each `≤ 2048` in magnitude.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot4(q: &[__m256i; 4], x: &[__m256i; 4]) -> __m256i {
    _mm256_add_epi16(
        _mm256_add_epi16(
            _mm256_maddubs_epi16(q[0], x[0]),
            _mm256_maddubs_epi16(q[1], x[1]),
        ),
        _mm256_add_epi16(
            _mm256_maddubs_epi16(q[2], x[2]),
            _mm256_maddubs_epi16(q[3], x[3]),
        ),
    )
}

/// The four activation vectors of permuted chunk `c` at `xp`.
///
/// # Safety
/// `xp` must be valid for reads of chunks `0..=c` (128 bytes each).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn chunk_x(xp: *const i8, c: usize) -> [__m256i; 4] {
    let p = xp.add(c * CHUNK) as *const __m256i;
    [0, 1, 2, 3].map(|s| _mm256_loadu_si256(p.add(s)))
}

/// `Σ q·x` of one row over one pass: `nb` code bytes at `row` against the permuted pass at
/// `xp`, as eight `i32` lanes.
///
/// # Safety
/// `row` valid for `nb` bytes (`nb` a multiple of 16, at most `PASS / 4`), `xp` for
/// `permuted_len(4·nb)` bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn row_sum(row: *const u8, nb: usize, xp: *const i8, t: [__m256i; 2]) -> __m256i {
    let mut a = _mm256_setzero_si256();
    for c in 0..nb.div_ceil(32) {
        let q = q4(load_codes_at(row, nb, c), t);
        a = _mm256_add_epi16(a, dot4(&q, &chunk_x(xp, c)));
    }
    _mm256_madd_epi16(a, _mm256_set1_epi16(1))
}

/// `Σ q·x` of eight rows (`row_bytes` apart, from `r0`) over one pass, one lane per row.
///
/// # Safety
/// As [`row_sum`], for each of the eight rows.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn rows8_sum(
    r0: *const u8,
    row_bytes: usize,
    nb: usize,
    xp: *const i8,
    t: [__m256i; 2],
) -> __m256i {
    let mut a = [_mm256_setzero_si256(); 8];
    for c in 0..nb.div_ceil(32) {
        let xs = chunk_x(xp, c);
        for (k, ak) in a.iter_mut().enumerate() {
            let q = q4(load_codes_at(r0.add(k * row_bytes), nb, c), t);
            *ak = _mm256_add_epi16(*ak, dot4(&q, &xs));
        }
    }
    let ones = _mm256_set1_epi16(1);
    hsum8(&a.map(|v| _mm256_madd_epi16(v, ones)))
}

/// `y = W · x` with AVX2: the contract of
/// [`reference::ternary_matvec`](super::super::reference::ternary_matvec). Shapes: `w
/// [rows][row_bytes]` ([`row_bytes_ok`]), `x [row_bytes·4]`, `y [rows]`; other shapes run
/// the portable kernel.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn ternary_matvec_avx2(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    if !shapes_ok(w, row_bytes, x, y) {
        return super::super::fast::ternary_matvec(w, row_bytes, x, y);
    }
    if row_bytes == CHUNK / 4 {
        return matvec_128(w, x, y);
    }
    let table = q_tables256();
    let mut buf = MaybeUninit::<[i8; PASS]>::uninit();
    let xp = buf.as_mut_ptr() as *mut i8;
    let rows = y.len();
    let full = rows & !7;
    for (pass, (b0, nb)) in passes(row_bytes).enumerate() {
        // SAFETY (this block): `shapes_ok` holds, so `x` has `4·row_bytes` entries and `w`
        // `rows` rows; a pass reads bytes `b0..b0 + nb ≤ row_bytes` of each row and the
        // `permuted_len(4·nb) ≤ PASS` bytes `permute_to` wrote at `xp`.
        let sum_x = permute_to(x.get_unchecked(4 * b0..4 * (b0 + nb)), xp);
        let sx = _mm256_set1_epi32(sum_x);
        for r in (0..full).step_by(8) {
            let s = rows8_sum(w.as_ptr().add(r * row_bytes + b0), row_bytes, nb, xp, table);
            let out = y.as_mut_ptr().add(r) as *mut __m256i;
            let prev = if pass == 0 {
                _mm256_setzero_si256()
            } else {
                _mm256_loadu_si256(out)
            };
            _mm256_storeu_si256(out, _mm256_add_epi32(prev, _mm256_sub_epi32(s, sx)));
        }
        for r in full..rows {
            let s = hsum1(row_sum(w.as_ptr().add(r * row_bytes + b0), nb, xp, table));
            let o = y.get_unchecked_mut(r);
            let prev = if pass == 0 { 0 } else { *o };
            *o = prev.wrapping_add(s.wrapping_sub(sum_x));
        }
    }
}

/// [`ternary_matvec_avx2`] for rows of 128 columns (32 code bytes): the permuted activations
/// stay in four registers, eight rows are reduced in `i16` (see the module docs).
///
/// # Safety
/// AVX2; `x` of 128 entries, `w` of `32 · y.len()` bytes at least.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn matvec_128(w: &[u8], x: &[i8], y: &mut [i32]) {
    let mut xp = [0i8; CHUNK];
    permute_chunk(&*(x.as_ptr() as *const [i8; CHUNK]), xp.as_mut_ptr());
    let xs = chunk_x(xp.as_ptr(), 0);
    let sum_x = hsum1(sum_chunk(&xs));
    let t = q_tables256();
    let rows = y.len();
    let full = rows & !7;
    let wp = w.as_ptr() as *const __m256i;
    let sx = _mm256_set1_epi32(sum_x);
    for r in (0..full).step_by(8) {
        let a: [__m256i; 8] =
            core::array::from_fn(|k| dot4(&q4(_mm256_loadu_si256(wp.add(r + k)), t), &xs));
        let out = y.as_mut_ptr().add(r) as *mut __m256i;
        _mm256_storeu_si256(out, _mm256_sub_epi32(hsum8_i16(&a), sx));
    }
    for r in full..rows {
        let a = dot4(&q4(_mm256_loadu_si256(wp.add(r)), t), &xs);
        let s = hsum1(_mm256_madd_epi16(a, _mm256_set1_epi16(1)));
        *y.get_unchecked_mut(r) = s - sum_x;
    }
}

/// Adds rows `r0..r1` of one pass (`nb` code bytes from byte `b0` of each row) for every token
/// of `tile` into `y [n][rows]`, one row at a time, four tokens per step sharing the row's `q`
/// vectors (summed in `i16` over the pass, as in the matvec).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn rows_by_one(
    w: &[u8],
    row_bytes: usize,
    (r0, r1): (usize, usize),
    (b0, nb): (usize, usize),
    tile: &Tile<'_>,
    y: &mut [i32],
) {
    let table = q_tables256();
    let chunks = nb.div_ceil(32);
    let rows = w.len() / row_bytes;
    let ones = _mm256_set1_epi16(1);
    for r in r0..r1 {
        let Some(row) = w.get(r * row_bytes + b0..r * row_bytes + b0 + nb) else {
            return;
        };
        let mut t = 0;
        while t < tile.nt {
            let k = (tile.nt - t).min(4);
            let mut acc = [_mm256_setzero_si256(); 4];
            for c in 0..chunks {
                // SAFETY: `row` has `nb` bytes with `nb - 32c ≥ 16`.
                let q = q4(unsafe { load_codes_at(row.as_ptr(), nb, c) }, table);
                for (j, a) in acc.iter_mut().enumerate().take(k) {
                    // SAFETY: token `t + j < nt` owns `plen ≥ 128·chunks` bytes of `xp`.
                    let xs = unsafe { chunk_x(tile.xp.as_ptr().add((t + j) * tile.plen), c) };
                    *a = _mm256_add_epi16(*a, dot4(&q, &xs));
                }
            }
            let acc = acc.map(|a| _mm256_madd_epi16(a, ones));
            let mut s = [0i32; 4];
            // SAFETY: a 16-byte store into a 16-byte array.
            unsafe {
                _mm_storeu_si128(
                    s.as_mut_ptr() as *mut __m128i,
                    hsum4(acc[0], acc[1], acc[2], acc[3]),
                )
            };
            for (j, sj) in s.into_iter().enumerate().take(k) {
                if let Some(o) = y.get_mut((tile.t0 + t + j) * rows + r) {
                    *o = o.wrapping_add(sj.wrapping_sub(tile.sum_x[t + j]));
                }
            }
            t += k;
        }
    }
}

/// Adds `W[g..g+8] · X[t]` over one pass for every token of `tile` into `y [n][rows]`, from
/// the eight rows' decoded `q` vectors (`chunks` of them per row): per token, the chunks'
/// products summed in `i16` (≤ 8 chunks: within the budget), the eight rows reduced into one
/// vector and added to `y[t][g..g + 8]`.
///
/// # Safety
/// AVX2; `q` points at `chunks` decoded chunks (the rest may be uninitialized), every token of `tile` `plen ≥ 128·chunks` bytes;
/// `y` holds `n · rows` entries, `g + 8 ≤ rows` and the tile's tokens are `< n`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tokens_by_rows8(
    q: *const QRows8,
    chunks: usize,
    tile: &Tile<'_>,
    (g, rows): (usize, usize),
    y: &mut [i32],
) {
    let ones = _mm256_set1_epi16(1);
    for tt in 0..tile.nt {
        let xp = tile.xp.as_ptr().add(tt * tile.plen);
        let mut acc = [_mm256_setzero_si256(); 8];
        for c in 0..chunks {
            let xs = chunk_x(xp, c);
            for (k, a) in acc.iter_mut().enumerate() {
                let qk = core::ptr::addr_of!((*q)[c][k]).read();
                *a = _mm256_add_epi16(*a, dot4(&qk, &xs));
            }
        }
        let s = if chunks == 1 {
            hsum8_i16(&acc)
        } else {
            hsum8(&acc.map(|a| _mm256_madd_epi16(a, ones)))
        };
        let s = _mm256_sub_epi32(s, _mm256_set1_epi32(tile.sum_x[tt]));
        let out = y.as_mut_ptr().add((tile.t0 + tt) * rows + g) as *mut __m256i;
        _mm256_storeu_si256(out, _mm256_add_epi32(_mm256_loadu_si256(out), s));
    }
}

/// `Y[t] = W · X[t]` for a block of tokens with AVX2, reading each weight row once per tile of
/// [`TILE`] tokens: eight rows at a time are decoded into `q` vectors once (8 KiB on the
/// stack) and every token of the tile streams past them (`tokens_by_rows8`); rows beyond a
/// multiple of eight share their `q` vectors among four tokens (`rows_by_one`). Shapes:
/// `x [n][row_bytes·4]`, `y [n][rows]`, `scratch [≥ min(n, TILE) ·
/// permuted_len(row_bytes·4)]`. The contract of
/// [`reference::ternary_matmul`](super::super::reference::ternary_matmul).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn ternary_matmul_avx2(
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
    debug_assert!(scratch.len() >= n.min(TILE) * permuted_len(cols));
    if y.len() < n * rows || w.len() < rows * row_bytes {
        return;
    }
    y.fill(0);
    let full = rows & !7;
    let mut q = MaybeUninit::<QRows8>::uninit();
    for t0 in (0..n).step_by(TILE) {
        let nt = (n - t0).min(TILE);
        for (b0, nb) in passes(row_bytes) {
            let Some(tile) = permute_tile(x, cols, (t0, nt), (b0, nb), scratch) else {
                return;
            };
            let chunks = nb.div_ceil(32);
            for g in (0..full).step_by(8) {
                // SAFETY: rows `g..g + 8 ≤ rows` exist (checked) and a pass reads bytes `b0..b0
                // + nb` of each; `tokens_by_rows8` reads the `chunks` chunks decoded here.
                unsafe {
                    decode_rows8(
                        w.as_ptr().add(g * row_bytes + b0),
                        row_bytes,
                        nb,
                        q.as_mut_ptr(),
                    );
                    tokens_by_rows8(q.as_ptr(), chunks, &tile, (g, rows), y);
                }
            }
            rows_by_one(w, row_bytes, (full, rows), (b0, nb), &tile, y);
        }
    }
}
