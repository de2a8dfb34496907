//! BitNet b1.58 quantization-aware training with burn, on CPU (flex) or CUDA.
//!
//! The model and its quantized forward pass are those of `docs/MODEL.md`; the run directory the
//! trainer writes (read by `tools pack`) is specified in `trainer/EXPORT.md`.
//!
//! Modules, each using only those listed before it:
//! - [`error`], [`config`]: errors; hyper-parameters and presets
//! - [`rng`], [`bpe`], [`data`]: the seeded generator; byte-level BPE learning; vocabulary,
//!   split, batches, validation windows
//! - [`quant`]: the quantizers Q1–Q5 and the straight-through estimator, as tensor ops
//! - [`linalg`], [`rows`]: strided matrix products on slices (gemm); row reductions and the int8
//!   row quantizer, for the CPU kernels
//! - [`attention`]: RoPE + Q5 + causal attention as one op (its CPU kernels)
//! - [`fused`]: the [`fused::FusedOps`] trait (tensor-op defaults), its flex (CPU) and autodiff
//!   implementations
//! - [`model`]: the transformer as burn modules
//! - [`eval`]: losses without autodiff (the quantized validation loss)
//! - [`ema`]: moving averages of the weights over stage 2 (`--ema`)
//! - [`metrics`], [`files`], [`weights`], [`spec`], [`runinfo`], [`checkpoint`]: what goes to
//!   disk, and the run a command line asks for
//! - [`schedule`], [`gradients`], [`train`]: LR and weight decay; loss, gradients and clipping of
//!   one step; the training loop
//! - [`backend`]: CPU / CUDA selection

pub mod error;

pub mod bpe;
pub mod config;
pub mod data;
pub mod rng;

pub mod attention;
pub mod fused;
pub mod linalg;
pub mod quant;
pub mod rows;

pub mod ema;
pub mod eval;
pub mod model;

pub mod checkpoint;
pub mod files;
pub mod metrics;
pub mod runinfo;
pub mod spec;
pub mod weights;

pub mod gradients;
pub mod optim;
pub mod schedule;
pub mod train;

pub mod backend;

pub use config::{ModelConfig, Preset, TrainConfig, EXPORT_VERSION};
pub use error::{Result, TrainError};
