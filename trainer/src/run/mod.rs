//! The run directory (trainer/EXPORT.md): what a run writes to disk and reads back.
//!
//! - [`files`](crate::files): atomic writes of the run's files
//! - [`spec`](crate::spec): the run a command line asks for
//! - [`metrics`](crate::metrics): `metrics.csv` and `loss.svg`
//! - [`weights`](crate::weights): the exported `weights.safetensors`
//! - [`runinfo`](crate::runinfo): `config.json`, `vocab.json`, `summary.json`

pub mod files;
pub mod metrics;
pub mod runinfo;
pub mod spec;
pub mod weights;
