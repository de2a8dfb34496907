//! Checkpoints: `checkpoint/` in the run dir holds the model record, one record per optimiser group and
//! `state.json` (step, RNG, metrics so far). Written to `checkpoint.tmp/` first (each file
//! flushed to the disk), then swapped in by renames, so a crash never leaves a half-written
//! checkpoint behind.

use crate::config::{MatrixOptimizer, ModelConfig};
use crate::error::{Result, TrainError};
use crate::files::{sync_dir, write_atomic, write_synced};
use crate::fused::FusedOps;
use crate::metrics::{to_csv, MetricRow};
use crate::model::Model;
use crate::optim::{AdamWRecord, MuonRecord, Records};
use crate::rng::SplitMix64;
use crate::runinfo::log_line;
use burn::module::{AutodiffModule, Module};
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
/// `checkpoint.tmp/` is removed and the previous checkpoint stays as it was.
pub fn save<B: AutodiffBackend>(
    out: &Path,
    model: &Model<B>,
    opts: Records<B>,
    averages: &[&Model<B::InnerBackend>],
    state: &TrainState,
) -> Result<()> {
    let tmp = out.join("checkpoint.tmp");
    let res = write_tmp(&tmp, model, opts, averages, state);
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
/// group, the weight averages, the loop state.
fn write_tmp<B: AutodiffBackend>(
    tmp: &Path,
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
    // state.json last: a checkpoint dir with a state.json is complete.
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
            out.display()
        )));
    }
    match from(&d) {
        Err(e) if has_old => {
            log_line(&format!("{e}; using {} instead", old.display()));
            from(&old)
        }
        r => r,
    }
}

fn load_from<B: AutodiffBackend + FusedOps>(
    d: &Path,
    cfg: &ModelConfig,
    optimizer: MatrixOptimizer,
    n_averages: usize,
    dev: &B::Device,
) -> Result<Loaded<B>> {
    let bad = |e| {
        TrainError::Resume(format!(
            "cannot read the checkpoint in `{}`: {}",
            d.display(),
            rec_msg(e)
        ))
    };
    let st = d.join("state.json");
    let text = std::fs::read_to_string(&st).map_err(TrainError::io("read", &st))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Resume(format!("`{}`: {e}", st.display())))?;
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
