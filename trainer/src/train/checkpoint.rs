//! Checkpoints: `checkpoint/` in the run dir holds the model record, one record per optimiser group and
//! `state.json` (step, RNG, metrics so far). Written to `checkpoint.tmp/` first (each file
//! flushed to the disk), then swapped in by renames, so a crash never leaves a half-written
//! checkpoint behind.
//!
//! `checksums.json`, written last, records the model shape, the optimiser and the number of
//! weight averages the checkpoint was made for, and every other file's length and CRC-32
//! (CRC-32/ISO-HDLC, the blob's checksum). `--resume` checks all of it before anything is
//! decoded: a flipped byte, a truncated, missing or replaced file, or a checkpoint of another
//! model is a one-line error ([`TrainError::CorruptCheckpoint`],
//! [`TrainError::CheckpointMismatch`]), never a panic in the record decoder or a resume with
//! other weights.

use crate::config::{MatrixOptimizer, ModelConfig};
use crate::data::rng::SplitMix64;
use crate::error::{shown, Result, TrainError};
use crate::fused::FusedOps;
use crate::model::Model;
use crate::run::files::{sync_dir, write_atomic, write_synced};
use crate::run::metrics::{to_csv, MetricRow};
use crate::run::runinfo::log_line;
use crate::train::optim::{AdamWRecord, MuonRecord, Records};
use burn::module::{AutodiffModule, Module};
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The checkpoint's record of itself (written last).
pub const MANIFEST: &str = "checksums.json";

/// CRC-32/ISO-HDLC (zlib's, the blob's).
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// `checksums.json`: what a checkpoint was made for, and every other file's length and CRC-32.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// the model shape of every model record in it (the keys of `config.json`)
    pub model: ModelConfig,
    /// the optimiser of the BitLinear matrices (`opt_muon.bin` with `muon`)
    pub optimizer: MatrixOptimizer,
    /// weight averages held (`ema0.bin` …)
    pub averages: usize,
    /// every other file of the checkpoint, by name
    pub files: BTreeMap<String, FileSum>,
}

/// Length and CRC-32 of one checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// length in bytes
    pub bytes: u64,
    /// CRC-32/ISO-HDLC, 8 lowercase hex digits
    pub crc32: String,
}

impl FileSum {
    /// The sum of `bytes`.
    pub fn of(bytes: &[u8]) -> FileSum {
        FileSum {
            bytes: bytes.len() as u64,
            crc32: format!("{:08x}", CRC32.checksum(bytes)),
        }
    }
}

/// Reads checkpoints (returns errors on a truncated or corrupt file, where the bytes recorder
/// would panic).
type Rec = BinFileRecorder<FullPrecisionSettings>;
/// Writes them: the same bytes as `Rec` writes, but into memory, so that writing the file is ours
/// and every write error is reported (the file recorder drops its `BufWriter` without `flush`).
type BytesRec = BinBytesRecorder<FullPrecisionSettings>;

/// Loop state saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// optimiser steps done (the next step to run, 0-based)
    pub step: usize,
    /// batch sampler state (after drawing the batches of `step` steps)
    pub rng: SplitMix64,
    /// training tokens seen
    pub tokens_seen: u64,
    /// wall time of all sessions so far
    pub wall_s: f64,
    /// one row per step done
    pub metrics: Vec<MetricRow>,
    /// the step after which the weight averages (`--ema`) started, once they have: the
    /// checkpoint then holds one `ema{i}.bin` per decay. Absent in checkpoints written before it
    /// existed.
    #[serde(default)]
    pub ema_start: Option<usize>,
}

impl TrainState {
    /// The state before step 0.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            rng: SplitMix64::new(seed),
            tokens_seen: 0,
            wall_s: 0.0,
            metrics: Vec::new(),
            ema_start: None,
        }
    }
}

/// `out/checkpoint`.
pub fn dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// `out/checkpoint` or, when a crash hit between its two renames, `out/checkpoint.old`: the
/// checkpoint `--resume` reads, if there is one.
pub fn exists(out: &Path) -> bool {
    dir(out).join("state.json").exists() || out.join("checkpoint.old/state.json").exists()
}

/// The message of a recorder error (its `Display` is its `Debug`).
fn rec_msg(e: burn::record::RecorderError) -> String {
    use burn::record::RecorderError as E;
    match e {
        E::FileNotFound(m) | E::DeserializeError(m) | E::Unknown(m) => m,
    }
}

/// The weight averages of a run, as a checkpoint stores them (their decays are in the config).
pub type Averages<B> = Vec<Model<<B as AutodiffBackend>::InnerBackend>>;

/// Writes a checkpoint atomically: into `checkpoint.tmp/`, then renamed to `checkpoint/` (the
/// previous one is `checkpoint.old/` in between). On an error (disk full, read-only) the partial
/// `checkpoint.tmp/` is removed and the previous checkpoint stays as it was. `cfg` and
/// `optimizer` are the run's (recorded in `checksums.json`).
pub fn save<B: AutodiffBackend>(
    out: &Path,
    cfg: &ModelConfig,
    optimizer: MatrixOptimizer,
    model: &Model<B>,
    opts: Records<B>,
    averages: &[&Model<B::InnerBackend>],
    state: &TrainState,
) -> Result<()> {
    let tmp = out.join("checkpoint.tmp");
    let res = write_tmp(&tmp, cfg, optimizer, model, opts, averages, state);
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res?;
    let old = out.join("checkpoint.old");
    let fin = dir(out);
    if fin.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(TrainError::io("remove", &old))?;
        }
        std::fs::rename(&fin, &old).map_err(TrainError::io("rename", &fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(TrainError::io("rename", &tmp))?;
    sync_dir(out);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(TrainError::io("remove", &old))?;
    }
    // Keep metrics.csv in step with the checkpoint.
    write_atomic(&out.join("metrics.csv"), to_csv(&state.metrics).as_bytes())
}

/// Writes the checkpoint files into `tmp` (created afresh): the model, one record per optimiser
/// group, the weight averages, the loop state, and last `checksums.json`.
fn write_tmp<B: AutodiffBackend>(
    tmp: &Path,
    cfg: &ModelConfig,
    optimizer: MatrixOptimizer,
    model: &Model<B>,
    opts: Records<B>,
    averages: &[&Model<B::InnerBackend>],
    state: &TrainState,
) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(TrainError::io("remove", tmp))?;
    }
    std::fs::create_dir_all(tmp).map_err(TrainError::io("create", tmp))?;
    let rec = BytesRec::new();
    let encode = |r: std::result::Result<Vec<u8>, burn::record::RecorderError>| {
        r.map_err(|e| TrainError::Io {
            what: "encode checkpoint",
            path: tmp.to_path_buf(),
            source: std::io::Error::other(rec_msg(e)),
        })
    };
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "model.bin".into(),
            encode(Recorder::<B>::record(&rec, model.clone().into_record(), ()))?,
        ),
        (
            "opt_decay.bin".into(),
            encode(Recorder::<B>::record(&rec, opts.decay, ()))?,
        ),
        (
            "opt_rest.bin".into(),
            encode(Recorder::<B>::record(&rec, opts.rest, ()))?,
        ),
    ];
    if let Some(m) = opts.muon {
        let bytes = encode(Recorder::<B>::record(&rec, m, ()))?;
        files.push(("opt_muon.bin".into(), bytes));
    }
    for (i, avg) in averages.iter().enumerate() {
        let record = (*avg).clone().into_record();
        let bytes = encode(Recorder::<B::InnerBackend>::record(&rec, record, ()))?;
        files.push((format!("ema{i}.bin"), bytes));
    }
    files.push((
        "state.json".into(),
        serde_json::to_vec(state).expect("state serialises"),
    ));
    let manifest = Manifest {
        model: cfg.clone(),
        optimizer,
        averages: averages.len(),
        files: (files.iter())
            .map(|(name, bytes)| (name.clone(), FileSum::of(bytes)))
            .collect(),
    };
    let manifest = serde_json::to_string_pretty(&manifest).expect("manifest serialises") + "\n";
    files.push((MANIFEST.into(), manifest.into_bytes()));
    for (name, bytes) in files {
        write_synced(&tmp.join(name), &bytes)?;
    }
    sync_dir(tmp);
    Ok(())
}

/// A checkpoint read back: what [`save`] wrote.
pub struct Loaded<B: AutodiffBackend> {
    /// the live weights
    pub model: Model<B>,
    /// the optimiser groups
    pub records: Records<B>,
    /// the weight averages (empty before they start)
    pub averages: Averages<B>,
    /// the loop state
    pub state: TrainState,
}

/// Loads the checkpoint of the run in `out` (`n_averages`: the run's EMA decays). Falls back to
/// `checkpoint.old` when `checkpoint/` is missing (a crash between the two renames) or cannot be
/// read.
pub fn load<B: AutodiffBackend + FusedOps>(
    out: &Path,
    cfg: &ModelConfig,
    optimizer: MatrixOptimizer,
    n_averages: usize,
    dev: &B::Device,
) -> Result<Loaded<B>> {
    let old = out.join("checkpoint.old");
    let has_old = old.join("state.json").exists();
    let d = dir(out);
    let from = |d: &Path| load_from::<B>(d, cfg, optimizer, n_averages, dev);
    if !d.join("state.json").exists() {
        if has_old {
            return from(&old);
        }
        return Err(TrainError::Resume(format!(
            "no checkpoint in `{}`",
            shown(out)
        )));
    }
    match from(&d) {
        Err(e) if has_old => {
            log_line(&format!("{e}; using {} instead", shown(&old)));
            from(&old)
        }
        r => r,
    }
}

/// Reads `checksums.json` of the checkpoint in `d` and checks, before anything is decoded, that
/// it was made for `cfg`, `optimizer` and `n_averages` weight averages (once they started) and
/// that every file it lists has its recorded length and CRC-32.
pub fn verify(
    d: &Path,
    cfg: &ModelConfig,
    optimizer: MatrixOptimizer,
    n_averages: usize,
) -> Result<Manifest> {
    let corrupt = |reason: String| TrainError::CorruptCheckpoint {
        dir: d.to_path_buf(),
        reason,
    };
    let text = match std::fs::read(d.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(format!(
                "it has no {MANIFEST} (written by a trainer before checkpoints were checksummed, \
                 or deleted), so its files cannot be checked"
            )))
        }
        Err(e) => return Err(TrainError::io("read", d.join(MANIFEST))(e)),
    };
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| corrupt(format!("{MANIFEST} does not parse ({e})")))?;
    let mismatch = |field: &str, checkpoint: String, run: String| {
        Err(TrainError::CheckpointMismatch {
            dir: d.to_path_buf(),
            field: field.into(),
            checkpoint,
            run,
        })
    };
    if m.model != *cfg {
        let (a, b) = (serde_json::to_value(&m.model), serde_json::to_value(cfg));
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        let keys = [
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "ffn_dim",
        ];
        let field = (keys.iter().copied())
            .chain(["ffn_gated", "ctx_len", "rope_theta", "norm_eps"])
            .find(|k| a.get(k) != b.get(k))
            .unwrap_or("model");
        let value = |v: &serde_json::Value| match v.get(field) {
            Some(x) => x.to_string(),
            None if field == "ffn_gated" => "false".into(),
            None => format!("{v}"),
        };
        return mismatch(field, value(&a), value(&b));
    }
    if m.optimizer != optimizer {
        return mismatch(
            "optimizer",
            format!("{:?}", m.optimizer).to_lowercase(),
            format!("{optimizer:?}").to_lowercase(),
        );
    }
    if m.averages != 0 && m.averages != n_averages {
        return mismatch(
            "number of weight averages",
            m.averages.to_string(),
            format!("{n_averages} (ema_decays)"),
        );
    }
    for (name, sum) in &m.files {
        let path = d.join(name);
        // Names are the trainer's own: a name that leaves the directory is a forged record.
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(corrupt(format!(
                "{MANIFEST} lists `{}`",
                shown(Path::new(name))
            )));
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(format!("{} is missing", shown(Path::new(name)))))
            }
            Err(e) => return Err(TrainError::io("read", path)(e)),
        };
        let got = FileSum::of(&bytes);
        if got != *sum {
            return Err(corrupt(format!(
                "{} has {} bytes and CRC-32 {}, {MANIFEST} records {} bytes and {} \
                 (a flipped byte, a truncated or a replaced file)",
                shown(Path::new(name)),
                got.bytes,
                got.crc32,
                sum.bytes,
                sum.crc32
            )));
        }
    }
    Ok(m)
}

fn load_from<B: AutodiffBackend + FusedOps>(
    d: &Path,
    cfg: &ModelConfig,
    optimizer: MatrixOptimizer,
    n_averages: usize,
    dev: &B::Device,
) -> Result<Loaded<B>> {
    let manifest = verify(d, cfg, optimizer, n_averages)?;
    // Every file read below must be one the manifest vouches for.
    let listed = |name: &str| -> Result<()> {
        if manifest.files.contains_key(name) {
            Ok(())
        } else {
            Err(TrainError::CorruptCheckpoint {
                dir: d.to_path_buf(),
                reason: format!("{name} is not listed in {MANIFEST}"),
            })
        }
    };
    let bad = |e| {
        TrainError::Resume(format!(
            "cannot read the checkpoint in `{}`: {}",
            shown(d),
            rec_msg(e)
        ))
    };
    listed("state.json")?;
    let st = d.join("state.json");
    let text = std::fs::read_to_string(&st).map_err(TrainError::io("read", &st))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Resume(format!("`{}`: {e}", shown(&st))))?;
    let mut needed = vec![
        "model.bin".to_string(),
        "opt_decay.bin".into(),
        "opt_rest.bin".into(),
    ];
    if optimizer == MatrixOptimizer::Muon {
        needed.push("opt_muon.bin".into());
    }
    if state.ema_start.is_some() {
        if manifest.averages != n_averages {
            return Err(TrainError::CheckpointMismatch {
                dir: d.to_path_buf(),
                field: "number of weight averages".into(),
                checkpoint: manifest.averages.to_string(),
                run: format!("{n_averages} (ema_decays)"),
            });
        }
        needed.extend((0..n_averages).map(|i| format!("ema{i}.bin")));
    }
    for name in &needed {
        listed(name)?;
    }
    let rec = Rec::new();
    let model = Model::<B>::new(cfg, dev, 0)
        .load_file(d.join("model"), &rec, dev)
        .map_err(bad)?;
    let decay: AdamWRecord<B> = Recorder::<B>::load(&rec, d.join("opt_decay"), dev).map_err(bad)?;
    let rest: AdamWRecord<B> = Recorder::<B>::load(&rec, d.join("opt_rest"), dev).map_err(bad)?;
    let muon: Option<MuonRecord<B>> = match optimizer {
        MatrixOptimizer::Adamw => None,
        MatrixOptimizer::Muon => {
            Some(Recorder::<B>::load(&rec, d.join("opt_muon"), dev).map_err(bad)?)
        }
    };
    let n = if state.ema_start.is_some() {
        n_averages
    } else {
        0
    };
    let averages = (0..n)
        .map(|i| {
            let m = Model::<B>::new(cfg, dev, 0).load_file(d.join(format!("ema{i}")), &rec, dev);
            m.map(|m| m.valid()).map_err(bad)
        })
        .collect::<Result<_>>()?;
    let records = Records { decay, rest, muon };
    Ok(Loaded {
        model,
        records,
        averages,
        state,
    })
}
