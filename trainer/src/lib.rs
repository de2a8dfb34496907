//! BitNet b1.58 quantization-aware training with burn, on CPU (flex) or CUDA.
//!
//! The model and its quantized forward pass are those of `docs/MODEL.md`; the run directory the
//! trainer writes (read by `tools pack`) is specified in `trainer/EXPORT.md`.
//!
//! The source tree follows the design; each folder uses only those listed before it:
//!
//! | folder | modules | what |
//! |---|---|---|
//! | (top) | [`error`], [`config`] | errors; hyper-parameters and presets |
//! | `data/` | [`data`], [`bpe`], [`rng`] | vocabulary (characters or byte-level BPE), split, batches, validation windows; BPE learning; the seeded generator |
//! | `fused/` | [`fused`], [`quant`], [`attention`], [`linalg`], [`rows`] | the ops: [`fused::FusedOps`] (tensor-op defaults, flex CPU kernels, autodiff ops), the quantizers Q1–Q5 and the STE, RoPE + Q5 + causal attention as one op, strided products and row kernels |
//! | `model/` | [`model`], [`eval`] | the transformer as burn modules; losses without autodiff (the quantized validation loss) |
//! | `run/` | [`files`], [`spec`], [`metrics`], [`weights`], [`runinfo`] | the run directory: atomic files, the run a command line asks for, metrics, the exported weights, config/vocab/summary |
//! | `train/` | [`train`], [`schedule`], [`gradients`], [`optim`], [`ema`], [`checkpoint`] | the training loop: LR and weight decay, loss and gradients of a step, optimisers, weight averages, checkpoints |
//! | (top) | [`backend`] | CPU / CUDA selection |

pub mod error;

pub mod config;
pub mod data;

pub mod fused;

pub mod model;

pub mod run;

pub mod train;

pub mod backend;

pub use data::{bpe, rng};
pub use fused::{attention, linalg, quant, rows};
pub use model::eval;
pub use run::{files, metrics, runinfo, spec, weights};
pub use train::{checkpoint, ema, gradients, optim, schedule};

pub use config::{ModelConfig, Preset, TrainConfig, EXPORT_VERSION};
pub use error::{Result, TrainError};
