//! Reading blob files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use runtime::Model;

/// The model shipped in the repository (`models/shakespeare-mcu.bin`).
pub fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shakespeare-mcu.bin")
}

/// `path`, or the shipped model when `None`.
pub fn model_path(path: Option<&Path>) -> PathBuf {
    path.map_or_else(shipped_model, Path::to_path_buf)
}

/// Reads a blob file (nothing is validated yet: see [`load`]).
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))
}

/// Validates `bytes` as a model, naming `path` in the error.
pub fn load<'a>(path: &Path, bytes: &'a [u8]) -> Result<Model<'a>> {
    Model::from_bytes(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
