//! The forward pass (`docs/MODEL.md`) over a caller-owned [`Session`](crate::Session).
//!
//! | module | what |
//! |---|---|
//! | [`session`](crate::session) | working memory, KV cache, token history, [`session_bytes`](crate::session_bytes) |
//! | `forward` | the pass top to bottom: embedding, blocks, final norm, LM head |
//! | `attention` | q/k/v projections, RoPE, the KV cache, attention of one query |
//! | `ffn` | the feed-forward block (plain or gated) |
//! | `norm` | RMSNorm fused with int8 quantization, absmax quantizers |
//! | `norm32` | their 32-bit twins, which 32-bit Arm runs (`asm!` loops on the Cortex-M33) |
//! | [`workers`](crate::workers), `split` | (feature `workers`) the pass split between two cores |

mod attention;
mod ffn;
mod forward;
pub(crate) mod norm;
mod norm32;
pub mod session;
#[cfg(feature = "workers")]
mod split;
#[cfg(feature = "workers")]
pub mod workers;
