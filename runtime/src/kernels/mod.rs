//! Integer kernels, tract/candle style: a plain scalar [`reference`](mod@reference) twin for each,
//! a portable optimized variant ([`fast`]; [`dsp`] on Arm cores with the DSP extension),
//! per-architecture SIMD variants (`x86_64`: AVX2, AVX-VNNI and AVX-512 VNNI; `aarch64`: NEON;
//! `wasm32`: SIMD128), and one shared test suite that demands exact equality between all of them on
//! random and extreme inputs.
//!
//! The functions exported here ([`ternary_matvec`], [`ternary_matmul`], [`int8_matvec`],
//! [`int8_weighted_sum`], [`int8_dot`], and the attention steps [`attention_scores`] and
//! [`softmax_coefficients`]) pick the variant at run time ([`dispatch`]: `CPUID` on x86-64, no
//! `std` needed); [`force_portable`] and [`set_level`] override the choice. Integer sums are
//! exact in any order, so every variant returns the same bits and the choice never changes an
//! output. On x86-64 both SIMD levels also run the int8 quantizers' loops (the RMSNorm
//! statistics, Q2, Q5) eight elements at a time (`x86_64/quantize.rs`, called from the pass's
//! `norm.rs`, which keeps the scalar loops as their definition).
//!
//! Speed on one Zen 4 core (2026-12-07, TSC cycles per multiply-accumulate, the AVX2 level
//! forced on an AVX-512 CPU; `docs/host-speed.md` has the commands and the peers): ternary
//! matvec 0.030 (AVX2) and 0.026 (AVX-512 VNNI) at 336×128, 0.029 and 0.025 at 2048×2048.
//!
//! On Arm cores with the DSP extension (`cfg(runtime_dsp)`, set by `build.rs`: stable Rust
//! does not expose the `dsp` target feature to `cfg`) the portable ternary matvec is
//! [`lut2::ternary_matvec`] (table lookup over groups of 4 activations, an `asm!` row loop; on the
//! Cortex-M33 cost model it beats the `SMLAD` kernel `dsp::ternary_matvec`, kept as an
//! alternative) and the int8 dot of the portable int8 kernels is `dsp::int8_dot` (`SXTB16` +
//! `SMLAD`); everywhere else they are [`fast::ternary_matvec`] and [`fast::int8_dot`].
//!
//! The attention's per-key steps ([`softmax`]) have 32-bit twins ([`softmax32`]) that 32-bit
//! Arm runs: the same bits with every product `32 × 32 → 64` and the Cortex-M33's hot loops in
//! `asm!` (the shared suite checks the twins against the scalar definitions on the host).
//!
//! Base-3 matrices (format v2: 5 weights per byte, byte `b` of a row holding columns
//! `b + k·row_bytes`) have one kernel on every target, [`ternary5_matvec`]: table lookup over
//! groups of 5 activations ([`lut::ternary5_matvec`], [`lut::Tables5`]), with an `asm!` row loop
//! on DSP cores. It is made for microcontrollers; hosts with SIMD run 2-bit matrices (`tools`
//! repacks a base-3 blob in memory).
//!
//! Ternary code mapping (2-bit two's complement, 4 weights per byte, weight `j` of a row in bits
//! `2·(j % 4)` of byte `j / 4`): `0b00 = 0`, `0b01 = +1`, `0b11 = −1`; `0b10` never occurs
//! (the loader refuses it). Sign-extending a 2-bit field is one `SBFX` on Cortex-M33 or a
//! shift-left / arithmetic-shift-right pair anywhere, so the format needs no decoding table; the
//! DSP, LUT and x86 kernels build small tables of their own (see each module).

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub mod aarch64;
pub mod dispatch;
pub mod dsp;
pub mod fast;
pub mod lut;
pub mod lut2;
pub mod reference;
pub mod softmax;
pub mod softmax32;
pub mod tiled;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod wasm32;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use dispatch::{detected, force_portable, level, set_level, supported_levels, Level};
#[cfg(runtime_dsp)]
pub use dsp::int8_dot;
#[cfg(not(runtime_dsp))]
pub use fast::int8_dot;
pub use softmax::{attention_scores, softmax_coefficients};
pub use tiled::TiledMatrix;

#[cfg(not(runtime_dsp))]
use fast::ternary_matvec as portable_ternary_matvec;
#[cfg(runtime_dsp)]
use lut2::ternary_matvec as portable_ternary_matvec;

/// Tokens whose activations one [`ternary_matmul`] pass permutes at once.
const MATMUL_TILE: usize = 64;
/// Columns per pass of the SIMD matrix kernels.
const MATMUL_PASS: usize = 1024;

/// Scratch bytes [`ternary_matmul`] wants for rows of `cols` (padded) columns and a block of
/// `block` tokens: `min(block, 64) · roundup(min(cols, 1024), 128)`. With less it still runs,
/// token by token.
pub const fn matmul_scratch_bytes(cols: usize, block: usize) -> usize {
    let t = if block < MATMUL_TILE {
        block
    } else {
        MATMUL_TILE
    };
    let c = if cols < MATMUL_PASS {
        cols
    } else {
        MATMUL_PASS
    };
    t.saturating_mul(c.div_ceil(128).saturating_mul(128))
}

/// `y[r] = Σ_j W[r][j] · x[j]` for a 2-bit ternary matrix (the contract of
/// [`reference::ternary_matvec`]). Shapes: `w [rows][row_bytes]`, `x [row_bytes·4]`,
/// `y [rows]`.
#[inline]
pub fn ternary_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if x86_64::row_bytes_ok(row_bytes) {
        match level() {
            // SAFETY: `level()` only reports levels the CPU supports.
            Level::Avx512Vnni => return unsafe { x86_64::ternary_matvec_vnni(w, row_bytes, x, y) },
            // SAFETY: as above.
            Level::Avx2 | Level::AvxVnni => {
                return unsafe { x86_64::ternary_matvec_avx2(w, row_bytes, x, y) }
            }
            _ => {}
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if aarch64::row_bytes_ok(row_bytes) && level() == Level::Neon {
        return aarch64::ternary_matvec_neon(w, row_bytes, x, y);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if wasm32::row_bytes_ok(row_bytes) && level() == Level::Simd128 {
        return wasm32::ternary_matvec_simd128(w, row_bytes, x, y);
    }
    portable_ternary_matvec(w, row_bytes, x, y)
}

/// `Y[t] = W · X[t]` for a block of tokens, each weight row read once per block of up to 64
/// tokens (the contract of [`reference::ternary_matmul`]). Shapes: `w [rows][row_bytes]`,
/// `x [n][row_bytes·4]`, `y [n][rows]` (token-major), `scratch` of
/// [`matmul_scratch_bytes`]`(row_bytes·4, n)` bytes (its contents are overwritten).
#[inline]
pub fn ternary_matmul(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32], scratch: &mut [i8]) {
    let _ = &scratch;
    #[cfg(target_arch = "x86_64")]
    if x86_64::row_bytes_ok(row_bytes) {
        let n = x.len() / (row_bytes * 4);
        if scratch.len() >= matmul_scratch_bytes(row_bytes * 4, n) {
            match level() {
                // SAFETY: `level()` only reports levels the CPU supports.
                Level::Avx512Vnni => {
                    return unsafe { x86_64::ternary_matmul_vnni(w, row_bytes, x, y, scratch) }
                }
                // SAFETY: as above.
                Level::Avx2 | Level::AvxVnni => {
                    return unsafe { x86_64::ternary_matmul_avx2(w, row_bytes, x, y, scratch) }
                }
                _ => {}
            }
        }
    }
    if row_bytes == 0 {
        return;
    }
    let rows = w.len() / row_bytes;
    if rows == 0 {
        return;
    }
    for (xt, yt) in x.chunks_exact(row_bytes * 4).zip(y.chunks_exact_mut(rows)) {
        ternary_matvec(w, row_bytes, xt, yt);
    }
}

/// Whether the kernels at the current level read the row-tiled layout ([`tiled`]) faster than the
/// blob's: the x86-64 levels (AVX2, AVX-VNNI, AVX-512 VNNI). At other levels a tiled matrix still
/// gives the same results (through the scalar reference), only slowly, so the forward pass reads
/// the blob there.
#[inline]
pub fn tiled_level() -> bool {
    cfg!(target_arch = "x86_64") && level().runs_avx2()
}

/// `y = W · x` for a matrix in the row-tiled layout (the contract of
/// [`reference::ternary_matvec_tiled`]). Shapes: `x [m.cols()]`, `y [m.rows()]`.
#[inline]
pub fn ternary_matvec_tiled(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level()` only reports levels the CPU supports.
        Level::Avx512Vnni => return unsafe { x86_64::tiled_matvec_vnni(m, x, y) },
        // SAFETY: as above.
        Level::Avx2 => return unsafe { x86_64::tiled_matvec_avx2(m, x, y) },
        // SAFETY: as above.
        Level::AvxVnni => return unsafe { x86_64::tiled_matvec_avxvnni(m, x, y) },
        _ => {}
    }
    if x.len() == m.cols() && y.len() == m.rows() {
        reference::ternary_matvec_tiled(m, x, y)
    }
}

/// `Y[t] = W · X[t]` for a block of tokens and a matrix in the row-tiled layout, each tile of
/// weights decoded once for up to eight tokens. Shapes: `x [n][m.cols()]`, `y [n][m.rows()]`
/// (token-major).
#[inline]
pub fn ternary_matmul_tiled(m: &TiledMatrix<'_>, x: &[i8], y: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level()` only reports levels the CPU supports.
        Level::Avx512Vnni => return unsafe { x86_64::tiled_matmul_vnni(m, x, y) },
        // SAFETY: as above.
        Level::Avx2 => return unsafe { x86_64::tiled_matmul_avx2(m, x, y) },
        // SAFETY: as above.
        Level::AvxVnni => return unsafe { x86_64::tiled_matmul_avxvnni(m, x, y) },
        _ => {}
    }
    if m.cols() == 0 || m.rows() == 0 {
        return;
    }
    for (xt, yt) in x.chunks_exact(m.cols()).zip(y.chunks_exact_mut(m.rows())) {
        reference::ternary_matvec_tiled(m, xt, yt);
    }
}

/// `y[r] = Σ_j m[r·stride + j] · x[j]` for `j < x.len()` (the contract of
/// [`reference::int8_matvec`]): attention scores against the keys of one KV head, the LM head
/// against the embedding rows.
#[inline]
pub fn int8_matvec(m: &[i8], stride: usize, x: &[i8], y: &mut [i32]) {
    if y.is_empty() || m.len() < (y.len() - 1).saturating_mul(stride).saturating_add(x.len()) {
        return fast::int8_matvec(m, stride, x, y);
    }
    #[cfg(target_arch = "x86_64")]
    if level().runs_avx2() {
        // SAFETY: `level()` only reports levels the CPU supports.
        return unsafe { x86_64::int8_matvec_avx2(m, stride, x, y) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    if level() == Level::Neon {
        return aarch64::int8_matvec_neon(m, stride, x, y);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if level() == Level::Simd128 {
        return wasm32::int8_matvec_simd128(m, stride, x, y);
    }
    #[cfg(runtime_dsp)]
    return dsp::int8_matvec(m, stride, x, y);
    #[cfg(not(runtime_dsp))]
    fast::int8_matvec(m, stride, x, y)
}

/// `acc[i] = Σ_s coef[s] · v[s·stride + i]` (the contract of
/// [`reference::int8_weighted_sum`]): the attention's value accumulation.
#[inline]
pub fn int8_weighted_sum(coef: &[i32], v: &[i8], stride: usize, acc: &mut [i64]) {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level()` only reports levels the CPU supports.
        Level::Avx512Vnni => {
            return unsafe { x86_64::int8_weighted_sum_avx512(coef, v, stride, acc) }
        }
        // SAFETY: as above.
        Level::Avx2 | Level::AvxVnni => {
            return unsafe { x86_64::int8_weighted_sum_avx2(coef, v, stride, acc) }
        }
        _ => {}
    }
    #[cfg(runtime_dsp)]
    return fast::int8_weighted_sum_blocked(coef, v, stride, acc);
    #[cfg(not(runtime_dsp))]
    fast::int8_weighted_sum(coef, v, stride, acc)
}

/// Decodes one 2-bit ternary code (`0b10` is treated as 0; the loader never lets it through).
#[inline(always)]
pub const fn decode_ternary(code: u8) -> i32 {
    match code & 3 {
        1 => 1,
        3 => -1,
        _ => 0,
    }
}

/// Encodes a weight in `{-1, 0, 1}` as its 2-bit code.
#[inline(always)]
pub const fn encode_ternary(w: i8) -> u8 {
    (w as u8) & 3
}

/// Weight `k` (`0..5`) of a base-3 byte `v`: its base-3 digit `k` (`v / 3^k mod 3`), with
/// digit `0 = 0`, `1 = +1`, `2 = −1` (so a zero byte is five zero weights). Bytes ≥ 243 never
/// reach a kernel (the loader refuses them).
#[inline(always)]
pub const fn decode_base3(v: u8, k: usize) -> i32 {
    let pow = [1u32, 3, 9, 27, 81];
    let k = if k < 5 { k } else { 4 };
    match (v as u32 / pow[k]) % 3 {
        1 => 1,
        2 => -1,
        _ => 0,
    }
}

/// Encodes a weight in `{-1, 0, 1}` as its base-3 digit (`0`, `1`, `2`).
#[inline(always)]
pub const fn encode_base3(w: i8) -> u8 {
    match w {
        1 => 1,
        -1 => 2,
        _ => 0,
    }
}

/// `y[r] = Σ_j W[r][j] · x[j]` for a base-3 matrix (the contract of
/// [`reference::ternary5_matvec`]). Shapes: `w [rows][row_bytes]`, `x [row_bytes·5]`,
/// `y [rows]`. Every target runs the table-lookup kernel [`lut::ternary5_matvec`] (with an
/// `asm!` row loop on Arm cores with the DSP extension).
#[inline]
pub fn ternary5_matvec(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    lut::ternary5_matvec(w, row_bytes, x, y)
}

/// `Y[t] = W · X[t]` for a block of tokens over a base-3 matrix: [`ternary5_matvec`] per token.
/// Shapes: `w [rows][row_bytes]`, `x [n][row_bytes·5]`, `y [n][rows]` (token-major).
#[inline]
pub fn ternary5_matmul(w: &[u8], row_bytes: usize, x: &[i8], y: &mut [i32]) {
    if row_bytes == 0 || w.len() < row_bytes {
        return;
    }
    let rows = w.len() / row_bytes;
    for (xt, yt) in x.chunks_exact(row_bytes * 5).zip(y.chunks_exact_mut(rows)) {
        ternary5_matvec(w, row_bytes, xt, yt);
    }
}

/// `max |v[i]|` (0 for none) as a plain loop that is always inlined, so it vectorizes with
/// the caller's target features (`Iterator::max` may stay an out-of-line scalar call).
#[inline(always)]
pub(crate) fn max_abs_i64(v: &[i64]) -> u64 {
    let mut m = 0u64;
    for x in v {
        m = m.max(x.unsigned_abs());
    }
    m
}

/// [`max_abs_i64`] for `i32`.
#[inline(always)]
pub(crate) fn max_abs_i32(v: &[i32]) -> u32 {
    let mut m = 0u32;
    for x in v {
        m = m.max(x.unsigned_abs());
    }
    m
}

#[cfg(test)]
mod tests;
