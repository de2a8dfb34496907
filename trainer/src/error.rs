//! The trainer's error type: every failure the CLI reports as one line.

use std::fmt;
use std::path::PathBuf;

/// Everything that stops the trainer, each rendered as one line by `Display`.
#[derive(Debug)]
pub enum TrainError {
    /// The corpus file is missing, unreadable, empty or too short.
    Data(String),
    /// The hyper-parameters cannot describe a working model or run.
    Config(String),
    /// A file or directory could not be read or written.
    Io {
        /// what was being done ("create output dir", "write config.json", ...)
        what: &'static str,
        /// the path involved
        path: PathBuf,
        /// the OS error
        source: std::io::Error,
    },
    /// A checkpoint or run-dir file is malformed or belongs to another run.
    Resume(String),
    /// The training loss became NaN or infinite.
    NonFinite {
        /// the step (1-based, as in metrics.csv) whose loss was not finite
        step: usize,
        /// the loss value
        loss: f32,
    },
}

impl TrainError {
    /// Helper for `map_err` on I/O results.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| TrainError::Io { what, path, source }
    }
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Data(m) => write!(f, "data: {m}"),
            TrainError::Config(m) => write!(f, "config: {m}"),
            TrainError::Io { what, path, source } => {
                write!(f, "cannot {what} `{}`: {source}", path.display())
            }
            TrainError::Resume(m) => write!(f, "resume: {m}"),
            TrainError::NonFinite { step, loss } => write!(
                f,
                "training loss became {loss} at step {step}; stopped (the last good checkpoint is kept)"
            ),
        }
    }
}

impl std::error::Error for TrainError {}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, TrainError>;
