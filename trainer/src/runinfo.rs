//! The run directory (format in `trainer/EXPORT.md`): `config.json`, `vocab.json` and
//! `command.txt` at the start; `weights.safetensors`, `summary.json`, `metrics.csv` and
//! `loss.svg` at the end. Also the progress display.

use crate::checkpoint::TrainState;
use crate::config::{ModelConfig, TrainConfig, EXPORT_VERSION};
use crate::data::Corpus;
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::train::RunSpec;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `config.json`: every hyper-parameter of the run, flat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// run-dir format version ([`EXPORT_VERSION`])
    pub export_version: u32,
    /// version of the trainer crate that wrote the run
    pub trainer_version: String,
    /// preset the run started from
    pub preset: String,
    /// model shape
    #[serde(flatten)]
    pub model: ModelConfig,
    /// schedule
    #[serde(flatten)]
    pub train: TrainConfig,
    /// corpus path as given
    pub data_path: String,
    /// characters in the corpus
    pub data_chars: usize,
    /// FNV-1a 64 of the corpus bytes, hex
    pub data_fnv1a64: String,
    /// characters in the training split
    pub train_chars: usize,
    /// characters in the validation split
    pub val_chars: usize,
}

impl RunConfig {
    /// The config of `spec` on `corpus`.
    pub fn new(spec: &RunSpec, corpus: &Corpus) -> Self {
        Self {
            export_version: EXPORT_VERSION,
            trainer_version: env!("CARGO_PKG_VERSION").to_string(),
            preset: spec.preset.clone(),
            model: spec.model.clone(),
            train: spec.train.clone(),
            data_path: spec.data_path.display().to_string(),
            data_chars: corpus.n_chars,
            data_fnv1a64: format!("{:016x}", corpus.fingerprint),
            train_chars: corpus.train.len(),
            val_chars: corpus.val.len(),
        }
    }

    /// Reads `out/config.json`.
    pub fn read(out: &Path) -> Result<Self> {
        let p = out.join("config.json");
        let text = std::fs::read_to_string(&p).map_err(TrainError::io("read", &p))?;
        let c: Self = serde_json::from_str(&text)
            .map_err(|e| TrainError::Resume(format!("`{}`: {e}", p.display())))?;
        if c.export_version != EXPORT_VERSION {
            return Err(TrainError::Resume(format!(
                "`{}` has export_version {}, this trainer writes {EXPORT_VERSION}",
                p.display(),
                c.export_version
            )));
        }
        Ok(c)
    }
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// run-dir format version
    pub export_version: u32,
    /// optimiser steps done
    pub steps: usize,
    /// training tokens seen
    pub tokens_seen: u64,
    /// wall time of all sessions, seconds
    pub wall_time_s: f64,
    /// backend name
    pub backend: String,
    /// devices used (data parallel when > 1)
    pub devices: usize,
    /// training tokens per second of the last session (train steps only)
    pub tokens_per_s: f64,
    /// train loss of the last step
    pub final_train_loss: f32,
    /// mean train loss of the last 50 steps
    pub final_train_loss_avg50: f32,
    /// training-mode forward (f32, STE quantizers) on the fixed validation batches
    pub val_loss_train_forward: f64,
    /// quantized evaluation mode (Q1–Q5 exact) over the whole validation split, nats/char
    pub quantized_val_loss: f64,
    /// positions averaged in `quantized_val_loss`
    pub quantized_val_positions: usize,
    /// seconds spent computing `quantized_val_loss`
    pub quantized_eval_s: f64,
    /// trainable parameters
    pub n_params: usize,
}

/// Prints one progress line to stderr (used when stderr is not a terminal).
pub fn log_line(s: &str) {
    eprintln!("[trainer] {s}");
}

/// A progress bar on stderr; hidden when `show` is false or stderr is not a terminal.
pub fn progress_bar(show: bool, steps: usize, pos: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(steps as u64),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{bar:30}] {msg} | {elapsed_precise} eta {eta_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(pos as u64);
    bar.reset_eta();
    bar
}

/// Writes `bytes` to `path` and flushes them to the disk; every error is reported (unlike a
/// `BufWriter` dropped without `flush`, which loses the error of its last write).
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(TrainError::io("create", path))?;
    f.write_all(bytes).map_err(TrainError::io("write", path))?;
    f.sync_all().map_err(TrainError::io("write", path))
}

/// Flushes a directory's entries (renames) to the disk; best effort (not every file system
/// can open a directory for that).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replaces `path` by `bytes` atomically: written to `path.tmp`, then renamed over `path`, so a
/// crash or a full disk leaves either the old file or the new one, never a truncated one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let res = write_synced(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(TrainError::io("rename", &tmp)));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    res
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serialisable") + "\n";
    write_atomic(path, text.as_bytes())
}

/// Creates the run dir and writes `vocab.json`, `command.txt` and, last, `config.json` (so a
/// run dir with a `config.json` has all three).
pub fn write_start(spec: &RunSpec, corpus: &Corpus) -> Result<()> {
    let out = &spec.out;
    std::fs::create_dir_all(out).map_err(TrainError::io("create the output dir", out))?;
    write_json(&out.join("vocab.json"), &corpus.vocab.strings())?;
    write_atomic(
        &out.join("command.txt"),
        (spec.command.join(" ") + "\n").as_bytes(),
    )?;
    write_json(&out.join("config.json"), &RunConfig::new(spec, corpus))
}

/// `(name, shape, f32 values)` of every tensor of `weights.safetensors`, in file order.
pub fn export_tensors<B: Backend>(model: &Model<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    fn t<B: Backend, const D: usize>(
        name: String,
        x: Tensor<B, D>,
    ) -> (String, Vec<usize>, Vec<f32>) {
        let shape = x.dims().to_vec();
        let data = x
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 tensor");
        (name, shape, data)
    }
    let mut v = vec![t("embed".into(), model.embed.val())];
    for (i, l) in model.layers.iter().enumerate() {
        let p = |s: &str| format!("layers.{i}.{s}");
        v.push(t(p("attn_norm"), l.attn_norm.gain.val()));
        v.push(t(p("wq"), l.attn.wq.weight.val()));
        v.push(t(p("wk"), l.attn.wk.weight.val()));
        v.push(t(p("wv"), l.attn.wv.weight.val()));
        v.push(t(p("attn_sub_norm"), l.attn.sub_norm.gain.val()));
        v.push(t(p("wo"), l.attn.wo.weight.val()));
        v.push(t(p("ffn_norm"), l.ffn_norm.gain.val()));
        v.push(t(p("w_up"), l.ffn.up.weight.val()));
        v.push(t(p("ffn_sub_norm"), l.ffn.sub_norm.gain.val()));
        v.push(t(p("w_down"), l.ffn.down.weight.val()));
    }
    v.push(t("final_norm".into(), model.final_norm.gain.val()));
    v
}

/// Writes the latent f32 weights as safetensors (little-endian F32, names of `EXPORT.md`).
pub fn write_weights<B: Backend>(model: &Model<B>, path: &Path) -> Result<()> {
    let tensors = export_tensors(model);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("shape matches data");
            (n.clone(), view)
        })
        .collect();
    let meta = std::collections::HashMap::from([
        ("export_version".to_string(), EXPORT_VERSION.to_string()),
        (
            "content".to_string(),
            "bitnet-mcu latent f32 weights".to_string(),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Io {
        what: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    write_atomic(path, &sorted_header(bytes))
}

/// safetensors writes `__metadata__` from a `HashMap`, so its key order (and the file's bytes)
/// changes from one process to the next. Re-emits the JSON header with sorted keys (same tensors,
/// same offsets, padded with spaces to 8 bytes as safetensors does): equal weights give equal files.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    use std::collections::BTreeMap;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote a JSON header");
    if let Some(m) = header.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> =
            serde_json::from_value(m.take()).expect("string metadata");
        *m = serde_json::to_value(sorted).expect("serialisable");
    }
    let mut text = serde_json::to_string(&header).expect("serialisable");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Writes the end-of-run files.
pub fn write_end<B: Backend>(
    spec: &RunSpec,
    model: &Model<B>,
    state: &TrainState,
    summary: &Summary,
) -> Result<()> {
    let out = &spec.out;
    // config.json again: `--resume --steps N` may have changed the step count.
    let mut cfg = RunConfig::read(out)?;
    cfg.train = spec.train.clone();
    write_json(&out.join("config.json"), &cfg)?;
    write_weights(model, &out.join("weights.safetensors"))?;
    write_json(&out.join("summary.json"), summary)?;
    write_atomic(
        &out.join("metrics.csv"),
        crate::metrics::to_csv(&state.metrics).as_bytes(),
    )?;
    let title = format!(
        "{} · {} steps · quantized val loss {:.4}",
        spec.preset, summary.steps, summary.quantized_val_loss
    );
    if let Err(e) = crate::metrics::plot_svg(&state.metrics, &out.join("loss.svg"), &title) {
        log_line(&format!("warning: loss.svg not drawn: {e}"));
    }
    Ok(())
}

/// Checks that `ModelConfig` and `TrainConfig` of a resumed run are unchanged except `steps`.
pub fn check_resume(saved: &RunConfig, model: &ModelConfig, train: &TrainConfig) -> Result<()> {
    let mut t = saved.train.clone();
    t.steps = train.steps;
    if &saved.model != model || &t != train {
        return Err(TrainError::Resume(
            "the run's config.json differs from the requested hyper-parameters".into(),
        ));
    }
    Ok(())
}
