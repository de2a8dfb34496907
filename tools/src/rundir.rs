//! Reading a trainer run directory (`trainer/EXPORT.md`, export_version 1).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use runtime::{schema, Config, Layout};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::files;
use crate::term::shown;
use crate::tokenizer::{self, RunTokens, TokenizerFile, MAX_TOKENIZER_JSON_BYTES};

/// The files of a run dir that pack reads (`tokenizer.json` only in a byte-level BPE run).
pub const RUN_FILES: [&str; 5] = [
    "config.json",
    "vocab.json",
    "tokenizer.json",
    "summary.json",
    "weights.safetensors",
];

/// The run-dir format versions this pack understands, characters and byte-level BPE (the
/// trainer's, from the shared crate).
pub use rundir::{EXPORT_VERSION, EXPORT_VERSION_BPE};

/// The keys of `config.json` that pack uses (other keys are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct RunConfig {
    /// Must be [`EXPORT_VERSION`].
    pub export_version: u32,
    /// Version of the trainer that wrote the run.
    #[serde(default)]
    pub trainer_version: String,
    /// Preset name the run started from.
    #[serde(default)]
    pub preset: String,
    /// The model's shape (the keys are the trainer's, from the shared crate).
    #[serde(flatten)]
    pub model: rundir::ModelConfig,
    /// Training seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// `"bpe"` for a byte-level BPE run (export_version 2); absent for characters.
    #[serde(default)]
    pub tokenizer: Option<String>,
}

/// The keys of `summary.json` pack uses.
#[derive(Clone, Debug, Deserialize)]
pub struct RunSummary {
    /// Optimiser steps done.
    pub steps: u64,
    /// Quantized-mode validation loss over the whole split (nats per token: per character for
    /// a character run).
    pub quantized_val_loss: f64,
    /// Training tokens seen.
    #[serde(default)]
    pub tokens_seen: Option<u64>,
    /// Wall time in seconds.
    #[serde(default)]
    pub wall_time_s: Option<f64>,
    /// Backend description.
    #[serde(default)]
    pub backend: Option<String>,
}

/// A complete, consistent run directory, loaded into memory.
pub struct Run {
    /// Where it was read from.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: RunConfig,
    /// `summary.json`.
    pub summary: RunSummary,
    /// `vocab.json`: token strings in id order.
    pub vocab: Vec<String>,
    /// The tokens as the blob stores them (bytes), and the merges of a BPE run.
    pub tokens: RunTokens,
    /// `weights.safetensors`: every tensor as f32 with its shape.
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Largest `config.json` / `summary.json` read (they are a few hundred bytes).
pub const MAX_JSON_BYTES: u64 = 1 << 20;
/// Largest `vocab.json` read (65535 tokens of a few bytes each, JSON-escaped).
pub const MAX_VOCAB_JSON_BYTES: u64 = 16 << 20;
/// Room for the safetensors header beyond the tensor data the config implies.
pub const SAFETENSORS_HEADER_SLACK: u64 = 16 << 20;

fn read(dir: &Path, name: &str, max: u64) -> Result<Vec<u8>> {
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "run dir {} is incomplete: {name} is missing (is the training still running, or was it interrupted? `trainer --resume` finishes it)",
            shown(dir)
        );
    }
    files::read_capped(&path, "run file", max)
}

fn json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str, max: u64) -> Result<T> {
    let bytes = read(dir, name, max)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid", shown(&dir.join(name))))
}

/// The blob's [`Config`] for a run's `config.json`: the shape checked by the runtime's rules
/// ([`rundir::ModelConfig::validate`]: every field within the format's limits,
/// `runtime/FORMAT.md`, "Limits") before anything is built from it, then its layout.
/// `vocab_bytes_len` is the total length of the token strings (a lower bound is fine before
/// vocab.json is read).
pub fn blob_config(c: &RunConfig, vocab_bytes_len: usize) -> Result<Config> {
    let config = c
        .model
        .validate()
        .map_err(|e| anyhow::anyhow!("config.json: {e}"))?;
    let vb = u32::try_from(vocab_bytes_len).context("vocab.json: the tokens are too long")?;
    Layout::new(config, vb).map_err(|e| anyhow::anyhow!("config.json: {e}"))?;
    Ok(config)
}

impl Run {
    /// Reads and checks a run directory: every file present, versions known, vocabulary and
    /// tensor shapes consistent with the config. The config is checked against the format's
    /// limits first, and no file is read past the size the config allows.
    pub fn load(dir: &Path) -> Result<Run> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "run dir {} is not a directory (pass the trainer's --out directory, not a file in it)",
                shown(dir)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("run dir {} does not exist", shown(dir))
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read run dir {}", shown(dir))),
        }
        let config: RunConfig = json(dir, "config.json", MAX_JSON_BYTES)?;
        let bpe = match (config.export_version, config.tokenizer.as_deref()) {
            (EXPORT_VERSION, None | Some("char")) => false,
            (EXPORT_VERSION_BPE, Some("bpe")) => true,
            (v @ (EXPORT_VERSION | EXPORT_VERSION_BPE), t) => bail!(
                "{}: export_version {v} with tokenizer {t:?}: version {EXPORT_VERSION} is a character run, {EXPORT_VERSION_BPE} a \"bpe\" run",
                shown(&dir.join("config.json"))
            ),
            (v, _) => bail!(
                "{}: export_version {v} is unknown to this pack (it reads versions {EXPORT_VERSION} and {EXPORT_VERSION_BPE}); use the tools from the same checkout as the trainer",
                shown(&dir.join("config.json"))
            ),
        };
        blob_config(&config, config.model.vocab_size)?;
        let vocab: Vec<String> = json(dir, "vocab.json", MAX_VOCAB_JSON_BYTES)?;
        ensure!(
            vocab.len() == config.model.vocab_size,
            "vocab.json has {} tokens but config.json says vocab_size {}",
            vocab.len(),
            config.model.vocab_size
        );
        let mut seen = HashMap::with_capacity(vocab.len());
        for (i, t) in vocab.iter().enumerate() {
            ensure!(!t.is_empty(), "vocab.json: token {i} is empty");
            if let Some(j) = seen.insert(t.as_str(), i) {
                bail!(
                    "vocab.json: token {i} {t:?} repeats token {j} (every token must be distinct)"
                );
            }
        }
        let tokens = if bpe {
            let file: TokenizerFile = json(dir, "tokenizer.json", MAX_TOKENIZER_JSON_BYTES)?;
            tokenizer::bpe_tokens(dir, &vocab, &file)?
        } else {
            tokenizer::char_tokens(&vocab)
        };
        blob_config(&config, tokens.tokens.iter().map(Vec::len).sum())?;
        let summary: RunSummary = json(dir, "summary.json", MAX_JSON_BYTES)?;
        ensure!(
            summary.quantized_val_loss.is_finite() && summary.quantized_val_loss >= 0.0,
            "summary.json: quantized_val_loss {:e} is not a non-negative number",
            summary.quantized_val_loss
        );

        let run = Run {
            dir: dir.to_path_buf(),
            config,
            summary,
            vocab,
            tokens,
            tensors: HashMap::new(),
        };
        let expected = run.expected_tensors()?;
        let data_bytes: u64 = expected
            .iter()
            .map(|(_, s)| 4 * s.iter().product::<usize>() as u64)
            .sum();
        let bytes = read(
            dir,
            "weights.safetensors",
            data_bytes + SAFETENSORS_HEADER_SLACK,
        )?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("weights.safetensors is not valid safetensors: {e:?}"))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            ensure!(
                view.dtype() == Dtype::F32,
                "weights.safetensors: {name} is {:?}, expected F32",
                view.dtype()
            );
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        let run = Run { tensors, ..run };
        run.check_shapes()?;
        Ok(run)
    }

    /// Every tensor `docs/MODEL.md` needs, with its expected shape: the trainer tensors of
    /// [`schema::GLOBAL`] and, for each layer, of [`schema::layer_specs`] (`layers.{l}.{name}`).
    pub fn expected_tensors(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let c = &self.config;
        let config = blob_config(c, 0)?;
        let shape = |s: &schema::TensorSpec| -> Vec<usize> {
            s.trainer_shape(&config)
                .map(|t| t.dims().iter().map(|&d| d as usize).collect())
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for s in schema::GLOBAL {
            if let Some(name) = s.trainer_name() {
                out.push((name.to_string(), shape(s)));
            }
        }
        for l in 0..c.model.n_layers {
            for s in schema::layer_specs(&config) {
                if let Some(name) = s.trainer_name() {
                    let mut full = String::new();
                    schema::layer_tensor_name(&mut full, l, name)?;
                    out.push((full, shape(s)));
                }
            }
        }
        Ok(out)
    }

    fn check_shapes(&self) -> Result<()> {
        let expected = self.expected_tensors()?;
        for (name, shape) in &expected {
            match self.tensors.get(name) {
                None => bail!(
                    "weights.safetensors has no tensor {name} (expected shape {shape:?} for this config)"
                ),
                Some((got, _)) if got != shape => bail!(
                    "weights.safetensors: {name} has shape {got:?}, config.json implies {shape:?}"
                ),
                _ => {}
            }
        }
        if self.tensors.len() != expected.len() {
            let names: std::collections::HashSet<&str> =
                expected.iter().map(|(n, _)| n.as_str()).collect();
            if let Some(extra) = self.tensors.keys().find(|k| !names.contains(k.as_str())) {
                bail!("weights.safetensors has an unexpected tensor {extra} (a different trainer version?)");
            }
        }
        Ok(())
    }

    /// The data of tensor `name` (present: checked at load).
    pub fn tensor(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }
}
