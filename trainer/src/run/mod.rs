//! The run directory (trainer/EXPORT.md): what a run writes to disk and reads back.
//!
//! - [`files`]: atomic writes of the run's files
//! - [`spec`]: the run a command line asks for
//! - [`metrics`]: `metrics.csv` and `loss.svg`
//! - [`weights`]: the exported `weights.safetensors`
//! - [`runinfo`]: `config.json`, `vocab.json`, `summary.json`

pub mod files;
pub mod metrics;
pub mod runinfo;
pub mod spec;
pub mod weights;
