//! The run directory (format in `trainer/EXPORT.md`): `config.json`, `vocab.json`,
//! `tokenizer.json` (BPE runs) and `command.txt` at the start; `weights.safetensors`
//! ([`crate::run::weights`]), `summary.json`,
//! `metrics.csv` and `loss.svg` at the end. Also the progress display.
//!
//! A directory is a run of this trainer when it holds a `config.json` this trainer reads
//! ([`RunConfig::read`]); it is written first, so every directory the trainer has started to
//! fill is one. A fresh run goes only into a new or empty directory ([`check_fresh_out`]): any
//! other content is someone else's files, never overwritten.

use crate::config::{export_version, ModelConfig, TrainConfig};
use crate::data::{Corpus, Tokenizer};
use crate::error::{shown, Result, TrainError};
use crate::model::Model;
use crate::run::files::{write_atomic, write_json};
use crate::run::metrics::{self, MetricRow};
use crate::run::spec::RunSpec;
use crate::run::weights::write_weights;
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `config.json`: every hyper-parameter of the run, flat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// run-dir format version ([`crate::config::export_version`])
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
            export_version: export_version(spec.train.tokenizer),
            trainer_version: env!("CARGO_PKG_VERSION").to_string(),
            preset: spec.preset.clone(),
            model: spec.model.clone(),
            train: spec.train.clone(),
            data_path: spec.data_path.display().to_string(),
            data_chars: corpus.n_chars,
            data_fnv1a64: format!("{:016x}", corpus.fingerprint),
            train_chars: corpus.train_chars,
            val_chars: corpus.val_chars,
        }
    }

    /// Reads `out/config.json`.
    pub fn read(out: &Path) -> Result<Self> {
        let p = out.join("config.json");
        let text = std::fs::read_to_string(&p).map_err(TrainError::io("read", &p))?;
        let c: Self = serde_json::from_str(&text)
            .map_err(|e| TrainError::Resume(format!("`{}`: {e}", shown(&p))))?;
        let want = export_version(c.train.tokenizer);
        if c.export_version != want {
            return Err(TrainError::Resume(format!(
                "`{}` has export_version {}, this trainer writes {want} for a {:?} run",
                shown(&p),
                c.export_version,
                c.train.tokenizer
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
    /// `quantized_val_loss` per character of the scored text: the sum of the scored positions'
    /// NLL over the characters of their tokens (equal to `quantized_val_loss` for a character
    /// model). Absent in runs written before it existed.
    #[serde(default)]
    pub quantized_val_nats_per_char: f64,
    /// the same sum in bits per byte of the scored text. Absent in runs written before it existed.
    #[serde(default)]
    pub quantized_val_bits_per_byte: f64,
    /// characters of the scored positions' tokens. Absent in older runs.
    #[serde(default)]
    pub quantized_val_chars: usize,
    /// bytes of the scored positions' tokens. Absent in older runs.
    #[serde(default)]
    pub quantized_val_bytes: usize,
    /// characters of the validation split per token of its encoding (1 for a character model).
    /// Absent in older runs.
    #[serde(default)]
    pub val_chars_per_token: f64,
    /// seconds spent computing `quantized_val_loss`
    pub quantized_eval_s: f64,
    /// the same windows with every quantizer off (the float model of the latent weights): how
    /// much the quantizers cost. Absent in runs written before it existed.
    #[serde(default)]
    pub float_val_loss: f64,
    /// `quantized_val_loss` of the last weights; the same number unless the run exports a
    /// weight average (`--ema`). Absent in runs written before it existed.
    #[serde(default)]
    pub last_weights_quantized_val_loss: f64,
    /// `quantized_val_loss` of each weight average, in the order of `ema_decays`; the first is
    /// the exported model. Absent in runs written before it existed.
    #[serde(default)]
    pub averages: Vec<AverageLoss>,
    /// trainable parameters
    pub n_params: usize,
}

/// The quantized validation loss of one weight average (`--ema`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AverageLoss {
    /// its decay β
    pub decay: f64,
    /// quantized evaluation mode over the whole validation split, nats/char
    pub quantized_val_loss: f64,
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

/// What a start killed before its first file leaves in `--out`: the write probe and
/// `config.json`'s temporary file. A fresh run may go into a directory holding only these.
pub const START_LEFTOVERS: [&str; 2] = [".write-test", "config.json.tmp"];

/// Checks that `out` may take a new run: it does not exist, or it is an empty directory (or
/// holds only [`START_LEFTOVERS`]). A directory with a `config.json` holds a run (continue it
/// with `--resume`); one with anything else holds someone's files: both are refused.
pub fn check_fresh_out(out: &Path) -> Result<()> {
    if out.join("config.json").exists() {
        return Err(TrainError::Config(format!(
            "`{}` already holds a run; pass --resume to continue it or choose another --out",
            shown(out)
        )));
    }
    let entries = match std::fs::read_dir(out) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::io("read the output dir", out)(e)),
    };
    let mut foreign: Vec<String> = Vec::new();
    for e in entries {
        let e = e.map_err(TrainError::io("read the output dir", out))?;
        let name = e.file_name();
        if !START_LEFTOVERS.iter().any(|l| name == *l) {
            foreign.push(shown(Path::new(&name)));
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    let more = if foreign.len() > 3 {
        format!(" and {} more", foreign.len() - 3)
    } else {
        String::new()
    };
    foreign.truncate(3);
    Err(TrainError::Config(format!(
        "`{}` is not empty and holds no run of this trainer (no config.json; it has {}{more}): \
         choose a new or empty directory for --out",
        shown(out),
        foreign.join(", ")
    )))
}

/// Creates the run dir and writes `config.json` (first: from then on the directory is a run of
/// this trainer), `vocab.json`, `tokenizer.json` (BPE runs) and `command.txt`.
pub fn write_start(spec: &RunSpec, corpus: &Corpus) -> Result<()> {
    let out = &spec.out;
    std::fs::create_dir_all(out).map_err(TrainError::io("create the output dir", out))?;
    write_json(&out.join("config.json"), &RunConfig::new(spec, corpus))?;
    write_json(&out.join("vocab.json"), &corpus.vocab.strings())?;
    if let Some(t) = tokenizer_file(corpus) {
        write_json(&out.join("tokenizer.json"), &t)?;
    }
    write_atomic(
        &out.join("command.txt"),
        (spec.command.join(" ") + "\n").as_bytes(),
    )
}

/// `tokenizer.json` of a run on `corpus`: `None` for a character vocabulary.
pub fn tokenizer_file(corpus: &Corpus) -> Option<TokenizerFile> {
    let Tokenizer::Bpe(bpe) = &corpus.vocab else {
        return None;
    };
    Some(TokenizerFile {
        kind: "bpe".into(),
        byte_tokens: 256,
        merges: bpe.merges.iter().map(|&(l, r)| [l, r]).collect(),
        train_tokens: corpus.train.len(),
        val_tokens: corpus.val.len(),
        train_chars_per_token: corpus.train_chars as f64 / corpus.train.len().max(1) as f64,
        val_chars_per_token: corpus.val_chars as f64 / corpus.val.len().max(1) as f64,
    })
}

/// On `--resume`, after the corpus was checked against the run's `data_fnv1a64`: `vocab.json`
/// (and, in a BPE run, `tokenizer.json`) must be the vocabulary of that corpus, with which the
/// weights were trained (a BPE vocabulary is learned again from the same training text, the same
/// way). One that is missing (a kill right after `config.json`, or deleted) or differs (reversed,
/// edited) is rewritten from the corpus, and the rewrite is logged; `command.txt`, if missing, is
/// written with this command line. Returns whether a vocabulary file was rewritten.
pub fn restore_start_files(spec: &RunSpec, corpus: &Corpus) -> Result<bool> {
    let out = &spec.out;
    // Each file as `write_json` writes it.
    let pretty = |v: serde_json::Result<String>| v.expect("serialisable") + "\n";
    let mut files = vec![(
        "vocab.json",
        pretty(serde_json::to_string_pretty(&corpus.vocab.strings())),
    )];
    if let Some(t) = tokenizer_file(corpus) {
        files.push(("tokenizer.json", pretty(serde_json::to_string_pretty(&t))));
    }
    let mut rewritten = false;
    for (name, text) in files {
        let path = out.join(name);
        let want: serde_json::Value = serde_json::from_str(&text).expect("just written");
        let found: Option<serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if found.as_ref() == Some(&want) {
            continue;
        }
        let why = if found.is_none() && !path.exists() {
            "is missing"
        } else {
            "is not the vocabulary of the run's corpus"
        };
        log_line(&format!(
            "{} {why}: rewritten from the corpus (the vocabulary the weights were trained with)",
            shown(&path)
        ));
        write_atomic(&path, text.as_bytes())?;
        rewritten = true;
    }
    let command = out.join("command.txt");
    if !command.exists() {
        write_atomic(&command, (spec.command.join(" ") + "\n").as_bytes())?;
    }
    Ok(rewritten)
}

/// Writes the end-of-run files: `model`'s weights, `summary` and the metrics `rows`.
pub fn write_end<B: Backend>(
    spec: &RunSpec,
    model: &Model<B>,
    rows: &[MetricRow],
    summary: &Summary,
) -> Result<()> {
    let out = &spec.out;
    // config.json again: `--resume --steps N` may have changed the step count.
    let mut cfg = RunConfig::read(out)?;
    cfg.train = spec.train.clone();
    write_json(&out.join("config.json"), &cfg)?;
    write_weights(model, &out.join("weights.safetensors"))?;
    write_json(&out.join("summary.json"), summary)?;
    write_atomic(&out.join("metrics.csv"), metrics::to_csv(rows).as_bytes())?;
    let title = format!(
        "{} · {} steps · quantized val loss {:.4}",
        spec.preset, summary.steps, summary.quantized_val_loss
    );
    if let Err(e) = metrics::plot_svg(rows, &out.join("loss.svg"), &title) {
        log_line(&format!("warning: loss.svg not drawn: {e}"));
    }
    Ok(())
}

/// `tokenizer.json` of a BPE run (`trainer/EXPORT.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenizerFile {
    /// `"bpe"`
    pub kind: String,
    /// 256: token `b < 256` is the byte `b`
    pub byte_tokens: usize,
    /// merge `i` = `[left, right]`, making token `256 + i`
    pub merges: Vec<[u16; 2]>,
    /// tokens of the training split's encoding
    pub train_tokens: usize,
    /// tokens of the validation split's encoding
    pub val_tokens: usize,
    /// characters per token of the training split
    pub train_chars_per_token: f64,
    /// characters per token of the validation split
    pub val_chars_per_token: f64,
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
