//! Blob format v1: constants, the postcard header types and the canonical section layout.
//!
//! This file is the single definition of the byte layout shared by the reader
//! ([`Model::from_bytes`](crate::Model::from_bytes)) and the writer (feature `writer`).
//! `FORMAT.md` describes the same layout in prose and tables.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::fixed::Dyadic;

/// The first 8 bytes of every blob.
pub const MAGIC: [u8; 8] = *b"BITNETMC";
/// Major format version this runtime reads and writes. Blobs with another major are refused.
pub const VERSION_MAJOR: u16 = 1;
/// Minor format version written. Readers accept any minor of their major.
pub const VERSION_MINOR: u16 = 0;
/// Size of the fixed little-endian prefix before the postcard header.
pub const PREFIX_LEN: usize = 32;
/// The data region starts at a multiple of this (blob offset).
pub const DATA_ALIGN: usize = 64;
/// Every section starts at a multiple of this (relative to the data region).
pub const SECTION_ALIGN: usize = 16;
/// Ternary rows are padded to a multiple of this many bytes (64 weights).
pub const TERNARY_ROW_ALIGN: usize = 16;
/// Int8 embedding rows are padded to a multiple of this many bytes.
pub const INT8_ROW_ALIGN: usize = 16;
/// Matrices per layer, in the order of [`LayerScales`](TensorKind::LayerScales):
/// `wq, wk, wv, wo, w_up, w_down`.
pub const MATRICES_PER_LAYER: usize = 6;

/// Fractional bits of the norm gains (`i32`, Q15.16): `g_q = round(g · 2^16)`.
pub const GAIN_FRAC_BITS: u32 = 16;
/// Fractional bits of the RoPE table (`i32`, Q1.30): `round(cos(t·θ_i) · 2^30)`.
pub const ROPE_FRAC_BITS: u32 = 30;
/// Fractional bits of the residual stream inside a session (`i64`, Q31.32).
pub const RESID_FRAC_BITS: u32 = 32;
/// Fractional bits of the logits returned by `forward` (`i32`): one unit is `2^-16` nats.
pub const LOGIT_FRAC_BITS: u32 = 16;

/// Largest supported `vocab_size` (token ids are `u16`).
pub const MAX_VOCAB: u32 = 65535;
/// Largest supported `d_model`, `ffn_dim` (keeps `|Σ x·w| ≤ 127·2^15 < 2^22`).
pub const MAX_WIDTH: u32 = 1 << 15;
/// Largest supported `ctx_len`.
pub const MAX_CTX: u32 = 1 << 15;
/// Largest supported `n_layers`.
pub const MAX_LAYERS: u32 = 1024;
/// Longest metadata string the header may carry.
pub const MAX_METADATA: usize = 1024;

/// Model dimensions (the blob header's `config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Number of tokens `V`.
    pub vocab_size: u32,
    /// Residual width `d`.
    pub d_model: u32,
    /// Number of blocks `L`.
    pub n_layers: u32,
    /// Query heads `H`.
    pub n_heads: u32,
    /// Key/value heads `Hkv` (`H % Hkv == 0`).
    pub n_kv_heads: u32,
    /// Feed-forward hidden width `F`.
    pub ffn_dim: u32,
    /// Longest context `T` (RoPE table length).
    pub ctx_len: u32,
    /// RoPE base (informational: the table in the blob is what the runtime uses).
    pub rope_theta: u32,
}

impl Config {
    /// `d_model / n_heads`.
    pub const fn head_dim(&self) -> u32 {
        match self.d_model.checked_div(self.n_heads) {
            Some(v) => v,
            None => 0,
        }
    }

    /// Width of the key/value projections, `n_kv_heads · head_dim`.
    pub const fn kv_dim(&self) -> u32 {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks every dimension against the runtime's limits.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        if c.vocab_size == 0
            || c.d_model == 0
            || c.n_layers == 0
            || c.n_heads == 0
            || c.n_kv_heads == 0
            || c.ffn_dim == 0
            || c.ctx_len == 0
        {
            return Err(ConfigError::Zero);
        }
        if c.vocab_size > MAX_VOCAB
            || c.d_model > MAX_WIDTH
            || c.ffn_dim > MAX_WIDTH
            || c.ctx_len > MAX_CTX
            || c.n_layers > MAX_LAYERS
        {
            return Err(ConfigError::TooLarge);
        }
        if c.d_model % c.n_heads != 0 || c.head_dim() % 2 != 0 {
            return Err(ConfigError::HeadDim);
        }
        if c.n_heads % c.n_kv_heads != 0 {
            return Err(ConfigError::KvHeads);
        }
        Ok(())
    }
}

/// The first postcard item of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderInfo<'a> {
    /// Dimensions.
    pub config: Config,
    /// `norm_eps` of every RMSNorm as a real number (normalized [`Dyadic`]).
    pub norm_eps: Dyadic,
    /// Length of the `vocab_bytes` section.
    pub vocab_bytes_len: u32,
    /// The trainer's quantized validation loss in micro-nats per token, if known.
    pub val_loss_micro_nats: Option<u64>,
    /// Free-form UTF-8 text (run name, corpus, date), at most [`MAX_METADATA`] bytes.
    pub metadata: &'a str,
    /// Number of [`TensorEntry`] items that follow.
    pub n_tensors: u32,
}

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorKind {
    /// `u32[V + 1]`: start of each token in `vocab_bytes`.
    VocabOffsets,
    /// The concatenated token byte strings.
    VocabBytes,
    /// `i8[V][row_bytes]`: Q3 embedding (tied LM head).
    Embedding,
    /// `Dyadic[V]`: the Q3 row scales `e_v`.
    EmbeddingScales,
    /// `i32[T][head_dim/2][2]`: `(cos, sin)` of `t·θ_i`, Q1.30.
    Rope,
    /// `i32[d]`: final RMSNorm gain, Q15.16.
    FinalNorm,
    /// `Dyadic[6]`: `γ` of `wq, wk, wv, wo, w_up, w_down` of one layer.
    LayerScales,
    /// `i32[d]`: attention RMSNorm gain.
    AttnNorm,
    /// Ternary `[d][d]`.
    Wq,
    /// Ternary `[Hkv·hd][d]`.
    Wk,
    /// Ternary `[Hkv·hd][d]`.
    Wv,
    /// `i32[d]`: attention sub-norm gain.
    AttnSubNorm,
    /// Ternary `[d][d]`.
    Wo,
    /// `i32[d]`: FFN RMSNorm gain.
    FfnNorm,
    /// Ternary `[F][d]`.
    WUp,
    /// `i32[F]`: FFN sub-norm gain.
    FfnSubNorm,
    /// Ternary `[d][F]`.
    WDown,
}

/// How the elements of a section are stored (all little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElemFormat {
    /// `u8` bytes.
    Bytes,
    /// `u32`.
    U32,
    /// `i8` rows of `row_bytes` bytes (zero padding after `cols`).
    Int8Rows {
        /// Stored bytes per row.
        row_bytes: u32,
    },
    /// [`Dyadic`]: `u32 mant`, `i32 exp` (8 bytes).
    Dyadic,
    /// Fixed-point `i32` with `frac_bits` fractional bits.
    FixedI32 {
        /// Fractional bits.
        frac_bits: u8,
    },
    /// Ternary, 2 bits per weight, 4 per byte, rows of `row_bytes` bytes (see `FORMAT.md`).
    Ternary2 {
        /// Stored bytes per row.
        row_bytes: u32,
    },
}

/// One entry of the header's tensor table. Offsets are relative to the data region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// What it is.
    pub kind: TensorKind,
    /// Layer index (0 for global sections).
    pub layer: u16,
    /// Logical rows (1 for vectors).
    pub rows: u32,
    /// Logical columns (elements per row, without padding).
    pub cols: u32,
    /// Element storage.
    pub format: ElemFormat,
    /// Byte offset in the data region (a multiple of [`SECTION_ALIGN`]).
    pub offset: u32,
    /// Byte length.
    pub len: u32,
}

/// Global sections before the layers, in order.
const GLOBAL_KINDS: [TensorKind; 6] = [
    TensorKind::VocabOffsets,
    TensorKind::VocabBytes,
    TensorKind::Embedding,
    TensorKind::EmbeddingScales,
    TensorKind::Rope,
    TensorKind::FinalNorm,
];
/// Sections of one layer, in order.
const LAYER_KINDS: [TensorKind; 11] = [
    TensorKind::LayerScales,
    TensorKind::AttnNorm,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::AttnSubNorm,
    TensorKind::Wo,
    TensorKind::FfnNorm,
    TensorKind::WUp,
    TensorKind::FfnSubNorm,
    TensorKind::WDown,
];

/// `n` rounded up to a multiple of `a` (a power of two), `None` on overflow.
pub(crate) const fn round_up(n: usize, a: usize) -> Option<usize> {
    match n.checked_add(a - 1) {
        Some(v) => Some(v & !(a - 1)),
        None => None,
    }
}

/// Stored bytes of a ternary row of `cols` weights.
pub const fn ternary_row_bytes(cols: u32) -> usize {
    let b = (cols as usize).div_ceil(4);
    b.div_ceil(TERNARY_ROW_ALIGN) * TERNARY_ROW_ALIGN
}

/// Stored bytes of an int8 row of `cols` values.
pub const fn int8_row_bytes(cols: u32) -> usize {
    (cols as usize).div_ceil(INT8_ROW_ALIGN) * INT8_ROW_ALIGN
}

/// The canonical placement of every section, computed from the config alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    config: Config,
    vocab_bytes_len: u32,
    /// Offsets of the global sections (data-relative), in `GLOBAL_KINDS` order.
    global: [u32; 6],
    /// Offsets of the layer sections relative to the layer's start, in `LAYER_KINDS` order.
    layer: [u32; 11],
    /// Start of layer 0.
    layers_start: u32,
    /// Bytes from one layer's start to the next.
    layer_stride: u32,
    /// Length of the data region.
    total: u32,
}

impl Layout {
    /// Computes the layout; `Err` when the config is invalid or the blob would exceed 4 GiB.
    pub fn new(config: Config, vocab_bytes_len: u32) -> Result<Layout, ConfigError> {
        config.validate()?;
        let mut l = Layout {
            config,
            vocab_bytes_len,
            global: [0; 6],
            layer: [0; 11],
            layers_start: 0,
            layer_stride: 0,
            total: 0,
        };
        let mut pos = 0usize;
        for (i, kind) in GLOBAL_KINDS.iter().enumerate() {
            pos = round_up(pos, SECTION_ALIGN).ok_or(ConfigError::Size)?;
            l.global[i] = u32::try_from(pos).map_err(|_| ConfigError::Size)?;
            pos = pos.checked_add(l.len_of(*kind)?).ok_or(ConfigError::Size)?;
        }
        let layers_start = round_up(pos, SECTION_ALIGN).ok_or(ConfigError::Size)?;
        let mut rel = 0usize;
        for (i, kind) in LAYER_KINDS.iter().enumerate() {
            rel = round_up(rel, SECTION_ALIGN).ok_or(ConfigError::Size)?;
            l.layer[i] = u32::try_from(rel).map_err(|_| ConfigError::Size)?;
            rel = rel.checked_add(l.len_of(*kind)?).ok_or(ConfigError::Size)?;
        }
        let stride = round_up(rel, SECTION_ALIGN).ok_or(ConfigError::Size)?;
        let total = stride
            .checked_mul(config.n_layers as usize)
            .and_then(|v| v.checked_add(layers_start))
            .ok_or(ConfigError::Size)?;
        // The whole blob (prefix + header + data) must stay below 4 GiB: leave 1 MiB of room.
        if total > (u32::MAX as usize) - (1 << 20) {
            return Err(ConfigError::Size);
        }
        l.layers_start = layers_start as u32;
        l.layer_stride = stride as u32;
        l.total = total as u32;
        Ok(l)
    }

    /// The config this layout was made for.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Length of the data region in bytes.
    pub const fn data_len(&self) -> usize {
        self.total as usize
    }

    /// Number of entries in the tensor table.
    pub const fn n_tensors(&self) -> usize {
        GLOBAL_KINDS.len() + LAYER_KINDS.len() * self.config.n_layers as usize
    }

    /// `(rows, cols, format)` of a section kind.
    fn shape_of(&self, kind: TensorKind) -> (u32, u32, ElemFormat) {
        let c = &self.config;
        let (d, f) = (c.d_model, c.ffn_dim);
        let tern = |rows: u32, cols: u32| {
            let rb = ternary_row_bytes(cols) as u32;
            (rows, cols, ElemFormat::Ternary2 { row_bytes: rb })
        };
        let gain = |n: u32| {
            (
                1,
                n,
                ElemFormat::FixedI32 {
                    frac_bits: GAIN_FRAC_BITS as u8,
                },
            )
        };
        match kind {
            TensorKind::VocabOffsets => (1, c.vocab_size + 1, ElemFormat::U32),
            TensorKind::VocabBytes => (1, self.vocab_bytes_len, ElemFormat::Bytes),
            TensorKind::Embedding => (
                c.vocab_size,
                d,
                ElemFormat::Int8Rows {
                    row_bytes: int8_row_bytes(d) as u32,
                },
            ),
            TensorKind::EmbeddingScales => (1, c.vocab_size, ElemFormat::Dyadic),
            TensorKind::Rope => (
                c.ctx_len,
                c.head_dim(),
                ElemFormat::FixedI32 {
                    frac_bits: ROPE_FRAC_BITS as u8,
                },
            ),
            TensorKind::FinalNorm | TensorKind::AttnNorm | TensorKind::AttnSubNorm => gain(d),
            TensorKind::FfnNorm => gain(d),
            TensorKind::FfnSubNorm => gain(f),
            TensorKind::LayerScales => (1, MATRICES_PER_LAYER as u32, ElemFormat::Dyadic),
            TensorKind::Wq | TensorKind::Wo => tern(d, d),
            TensorKind::Wk | TensorKind::Wv => tern(c.kv_dim(), d),
            TensorKind::WUp => tern(f, d),
            TensorKind::WDown => tern(d, f),
        }
    }

    /// Byte length of a section kind.
    fn len_of(&self, kind: TensorKind) -> Result<usize, ConfigError> {
        let (rows, cols, format) = self.shape_of(kind);
        let (rows, cols) = (rows as usize, cols as usize);
        let per_row = match format {
            ElemFormat::Bytes => Some(cols),
            ElemFormat::U32 | ElemFormat::FixedI32 { .. } => cols.checked_mul(4),
            ElemFormat::Dyadic => cols.checked_mul(8),
            ElemFormat::Int8Rows { row_bytes } | ElemFormat::Ternary2 { row_bytes } => {
                Some(row_bytes as usize)
            }
        };
        per_row
            .and_then(|r| r.checked_mul(rows))
            .ok_or(ConfigError::Size)
    }

    /// Entry `i` of the canonical tensor table (`None` past the end).
    pub fn entry(&self, i: usize) -> Option<TensorEntry> {
        let (kind, layer, offset) = if i < GLOBAL_KINDS.len() {
            (*GLOBAL_KINDS.get(i)?, 0u16, *self.global.get(i)?)
        } else {
            let j = i - GLOBAL_KINDS.len();
            let layer = j / LAYER_KINDS.len();
            if layer >= self.config.n_layers as usize {
                return None;
            }
            let k = j % LAYER_KINDS.len();
            let off = self.layers_start + self.layer_stride * layer as u32 + *self.layer.get(k)?;
            (*LAYER_KINDS.get(k)?, layer as u16, off)
        };
        let (rows, cols, format) = self.shape_of(kind);
        let len = self.len_of(kind).ok()? as u32;
        Some(TensorEntry {
            kind,
            layer,
            rows,
            cols,
            format,
            offset,
            len,
        })
    }

    /// The canonical entry of section `kind` of layer `l`.
    pub(crate) fn entry_for_layer(&self, l: usize, kind: TensorKind) -> Option<TensorEntry> {
        let k = LAYER_KINDS.iter().position(|x| *x == kind)?;
        self.entry(GLOBAL_KINDS.len() + l * LAYER_KINDS.len() + k)
    }

    /// Byte range of a global section in the data region.
    pub(crate) fn global_range(&self, kind: TensorKind) -> core::ops::Range<usize> {
        let i = GLOBAL_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        let start = self.global[i] as usize;
        start..start + self.len_of(kind).unwrap_or(0)
    }

    /// Byte range of all layers' sections (and the padding between them) in the data region.
    pub(crate) fn layers_range(&self) -> core::ops::Range<usize> {
        let start = self.layers_start as usize;
        let len = self.layer_stride as usize * self.config.n_layers as usize;
        start..start + len
    }

    /// Byte range of a section of layer `l` in the data region.
    pub(crate) fn layer_range(&self, l: usize, kind: TensorKind) -> core::ops::Range<usize> {
        let i = LAYER_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        let start =
            self.layers_start as usize + self.layer_stride as usize * l + self.layer[i] as usize;
        start..start + self.len_of(kind).unwrap_or(0)
    }
}
