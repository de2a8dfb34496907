//! The blob writer (feature `writer`, uses `alloc`): integer model parameters in, blob bytes out.
//!
//! It takes only already-converted integers (`FORMAT.md`, "Fixed-point formats" says how
//! `tools pack` converts trained real values) and places them with the same [`Layout`] the
//! reader checks, then loads the result with [`Model::from_bytes`] before returning it.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::error::{ConfigError, LoadError};
use crate::fixed::Dyadic;
use crate::format::Config;
use crate::format::{
    round_up, ElemFormat, HeaderInfo, Layout, TensorKind, DATA_ALIGN, MAGIC, MAX_METADATA,
    PREFIX_LEN, ROPE_FRAC_BITS, VERSION_MAJOR, VERSION_MINOR,
};
use crate::kernels::encode_ternary;
use crate::model::{Model, CRC32};

/// A ternary matrix `[out][in]` (row-major) with its scale `γ`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TernaryParams {
    /// `out · in` weights, each `-1`, `0` or `1`.
    pub weights: Vec<i8>,
    /// `γ = max(mean|W|, 1e-5)` as a [`Dyadic`].
    pub gamma: Dyadic,
}

/// One block's parameters. Gains are Q15.16 (`round(g · 2^16)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// `[d]`.
    pub attn_norm: Vec<i32>,
    /// `[d][d]`.
    pub wq: TernaryParams,
    /// `[Hkv·hd][d]`.
    pub wk: TernaryParams,
    /// `[Hkv·hd][d]`.
    pub wv: TernaryParams,
    /// `[d]`.
    pub attn_sub_norm: Vec<i32>,
    /// `[d][d]`.
    pub wo: TernaryParams,
    /// `[d]`.
    pub ffn_norm: Vec<i32>,
    /// `[F][d]`.
    pub w_up: TernaryParams,
    /// `[F]`.
    pub ffn_sub_norm: Vec<i32>,
    /// `[d][F]`.
    pub w_down: TernaryParams,
}

/// Everything a blob holds, as integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelParams {
    /// Dimensions.
    pub config: Config,
    /// `norm_eps` as a [`Dyadic`].
    pub norm_eps: Dyadic,
    /// The trainer's quantized validation loss in micro-nats per token.
    pub val_loss_micro_nats: Option<u64>,
    /// Free-form text, at most 1024 bytes.
    pub metadata: String,
    /// `V` non-empty token byte strings.
    pub vocab: Vec<Vec<u8>>,
    /// `[V][d]` int8 (Q3: `round(E / e_v)`).
    pub embedding: Vec<i8>,
    /// `[V]` row scales `e_v`.
    pub embedding_scales: Vec<Dyadic>,
    /// `[T][hd/2][2]`: `(round(cos(t·θ_i)·2^30), round(sin(t·θ_i)·2^30))`.
    pub rope: Vec<i32>,
    /// `[d]` final norm gain, Q15.16.
    pub final_norm: Vec<i32>,
    /// `L` blocks.
    pub layers: Vec<LayerParams>,
}

/// Why parameters could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The config is invalid.
    Config(ConfigError),
    /// A vector or matrix has the wrong number of elements.
    Shape {
        /// Which parameter.
        what: &'static str,
        /// Elements expected.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A ternary weight outside `{-1, 0, 1}`.
    NotTernary {
        /// Which matrix.
        what: &'static str,
    },
    /// A value outside its allowed range (Dyadic exponent, RoPE entry, empty token, metadata).
    BadValue {
        /// Which parameter.
        what: &'static str,
    },
    /// The reader refused the result (a bug: please report).
    Reload(LoadError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Config(e) => write!(f, "invalid config: {e}"),
            WriteError::Shape {
                what,
                expected,
                got,
            } => write!(f, "{what}: expected {expected} elements, got {got}"),
            WriteError::NotTernary { what } => write!(f, "{what}: weight outside {{-1, 0, 1}}"),
            WriteError::BadValue { what } => write!(f, "{what}: value out of range"),
            WriteError::Reload(e) => write!(f, "written blob does not load: {e}"),
        }
    }
}

impl core::error::Error for WriteError {}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), WriteError> {
    if got == expected {
        Ok(())
    } else {
        Err(WriteError::Shape {
            what,
            expected,
            got,
        })
    }
}

fn put_dyadics(dst: &mut [u8], what: &'static str, v: &[Dyadic]) -> Result<(), WriteError> {
    for (c, d) in dst.chunks_exact_mut(8).zip(v) {
        if !d.is_storable() {
            return Err(WriteError::BadValue { what });
        }
        c[..4].copy_from_slice(&d.mant.to_le_bytes());
        c[4..].copy_from_slice(&d.exp.to_le_bytes());
    }
    Ok(())
}

fn put_gains(dst: &mut [u8], what: &'static str, g: &[i32], n: u32) -> Result<(), WriteError> {
    check_len(what, g.len(), n as usize)?;
    for (c, v) in dst.chunks_exact_mut(4).zip(g) {
        c.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

fn put_ternary(
    dst: &mut [u8],
    what: &'static str,
    m: &TernaryParams,
    rows: u32,
    cols: u32,
    row_bytes: u32,
) -> Result<(), WriteError> {
    let (rows, cols, rb) = (rows as usize, cols as usize, row_bytes as usize);
    check_len(what, m.weights.len(), rows * cols)?;
    for (r, row) in m.weights.chunks_exact(cols.max(1)).enumerate() {
        for (c, &w) in row.iter().enumerate() {
            if !(-1..=1).contains(&w) {
                return Err(WriteError::NotTernary { what });
            }
            dst[r * rb + c / 4] |= encode_ternary(w) << (2 * (c % 4));
        }
    }
    Ok(())
}

impl ModelParams {
    /// Serializes to a blob (format v1), checked by loading it back.
    pub fn to_blob(&self) -> Result<Vec<u8>, WriteError> {
        let c = self.config;
        c.validate().map_err(WriteError::Config)?;
        if self.metadata.len() > MAX_METADATA {
            return Err(WriteError::BadValue { what: "metadata" });
        }
        check_len("vocab", self.vocab.len(), c.vocab_size as usize)?;
        if self.vocab.iter().any(|t| t.is_empty()) {
            return Err(WriteError::BadValue { what: "vocab" });
        }
        if !self.norm_eps.is_storable() || self.norm_eps.mant == 0 {
            return Err(WriteError::BadValue { what: "norm_eps" });
        }
        check_len("layers", self.layers.len(), c.n_layers as usize)?;
        let vocab_bytes: Vec<u8> = self.vocab.concat();
        let vb_len =
            u32::try_from(vocab_bytes.len()).map_err(|_| WriteError::Config(ConfigError::Size))?;
        let layout = Layout::new(c, vb_len).map_err(WriteError::Config)?;

        let mut data = vec![0u8; layout.data_len()];
        let mut table = Vec::new();
        let mut i = 0;
        while let Some(e) = layout.entry(i) {
            i += 1;
            table.extend(postcard::to_allocvec(&e).map_err(|_| WriteError::BadValue {
                what: "tensor table",
            })?);
            let dst = &mut data[e.offset as usize..(e.offset + e.len) as usize];
            let layer = self.layers.get(e.layer as usize);
            let tern_rb = match e.format {
                ElemFormat::Ternary2 { row_bytes } => row_bytes,
                _ => 0,
            };
            let tern = |what, m: &TernaryParams, dst: &mut [u8]| {
                put_ternary(dst, what, m, e.rows, e.cols, tern_rb)
            };
            match (e.kind, layer) {
                (TensorKind::VocabOffsets, _) => {
                    let mut off = 0u32;
                    dst[..4].copy_from_slice(&0u32.to_le_bytes());
                    for (k, t) in self.vocab.iter().enumerate() {
                        off += t.len() as u32;
                        dst[4 * (k + 1)..4 * (k + 2)].copy_from_slice(&off.to_le_bytes());
                    }
                }
                (TensorKind::VocabBytes, _) => dst.copy_from_slice(&vocab_bytes),
                (TensorKind::Embedding, _) => {
                    let d = c.d_model as usize;
                    check_len("embedding", self.embedding.len(), c.vocab_size as usize * d)?;
                    let rb = match e.format {
                        ElemFormat::Int8Rows { row_bytes } => row_bytes as usize,
                        _ => d,
                    };
                    for (r, row) in self.embedding.chunks_exact(d).enumerate() {
                        for (k, v) in row.iter().enumerate() {
                            dst[r * rb + k] = *v as u8;
                        }
                    }
                }
                (TensorKind::EmbeddingScales, _) => {
                    let n = c.vocab_size as usize;
                    check_len("embedding_scales", self.embedding_scales.len(), n)?;
                    put_dyadics(dst, "embedding_scales", &self.embedding_scales)?;
                }
                (TensorKind::Rope, _) => {
                    let n = (c.ctx_len * c.head_dim()) as usize;
                    check_len("rope", self.rope.len(), n)?;
                    let one = 1i32 << ROPE_FRAC_BITS;
                    for (ch, v) in dst.chunks_exact_mut(4).zip(&self.rope) {
                        if !(-one..=one).contains(v) {
                            return Err(WriteError::BadValue { what: "rope" });
                        }
                        ch.copy_from_slice(&v.to_le_bytes());
                    }
                }
                (TensorKind::FinalNorm, _) => {
                    put_gains(dst, "final_norm", &self.final_norm, c.d_model)?
                }
                (_, None) => return Err(WriteError::Config(ConfigError::Size)),
                (kind, Some(lp)) => match kind {
                    TensorKind::LayerScales => {
                        let g = [
                            lp.wq.gamma,
                            lp.wk.gamma,
                            lp.wv.gamma,
                            lp.wo.gamma,
                            lp.w_up.gamma,
                            lp.w_down.gamma,
                        ];
                        put_dyadics(dst, "gamma", &g)?;
                    }
                    TensorKind::AttnNorm => put_gains(dst, "attn_norm", &lp.attn_norm, e.cols)?,
                    TensorKind::AttnSubNorm => {
                        put_gains(dst, "attn_sub_norm", &lp.attn_sub_norm, e.cols)?
                    }
                    TensorKind::FfnNorm => put_gains(dst, "ffn_norm", &lp.ffn_norm, e.cols)?,
                    TensorKind::FfnSubNorm => {
                        put_gains(dst, "ffn_sub_norm", &lp.ffn_sub_norm, e.cols)?
                    }
                    TensorKind::Wq => tern("wq", &lp.wq, dst)?,
                    TensorKind::Wk => tern("wk", &lp.wk, dst)?,
                    TensorKind::Wv => tern("wv", &lp.wv, dst)?,
                    TensorKind::Wo => tern("wo", &lp.wo, dst)?,
                    TensorKind::WUp => tern("w_up", &lp.w_up, dst)?,
                    TensorKind::WDown => tern("w_down", &lp.w_down, dst)?,
                    _ => {}
                },
            }
        }

        let info = HeaderInfo {
            config: c,
            norm_eps: self.norm_eps,
            vocab_bytes_len: vb_len,
            val_loss_micro_nats: self.val_loss_micro_nats,
            metadata: &self.metadata,
            n_tensors: layout.n_tensors() as u32,
        };
        let mut header =
            postcard::to_allocvec(&info).map_err(|_| WriteError::BadValue { what: "header" })?;
        header.extend(table);
        let header_end = PREFIX_LEN + header.len();
        let data_offset =
            round_up(header_end, DATA_ALIGN).ok_or(WriteError::Config(ConfigError::Size))?;
        let total = data_offset + data.len();
        if total > u32::MAX as usize {
            return Err(WriteError::Config(ConfigError::Size));
        }
        let mut blob = vec![0u8; total];
        blob[PREFIX_LEN..header_end].copy_from_slice(&header);
        blob[data_offset..].copy_from_slice(&data);
        let crc = CRC32.checksum(&blob[PREFIX_LEN..]);
        blob[..8].copy_from_slice(&MAGIC);
        blob[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        blob[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        blob[12..16].copy_from_slice(&(header.len() as u32).to_le_bytes());
        blob[16..20].copy_from_slice(&(data_offset as u32).to_le_bytes());
        blob[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        blob[24..28].copy_from_slice(&crc.to_le_bytes());
        Model::from_bytes(&blob).map_err(WriteError::Reload)?;
        Ok(blob)
    }
}
