//! x86-64 kernels on the row-tiled layout ([`tiled`](super::super::tiled)): matvec and block
//! matmul with AVX2 (`vpmaddubsw`) and with AVX-512 VNNI (`vpdpbusd`). Each computes
//! `Σ q·x` with `q = w + 1 ∈ {0, 1, 2}` (unsigned, as both instructions want their first
//! operand) and returns `Σ w·x = Σ q·x − Σ x`; padding columns hold `q = 1`, so whatever the
//! activations hold there cancels.
//!
//! # AVX2 matvec
//!
//! Two tiles per step, each in two halves (rows 0-7 and 8-15: the first and last 32 bytes of
//! each block), share the block's four activation words, broadcast once (`vpbroadcastd` from
//! memory). Per half and block: `h = v >> 4` (in 16-bit lanes; the bits that cross from the
//! next byte are masked off), fields 0 and 2 (`v & 0x03`, `h & 0x03`) against words 0 and 2
//! into an `i16` accumulator `a₁`, fields 1 and 3 times four (`v & 0x0C`, `h & 0x0C`) against
//! words 1 and 3 into `a₄`. Compiled (rustc 1.95, release), two blocks of 256 weights take 63
//! instructions: four broadcasts, four loads, four shifts, 16 ANDs, 16 `vpmaddubsw`, 16 adds
//! and three of loop control, with the eight accumulators and both masks in registers (one
//! tile per step took 36 per block, reloading a mask); no reduction across lanes per row, as
//! the blob layout's kernel needs. On cores with four vector pipes (Zen 3 and 4) the vector
//! instructions bound the loop: LLVM's Zen 3 model (`llvm-mca -mcpu=znver3`) puts it at 7.0
//! cycles per block against 8.0 with one tile per step.
//!
//! Bounds: lane `2i + e` of a `vpmaddubsw` is row `i`'s products over two columns, `|lane| ≤
//! 2·2·128 = 512` (`−512 ≤ lane ≤ 508`), four times that for `a₄`. A block adds two lanes to
//! each accumulator (`a₄ ≥ −4096` per block), so after at most eight blocks (128 columns) both
//! are widened (`vpmaddwd` by ones, which also sums each row's two lanes) into `i32` totals
//! `t₁`, `t₄`; `Σ q·x = t₁ + t₄/4` (exact: `t₄` sums multiples of four). `|Σ q·x| ≤ 2·128·cols
//! < 2^24` for rows of at most `2^15 + 64` columns.
//!
//! # AVX2 block matmul
//!
//! Each 32-byte half block is decoded once for up to eight tokens: every field shifted down to
//! scale one (`(v >> 2s) & 3`, seven instructions), then per token four broadcasts, four
//! `vpmaddubsw` and four `i16` additions into one accumulator (`≥ −4·512` per block, widened
//! every 16 blocks).
//!
//! # AVX-512 VNNI
//!
//! A `zmm` holds a whole block. Matvec: `v & 0x03`, `0x0C`, `0x30`, `0xC0` are the fields times
//! 1, 4, 16 and 64 (at most 128: still an unsigned byte), each multiplied by its activation
//! word broadcast from memory (`{1to16}`) into its own `i32` accumulator; two tiles per step
//! share the broadcasts; `Σ q·x = a₀ + a₁/4 + a₂/16 + a₃/64`, the shifts exact. `|a₃| ≤
//! 64·2·128·cols < 2^31`. Block matmul: the fields shifted to scale one once per block and
//! shared by up to eight tokens, one accumulator per token.

use core::arch::x86_64::*;

use super::super::tiled::{TiledMatrix, BLOCK_BYTES, BLOCK_COLS, TILE_ROWS};
use super::ternary::hsum1;

/// Tokens whose `Σ x` one block-matmul pass keeps on the stack.
pub(super) const CHUNK_TOKENS: usize = 64;

/// `Σ x` over `x` (AVX2: `vpmaddubsw` by ones, then `vpmaddwd`). `|Σ| < 2^23` for vectors of
/// at most `2^15 + 64` entries.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn sum_x(x: &[i8]) -> i32 {
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    let mut acc = _mm256_setzero_si256();
    let mut chunks = x.chunks_exact(32);
    for c in chunks.by_ref() {
        // SAFETY: `c` holds 32 bytes.
        let v = unsafe { _mm256_loadu_si256(c.as_ptr() as *const __m256i) };
        acc = _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16),
        );
    }
    let tail: i32 = chunks.remainder().iter().map(|v| *v as i32).sum();
    hsum1(acc) + tail
}

/// `sums[j] = Σ x` of token `c0 + j` (`x` rows `cols` apart; 0 past its end).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn chunk_sums(x: &[i8], cols: usize, c0: usize, sums: &mut [i32]) {
    for (j, s) in sums.iter_mut().enumerate() {
        *s = x
            .get((c0 + j) * cols..(c0 + j + 1) * cols)
            .map_or(0, |xt| sum_x(xt));
    }
}

/// The 32-bit word of activations `x[4i..4i + 4]` in every lane.
///
/// # Safety
/// `x` must be valid for reads of bytes `4i..4i + 4`.
#[inline(always)]
pub(super) unsafe fn word(x: *const i8, i: usize) -> __m256i {
    _mm256_set1_epi32((x.add(4 * i) as *const i32).read_unaligned())
}

/// [`word`] in the 16 lanes of a `zmm`.
///
/// # Safety
/// As [`word`].
#[inline(always)]
unsafe fn word512(x: *const i8, i: usize) -> __m512i {
    _mm512_set1_epi32((x.add(4 * i) as *const i32).read_unaligned())
}

/// Whether a matvec call has the shapes the kernels read without bounds checks.
pub(super) fn matvec_ok(m: &TiledMatrix<'_>, x: &[i8], y: &[i32]) -> bool {
    x.len() == m.cols() && y.len() == m.rows()
}

/// Tokens in a block-matmul call, when the shapes agree: `x [n][cols]`, `y [n][rows]`.
pub(super) fn matmul_tokens(m: &TiledMatrix<'_>, x: &[i8], y: &[i32]) -> Option<usize> {
    let n = x.len().checked_div(m.cols())?;
    (x.len() == n * m.cols() && y.len() == n.checked_mul(m.rows())?).then_some(n)
}

/// Writes `v` (eight `i32`) to `y[r0..]`, cut at `y`'s end.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn store8(y: &mut [i32], r0: usize, v: __m256i) {
    if let Some(out) = y.get_mut(r0..r0 + 8) {
        // SAFETY: `out` holds eight `i32`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v) };
    } else if let Some(out) = y.get_mut(r0..) {
        let mut tmp = [0i32; 8];
        // SAFETY: `tmp` holds eight `i32`.
        unsafe { _mm256_storeu_si256(tmp.as_mut_ptr() as *mut __m256i, v) };
        let n = out.len().min(8);
        out[..n].copy_from_slice(&tmp[..n]);
    }
}

/// Adds `Σ q·x` over blocks `k0..k0 + n` (`n ≤ 8`: the `i16` bound) of the `N` tiles at
/// `tiles` to the `i32` totals of their two halves: `t1` (fields 0 and 2), `t4` (fields 1 and
/// 3, times four). The tiles share each block's four activation broadcasts.
///
/// # Safety
/// AVX2; every tile valid for reads of blocks `k0..k0 + n`, `x` of `x[16·k0 .. 16·(k0 + n)]`.
#[inline(always)]
unsafe fn chunk_avx2<const N: usize>(
    tiles: [*const u8; N],
    xp: *const i8,
    k0: usize,
    n: usize,
    t1: &mut [[__m256i; 2]; N],
    t4: &mut [[__m256i; 2]; N],
) {
    let (m3, mc, ones) = (
        _mm256_set1_epi8(0x03),
        _mm256_set1_epi8(0x0C),
        _mm256_set1_epi16(1),
    );
    let mut a1 = [[_mm256_setzero_si256(); 2]; N];
    let mut a4 = [[_mm256_setzero_si256(); 2]; N];
    for k in k0..k0 + n {
        // (Arrays written out, not `map`ped: a closure does not inherit the target features,
        // so its intrinsics would become calls.)
        let xb = [
            word(xp, 4 * k),
            word(xp, 4 * k + 1),
            word(xp, 4 * k + 2),
            word(xp, 4 * k + 3),
        ];
        for j in 0..N {
            for h in 0..2 {
                let v =
                    _mm256_loadu_si256(tiles[j].add(k * BLOCK_BYTES + 32 * h) as *const __m256i);
                let hi = _mm256_srli_epi16::<4>(v);
                let p0 = _mm256_maddubs_epi16(_mm256_and_si256(v, m3), xb[0]);
                let p1 = _mm256_maddubs_epi16(_mm256_and_si256(v, mc), xb[1]);
                let p2 = _mm256_maddubs_epi16(_mm256_and_si256(hi, m3), xb[2]);
                let p3 = _mm256_maddubs_epi16(_mm256_and_si256(hi, mc), xb[3]);
                a1[j][h] = _mm256_add_epi16(_mm256_add_epi16(a1[j][h], p0), p2);
                a4[j][h] = _mm256_add_epi16(_mm256_add_epi16(a4[j][h], p1), p3);
            }
        }
    }
    for j in 0..N {
        for h in 0..2 {
            t1[j][h] = _mm256_add_epi32(t1[j][h], _mm256_madd_epi16(a1[j][h], ones));
            t4[j][h] = _mm256_add_epi32(t4[j][h], _mm256_madd_epi16(a4[j][h], ones));
        }
    }
}

/// `Σ q·x − Σ x` of `N` consecutive tiles from tile `t`, written to `y` (whole chunks of eight
/// blocks, a count the compiler sees so that it unrolls them, then the rest).
///
/// # Safety
/// AVX2; tiles `t..t + N` lie in `m`, `x` holds `m.cols()` activations, `16 · t < y.len()`.
#[inline(always)]
unsafe fn tiles_avx2<const N: usize>(
    m: &TiledMatrix<'_>,
    t: usize,
    xp: *const i8,
    sx: __m256i,
    y: &mut [i32],
) {
    let blocks = m.cols() / BLOCK_COLS;
    let mut tiles = [m.data().as_ptr(); N];
    for (j, p) in tiles.iter_mut().enumerate() {
        *p = p.add((t + j) * blocks * BLOCK_BYTES);
    }
    let mut t1 = [[_mm256_setzero_si256(); 2]; N];
    let mut t4 = [[_mm256_setzero_si256(); 2]; N];
    let mut k0 = 0;
    while k0 + 8 <= blocks {
        chunk_avx2(tiles, xp, k0, 8, &mut t1, &mut t4);
        k0 += 8;
    }
    if k0 < blocks {
        chunk_avx2(tiles, xp, k0, blocks - k0, &mut t1, &mut t4);
    }
    for j in 0..N {
        for h in 0..2 {
            let s = _mm256_add_epi32(t1[j][h], _mm256_srai_epi32::<2>(t4[j][h]));
            store8(y, TILE_ROWS * (t + j) + 8 * h, _mm256_sub_epi32(s, sx));
        }
    }
}

/// `y = W · x` with AVX2 (the module docs say how): the contract of
/// [`reference::ternary_matvec_tiled`](super::super::reference::ternary_matvec_tiled).
/// Shapes: `x [m.cols()]`, `y [m.rows()]`; others run the reference.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn tiled_matvec_avx2(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    if !matvec_ok(m, x, y) {
        return super::super::reference::ternary_matvec_tiled(m, x, y);
    }
    let sx = _mm256_set1_epi32(sum_x(x));
    let xp = x.as_ptr();
    let tiles = m.rows().div_ceil(TILE_ROWS);
    // SAFETY (this loop): `TiledMatrix` holds whole tiles of `cols / 16` blocks, so every block
    // read lies inside `m.data()`; the words read are `x[16k..16k + 16]`, `k < cols / 16`,
    // inside `x` (`matvec_ok`); each tile written starts inside `y`.
    let mut t = 0;
    while t + TILES_PER_STEP <= tiles {
        tiles_avx2::<TILES_PER_STEP>(m, t, xp, sx, y);
        t += TILES_PER_STEP;
    }
    while t < tiles {
        tiles_avx2::<1>(m, t, xp, sx, y);
        t += 1;
    }
}

/// Tiles whose blocks one step of the AVX2 matvec reads, sharing each block's broadcasts.
const TILES_PER_STEP: usize = 2;

/// Adds `Σ q·x` of one half tile (eight rows, the 32 bytes at `half` of each block) for `K`
/// tokens (`x` rows `cols` apart from `x0`) and returns it, one vector per token.
///
/// # Safety
/// AVX2; `half` valid for the reads of `blocks` blocks, `x0` for `K` rows of `16 · blocks`.
#[inline(always)]
unsafe fn half_tokens_avx2<const K: usize>(
    half: *const u8,
    blocks: usize,
    x0: *const i8,
    cols: usize,
) -> [__m256i; K] {
    let (m3, ones) = (_mm256_set1_epi8(0x03), _mm256_set1_epi16(1));
    let mut tot = [_mm256_setzero_si256(); K];
    for k0 in (0..blocks).step_by(16) {
        let mut acc = [_mm256_setzero_si256(); K];
        for k in k0..(k0 + 16).min(blocks) {
            let v = _mm256_loadu_si256(half.add(k * BLOCK_BYTES) as *const __m256i);
            let q = [
                _mm256_and_si256(v, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3),
            ];
            for (j, a) in acc.iter_mut().enumerate() {
                let xp = x0.add(j * cols);
                let s01 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(q[0], word(xp, 4 * k)),
                    _mm256_maddubs_epi16(q[1], word(xp, 4 * k + 1)),
                );
                let s23 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(q[2], word(xp, 4 * k + 2)),
                    _mm256_maddubs_epi16(q[3], word(xp, 4 * k + 3)),
                );
                *a = _mm256_add_epi16(*a, _mm256_add_epi16(s01, s23));
            }
        }
        for (t, a) in tot.iter_mut().zip(acc) {
            *t = _mm256_add_epi32(*t, _mm256_madd_epi16(a, ones));
        }
    }
    tot
}

/// Splits `n` tokens into groups of 8, 4, 2 and 1 (as many eights as fit): `(first, size)`.
pub(super) fn token_groups(n: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut g = 0;
    core::iter::from_fn(move || {
        let left = n - g;
        let k = match left {
            0 => return None,
            8.. => 8,
            4..=7 => 4,
            2 | 3 => 2,
            _ => 1,
        };
        g += k;
        Some((g - k, k))
    })
}

/// Defines `$name`, the block matmul over half tiles (eight rows) with the per-half kernel
/// `$half::<K>` (the `Σ q·x` of `K` tokens, as [`half_tokens_avx2`]), compiled with
/// `$features`: the driver the AVX2 and AVX-VNNI block matmuls share.
macro_rules! half_tile_matmul {
    ($(#[$doc:meta])* $name:ident, $features:literal, $half:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub unsafe fn $name(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
            use super::tiled::{chunk_sums, matmul_fallback, matmul_tokens, store8};
            use super::tiled::{token_groups, CHUNK_TOKENS};
            let Some(n) = matmul_tokens(m, x, y) else {
                return matmul_fallback(m, x, y);
            };
            let (rows, cols) = (m.rows(), m.cols());
            let blocks = cols / BLOCK_COLS;
            let mut sums = [0i32; CHUNK_TOKENS];
            for c0 in (0..n).step_by(CHUNK_TOKENS) {
                let nc = (n - c0).min(CHUNK_TOKENS);
                chunk_sums(x, cols, c0, &mut sums[..nc]);
                for r0 in (0..rows).step_by(8) {
                    let (t, h) = (r0 / TILE_ROWS, (r0 % TILE_ROWS) / 8);
                    // SAFETY (this block): every block of this half tile lies inside
                    // `m.data()`; the tokens `c0 + g .. c0 + g + k ≤ n` each have `cols = 16 ·
                    // blocks` activations.
                    let half = m.data().as_ptr().add(t * blocks * BLOCK_BYTES + 32 * h);
                    for (g, k) in token_groups(nc) {
                        let x0 = x.as_ptr().add((c0 + g) * cols);
                        let mut out = [_mm256_setzero_si256(); 8];
                        match k {
                            8 => out = $half::<8>(half, blocks, x0, cols),
                            4 => out[..4].copy_from_slice(&$half::<4>(half, blocks, x0, cols)),
                            2 => out[..2].copy_from_slice(&$half::<2>(half, blocks, x0, cols)),
                            _ => out[..1].copy_from_slice(&$half::<1>(half, blocks, x0, cols)),
                        }
                        for (j, v) in out.iter().enumerate().take(k) {
                            let s = _mm256_sub_epi32(*v, _mm256_set1_epi32(sums[g + j]));
                            let at = (c0 + g + j) * rows;
                            if let Some(yt) = y.get_mut(at..at + rows) {
                                store8(yt, r0, s);
                            }
                        }
                    }
                }
            }
        }
    };
}
pub(super) use half_tile_matmul;

half_tile_matmul!(
    /// `Y[t] = W · X[t]` for a block of tokens with AVX2 (the module docs say how): the
    /// contract of [`reference::ternary_matvec_tiled`](super::super::reference::ternary_matvec_tiled)
    /// token by token. Shapes: `x [n][m.cols()]`, `y [n][m.rows()]`; others run the reference.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    tiled_matmul_avx2,
    "avx2",
    half_tokens_avx2
);

/// The reference token by token, for calls whose shapes do not agree.
pub(super) fn matmul_fallback(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    if m.cols() == 0 || m.rows() == 0 {
        y.fill(0);
        return;
    }
    for (xt, yt) in x.chunks_exact(m.cols()).zip(y.chunks_exact_mut(m.rows())) {
        super::super::reference::ternary_matvec_tiled(m, xt, yt);
    }
}

/// `Σ q·x` of `N` consecutive tiles from `tile0` (masks decode, see the module docs), one
/// `zmm` (16 rows) per tile.
///
/// # Safety
/// AVX-512 VNNI; the `N` tiles of `blocks` blocks each lie in the matrix, `x` holds `16 ·
/// blocks` activations.
#[inline(always)]
unsafe fn tiles_vnni<const N: usize>(
    tile0: *const u8,
    blocks: usize,
    x: *const i8,
) -> [__m512i; N] {
    let masks = [
        _mm512_set1_epi8(0x03),
        _mm512_set1_epi8(0x0C),
        _mm512_set1_epi8(0x30),
        _mm512_set1_epi8(0xC0u8 as i8),
    ];
    let mut a = [[_mm512_setzero_si512(); 4]; N];
    for k in 0..blocks {
        let xb = [
            word512(x, 4 * k),
            word512(x, 4 * k + 1),
            word512(x, 4 * k + 2),
            word512(x, 4 * k + 3),
        ];
        for (j, aj) in a.iter_mut().enumerate() {
            let p = tile0.add((j * blocks + k) * BLOCK_BYTES);
            let v = _mm512_loadu_si512(p as *const __m512i);
            for s in 0..4 {
                aj[s] = _mm512_dpbusd_epi32(aj[s], _mm512_and_si512(v, masks[s]), xb[s]);
            }
        }
    }
    let mut out = [_mm512_setzero_si512(); N];
    for (o, a) in out.iter_mut().zip(a) {
        *o = _mm512_add_epi32(
            _mm512_add_epi32(a[0], _mm512_srai_epi32::<2>(a[1])),
            _mm512_add_epi32(_mm512_srai_epi32::<4>(a[2]), _mm512_srai_epi32::<6>(a[3])),
        );
    }
    out
}

/// Writes the rows of tile `t` (`v − sx`) into `y`, masked at `y`'s end.
///
/// # Safety
/// AVX-512 F; `16 · t < y.len()`.
#[inline(always)]
unsafe fn store_tile(y: &mut [i32], t: usize, v: __m512i) {
    let r0 = TILE_ROWS * t;
    let n = (y.len() - r0).min(TILE_ROWS);
    let mask = ((1u32 << n) - 1) as __mmask16;
    _mm512_mask_storeu_epi32(y.as_mut_ptr().add(r0), mask, v);
}

/// `y = W · x` with AVX-512 VNNI (the module docs say how): the contract of
/// [`reference::ternary_matvec_tiled`](super::super::reference::ternary_matvec_tiled).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tiled_matvec_vnni(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    if !matvec_ok(m, x, y) {
        return super::super::reference::ternary_matvec_tiled(m, x, y);
    }
    let blocks = m.cols() / BLOCK_COLS;
    let sx = _mm512_set1_epi32(sum_x(x));
    let tiles = m.rows().div_ceil(TILE_ROWS);
    let tile_bytes = blocks * BLOCK_BYTES;
    let mut t = 0;
    // SAFETY (this loop): the tiles read exist (`t + N ≤ tiles`), `x` holds `cols`
    // activations (`matvec_ok`), and each stored tile starts inside `y`.
    while t + 2 <= tiles {
        let a = tiles_vnni::<2>(m.data().as_ptr().add(t * tile_bytes), blocks, x.as_ptr());
        store_tile(y, t, _mm512_sub_epi32(a[0], sx));
        store_tile(y, t + 1, _mm512_sub_epi32(a[1], sx));
        t += 2;
    }
    if t < tiles {
        let [a] = tiles_vnni::<1>(m.data().as_ptr().add(t * tile_bytes), blocks, x.as_ptr());
        store_tile(y, t, _mm512_sub_epi32(a, sx));
    }
}

/// `Σ q·x` of one tile for `K` tokens (rows of `x` `cols` apart from `x0`), fields shifted to
/// scale one once per block.
///
/// # Safety
/// AVX-512 VNNI; the tile's `blocks` blocks lie at `tile`, `x0` holds `K` rows of `16 ·
/// blocks` activations.
#[inline(always)]
unsafe fn tile_tokens_vnni<const K: usize>(
    tile: *const u8,
    blocks: usize,
    x0: *const i8,
    cols: usize,
) -> [__m512i; K] {
    let m3 = _mm512_set1_epi8(0x03);
    let mut acc = [_mm512_setzero_si512(); K];
    for k in 0..blocks {
        let v = _mm512_loadu_si512(tile.add(k * BLOCK_BYTES) as *const __m512i);
        let q = [
            _mm512_and_si512(v, m3),
            _mm512_and_si512(_mm512_srli_epi16::<2>(v), m3),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v), m3),
            _mm512_and_si512(_mm512_srli_epi16::<6>(v), m3),
        ];
        for (j, a) in acc.iter_mut().enumerate() {
            let xp = x0.add(j * cols);
            for (s, qs) in q.iter().enumerate() {
                *a = _mm512_dpbusd_epi32(*a, *qs, word512(xp, 4 * k + s));
            }
        }
    }
    acc
}

/// `Y[t] = W · X[t]` for a block of tokens with AVX-512 VNNI (the module docs say how): the
/// contract of [`tiled_matmul_avx2`].
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tiled_matmul_vnni(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    let Some(n) = matmul_tokens(m, x, y) else {
        return matmul_fallback(m, x, y);
    };
    let (rows, cols) = (m.rows(), m.cols());
    let blocks = cols / BLOCK_COLS;
    let mut sums = [0i32; CHUNK_TOKENS];
    for c0 in (0..n).step_by(CHUNK_TOKENS) {
        let nc = (n - c0).min(CHUNK_TOKENS);
        chunk_sums(x, cols, c0, &mut sums[..nc]);
        for t in 0..rows.div_ceil(TILE_ROWS) {
            // SAFETY (this block): tile `t` lies inside `m.data()`; the tokens read exist
            // (`c0 + g + k ≤ n`) with `cols` activations each; each stored tile starts inside
            // its token's `rows` outputs.
            let tile = m.data().as_ptr().add(t * blocks * BLOCK_BYTES);
            for (g, k) in token_groups(nc) {
                let x0 = x.as_ptr().add((c0 + g) * cols);
                let mut out = [_mm512_setzero_si512(); 8];
                match k {
                    8 => out = tile_tokens_vnni::<8>(tile, blocks, x0, cols),
                    4 => out[..4].copy_from_slice(&tile_tokens_vnni::<4>(tile, blocks, x0, cols)),
                    2 => out[..2].copy_from_slice(&tile_tokens_vnni::<2>(tile, blocks, x0, cols)),
                    _ => out[..1].copy_from_slice(&tile_tokens_vnni::<1>(tile, blocks, x0, cols)),
                }
                for (j, v) in out.iter().enumerate().take(k) {
                    let s = _mm512_sub_epi32(*v, _mm512_set1_epi32(sums[g + j]));
                    let at = (c0 + g + j) * rows;
                    if let Some(yt) = y.get_mut(at..at + rows) {
                        store_tile(yt, t, s);
                    }
                }
            }
        }
    }
}
