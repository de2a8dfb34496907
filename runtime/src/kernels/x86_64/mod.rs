//! x86-64 kernels: AVX2 (`vpmaddubsw`), AVX-VNNI and AVX-512 VNNI (`vpdpbusd`), chosen at run
//! time by [`super::dispatch`]. Every function here has the contract of its twin in
//! [`reference`](super::reference) (or [`softmax`](super::softmax)) and is checked against it
//! by the shared suite.
//!
//! | file | kernels |
//! |---|---|
//! | `ternary.rs` | what the ternary kernels share: activation layout, code tables, reductions |
//! | `ternary_avx2.rs` | ternary matvec and block matmul, AVX2 |
//! | `ternary_avx512.rs` | ternary matvec and block matmul, AVX-512 VNNI |
//! | `tiled.rs` | ternary matvec and block matmul on the row-tiled layout, AVX2 and AVX-512 VNNI |
//! | `tiled_vnni256.rs` | ternary matvec and block matmul on the row-tiled layout, AVX-VNNI, and their EVEX twins |
//! | `int8.rs` | int8 dot products against strided rows, value accumulation |
//! | `quantize.rs` | the int8 quantizers' loops (RMSNorm statistics, Q2, Q5), eight per step |
//! | `attention.rs` | attention scores and softmax coefficients, eight keys per step (AVX-512) |
//! | `attention_avx2.rs` | the same, four keys per step (AVX2) |
//!
//! The AVX-VNNI level (the 256-bit `vpdpbusd` without AVX-512 of recent desktop cores) has
//! kernels of its own for the tiled matvec and block matmul, and runs the AVX2 level's
//! everywhere else. They are written once for two encodings of the instruction: the VEX one
//! they run, and the EVEX one of AVX-512 VNNI + VL, which the shared suite runs on CPUs with
//! AVX-512 VNNI (no machine here has AVX-VNNI, and QEMU's emulator lacks it).

mod attention;
mod attention_avx2;
mod int8;
mod quantize;
mod ternary;
mod ternary_avx2;
mod ternary_avx512;
mod tiled;
mod tiled_vnni256;

pub use attention::{attention_scores_avx512, softmax_coefficients_avx512};
pub use attention_avx2::{attention_scores_avx2, softmax_coefficients_avx2};
pub use int8::{int8_matvec_avx2, int8_weighted_sum_avx2, int8_weighted_sum_avx512};
pub(crate) use quantize::{
    max_abs_i64_avx2, quantize_i64_avx2, quantize_products_avx2, rms_maxima_avx2,
    sum_sq_shifted_avx2,
};
pub use ternary::{permuted_len, row_bytes_ok, CHUNK, TILE};
pub use ternary_avx2::{ternary_matmul_avx2, ternary_matvec_avx2};
pub use ternary_avx512::{ternary_matmul_vnni, ternary_matvec_vnni};
pub use tiled::{tiled_matmul_avx2, tiled_matmul_vnni, tiled_matvec_avx2, tiled_matvec_vnni};
pub use tiled_vnni256::{
    tiled_matmul_avxvnni, tiled_matmul_vnni256, tiled_matvec_avxvnni, tiled_matvec_vnni256,
};
