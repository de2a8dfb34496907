//! BitNet b1.58 quantization-aware training with burn, on CPU (flex) or CUDA.
//!
//! The model and its quantized forward pass are those of `docs/MODEL.md`; the run directory the
//! trainer writes (read by `tools pack`) is specified in `trainer/EXPORT.md`.
//!
//! - [`config`]: hyper-parameters and presets
//! - [`data`]: character vocabulary, split, batches, validation windows
//! - [`quant`]: the quantizers Q1–Q5 and the straight-through estimator; [`fused`]: their
//!   fused CPU kernels and STE op; [`attention`]: RoPE + Q5 + causal attention as one op
//! - [`linalg`]: strided matrix products on slices (gemm) for those kernels
//! - [`model`]: the transformer as burn modules
//! - [`train`]: the training loop; [`schedule`]: LR and weight decay
//! - [`eval`]: losses without autodiff (the quantized validation loss)
//! - [`checkpoint`], [`runinfo`], [`metrics`]: what goes to disk
//! - [`backend`]: CPU / CUDA selection

pub mod attention;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod fused;
pub mod linalg;
pub mod metrics;
pub mod model;
pub mod quant;
pub mod rng;
pub mod runinfo;
pub mod schedule;
pub mod train;

pub use config::{ModelConfig, Preset, TrainConfig, EXPORT_VERSION};
pub use error::{Result, TrainError};
