//! Blob format v4 (and v3, v2, v1, which it extends): constants, limits, the config and the
//! postcard header types.
//!
//! Which sections a blob holds is declared in [`schema`](crate::schema); where they lie is
//! [`Layout`](crate::Layout). `FORMAT.md` describes the same format in prose and tables.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::fixed::Dyadic;

/// The first 8 bytes of every blob.
pub const MAGIC: [u8; 8] = *b"BITNETMC";
/// Newest major format version this runtime reads and writes: v2 adds the base-3 ternary
/// encoding ([`ElemFormat::Ternary5`]), v3 the gated FFN ([`FLAG_FFN_GATED`] and a
/// [`TensorKind::WGate`] section per block), v4 the byte-level BPE tokenizer ([`FLAG_BPE`] and
/// a [`TokenizerInfo`] after the tensor table). The writer writes the oldest version that
/// holds the blob: v4 for a BPE model, else v3 for a gated FFN, else v1 when every matrix is
/// 2-bit (such a blob is a valid v1 blob, so older readers load it), else v2.
pub const VERSION_MAJOR: u16 = 4;
/// Oldest major version this runtime reads (v1: every ternary matrix 2-bit).
pub const VERSION_MAJOR_MIN: u16 = 1;
/// Minor format version written. Readers accept any minor of their major.
pub const VERSION_MINOR: u16 = 0;
/// Prefix flag (format v3): every block has a gated FFN, `relu²(W_gate·h) ⊙ W_up·h`
/// ([`Config::ffn_gated`]).
pub const FLAG_FFN_GATED: u32 = 1;
/// Prefix flag (format v4): the vocabulary is byte-level BPE, and a [`TokenizerInfo`] with its
/// merge table follows the tensor table (`FORMAT.md` §8). No other flag is defined; a reader
/// refuses any other bit.
pub const FLAG_BPE: u32 = 2;
/// The prefix flags format `major` defines: [`FLAG_FFN_GATED`] from v3, [`FLAG_BPE`] from v4,
/// none before.
pub const fn known_flags(major: u16) -> u32 {
    match major {
        0..=2 => 0,
        3 => FLAG_FFN_GATED,
        _ => FLAG_FFN_GATED | FLAG_BPE,
    }
}
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

/// Fractional bits of the norm gains (`i32`, Q15.16): `g_q = round(g · 2^16)`.
pub const GAIN_FRAC_BITS: u32 = 16;
/// Fractional bits of the RoPE table (`i32`, Q1.30): `round(cos(t·θ_i) · 2^30)`.
pub const ROPE_FRAC_BITS: u32 = 30;
/// Fractional bits of the residual stream inside a session (`i64`, Q31.32).
pub const RESID_FRAC_BITS: u32 = 32;
/// Fractional bits of the logits returned by `forward` (`i32`): one unit is `2^-16` nats.
pub const LOGIT_FRAC_BITS: u32 = 16;

/// Token ids [`Model::from_bytes`](crate::Model::from_bytes) sorts at a time in its vocabulary
/// duplicate check (2 KiB of stack; [`Model::from_bytes_in`](crate::Model::from_bytes_in) takes
/// the caller's memory instead).
pub const VOCAB_CHECK_CHUNK: usize = 1024;

/// Largest supported `vocab_size` (token ids are `u16`).
pub const MAX_VOCAB: u32 = 65535;

/// Byte-level BPE (format v4, FORMAT.md §8): tokens `0..256` are the bytes; merge `i` makes
/// token `BYTE_TOKENS + i`.
pub const BYTE_TOKENS: usize = 256;
/// Longest BPE chunk in bytes. Merges never cross a chunk, so no reachable token is longer;
/// the loader refuses longer tokens (`TokenizerError::TooLong`).
pub const CHUNK_MAX: usize = 64;
/// Most merges a blob may hold: `MAX_VOCAB − 256` (token ids are `u16`).
pub const MAX_MERGES: usize = MAX_VOCAB as usize - BYTE_TOKENS;
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
    /// Whether every block's FFN is gated, `relu²(W_gate·h) ⊙ W_up·h`, with one more ternary
    /// matrix [`TensorKind::WGate`] `[F][d]` (format v3). Not a field of the postcard header:
    /// it is the prefix's [`FLAG_FFN_GATED`], so the header of v1/v2 blobs is unchanged.
    #[serde(skip)]
    pub ffn_gated: bool,
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

    /// Checks every dimension against the runtime's limits (`FORMAT.md`, "Limits"): the one
    /// validation of a model's shape, which the trainer and `tools` call too. The error names
    /// the dimension, its value and the limit it breaks.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        let dims = [
            (Dim::VocabSize, c.vocab_size, MAX_VOCAB),
            (Dim::DModel, c.d_model, MAX_WIDTH),
            (Dim::NLayers, c.n_layers, MAX_LAYERS),
            (Dim::NHeads, c.n_heads, u32::MAX),
            (Dim::NKvHeads, c.n_kv_heads, u32::MAX),
            (Dim::FfnDim, c.ffn_dim, MAX_WIDTH),
            (Dim::CtxLen, c.ctx_len, MAX_CTX),
        ];
        let mut i = 0;
        while i < dims.len() {
            let (dim, value, max) = dims[i];
            if value == 0 {
                return Err(ConfigError::Zero(dim));
            }
            if value > max {
                return Err(ConfigError::TooLarge { dim, value, max });
            }
            i += 1;
        }
        if !c.d_model.is_multiple_of(c.n_heads) || !c.head_dim().is_multiple_of(2) {
            return Err(ConfigError::HeadDim {
                d_model: c.d_model,
                n_heads: c.n_heads,
            });
        }
        if !c.n_heads.is_multiple_of(c.n_kv_heads) {
            return Err(ConfigError::KvHeads {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
            });
        }
        Ok(())
    }
}

/// A dimension of [`Config`], named as in `config.json` and the blob header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dim {
    /// `vocab_size`.
    VocabSize,
    /// `d_model`.
    DModel,
    /// `n_layers`.
    NLayers,
    /// `n_heads`.
    NHeads,
    /// `n_kv_heads`.
    NKvHeads,
    /// `ffn_dim`.
    FfnDim,
    /// `ctx_len`.
    CtxLen,
}

impl Dim {
    /// The field's name (`d_model`, `ctx_len`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Dim::VocabSize => "vocab_size",
            Dim::DModel => "d_model",
            Dim::NLayers => "n_layers",
            Dim::NHeads => "n_heads",
            Dim::NKvHeads => "n_kv_heads",
            Dim::FfnDim => "ffn_dim",
            Dim::CtxLen => "ctx_len",
        }
    }
}

/// Which check of a model's shape failed, with the values that broke it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// A dimension is zero.
    Zero(Dim),
    /// A dimension exceeds its maximum (`FORMAT.md`, "Limits").
    TooLarge {
        /// Which one.
        dim: Dim,
        /// Its value.
        value: u32,
        /// The largest allowed.
        max: u32,
    },
    /// `d_model` is not `n_heads · head_dim` with an even `head_dim`.
    HeadDim {
        /// `d_model`.
        d_model: u32,
        /// `n_heads`.
        n_heads: u32,
    },
    /// `n_heads` is not a multiple of `n_kv_heads`.
    KvHeads {
        /// `n_heads`.
        n_heads: u32,
        /// `n_kv_heads`.
        n_kv_heads: u32,
    },
    /// `norm_eps` is zero or outside the storable exponent range.
    NormEps,
    /// The blob would exceed 4 GiB.
    Size,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::Zero(dim) => write!(f, "{} is 0; it must be at least 1", dim.name()),
            ConfigError::TooLarge { dim, value, max } => write!(
                f,
                "{} {value} is more than {max} (the blob format's limit, runtime/FORMAT.md)",
                dim.name()
            ),
            ConfigError::HeadDim { d_model, n_heads } => write!(
                f,
                "d_model ({d_model}) must be n_heads ({n_heads}) times an even head_dim \
                 (RoPE rotates pairs)"
            ),
            ConfigError::KvHeads {
                n_heads,
                n_kv_heads,
            } => write!(
                f,
                "n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})"
            ),
            ConfigError::NormEps => f.write_str("norm_eps is zero or out of range"),
            ConfigError::Size => f.write_str("the blob would exceed 4 GiB"),
        }
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

/// The header item after the tensor table of a blob with [`FLAG_BPE`] (format v4): the
/// byte-level BPE tokenizer (`FORMAT.md` §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo<'a> {
    /// The merge table: merge `i` is `left` (`u16` LE) then `right` (`u16` LE), 4 bytes, and
    /// makes token `256 + i` ([`Merges`](crate::bpe::Merges)).
    pub merges: &'a [u8],
    /// Characters per 1000 tokens of the trainer's validation split as this tokenizer encodes
    /// it, if known (informational: `tools inspect` shows it).
    pub chars_per_kilotoken: Option<u32>,
}

/// What a section holds. Shapes, encodings and order are declared in
/// [`schema`](crate::schema); new kinds are appended (the blob stores the variant index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorKind {
    /// Start of each token in the vocabulary bytes.
    VocabOffsets,
    /// The concatenated token byte strings.
    VocabBytes,
    /// The int8 token embedding (Q3), also the tied LM head.
    Embedding,
    /// The embedding's row scales `e_v`.
    EmbeddingScales,
    /// `(cos, sin)` of `t·θ_i`.
    Rope,
    /// Final RMSNorm gain.
    FinalNorm,
    /// The `γ` of the layer's ternary matrices.
    LayerScales,
    /// Attention RMSNorm gain.
    AttnNorm,
    /// Query projection.
    Wq,
    /// Key projection.
    Wk,
    /// Value projection.
    Wv,
    /// Attention sub-norm gain.
    AttnSubNorm,
    /// Attention output projection.
    Wo,
    /// FFN RMSNorm gain.
    FfnNorm,
    /// FFN up projection.
    WUp,
    /// FFN sub-norm gain.
    FfnSubNorm,
    /// FFN down projection.
    WDown,
    /// FFN gate projection (gated FFN only, format v3).
    WGate,
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
    /// Ternary, base 3: 5 weights per byte (1.6 bits per weight), rows of `row_bytes` bytes
    /// (format v2; see `FORMAT.md`).
    Ternary5 {
        /// Stored bytes per row, `ceil(cols / 5)`.
        row_bytes: u32,
    },
}

/// How a ternary matrix is stored: chosen per matrix kind when a blob is written (format v2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TernaryEncoding {
    /// [`ElemFormat::Ternary2`]: 2 bits per weight, rows padded to 16 bytes (64 weights).
    #[default]
    Packed2,
    /// [`ElemFormat::Ternary5`]: 5 weights per byte in base 3, rows unpadded.
    Base3,
}

impl TernaryEncoding {
    /// Stored bytes of a row of `cols` weights.
    pub const fn row_bytes(self, cols: u32) -> usize {
        match self {
            TernaryEncoding::Packed2 => ternary_row_bytes(cols),
            TernaryEncoding::Base3 => ternary5_row_bytes(cols),
        }
    }

    /// Weights per stored byte (the matrix input a kernel reads is `row_bytes` times this).
    pub const fn weights_per_byte(self) -> usize {
        match self {
            TernaryEncoding::Packed2 => 4,
            TernaryEncoding::Base3 => 5,
        }
    }

    /// The element format of a matrix with rows of `cols` weights.
    pub const fn format(self, cols: u32) -> ElemFormat {
        let row_bytes = self.row_bytes(cols) as u32;
        match self {
            TernaryEncoding::Packed2 => ElemFormat::Ternary2 { row_bytes },
            TernaryEncoding::Base3 => ElemFormat::Ternary5 { row_bytes },
        }
    }

    /// The encoding of a ternary element format, `None` for other formats.
    pub const fn of(format: ElemFormat) -> Option<TernaryEncoding> {
        match format {
            ElemFormat::Ternary2 { .. } => Some(TernaryEncoding::Packed2),
            ElemFormat::Ternary5 { .. } => Some(TernaryEncoding::Base3),
            _ => None,
        }
    }

    /// A short name: `2bit` or `base3` (what `tools pack --ternary` takes).
    pub const fn name(self) -> &'static str {
        match self {
            TernaryEncoding::Packed2 => "2bit",
            TernaryEncoding::Base3 => "base3",
        }
    }
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

/// Stored bytes of a base-3 ternary row of `cols` weights: `ceil(cols / 5)`, no padding.
pub const fn ternary5_row_bytes(cols: u32) -> usize {
    (cols as usize).div_ceil(5)
}

/// Stored bytes of an int8 row of `cols` values.
pub const fn int8_row_bytes(cols: u32) -> usize {
    (cols as usize).div_ceil(INT8_ROW_ALIGN) * INT8_ROW_ALIGN
}
