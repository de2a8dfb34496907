//! x86-64 ternary kernels: matvec and block matmul, AVX2 (`vpmaddubsw`) and AVX-512 VNNI
//! (`vpdpbusd`).
//!
//! # Ternary products: `Σ w·x = Σ (w+1)·x − Σ x`
//!
//! A 2-bit code becomes `q = w + 1 ∈ {0, 1, 2}` with one `vpshufb` per nibble table (code `0b10`, which the
//! loader never lets through, maps to `q = 1`, i.e. `w = 0`, as in
//! [`decode_ternary`](super::super::decode_ternary)). `q` is unsigned, so `vpmaddubsw(q, x)` and
//! `vpdpbusd(q, x)` multiply it with signed activations exactly (`|q·x| ≤ 256`: no saturation),
//! and `Σ x` of the padded activation vector, computed once per vector, takes the `+1` back out.
//! Padding codes are `0b00` (`q = 1`), which is why `Σ x` runs over the same padded columns.
//!
//! # Activation layout
//!
//! Looking up the low (high) nibble of each byte of a 32-byte weight vector in the table of its
//! low or high code gives the weights `4i + s` for `i = 0..32` (`s = 0, 1`: low nibble; `2, 3`:
//! high nibble). The activations are permuted to match, per *chunk* of
//! [`CHUNK`] columns: `xp[s·32 + i] = x[4i + s]` (see [`permute_chunk`]); a half chunk (64
//! columns, 16 weight bytes, the blob's row alignment) fills slots `0..16` of each group and
//! zeroes the rest. Permuting costs ~24 instructions per 128 activations, once per vector.
//!
//! Overflow: every partial sum is bounded by `2 · 128 · cols ≤ 2^8 · (2^15 + 64) < 2^24`.

use core::arch::x86_64::*;

/// Columns per permuted chunk (32 weight bytes, one `ymm` of codes).
pub const CHUNK: usize = 128;
/// Columns per pass over a matrix: the permuted activations of one pass live on the stack (1 KiB).
const PASS: usize = 8 * CHUNK;
/// Tokens per tile of [`ternary_matmul_avx2`] (their `Σ x` lives on the stack).
pub const TILE: usize = 64;

/// `row_bytes` the vector kernels accept (whole half chunks); others use the portable kernel.
pub const fn row_bytes_ok(row_bytes: usize) -> bool {
    row_bytes.is_multiple_of(16) && row_bytes > 0
}

/// Bytes of permuted scratch one token needs in a pass over `cols` columns: whole chunks.
pub const fn permuted_len(cols: usize) -> usize {
    let c = if cols < PASS { cols } else { PASS };
    c.div_ceil(CHUNK) * CHUNK
}

/// Permutes 128 activations (`x[..128]`) into chunk layout `out[s·32 + i] = x[4i + s]`.
///
/// Bytes `4i+s` of each 16-byte lane are first grouped by `s` (`vpshufb`), giving dwords
/// `D[m][s]` (lane `m`, 4 bytes each); an 8×4 dword transpose (`vpunpck*`, `vpermd`) then
/// lays out `D[0][s], …, D[7][s]` for each `s`.
#[inline]
#[target_feature(enable = "avx2")]
fn permute_chunk(x: &[i8; CHUNK], out: &mut [i8; CHUNK]) {
    let shuf = _mm256_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10,
        14, 3, 7, 11, 15,
    );
    let p = x.as_ptr() as *const __m256i;
    // SAFETY: `x` holds 128 bytes: four unaligned 32-byte loads.
    let [y0, y1, y2, y3] =
        unsafe { [0, 1, 2, 3].map(|k| _mm256_shuffle_epi8(_mm256_loadu_si256(p.add(k)), shuf)) };
    let lo01 = _mm256_unpacklo_epi32(y0, y1);
    let hi01 = _mm256_unpackhi_epi32(y0, y1);
    let lo23 = _mm256_unpacklo_epi32(y2, y3);
    let hi23 = _mm256_unpackhi_epi32(y2, y3);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let s = [
        _mm256_unpacklo_epi64(lo01, lo23),
        _mm256_unpackhi_epi64(lo01, lo23),
        _mm256_unpacklo_epi64(hi01, hi23),
        _mm256_unpackhi_epi64(hi01, hi23),
    ];
    let o = out.as_mut_ptr() as *mut __m256i;
    for (k, v) in s.into_iter().enumerate() {
        // SAFETY: `out` holds 128 bytes: four unaligned 32-byte stores.
        unsafe { _mm256_storeu_si256(o.add(k), _mm256_permutevar8x32_epi32(v, order)) };
    }
}

/// Permutes `x` (a multiple of 64 long, at most [`PASS`]) into chunk layout in `out` and
/// returns `Σ x`. `out` must hold [`permuted_len`]`(x.len())` bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn permute(x: &[i8], out: &mut [i8]) -> i32 {
    let mut sum = 0i32;
    for (xc, oc) in x.chunks(CHUNK).zip(out.chunks_exact_mut(CHUNK)) {
        if let (Ok(xc), Ok(oc)) = (
            <&[i8; CHUNK]>::try_from(xc),
            <&mut [i8; CHUNK]>::try_from(&mut *oc),
        ) {
            permute_chunk(xc, oc);
        } else {
            // A half chunk: 16 weights per group, the rest zero.
            oc.fill(0);
            for (i, q) in xc.chunks_exact(4).enumerate() {
                for (s, v) in q.iter().enumerate() {
                    oc[s * 32 + i] = *v;
                }
            }
        }
        for v in xc {
            sum += *v as i32;
        }
    }
    sum
}

/// `q = w + 1` tables for `vpshufb` indexed by a nibble (two codes): `[0]` gives `q` of the
/// nibble's low code, `[1]` of its high code. Code `0b10` (never stored) gives `q = 1`.
#[inline]
#[target_feature(enable = "avx2")]
fn q_tables256() -> [__m256i; 2] {
    const fn q(code: usize) -> i8 {
        [1, 2, 1, 0][code & 3]
    }
    const fn table(high: bool) -> [i8; 32] {
        let mut t = [0i8; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = q(if high { (i & 15) >> 2 } else { i & 3 });
            i += 1;
        }
        t
    }
    const LOW: [i8; 32] = table(false);
    const HIGH: [i8; 32] = table(true);
    // SAFETY: 32-byte unaligned loads of 32-byte arrays.
    unsafe {
        [
            _mm256_loadu_si256(LOW.as_ptr() as *const __m256i),
            _mm256_loadu_si256(HIGH.as_ptr() as *const __m256i),
        ]
    }
}

/// The four `q` vectors (weights `4i + s`, `s = 0..4`) of a 32-byte code vector: the low and
/// high nibble of each byte index the two tables (3 instructions to split, 4 `vpshufb`).
#[inline]
#[target_feature(enable = "avx2")]
fn q4(codes: __m256i, t: [__m256i; 2]) -> [__m256i; 4] {
    let nib = _mm256_set1_epi8(15);
    let lo = _mm256_and_si256(codes, nib);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(codes), nib);
    [
        _mm256_shuffle_epi8(t[0], lo),
        _mm256_shuffle_epi8(t[1], lo),
        _mm256_shuffle_epi8(t[0], hi),
        _mm256_shuffle_epi8(t[1], hi),
    ]
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

/// Loads the codes of chunk `c` of a row slice (32 bytes, or 16 zero extended at the end).
///
/// # Safety
/// `row` must hold bytes `32c..min(32c + 32, row.len())` with `row.len() - 32c ≥ 16`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_codes(row: &[u8], c: usize) -> __m256i {
    let p = row.as_ptr().add(32 * c);
    if row.len() >= 32 * c + 32 {
        _mm256_loadu_si256(p as *const __m256i)
    } else {
        _mm256_zextsi128_si256(_mm_loadu_si128(p as *const __m128i))
    }
}

/// `Σ_i` of the 16-bit lanes `q·x` of one chunk, widened to eight `i32` lanes.
/// `|Σ| ≤ 4 · 512` per 16-bit lane before widening.
#[inline]
#[target_feature(enable = "avx2")]
fn chunk_dot(q: &[__m256i; 4], xp: *const __m256i) -> __m256i {
    // SAFETY (for callers): `xp` points at one permuted chunk (128 bytes).
    let x = unsafe { [0, 1, 2, 3].map(|s| _mm256_loadu_si256(xp.add(s))) };
    let p01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(q[0], x[0]),
        _mm256_maddubs_epi16(q[1], x[1]),
    );
    let p23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(q[2], x[2]),
        _mm256_maddubs_epi16(q[3], x[3]),
    );
    _mm256_madd_epi16(_mm256_add_epi16(p01, p23), _mm256_set1_epi16(1))
}

/// The sums of the eight `i32` lanes of four vectors: `[Σa, Σb, Σc, Σd]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> [i32; 4] {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    let mut out = [0i32; 4];
    // SAFETY: 16-byte store into a 16-byte array.
    unsafe { _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s) };
    out
}

/// Splits `0..row_bytes` into passes of at most [`PASS`] columns: `(first byte, bytes)`.
fn passes(row_bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..row_bytes)
        .step_by(PASS / 4)
        .map(move |b0| (b0, (row_bytes - b0).min(PASS / 4)))
}

/// `y = W · x` with AVX2: the contract of
/// [`reference::ternary_matvec`](super::super::reference::ternary_matvec), for
/// [`row_bytes_ok`] rows.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn ternary_matvec_avx2(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert!(row_bytes_ok(row_bytes));
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    y.fill(0);
    let table = q_tables256();
    let mut xp = [0i8; PASS];
    for (b0, nb) in passes(row_bytes) {
        let (Some(xs), Some(xp)) = (
            x.get(4 * b0..4 * (b0 + nb)),
            xp.get_mut(..permuted_len(4 * nb)),
        ) else {
            return;
        };
        let sum_x = permute(xs, xp);
        let chunks = nb.div_ceil(32);
        let px = xp.as_ptr() as *const __m256i;
        if w.len() < y.len() * row_bytes {
            return;
        }
        let mut rows4 = w.chunks_exact(row_bytes);
        let mut outs = y.chunks_exact_mut(4);
        for out in outs.by_ref() {
            let Some(r0) = rows4.next() else {
                return;
            };
            let r0 = r0.as_ptr().wrapping_add(b0);
            let _ = (rows4.next(), rows4.next(), rows4.next());
            let mut acc = [_mm256_setzero_si256(); 4];
            for c in 0..chunks {
                for (k, a) in acc.iter_mut().enumerate() {
                    // SAFETY: rows `r..r+4` exist (checked above); the chunk read stays within
                    // bytes `b0..b0 + nb` of row `r + k`; `xp` holds `chunks` permuted chunks.
                    let q = q4(
                        unsafe { load_codes_at(r0.add(k * row_bytes), nb, c) },
                        table,
                    );
                    *a = _mm256_add_epi32(*a, chunk_dot(&q, unsafe { px.add(4 * c) }));
                }
            }
            let s = hsum4(acc[0], acc[1], acc[2], acc[3]);
            for (o, v) in out.iter_mut().zip(s) {
                *o = o.wrapping_add(v.wrapping_sub(sum_x));
            }
        }
        for out in outs.into_remainder() {
            let Some(row) = rows4.next().and_then(|r| r.get(b0..b0 + nb)) else {
                return;
            };
            let mut acc = _mm256_setzero_si256();
            for c in 0..chunks {
                // SAFETY: as above.
                let q = q4(unsafe { load_codes(row, c) }, table);
                acc = _mm256_add_epi32(acc, chunk_dot(&q, unsafe { px.add(4 * c) }));
            }
            let z = _mm256_setzero_si256();
            let s = hsum4(acc, z, z, z)[0];
            *out = out.wrapping_add(s.wrapping_sub(sum_x));
        }
    }
}

/// Permuted activations of one tile of tokens and one pass of columns.
struct Tile<'a> {
    /// `[nt][plen]` permuted activations.
    xp: &'a [i8],
    /// Bytes per token in `xp`.
    plen: usize,
    /// `Σ x` of each token's pass columns.
    sum_x: [i32; TILE],
    /// Tokens in the tile.
    nt: usize,
    /// First token of the tile.
    t0: usize,
}

/// Permutes tokens `t0..t0 + nt` of `x` (`[n][cols]`), columns `4·b0..4·(b0 + nb)`, into
/// `scratch`; `None` if something does not fit (never for a well-formed call).
#[inline]
#[target_feature(enable = "avx2")]
fn permute_tile<'a>(
    x: &[i8],
    cols: usize,
    (t0, nt): (usize, usize),
    (b0, nb): (usize, usize),
    scratch: &'a mut [i8],
) -> Option<Tile<'a>> {
    let plen = permuted_len(4 * nb);
    let xp = scratch.get_mut(..nt * plen)?;
    let mut sum_x = [0i32; TILE];
    for (t, (xt, s)) in xp.chunks_exact_mut(plen).zip(sum_x.iter_mut()).enumerate() {
        let start = (t0 + t) * cols + 4 * b0;
        *s = permute(x.get(start..start + 4 * nb)?, xt);
    }
    Some(Tile {
        xp,
        plen,
        sum_x,
        nt,
        t0,
    })
}

/// Adds rows `r0..r1` of one pass (`nb` code bytes from byte `b0` of each row) for every token
/// of `tile` into `y [n][rows]`, one row at a time, four tokens per step sharing the row's `q`
/// vectors.
#[inline]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn rows_by_one(
    w: &[u8],
    row_bytes: usize,
    (r0, r1): (usize, usize),
    (b0, nb): (usize, usize),
    tile: &Tile<'_>,
    rows: usize,
    y: &mut [i32],
) {
    let table = q_tables256();
    let chunks = nb.div_ceil(32);
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
                let q = q4(unsafe { load_codes(row, c) }, table);
                for (j, a) in acc.iter_mut().enumerate().take(k) {
                    // SAFETY: token `t + j < nt` owns `plen ≥ 128·chunks` bytes of `xp`.
                    let px = unsafe { tile.xp.as_ptr().add((t + j) * tile.plen + c * CHUNK) };
                    *a = _mm256_add_epi32(*a, chunk_dot(&q, px as *const __m256i));
                }
            }
            let s = hsum4(acc[0], acc[1], acc[2], acc[3]);
            for (j, sj) in s.into_iter().enumerate().take(k) {
                if let Some(o) = y.get_mut((tile.t0 + t + j) * rows + r) {
                    *o = o.wrapping_add(sj.wrapping_sub(tile.sum_x[t + j]));
                }
            }
            t += k;
        }
    }
}

/// `Y[t] = W · X[t]` for a block of tokens with AVX2, reading each weight row once per tile of
/// [`TILE`] tokens: the row's codes are turned into `q` vectors once per four tokens. Shapes:
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
    y.fill(0);
    for t0 in (0..n).step_by(TILE) {
        let nt = (n - t0).min(TILE);
        for pass in passes(row_bytes) {
            let Some(tile) = permute_tile(x, cols, (t0, nt), pass, scratch) else {
                return;
            };
            rows_by_one(w, row_bytes, (0, rows), pass, &tile, rows, y);
        }
    }
}

/// The codes of chunk `c` of the row slice at `p` with `nb` bytes (32 bytes, or the last 16
/// zero extended).
///
/// # Safety
/// `p` must be valid for reads of bytes `32c..min(32c + 32, nb)`, with `nb - 32c ≥ 16`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_codes_at(p: *const u8, nb: usize, c: usize) -> __m256i {
    let p = p.add(32 * c);
    if nb >= 32 * c + 32 {
        _mm256_loadu_si256(p as *const __m256i)
    } else {
        _mm256_zextsi128_si256(_mm_loadu_si128(p as *const __m128i))
    }
}

/// `y = W · x` with AVX-512 VNNI: two rows per `zmm` (the activations broadcast to both
/// halves), eight rows per step, `vpdpbusd` accumulating `q·x` straight into `i32` lanes.
/// Remaining rows go through [`ternary_matvec_avx2`]'s loop. The contract of
/// [`reference::ternary_matvec`](super::super::reference::ternary_matvec), for [`row_bytes_ok`] rows.
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn ternary_matvec_vnni(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    debug_assert!(row_bytes_ok(row_bytes));
    debug_assert_eq!(x.len(), row_bytes * 4);
    debug_assert_eq!(w.len(), row_bytes * y.len());
    let full = y.len() & !7;
    let (y8, y_rest) = y.split_at_mut(full);
    let (w8, w_rest) = w.split_at(full * row_bytes);
    // The rows that do not fill a group of eight.
    // SAFETY: AVX-512 implies AVX2.
    unsafe { ternary_matvec_avx2(w_rest, row_bytes, x, y_rest) };
    y8.fill(0);
    let t = q_tables256();
    let table = [0, 1].map(|k| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(t[k]), t[k]));
    let mut xp = [0i8; PASS];
    for (b0, nb) in passes(row_bytes) {
        let (Some(xs), Some(xp)) = (
            x.get(4 * b0..4 * (b0 + nb)),
            xp.get_mut(..permuted_len(4 * nb)),
        ) else {
            return;
        };
        let sum_x = permute(xs, xp);
        let chunks = nb.div_ceil(32);
        let px = xp.as_ptr() as *const __m256i;
        if w8.len() < y8.len() * row_bytes {
            return;
        }
        for (i, out) in y8.chunks_exact_mut(8).enumerate() {
            // SAFETY: rows `8i..8i+8` exist (`w8` holds `y8.len()` rows, checked); each
            // chunk read stays within bytes `b0..b0 + nb ≤ row_bytes` of its row (`nb - 32c ≥
            // 16` for `c < chunks`), and `xp` holds `chunks` permuted chunks.
            let acc = unsafe {
                let r0 = w8.as_ptr().add(8 * i * row_bytes + b0);
                let mut acc = [_mm512_setzero_si512(); 4];
                for c in 0..chunks {
                    let xs = [0, 1, 2, 3]
                        .map(|s| _mm512_broadcast_i64x4(_mm256_loadu_si256(px.add(4 * c + s))));
                    for (k, a) in acc.iter_mut().enumerate() {
                        // Rows 2k (low half) and 2k + 1 (high half).
                        let ra = r0.add(2 * k * row_bytes);
                        let codes = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(load_codes_at(ra, nb, c)),
                            load_codes_at(ra.add(row_bytes), nb, c),
                        );
                        let q = q4_512(codes, table);
                        *a = _mm512_dpbusd_epi32(*a, q[0], xs[0]);
                        *a = _mm512_dpbusd_epi32(*a, q[1], xs[1]);
                        *a = _mm512_dpbusd_epi32(*a, q[2], xs[2]);
                        *a = _mm512_dpbusd_epi32(*a, q[3], xs[3]);
                    }
                }
                acc
            };
            let lo = |a: __m512i| _mm512_castsi512_si256(a);
            let hi = |a: __m512i| _mm512_extracti64x4_epi64::<1>(a);
            let s0 = hsum4(lo(acc[0]), hi(acc[0]), lo(acc[1]), hi(acc[1]));
            let s1 = hsum4(lo(acc[2]), hi(acc[2]), lo(acc[3]), hi(acc[3]));
            for (o, v) in out.iter_mut().zip(s0.into_iter().chain(s1)) {
                *o = o.wrapping_add(v.wrapping_sub(sum_x));
            }
        }
    }
}

/// [`ternary_matmul_avx2`] with `vpdpbusd`, eight rows at a time: for each chunk the eight
/// rows' `q` vectors are built once (16 `zmm`, two rows per register) and stay in registers
/// while every token of the tile streams past (four broadcasts, 16 `vpdpbusd`, one 8-way
/// reduction and one `ymm` add into `y[t][r..r + 8]` per token). Rows beyond a multiple of
/// eight take the AVX2 loop. Same contract and scratch.
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
    for t0 in (0..n).step_by(TILE) {
        let nt = (n - t0).min(TILE);
        for (b0, nb) in passes(row_bytes) {
            let Some(tile) = permute_tile(x, cols, (t0, nt), (b0, nb), scratch) else {
                return;
            };
            let chunks = nb.div_ceil(32);
            for g in (0..full).step_by(8) {
                for c in 0..chunks {
                    // SAFETY: rows `g..g+8 ≤ rows` exist (checked); each read stays within
                    // bytes `b0..b0 + nb` of its row (`nb - 32c ≥ 16`).
                    let q: [[__m512i; 4]; 4] = core::array::from_fn(|k| unsafe {
                        let ra = w.as_ptr().add((g + 2 * k) * row_bytes + b0);
                        let codes = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(load_codes_at(ra, nb, c)),
                            load_codes_at(ra.add(row_bytes), nb, c),
                        );
                        q4_512(codes, table)
                    });
                    for tt in 0..nt {
                        // SAFETY: token `tt < nt` owns `plen ≥ 128·chunks` bytes of `xp`;
                        // `y` holds `n · rows` entries and `t0 + tt < n`, `g + 8 ≤ rows`.
                        unsafe {
                            let px =
                                tile.xp.as_ptr().add(tt * tile.plen + c * CHUNK) as *const __m256i;
                            let xs = [0, 1, 2, 3]
                                .map(|s| _mm512_broadcast_i64x4(_mm256_loadu_si256(px.add(s))));
                            let acc = q.map(|qk| {
                                let a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qk[0], xs[0]);
                                let a = _mm512_dpbusd_epi32(a, qk[1], xs[1]);
                                let a = _mm512_dpbusd_epi32(a, qk[2], xs[2]);
                                _mm512_dpbusd_epi32(a, qk[3], xs[3])
                            });
                            let sums = hsum8(acc);
                            let out = y.as_mut_ptr().add((t0 + tt) * rows + g) as *mut __m256i;
                            _mm256_storeu_si256(
                                out,
                                _mm256_add_epi32(_mm256_loadu_si256(out), sums),
                            );
                        }
                    }
                }
                for tt in 0..nt {
                    let sx = tile.sum_x[tt];
                    if let Some(out) = y.get_mut((t0 + tt) * rows + g..(t0 + tt) * rows + g + 8) {
                        out.iter_mut().for_each(|o| *o = o.wrapping_sub(sx));
                    }
                }
            }
            rows_by_one(w, row_bytes, (full, rows), (b0, nb), &tile, rows, y);
        }
    }
}

/// The lane sums of four register pairs: `[Σ lo(a0), Σ hi(a0), Σ lo(a1), …, Σ hi(a3)]` (the
/// eight rows of a [`ternary_matmul_vnni`] group, in order).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum8(a: [__m512i; 4]) -> __m256i {
    let lo = |v: __m512i| _mm512_castsi512_si256(v);
    let hi = |v: __m512i| _mm512_extracti64x4_epi64::<1>(v);
    // Pairwise adds: after three rounds of hadd each 128-bit lane holds four row sums.
    let h01 = _mm256_hadd_epi32(lo(a[0]), hi(a[0]));
    let h23 = _mm256_hadd_epi32(lo(a[1]), hi(a[1]));
    let h45 = _mm256_hadd_epi32(lo(a[2]), hi(a[2]));
    let h67 = _mm256_hadd_epi32(lo(a[3]), hi(a[3]));
    let h0123 = _mm256_hadd_epi32(h01, h23); // lane l: partial sums of rows 0..4
    let h4567 = _mm256_hadd_epi32(h45, h67); // lane l: partial sums of rows 4..8
                                             // Add the two 128-bit lanes: rows 0..4 from h0123, rows 4..8 from h4567.
    let lo4 = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let hi4 = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(lo4, hi4)
}

const _: () = assert!(TILE == super::super::MATMUL_TILE && PASS == super::super::MATMUL_PASS);
