//! Checkpoints: `checkpoint/` in the run dir holds the model record, both optimiser records and
//! `state.json` (step, RNG, metrics so far). Written to `checkpoint.tmp/` first, then swapped in
//! by renames, so a crash never leaves a half-written checkpoint behind.

use crate::config::ModelConfig;
use crate::error::{Result, TrainError};
use crate::metrics::MetricRow;
use crate::model::Model;
use crate::rng::SplitMix64;
use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

type Rec = BinFileRecorder<FullPrecisionSettings>;
type OptRecord<B> =
    <burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, Model<B>, B> as Optimizer<
        Model<B>,
        B,
    >>::Record;

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
        }
    }
}

/// `out/checkpoint`.
pub fn dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn rec_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(burn::record::RecorderError) -> TrainError {
    let path = path.to_path_buf();
    move |e| TrainError::Io {
        what,
        path,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Writes a checkpoint atomically (temp dir + rename).
pub fn save<B: AutodiffBackend>(
    out: &Path,
    model: &Model<B>,
    opt_decay: &impl Optimizer<Model<B>, B, Record = OptRecord<B>>,
    opt_rest: &impl Optimizer<Model<B>, B, Record = OptRecord<B>>,
    state: &TrainState,
) -> Result<()> {
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    let fin = dir(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(TrainError::io("remove", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(TrainError::io("create", &tmp))?;
    let rec = Rec::new();
    model
        .clone()
        .save_file(tmp.join("model"), &rec)
        .map_err(rec_err("write checkpoint", &tmp))?;
    Recorder::<B>::record(&rec, opt_decay.to_record(), tmp.join("opt_decay"))
        .map_err(rec_err("write checkpoint", &tmp))?;
    Recorder::<B>::record(&rec, opt_rest.to_record(), tmp.join("opt_rest"))
        .map_err(rec_err("write checkpoint", &tmp))?;
    let st = tmp.join("state.json");
    let json = serde_json::to_string(state).expect("state serialises");
    std::fs::write(&st, json).map_err(TrainError::io("write", &st))?;
    if fin.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(TrainError::io("remove", &old))?;
        }
        std::fs::rename(&fin, &old).map_err(TrainError::io("rename", &fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(TrainError::io("rename", &tmp))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(TrainError::io("remove", &old))?;
    }
    // Keep metrics.csv in step with the checkpoint.
    let csv = out.join("metrics.csv");
    std::fs::write(&csv, crate::metrics::to_csv(&state.metrics))
        .map_err(TrainError::io("write", &csv))?;
    Ok(())
}

/// Loads the checkpoint of the run in `out` (falling back to `checkpoint.old` if a crash hit
/// between the two renames).
#[allow(clippy::type_complexity)]
pub fn load<B: AutodiffBackend + crate::fused::FusedOps>(
    out: &Path,
    cfg: &ModelConfig,
    dev: &B::Device,
) -> Result<(Model<B>, OptRecord<B>, OptRecord<B>, TrainState)> {
    let mut d = dir(out);
    if !d.join("state.json").exists() {
        let old = out.join("checkpoint.old");
        if old.join("state.json").exists() {
            d = old;
        } else {
            return Err(TrainError::Resume(format!(
                "no checkpoint in `{}`",
                out.display()
            )));
        }
    }
    let rec = Rec::new();
    let model = Model::<B>::new(cfg, dev, 0)
        .load_file(d.join("model"), &rec, dev)
        .map_err(rec_err("read checkpoint", &d))?;
    let o_decay: OptRecord<B> = Recorder::<B>::load(&rec, d.join("opt_decay"), dev)
        .map_err(rec_err("read checkpoint", &d))?;
    let o_rest: OptRecord<B> = Recorder::<B>::load(&rec, d.join("opt_rest"), dev)
        .map_err(rec_err("read checkpoint", &d))?;
    let st = d.join("state.json");
    let text = std::fs::read_to_string(&st).map_err(TrainError::io("read", &st))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Resume(format!("`{}`: {e}", st.display())))?;
    Ok((model, o_decay, o_rest, state))
}
