//! The row-tiled ternary matvec and block matmul with 256-bit `vpdpbusd`: the AVX-VNNI
//! level's kernels (VEX encoding, recent desktop cores without AVX-512) and their twins in the
//! EVEX encoding of AVX-512 VNNI + VL. Each pair comes from one macro and differs only in the
//! instruction's encoding, so the twins, which CPUs with AVX-512 VNNI run, test the arithmetic
//! of the others.
//!
//! Matvec, per half tile (eight rows, 32 bytes of each block): `h = v >> 4` (16-bit lanes), the four
//! fields `v & 0x03`, `v & 0x0C`, `h & 0x03`, `h & 0x0C` (values `q`, `4q`, `q`, `4q`), each
//! into its own `i32` accumulator by `vpdpbusd` against its activation word broadcast: eight
//! accumulators per tile, one `vpdpbusd` each per block, so no dependency chain is longer
//! than one instruction per block. `Σ q·x = a₀ + a₂ + (a₁ + a₃)/4` (exact). Bounds: `|a| ≤
//! 4·2·128·cols < 2^31`.
//!
//! Block matmul: the AVX2 level's driver ([`half_tile_matmul`]) over half tiles; per block the
//! four fields shifted to scale one once, then four `vpdpbusd` per token into its `i32`
//! accumulator (no `i16` stage to widen).

use core::arch::x86_64::*;

use super::super::tiled::{TiledMatrix, BLOCK_BYTES, BLOCK_COLS, TILE_ROWS};
use super::tiled::{half_tile_matmul, matvec_ok, store8, sum_x, word};

macro_rules! tiled_matvec_dpbusd256 {
    ($(#[$doc:meta])* $name:ident, $features:literal, $dpbusd:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub unsafe fn $name(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
            if !matvec_ok(m, x, y) {
                return super::super::reference::ternary_matvec_tiled(m, x, y);
            }
            let blocks = m.cols() / BLOCK_COLS;
            let sx = _mm256_set1_epi32(sum_x(x));
            let (m3, mc) = (_mm256_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
            let xp = x.as_ptr();
            for t in 0..m.rows().div_ceil(TILE_ROWS) {
                // SAFETY (this block): `TiledMatrix` holds whole tiles of `blocks` blocks, so
                // every block read lies inside `m.data()`; the words read are `x[16k..16k +
                // 16]`, `k < blocks = cols / 16`, inside `x` (`matvec_ok`).
                let tile = m.data().as_ptr().add(t * blocks * BLOCK_BYTES);
                let mut a = [[_mm256_setzero_si256(); 4]; 2];
                for k in 0..blocks {
                    for (h, ah) in a.iter_mut().enumerate() {
                        let v = _mm256_loadu_si256(
                            tile.add(k * BLOCK_BYTES + 32 * h) as *const __m256i
                        );
                        let hi = _mm256_srli_epi16::<4>(v);
                        ah[0] = $dpbusd(ah[0], _mm256_and_si256(v, m3), word(xp, 4 * k));
                        ah[1] = $dpbusd(ah[1], _mm256_and_si256(v, mc), word(xp, 4 * k + 1));
                        ah[2] = $dpbusd(ah[2], _mm256_and_si256(hi, m3), word(xp, 4 * k + 2));
                        ah[3] = $dpbusd(ah[3], _mm256_and_si256(hi, mc), word(xp, 4 * k + 3));
                    }
                }
                for (h, ah) in a.iter().enumerate() {
                    let s = _mm256_add_epi32(
                        _mm256_add_epi32(ah[0], ah[2]),
                        _mm256_srai_epi32::<2>(_mm256_add_epi32(ah[1], ah[3])),
                    );
                    store8(y, TILE_ROWS * t + 8 * h, _mm256_sub_epi32(s, sx));
                }
            }
        }
    };
}

tiled_matvec_dpbusd256!(
    /// `y = W · x` with AVX-VNNI (the module docs say how): the contract of
    /// [`reference::ternary_matvec_tiled`](super::super::reference::ternary_matvec_tiled).
    /// Shapes: `x [m.cols()]`, `y [m.rows()]`; others run the reference.
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-VNNI.
    tiled_matvec_avxvnni,
    "avx2,avxvnni",
    _mm256_dpbusd_avx_epi32
);

tiled_matvec_dpbusd256!(
    /// [`tiled_matvec_avxvnni`] in the EVEX encoding (AVX-512 VNNI and VL): its twin, which
    /// tests its arithmetic on CPUs with AVX-512 VNNI.
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-512 F, VL and VNNI.
    tiled_matvec_vnni256,
    "avx2,avx512f,avx512vl,avx512vnni",
    _mm256_dpbusd_epi32
);

/// Defines `$name`, the `Σ q·x` of one half tile (eight rows, the 32 bytes at `half` of each
/// block) for `K` tokens (`x` rows `cols` apart from `x0`) with the 256-bit `vpdpbusd`
/// intrinsic `$dpbusd`: the per-half kernel of [`half_tile_matmul`].
macro_rules! half_tokens_dpbusd256 {
    ($name:ident, $dpbusd:ident) => {
        /// `Σ q·x` of one half tile for `K` tokens, one vector per token.
        ///
        /// # Safety
        /// The instruction's features; `half` valid for the reads of `blocks` blocks, `x0`
        /// for `K` rows of `16 · blocks`.
        #[inline(always)]
        unsafe fn $name<const K: usize>(
            half: *const u8,
            blocks: usize,
            x0: *const i8,
            cols: usize,
        ) -> [__m256i; K] {
            let m3 = _mm256_set1_epi8(0x03);
            let mut acc = [_mm256_setzero_si256(); K];
            for k in 0..blocks {
                let v = _mm256_loadu_si256(half.add(k * BLOCK_BYTES) as *const __m256i);
                let q = [
                    _mm256_and_si256(v, m3),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3),
                ];
                for (j, a) in acc.iter_mut().enumerate() {
                    let xp = x0.add(j * cols);
                    *a = $dpbusd(*a, q[0], word(xp, 4 * k));
                    *a = $dpbusd(*a, q[1], word(xp, 4 * k + 1));
                    *a = $dpbusd(*a, q[2], word(xp, 4 * k + 2));
                    *a = $dpbusd(*a, q[3], word(xp, 4 * k + 3));
                }
            }
            acc
        }
    };
}

half_tokens_dpbusd256!(half_tokens_avxvnni, _mm256_dpbusd_avx_epi32);
half_tokens_dpbusd256!(half_tokens_vnni256, _mm256_dpbusd_epi32);

half_tile_matmul!(
    /// `Y[t] = W · X[t]` for a block of tokens with AVX-VNNI (the module docs say how): the
    /// contract of [`tiled_matmul_avx2`](super::tiled_matmul_avx2).
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-VNNI.
    tiled_matmul_avxvnni,
    "avx2,avxvnni",
    half_tokens_avxvnni
);

half_tile_matmul!(
    /// [`tiled_matmul_avxvnni`] in the EVEX encoding (AVX-512 VNNI and VL): its twin, which
    /// tests its arithmetic on CPUs with AVX-512 VNNI.
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-512 F, VL and VNNI.
    tiled_matmul_vnni256,
    "avx2,avx512f,avx512vl,avx512vnni",
    half_tokens_vnni256
);
