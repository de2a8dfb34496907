//! Integer-only, allocation-free runtime for ternary (BitNet b1.58) language models.
//!
//! `#![no_std]`, no `alloc`, no floating point: the same integers on a host and on a Cortex-M33
//! (the Cortex-M0+ build is linked and checked for soft-float, not run).
//! The model arrives as a blob (format v4, v3, v2 or v1, `runtime/FORMAT.md`) written by `tools pack`; the
//! forward pass is the one in `docs/MODEL.md`.
//!
//! # Contents
//!
//! The source tree follows the design: the blob, the pass, the kernels, text.
//!
//! | folder | module | what |
//! |---|---|---|
//! | `blob/` | [`format`] | blob constants, limits, [`Config`], header types |
//! | | [`schema`] | every tensor of the model, declared once: kind, shape, encoding, source |
//! | | [`layout`] | [`Layout`]: where each section lies, computed from the config and the schema |
//! | | [`model`] | [`Model`]: borrowed views of a validated blob's sections |
//! | | `sections` | where each layer's sections lie, resolved once at load |
//! | | `load` | [`Model::from_bytes`]: validate once, borrow the weights in place |
//! | | `writer` | (feature `writer`) `writer::ModelParams::to_blob`: the blob writer |
//! | `pass/` | [`session`] | [`Session`]: caller-owned working memory ([`session_bytes`], [`session_bytes_prefill`]), KV cache, token history |
//! | | `forward` | [`Session::forward`]: one token in, Q15.16 logits (nats) out; [`Session::prefill`] / [`Session::forward_block`]: a block of tokens per pass, bit-identical |
//! | | `attention`, `ffn`, `norm` | the block's halves and the fused RMSNorm + int8 quantizers |
//! | | `workers` | (feature `workers`) `workers::Workers`: the pass split between two cores, `Session::with_workers` |
//! | `kernels/` | [`kernels`] | ternary (2-bit: scalar, Cortex-M DSP, AVX2, AVX-VNNI, AVX-512 VNNI, NEON, chosen at run time, and WebAssembly SIMD128, chosen at compile time; base 3: table lookup, `asm!` rows on Cortex-M DSP) and int8 kernels, each with a scalar reference twin; [`kernels::tiled`]: the row-tiled in-memory copy the x86-64 SIMD kernels read ([`Model::with_tiled`]) |
//! | `text/` | [`tokenizer`] | [`encode`] (a BPE model's merges, else greedy longest match), [`decode`] |
//! | | [`bpe`] | byte-level BPE: the chunking rule, [`bpe::Merges`], the encoder |
//! | | [`utf8`] | [`Utf8Stream`]: streamed output that never splits a UTF-8 character |
//! | | [`sampler`] | [`SamplerConfig`], [`Sampler`], [`Pcg32`] |
//! | | [`generate`] | [`Generator`]: streaming generation, one token per call, sliding window |
//! | | [`chat`] | the interactive line protocol of the firmware and `tools chat` ([`chat::Chat`]) |
//! | (top) | [`fixed`] | [`Dyadic`] scales, integer `exp`/`rsqrt` |
//! | | [`error`] | [`LoadError`], [`Error`], [`EncodeError`], [`TokenizerError`] |
//! | | [`rng`] | [`SplitMix64`]: the random stream of tests, benches and examples |
//!
//! # Example
//!
//! ```
//! use runtime::{decode, encode, Generator, Model, SamplerConfig, Session};
//!
//! fn generate(blob: &[u8], out: &mut Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//!     let model = Model::from_bytes(blob)?; // validates everything, copies nothing
//!     let ctx = 64;
//!     let mut mem = vec![0u8; model.session_bytes(ctx)]; // firmware: a static buffer
//!     let mut session = Session::new(model, ctx, &mut mem)?;
//!
//!     let mut prompt = [0u16; 16];
//!     let n = encode(&model, b"ROMEO:", &mut prompt)?;
//!     let config = SamplerConfig { temperature_milli: 800, top_k: 10, seed: 42 };
//!     for token in Generator::new(&mut session, &prompt[..n], config).take(40) {
//!         out.extend_from_slice(decode(&model, token?));
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Logits from [`Session::forward`] are `i32` with one unit = `2^-16` nats
//! ([`format::LOGIT_FRAC_BITS`]).

#![no_std]
#![warn(missing_docs)]
#![deny(clippy::float_arithmetic)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "writer")]
extern crate alloc;
#[cfg(any(test, feature = "threads"))]
extern crate std;

mod blob;
pub mod error;
pub mod fixed;
pub mod kernels;
mod pass;
pub mod rng;
mod text;

#[cfg(feature = "writer")]
pub use blob::writer;
pub use blob::{format, layout, model, schema};
pub use pass::session;
#[cfg(feature = "workers")]
pub use pass::workers;
pub use text::{bpe, chat, generate, sampler, tokenizer, utf8};

pub use error::{ConfigError, Dim, EncodeError, Error, LoadError, Section, TokenizerError};
pub use fixed::Dyadic;
pub use format::{Config, TensorKind, TernaryEncoding, LOGIT_FRAC_BITS};
pub use generate::Generator;
pub use layout::Layout;
pub use model::Model;
pub use rng::SplitMix64;
pub use sampler::{Pcg32, Sampler, SamplerConfig};
#[cfg(feature = "workers")]
pub use session::session_bytes_workers;
pub use session::{session_bytes, session_bytes_prefill, Session};
pub use tokenizer::{decode, encode};
pub use utf8::Utf8Stream;
