//! Reading a trainer run directory (`trainer/EXPORT.md`, export_version 1).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use runtime::schema;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

/// The run-dir format version this pack understands.
pub const EXPORT_VERSION: u32 = 1;

/// The model keys of `config.json` (other keys are ignored).
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
    /// V.
    pub vocab_size: usize,
    /// d.
    pub d_model: usize,
    /// L.
    pub n_layers: usize,
    /// H.
    pub n_heads: usize,
    /// Hkv.
    pub n_kv_heads: usize,
    /// F.
    pub ffn_dim: usize,
    /// T.
    pub ctx_len: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Training seed.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The keys of `summary.json` pack uses.
#[derive(Clone, Debug, Deserialize)]
pub struct RunSummary {
    /// Optimiser steps done.
    pub steps: u64,
    /// Quantized-mode validation loss over the whole split (nats/char).
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
    /// `weights.safetensors`: every tensor as f32 with its shape.
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    fs::read(&path).with_context(|| {
        if path.exists() {
            format!("cannot read {}", path.display())
        } else {
            format!(
                "run dir {} is incomplete: {name} is missing (is the training still running, or was it interrupted? `trainer --resume` finishes it)",
                dir.display()
            )
        }
    })
}

fn json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let bytes = read(dir, name)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid: ", dir.join(name).display()))
}

impl Run {
    /// Reads and checks a run directory: every file present, versions known, vocabulary and
    /// tensor shapes consistent with the config.
    pub fn load(dir: &Path) -> Result<Run> {
        ensure!(dir.is_dir(), "run dir {} does not exist", dir.display());
        let config: RunConfig = json(dir, "config.json")?;
        if config.export_version != EXPORT_VERSION {
            bail!(
                "{}: export_version {} is unknown to this pack (it reads version {EXPORT_VERSION}); use the tools from the same checkout as the trainer",
                dir.join("config.json").display(),
                config.export_version
            );
        }
        let c = &config;
        ensure!(
            c.d_model > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.n_layers > 0,
            "config.json: zero dimension"
        );
        ensure!(
            c.d_model.is_multiple_of(c.n_heads) && c.n_heads.is_multiple_of(c.n_kv_heads),
            "config.json: n_heads {} must divide d_model {} and n_kv_heads {} must divide n_heads",
            c.n_heads,
            c.d_model,
            c.n_kv_heads
        );
        let vocab: Vec<String> = json(dir, "vocab.json")?;
        ensure!(
            vocab.len() == config.vocab_size,
            "vocab.json has {} tokens but config.json says vocab_size {}",
            vocab.len(),
            config.vocab_size
        );
        if let Some(i) = vocab.iter().position(|t| t.is_empty()) {
            bail!("vocab.json: token {i} is empty");
        }
        let summary: RunSummary = json(dir, "summary.json")?;
        ensure!(
            summary.quantized_val_loss.is_finite(),
            "summary.json: quantized_val_loss is not a number"
        );

        let bytes = read(dir, "weights.safetensors")?;
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
        let run = Run {
            dir: dir.to_path_buf(),
            config,
            summary,
            vocab,
            tensors,
        };
        run.check_shapes()?;
        Ok(run)
    }

    /// Every tensor `docs/MODEL.md` needs, with its expected shape: the trainer tensors of
    /// [`schema::GLOBAL`] and, for each layer, of [`schema::LAYER`] (`layers.{l}.{name}`).
    pub fn expected_tensors(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let c = &self.config;
        let u = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        let config = runtime::Config {
            vocab_size: u(c.vocab_size),
            d_model: u(c.d_model),
            n_layers: u(c.n_layers),
            n_heads: u(c.n_heads),
            n_kv_heads: u(c.n_kv_heads),
            ffn_dim: u(c.ffn_dim),
            ctx_len: u(c.ctx_len),
            rope_theta: 0,
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("config.json: {e}"))?;
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
        for l in 0..c.n_layers {
            for s in schema::LAYER {
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
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|k| !expected.iter().any(|(n, _)| n == *k))
        {
            bail!("weights.safetensors has an unexpected tensor {extra} (a different trainer version?)");
        }
        Ok(())
    }

    /// The data of tensor `name` (present: checked at load).
    pub fn tensor(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }
}
