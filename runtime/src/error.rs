//! Error types: small `Copy` enums with `Display` (and `defmt::Format` behind the `defmt` feature).

use core::fmt;

pub use crate::blob::format::{ConfigError, Dim};
use crate::blob::format::{TensorKind, VERSION_MAJOR, VERSION_MAJOR_MIN};

/// Why a blob was refused by [`Model::from_bytes`](crate::Model::from_bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LoadError {
    /// Shorter than the fixed 32-byte prefix.
    TooShort,
    /// The first 8 bytes are not the blob magic.
    BadMagic,
    /// A major version this runtime cannot read.
    UnsupportedVersion {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
    },
    /// Header / data lengths or offsets in the prefix disagree with the blob length.
    BadLength,
    /// The CRC-32 over header and data does not match.
    Checksum {
        /// CRC-32 stored in the prefix.
        stored: u32,
        /// CRC-32 computed over the bytes.
        computed: u32,
    },
    /// The postcard header could not be decoded, or has trailing bytes.
    BadHeader,
    /// The prefix's flags word holds a bit the blob's version does not define (v3 defines
    /// [`FLAG_FFN_GATED`](crate::format::FLAG_FFN_GATED), v4 also
    /// [`FLAG_BPE`](crate::format::FLAG_BPE); v1 and v2 none).
    UnknownFlags {
        /// The flags found.
        flags: u32,
    },
    /// The header lists another number of tensors than the canonical layout for its config.
    TensorCount {
        /// Tensors the header lists.
        found: u32,
        /// Tensors the config implies.
        expected: u32,
    },
    /// A dimension is zero, inconsistent or too large.
    BadConfig(ConfigError),
    /// Tensor-table entry `index` differs from the canonical layout for this config.
    BadTensorTable {
        /// Position in the table.
        index: u32,
    },
    /// A section holds a value outside its allowed set (see `FORMAT.md`, "Loader guarantees").
    BadSection {
        /// What kind of value was wrong.
        section: Section,
        /// The tensor the value belongs to (for [`Section::Padding`]: the section the padding
        /// precedes, or the last section for padding after it).
        kind: TensorKind,
        /// The tensor's layer (0 for global sections).
        layer: u16,
        /// Byte offset of the offending element inside the tensor's section (for
        /// [`Section::Padding`]: inside the data region; 0 for the padding before it).
        offset: u32,
    },
    /// The byte-level BPE tokenizer of a v4 blob ([`FLAG_BPE`](crate::format::FLAG_BPE)) is
    /// inconsistent or hostile.
    BadTokenizer(TokenizerError),
}

/// What is wrong with a blob's BPE merge table or its vocabulary (`FORMAT.md` §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TokenizerError {
    /// The merge table is not a whole number of 4-byte merges, or holds more than
    /// [`MAX_MERGES`](crate::format::MAX_MERGES).
    TableLength {
        /// Bytes of the table.
        bytes: u32,
    },
    /// `vocab_size` is not `256 + merges`.
    Count {
        /// The config's `vocab_size`.
        vocab_size: u32,
        /// Merges in the table.
        merges: u32,
    },
    /// Merge `index` names `token`, which is not made before it (`token ≥ 256 + index`): an id
    /// outside the vocabulary, the merge itself or a later one (which would allow a cycle).
    Reference {
        /// The merge.
        index: u32,
        /// The token it names.
        token: u16,
    },
    /// Token `token < 256` is not the single byte `token`.
    ByteToken {
        /// The token.
        token: u16,
    },
    /// Token `256 + index` is not the concatenation of merge `index`'s two tokens.
    Concat {
        /// The merge.
        index: u32,
    },
    /// Token `token` is longer than [`CHUNK_MAX`](crate::format::CHUNK_MAX) bytes: no text
    /// encodes to it.
    TooLong {
        /// The token.
        token: u16,
    },
}

/// Sections of the data region (for [`LoadError::BadSection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Section {
    /// `vocab_offsets` / `vocab_bytes`.
    Vocab,
    /// Padding bytes of the embedding rows.
    Embedding,
    /// A row-scale or matrix-scale [`Dyadic`](crate::Dyadic).
    Scale,
    /// The RoPE table.
    Rope,
    /// A ternary matrix (an invalid code `0b10` or a non-zero padding code).
    Ternary,
    /// Bytes between sections (must be zero).
    Padding,
}

/// Why a session could not be made or a step could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The working-memory buffer is smaller than [`session_bytes`](crate::session_bytes).
    BufferTooSmall {
        /// Bytes needed.
        needed: u32,
        /// Bytes given.
        given: u32,
    },
    /// A session context longer than the model's `ctx_len` (its RoPE table), or zero.
    BadContextLength {
        /// Requested.
        requested: u32,
        /// The model's `ctx_len`.
        max: u32,
    },
    /// All positions of the session are used; call `reset`.
    ContextFull,
    /// A token id `>= vocab_size`.
    TokenOutOfRange(u16),
    /// Generation needs at least one prompt token.
    EmptyPrompt,
    /// More tokens for one `forward_block` than the session's block holds.
    BlockTooLarge {
        /// Tokens given.
        tokens: u32,
        /// The session's block.
        block: u32,
    },
}

/// Why a text could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// No token starts with the text at byte `offset`.
    Unknown {
        /// Byte offset into the text.
        offset: u32,
        /// The byte found there.
        byte: u8,
        /// The UTF-8 character starting there, if the bytes decode as one.
        ch: Option<char>,
    },
    /// The output slice is full; `needed_at_least` tokens did not fit.
    OutputFull {
        /// Tokens written before it ran out.
        written: u32,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadError::TooShort => write!(f, "blob shorter than its 32-byte prefix"),
            LoadError::BadMagic => write!(f, "not a model blob (bad magic)"),
            LoadError::UnsupportedVersion { major, minor } => write!(
                f,
                "blob format {major}.{minor} is not supported (this runtime reads major versions {}-{}); repack the run with this version's `tools pack`",
                VERSION_MAJOR_MIN, VERSION_MAJOR
            ),
            LoadError::BadLength => write!(f, "blob lengths disagree (truncated or inflated)"),
            LoadError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            LoadError::BadHeader => write!(f, "header does not decode"),
            LoadError::UnknownFlags { flags } => write!(
                f,
                "prefix flags {flags:#010x} hold a bit this format version does not define \
                 (v3 defines {:#x}, the gated FFN; v4 also {:#x}, the BPE tokenizer; v1 and v2 none)",
                crate::blob::format::FLAG_FFN_GATED,
                crate::blob::format::FLAG_BPE
            ),
            LoadError::TensorCount { found, expected } => write!(
                f,
                "the tensor table lists {found} tensors, the config implies {expected}"
            ),
            LoadError::BadConfig(e) => write!(f, "bad model config: {e}"),
            LoadError::BadTensorTable { index } => {
                write!(f, "tensor table entry {index} differs from the canonical layout")
            }
            LoadError::BadSection {
                section: Section::Padding,
                kind,
                layer,
                offset,
            } => {
                write!(f, "non-zero padding at byte {offset} of the data region, next to ")?;
                write_tensor(f, kind, layer)
            }
            LoadError::BadSection {
                section,
                kind,
                layer,
                offset,
            } => {
                write!(f, "invalid value ({section:?}) in ")?;
                write_tensor(f, kind, layer)?;
                write!(f, " at byte {offset} of its section")
            }
            LoadError::BadTokenizer(e) => write!(f, "bad BPE tokenizer: {e}"),
        }
    }
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TokenizerError::TableLength { bytes } => write!(
                f,
                "the merge table has {bytes} bytes: not a whole number of 4-byte merges, or more than {} merges",
                crate::blob::format::MAX_MERGES
            ),
            TokenizerError::Count { vocab_size, merges } => write!(
                f,
                "vocab_size {vocab_size} is not 256 + {merges} merges"
            ),
            TokenizerError::Reference { index, token } => write!(
                f,
                "merge {index} names token {token}, which is not made before it (ids must be below {})",
                256 + index
            ),
            TokenizerError::ByteToken { token } => {
                write!(f, "token {token} is not the single byte {token:#04x}")
            }
            TokenizerError::Concat { index } => write!(
                f,
                "token {} is not the concatenation of merge {index}'s two tokens",
                256 + index
            ),
            TokenizerError::TooLong { token } => write!(
                f,
                "token {token} is longer than {} bytes, the longest chunk",
                crate::blob::format::CHUNK_MAX
            ),
        }
    }
}

/// `layer 5 w_gate` for a layer tensor, `embed` for a global one (the run-dir names of
/// `trainer/EXPORT.md`; the [`TensorKind`] name for sections without one).
fn write_tensor(f: &mut fmt::Formatter<'_>, kind: TensorKind, layer: u16) -> fmt::Result {
    if crate::blob::schema::LAYER.iter().any(|s| s.kind == kind) {
        write!(f, "layer {layer} ")?;
    }
    match crate::blob::schema::spec_of(kind).and_then(|s| s.trainer_name()) {
        Some(name) => write!(f, "{name}"),
        None => write!(f, "{kind:?}"),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BufferTooSmall { needed, given } => {
                write!(
                    f,
                    "working memory too small: {given} bytes given, {needed} needed"
                )
            }
            Error::BadContextLength { requested, max } => {
                write!(f, "context length {requested} not in 1..={max}")
            }
            Error::ContextFull => write!(f, "context is full"),
            Error::TokenOutOfRange(t) => write!(f, "token id {t} is outside the vocabulary"),
            Error::EmptyPrompt => write!(f, "the prompt has no tokens"),
            Error::BlockTooLarge { tokens, block } => write!(
                f,
                "{tokens} tokens in one forward pass, but the session runs blocks of at most {block}"
            ),
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::Unknown {
                offset,
                byte,
                ch: Some(c),
            } => write!(
                f,
                "character {c:?} (byte {byte:#04x}) at byte offset {offset} is not in the vocabulary"
            ),
            EncodeError::Unknown {
                offset,
                byte,
                ch: None,
            } => write!(f, "byte {byte:#04x} at offset {offset} is not in the vocabulary"),
            EncodeError::OutputFull { written } => {
                write!(f, "token buffer full after {written} tokens")
            }
        }
    }
}

impl core::error::Error for LoadError {}
impl core::error::Error for Error {}
impl core::error::Error for EncodeError {}
impl core::error::Error for TokenizerError {}
