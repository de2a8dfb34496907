//! The trainer's error type: every failure the CLI reports as one line; and [`shown`], how a
//! message names a path.

use std::fmt;
use std::path::{Path, PathBuf};

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
    /// A checkpoint file differs from what the checkpoint recorded of it (`checksums.json`: its
    /// length and CRC-32), or is missing from that record, or the record itself is missing.
    CorruptCheckpoint {
        /// the checkpoint directory
        dir: PathBuf,
        /// what is wrong, naming the file
        reason: String,
    },
    /// The checkpoint holds another model (or optimiser, or number of weight averages) than
    /// the run's `config.json` describes: found before any of it is decoded.
    CheckpointMismatch {
        /// the checkpoint directory
        dir: PathBuf,
        /// the differing key (`ffn_dim`, `optimizer`, …)
        field: String,
        /// its value in the checkpoint
        checkpoint: String,
        /// its value in the run's config.json
        run: String,
    },
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
                write!(f, "cannot {what} `{}`: {source}", shown(path))
            }
            TrainError::Resume(m) => write!(f, "resume: {m}"),
            TrainError::CorruptCheckpoint { dir, reason } => write!(
                f,
                "resume: the checkpoint in `{}` is damaged: {reason}",
                shown(dir)
            ),
            TrainError::CheckpointMismatch {
                dir,
                field,
                checkpoint,
                run,
            } => write!(
                f,
                "resume: the checkpoint in `{}` holds another model: its {field} is {checkpoint}, \
                 the run's config.json says {run}",
                shown(dir)
            ),
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

/// A path for a message: its lossy UTF-8 form with control characters (escape sequences among
/// them) and bidirectional overrides written as `\u{…}` escapes and `\` doubled, so that a
/// hostile file name cannot drive the terminal. Every message of the trainer names paths
/// through this.
pub fn shown(path: &Path) -> String {
    inspect::printable(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::shown;
    use std::path::Path;

    #[test]
    fn control_characters_in_paths_are_escaped() {
        assert_eq!(
            shown(Path::new("run\x1b[31m\u{202e}")),
            "run\\u{1b}[31m\\u{202e}"
        );
        assert_eq!(shown(Path::new("runs/mcu")), "runs/mcu");
    }
}
