//! What the x86-64 ternary kernels share: the activation layout, the code tables, passes over
//! long rows and horizontal sums. The kernels themselves live in `ternary_avx2.rs` (AVX2,
//! `vpmaddubsw`) and `ternary_avx512.rs` (AVX-512 VNNI, `vpdpbusd`).
//!
//! # Ternary products: `Σ w·x = Σ (w+1)·x − Σ x`
//!
//! A 2-bit code becomes `q = w + 1 ∈ {0, 1, 2}` with one `vpshufb` per nibble table (code
//! `0b10`, which the loader never lets through, maps to `q = 1`, i.e. `w = 0`, as in
//! [`decode_ternary`](super::super::decode_ternary)). `q` is unsigned, so `vpmaddubsw(q, x)` and
//! `vpdpbusd(q, x)` multiply it with signed activations exactly (`|q·x| ≤ 256`: no
//! saturation), and `Σ x` of the padded activation vector, computed once per vector, takes the
//! `+1` back out. Padding codes are `0b00` (`q = 1`), which is why `Σ x` runs over the same
//! padded columns. (The AVX-512 kernel for long rows decodes `q' = 1 − w` by masks instead, see
//! there.)
//!
//! # Activation layout
//!
//! Looking up the low (high) nibble of each byte of a 32-byte weight vector in the table of its
//! low or high code gives the weights `4i + s` for `i = 0..32` (`s = 0, 1`: low nibble; `2, 3`:
//! high nibble). The activations are permuted to match, per *chunk* of [`CHUNK`] columns:
//! `xp[s·32 + i] = x[4i + s]` (see [`permute_chunk`]); a half chunk (64 columns, 16 weight
//! bytes, the blob's row alignment) fills slots `0..16` of each group and zeroes the rest.
//! Permuting costs ~24 instructions per 128 activations, once per vector.
//!
//! Overflow: every partial sum is bounded by `2 · 128 · cols ≤ 2^8 · (2^15 + 64) < 2^24`.

use core::arch::x86_64::*;

/// Columns per permuted chunk (32 weight bytes, one `ymm` of codes).
pub const CHUNK: usize = 128;
/// Columns per pass over a matrix: the permuted activations of one pass live on the stack (1 KiB).
pub(super) const PASS: usize = 8 * CHUNK;
/// Tokens per tile of the block kernels (their `Σ x` lives on the stack).
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

/// Whether a matrix-vector call has the shapes the vector kernels read without bounds checks:
/// `x [row_bytes·4]`, `w` holding `y.len()` rows of [`row_bytes_ok`] bytes.
pub(super) fn shapes_ok(w: &[u8], row_bytes: usize, x: &[i8], y: &[i32]) -> bool {
    row_bytes_ok(row_bytes)
        && x.len() == row_bytes * 4
        && y.len().checked_mul(row_bytes).is_some_and(|n| n <= w.len())
}

/// Permutes 128 activations (`x[..128]`) into chunk layout `out[s·32 + i] = x[4i + s]`.
///
/// Bytes `4i+s` of each 16-byte lane are first grouped by `s` (`vpshufb`), giving dwords
/// `D[m][s]` (lane `m`, 4 bytes each); an 8×4 dword transpose (`vpunpck*`, `vpermd`) then
/// lays out `D[0][s], …, D[7][s]` for each `s`.
///
/// # Safety
/// `out` must be valid for writes of 128 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn permute_chunk(x: &[i8; CHUNK], out: *mut i8) {
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
    let o = out as *mut __m256i;
    for (k, v) in s.into_iter().enumerate() {
        // Four unaligned 32-byte stores into the 128 bytes at `out`.
        _mm256_storeu_si256(o.add(k), _mm256_permutevar8x32_epi32(v, order));
    }
}

/// `Σ x` of 128 activations held as four `ymm` (in any order): `vpmaddubsw` by ones, then
/// `vpmaddwd`. `|Σ| ≤ 2^14`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn sum_chunk(x: &[__m256i; 4]) -> __m256i {
    let ones = _mm256_set1_epi8(1);
    let s16 = _mm256_add_epi16(
        _mm256_add_epi16(
            _mm256_maddubs_epi16(ones, x[0]),
            _mm256_maddubs_epi16(ones, x[1]),
        ),
        _mm256_add_epi16(
            _mm256_maddubs_epi16(ones, x[2]),
            _mm256_maddubs_epi16(ones, x[3]),
        ),
    );
    _mm256_madd_epi16(s16, _mm256_set1_epi16(1))
}

/// Permutes `x` (a multiple of 64 long, at most [`PASS`]) into chunk layout at `out` and
/// returns `Σ x`.
///
/// # Safety
/// `out` must be valid for writes of [`permuted_len`]`(x.len())` bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn permute_to(x: &[i8], out: *mut i8) -> i32 {
    let mut sum = _mm256_setzero_si256();
    for (c, xc) in x.chunks(CHUNK).enumerate() {
        let oc = out.add(c * CHUNK);
        if let Ok(xc) = <&[i8; CHUNK]>::try_from(xc) {
            permute_chunk(xc, oc);
        } else {
            // A half chunk: 16 weights per group, the rest zero.
            core::ptr::write_bytes(oc, 0, CHUNK);
            for (i, q) in xc.chunks_exact(4).enumerate() {
                for (s, v) in q.iter().enumerate() {
                    *oc.add(s * 32 + i) = *v;
                }
            }
        }
        let p = oc as *const __m256i;
        let v = [0, 1, 2, 3].map(|s| _mm256_loadu_si256(p.add(s)));
        sum = _mm256_add_epi32(sum, sum_chunk(&v));
    }
    hsum1(sum)
}

/// [`permute_to`] into a slice of at least [`permuted_len`]`(x.len())` bytes (`None` if it is
/// shorter).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn permute(x: &[i8], out: &mut [i8]) -> Option<i32> {
    if out.len() < permuted_len(x.len()) || x.len() > PASS {
        return None;
    }
    // SAFETY: `out` holds the bytes written (checked).
    Some(unsafe { permute_to(x, out.as_mut_ptr()) })
}

/// `q = w + 1` tables for `vpshufb` indexed by a nibble (two codes): `[0]` gives `q` of the
/// nibble's low code, `[1]` of its high code. Code `0b10` (never stored) gives `q = 1`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q_tables256() -> [__m256i; 2] {
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
pub(super) fn q4(codes: __m256i, t: [__m256i; 2]) -> [__m256i; 4] {
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

/// The codes of chunk `c` of the row slice at `p` with `nb` bytes (32 bytes, or the last 16
/// zero extended: code `0b00` meets the zeroed half of the permuted chunk).
///
/// # Safety
/// `p` must be valid for reads of bytes `32c..min(32c + 32, nb)`, with `nb - 32c ≥ 16`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load_codes_at(p: *const u8, nb: usize, c: usize) -> __m256i {
    let p = p.add(32 * c);
    if nb >= 32 * c + 32 {
        _mm256_loadu_si256(p as *const __m256i)
    } else {
        _mm256_zextsi128_si256(_mm_loadu_si128(p as *const __m128i))
    }
}

/// The sum of the eight `i32` lanes of `a`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum1(a: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The sums of the eight `i32` lanes of four vectors: `[Σa, Σb, Σc, Σd]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum4(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The sums of the eight `i32` lanes of eight vectors, in order, as one vector. (`vphaddd`
/// trees measured as fast as unpack-and-add transposes here, with fewer instructions.)
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum8(a: &[__m256i; 8]) -> __m256i {
    // Three rounds of pairwise adds leave, in each 128-bit lane, four partial row sums.
    let h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    let h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
    let lo = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let hi = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(lo, hi)
}

/// The row sums of eight rows whose `i16` lanes (16 per row) add up to a value in `i16`
/// range (a 128-column row: see `ternary_avx2.rs`), as eight `i32` lanes: three rounds of
/// `vphaddw` (wrapping, which is harmless: the final sums are in range), the two 128-bit
/// halves added, then widened.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum8_i16(a: &[__m256i; 8]) -> __m256i {
    // Per 128-bit lane: four pair sums of each row, then two, then one.
    let h0 = _mm256_hadd_epi16(_mm256_hadd_epi16(a[0], a[1]), _mm256_hadd_epi16(a[2], a[3]));
    let h1 = _mm256_hadd_epi16(_mm256_hadd_epi16(a[4], a[5]), _mm256_hadd_epi16(a[6], a[7]));
    let h = _mm256_hadd_epi16(h0, h1);
    let s = _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    _mm256_cvtepi16_epi32(s)
}

/// Decoded `q` vectors of eight rows for the chunks of one pass: `[chunk][row][s]`, 8 KiB.
pub(super) type QRows8 = [[[__m256i; 4]; 8]; PASS / CHUNK];

/// Decodes chunks `0..nb.div_ceil(32)` of eight rows (`row_bytes` apart from `r0`, `nb` code
/// bytes each) into `q`; the other chunks stay as they were.
///
/// # Safety
/// Each row valid for `nb` bytes, `nb` a multiple of 16 and at most `PASS / 4`; `q` valid for
/// writes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn decode_rows8(r0: *const u8, row_bytes: usize, nb: usize, q: *mut QRows8) {
    let t = q_tables256();
    for c in 0..nb.div_ceil(32) {
        for k in 0..8 {
            let v = q4(load_codes_at(r0.add(k * row_bytes), nb, c), t);
            core::ptr::addr_of_mut!((*q)[c][k]).write(v);
        }
    }
}

/// Splits `0..row_bytes` into passes of at most [`PASS`] columns: `(first byte, bytes)`.
pub(super) fn passes(row_bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..row_bytes)
        .step_by(PASS / 4)
        .map(move |b0| (b0, (row_bytes - b0).min(PASS / 4)))
}

/// Permuted activations of one tile of tokens and one pass of columns.
pub(super) struct Tile<'a> {
    /// `[nt][plen]` permuted activations.
    pub xp: &'a [i8],
    /// Bytes per token in `xp`.
    pub plen: usize,
    /// `Σ x` of each token's pass columns.
    pub sum_x: [i32; TILE],
    /// Tokens in the tile.
    pub nt: usize,
    /// First token of the tile.
    pub t0: usize,
}

/// Permutes tokens `t0..t0 + nt` of `x` (`[n][cols]`), columns `4·b0..4·(b0 + nb)`, into
/// `scratch`; `None` if something does not fit (never for a well-formed call).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn permute_tile<'a>(
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
        *s = permute(x.get(start..start + 4 * nb)?, xt)?;
    }
    Some(Tile {
        xp,
        plen,
        sum_x,
        nt,
        t0,
    })
}

const _: () = assert!(TILE == super::super::MATMUL_TILE && PASS == super::super::MATMUL_PASS);
