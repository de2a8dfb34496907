//! `tools pack`: a trainer run directory → a blob, through the runtime's own writer.

use std::path::Path;

use anyhow::{Context, Result};
use runtime::schema::{self, MatrixEncodings, Source};
use runtime::writer::{LayerParams, LayerTensor, ModelParams};
use runtime::{Config, TernaryEncoding};

use crate::atomic;
use crate::convert::{dyadic, embedding, gains, rope_table, ternarize};
use crate::rundir::Run;

/// Converts a loaded run into the runtime's integer parameters (`docs/MODEL.md` Q1 and Q3;
/// `runtime/FORMAT.md` for the fixed-point forms).
pub fn model_params(run: &Run) -> Result<ModelParams> {
    let vocab_bytes_len = run.tokens.tokens.iter().map(Vec::len).sum();
    let config = crate::rundir::blob_config(&run.config, vocab_bytes_len)?;
    let c = &run.config.model;
    let head_dim = c.head_dim();
    let (emb, emb_scales) = embedding(run.tensor("embed"), c.vocab_size, c.d_model)?;
    let layers = (0..c.n_layers)
        .map(|l| layer_params(run, &config, l))
        .collect::<Result<Vec<_>>>()?;
    let run_name = run
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metadata = format!(
        "run {run_name}; trainer {}; preset {}; steps {}",
        run.config.trainer_version, run.config.preset, run.summary.steps
    );
    crate::term::truncate_utf8(&mut metadata, runtime::format::MAX_METADATA);
    Ok(ModelParams {
        config,
        norm_eps: dyadic(c.norm_eps).context("config.json: norm_eps")?,
        val_loss_micro_nats: Some((run.summary.quantized_val_loss * 1e6).round().max(0.0) as u64),
        metadata,
        vocab: run.tokens.tokens.clone(),
        bpe: run.tokens.bpe.clone(),
        embedding: emb,
        embedding_scales: emb_scales,
        rope: rope_table(c.ctx_len, head_dim, c.rope_theta),
        final_norm: gains("final_norm", run.tensor("final_norm"))?,
        layers,
    })
}

/// The values of layer `l`: every gain and ternary matrix of [`schema::layer_specs`], converted
/// from the run's tensor `layers.{l}.{name}`.
fn layer_params(run: &Run, config: &Config, l: usize) -> Result<LayerParams> {
    let mut tensors = Vec::new();
    for spec in schema::layer_specs(config) {
        let Some(name) = spec.trainer_name() else {
            continue; // derived (LayerScales)
        };
        let mut full = String::new();
        schema::layer_tensor_name(&mut full, l, name)?;
        let values = match spec.source {
            Source::Gain { .. } => LayerTensor::Gains(gains(&full, run.tensor(&full))?),
            Source::Ternary { .. } => {
                let (d_out, d_in) = (spec.rows.eval(config, 0), spec.cols.eval(config, 0));
                let t = ternarize(&full, run.tensor(&full), d_in as usize, d_out as usize)?;
                LayerTensor::Ternary(t)
            }
            other => anyhow::bail!("schema source {other:?} of {full} has no conversion in pack"),
        };
        tensors.push((spec.kind, values));
    }
    Ok(LayerParams { tensors })
}

/// Packs run dir `run_dir` into the blob `out` with every matrix 2-bit (format v1, or v3 for a
/// gated FFN, or v4 for a byte-level BPE vocabulary).
pub fn pack(run_dir: &Path, out: &Path) -> Result<Vec<u8>> {
    pack_with(run_dir, out, TernaryEncoding::Packed2, &[])
}

/// Packs run dir `run_dir` into the blob `out`, every matrix stored as `default` except those
/// `overrides` names (`--ternary-for`; see [`encodings`]). The file appears whole or not at all
/// ([`crate::atomic`]); an existing `out` that is not a regular file, or that is one of the
/// run's files ([`crate::rundir::RUN_FILES`]), is refused first.
pub fn pack_with(
    run_dir: &Path,
    out: &Path,
    default: TernaryEncoding,
    overrides: &[(usize, TernaryEncoding)],
) -> Result<Vec<u8>> {
    let inputs: Vec<_> = crate::rundir::RUN_FILES
        .iter()
        .map(|f| run_dir.join(f))
        .collect();
    let inputs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    atomic::check_output(out, &inputs)?;
    let run = Run::load(run_dir)?;
    let params = model_params(&run)?;
    let ternary = encodings(&params.config, default, overrides)?;
    let blob = params
        .to_blob_with(ternary)
        .map_err(|e| anyhow::anyhow!("cannot write the blob: {e}"))?;
    atomic::write_atomically(out, &inputs, &blob)?;
    Ok(blob)
}

/// Parses `2bit` or `base3` (`--ternary`).
pub fn parse_encoding(s: &str) -> std::result::Result<TernaryEncoding, String> {
    [TernaryEncoding::Packed2, TernaryEncoding::Base3]
        .into_iter()
        .find(|e| e.name() == s)
        .ok_or_else(|| format!("`{s}` is not an encoding: use 2bit or base3"))
}

/// Parses `MATRIX=ENCODING` (`--ternary-for`), `MATRIX` a layer matrix's run-dir name
/// (`wq` … `w_down`); returns its index among the layer's matrices.
pub fn parse_override(s: &str) -> std::result::Result<(usize, TernaryEncoding), String> {
    let (name, enc) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected MATRIX=ENCODING, e.g. w_down=2bit"))?;
    let names = matrix_names();
    let k = names.iter().position(|n| *n == name).ok_or_else(|| {
        format!(
            "`{name}` is not a layer matrix: one of {}",
            names.join(", ")
        )
    })?;
    Ok((k, parse_encoding(enc)?))
}

/// The run-dir names of a layer's ternary matrices, in schema order (`wq` … `w_down`, `w_gate`).
fn matrix_names() -> Vec<&'static str> {
    schema::LAYER
        .iter()
        .filter(|t| matches!(t.source, Source::Ternary { .. }))
        .filter_map(|t| t.trainer_name())
        .collect()
}

/// Every matrix `default`, then the overrides in order; an override of a matrix that a model
/// with config `c` does not hold (`w_gate` without a gated FFN) is refused.
pub fn encodings(
    c: &Config,
    default: TernaryEncoding,
    overrides: &[(usize, TernaryEncoding)],
) -> Result<MatrixEncodings> {
    let mut e = [default; schema::MATRICES_PER_LAYER];
    let held = schema::matrices_per_layer(c);
    for (k, enc) in overrides {
        anyhow::ensure!(
            *k < held,
            "--ternary-for {}: the model has no such matrix (w_gate exists only in a gated FFN)",
            matrix_names().get(*k).copied().unwrap_or("?")
        );
        if let Some(slot) = e.get_mut(*k) {
            *slot = *enc;
        }
    }
    Ok(e)
}
