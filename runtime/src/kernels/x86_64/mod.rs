//! x86-64 kernels: AVX2 (`vpmaddubsw`) and AVX-512 VNNI (`vpdpbusd`), chosen at run time by
//! [`super::dispatch`]. Every function here has the contract of its twin in
//! [`reference`](super::reference) (or [`softmax`](super::softmax)) and is checked against it
//! by the shared suite.
//!
//! | file | kernels |
//! |---|---|
//! | `ternary.rs` | ternary matvec and block matmul (layout and arithmetic documented there) |
//! | `int8.rs` | int8 dot products against strided rows, value accumulation |
//! | `attention.rs` | attention scores and softmax coefficients, eight keys per step |

mod attention;
mod int8;
mod ternary;

pub use attention::{attention_scores_avx512, softmax_coefficients_avx512};
pub use int8::{int8_matvec_avx2, int8_weighted_sum_avx2, int8_weighted_sum_avx512};
pub use ternary::{
    permuted_len, row_bytes_ok, ternary_matmul_avx2, ternary_matmul_vnni, ternary_matvec_avx2,
    ternary_matvec_vnni, CHUNK, TILE,
};
