//! [`RunSpec`]: what a training run is asked to do, as `main` (or a test) fills it in.

use crate::config::{ModelConfig, TrainConfig};
use std::path::PathBuf;

/// Everything a run needs besides the data and the backend.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// model shape (vocab_size filled in)
    pub model: ModelConfig,
    /// schedule and run settings
    pub train: TrainConfig,
    /// preset name the run started from
    pub preset: String,
    /// the corpus file
    pub data_path: PathBuf,
    /// the run directory
    pub out: PathBuf,
    /// the command line, recorded in the run dir
    pub command: Vec<String>,
    /// stop (with a checkpoint, as on Ctrl-C) once this many steps are done
    pub stop_after: Option<usize>,
    /// show a progress bar / progress lines on stderr
    pub progress: bool,
    /// name of the backend, for the summary ("flex-cpu", "cuda:0", ...)
    pub backend_name: String,
}
