//! The blob writer (feature `writer`, uses `alloc`): integer model parameters in, blob bytes out.
//!
//! It takes only already-converted integers (`FORMAT.md`, "Fixed-point formats" says how
//! `tools pack` converts trained real values) and places them with the same [`Layout`] the
//! reader checks, then loads the result with [`Model::from_bytes`] before returning it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::blob::format::{
    round_up, Config, ElemFormat, HeaderInfo, TensorEntry, TensorKind, TokenizerInfo, DATA_ALIGN,
    FLAG_BPE, MAGIC, MAX_METADATA, PREFIX_LEN, ROPE_FRAC_BITS, VERSION_MINOR,
};
use crate::blob::layout::Layout;
use crate::blob::model::{Model, CRC32};
use crate::blob::schema::{self, MatrixEncodings, Source};
use crate::error::{ConfigError, LoadError};
use crate::fixed::Dyadic;
use crate::kernels::{encode_base3, encode_ternary};

/// A ternary matrix `[out][in]` (row-major) with its scale `γ`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TernaryParams {
    /// `out · in` weights, each `-1`, `0` or `1`.
    pub weights: Vec<i8>,
    /// `γ = max(mean|W|, 1e-5)` as a [`Dyadic`].
    pub gamma: Dyadic,
}

/// The values of one section of a block, as the writer takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerTensor {
    /// Norm gains, Q15.16 (`round(g · 2^16)`).
    Gains(Vec<i32>),
    /// A ternary matrix with its scale.
    Ternary(TernaryParams),
}

/// One block's parameters: the values of every [`schema::layer_specs`] section that is not derived
/// (gains and ternary matrices), by kind. Order does not matter; each kind appears once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerParams {
    /// `(kind, values)` pairs.
    pub tensors: Vec<(TensorKind, LayerTensor)>,
}

impl LayerParams {
    /// The values of section `kind`.
    pub fn get(&self, kind: TensorKind) -> Option<&LayerTensor> {
        self.tensors
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| t)
    }

    /// Ternary matrix `kind`, if present.
    pub fn ternary(&self, kind: TensorKind) -> Option<&TernaryParams> {
        match self.get(kind) {
            Some(LayerTensor::Ternary(t)) => Some(t),
            _ => None,
        }
    }

    /// Gains `kind`, if present.
    pub fn gains(&self, kind: TensorKind) -> Option<&[i32]> {
        match self.get(kind) {
            Some(LayerTensor::Gains(g)) => Some(g),
            _ => None,
        }
    }
}

/// The byte-level BPE tokenizer of a model (format v4): its vocabulary must be canonical
/// (token `b < 256` the byte `b`, token `256 + i` the concatenation of merge `i`; the writer's
/// reload checks it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BpeParams {
    /// Merge `i` = `(left, right)`, making token `256 + i`.
    pub merges: Vec<(u16, u16)>,
    /// Characters per 1000 tokens of the trainer's validation split, if known.
    pub chars_per_kilotoken: Option<u32>,
}

impl BpeParams {
    /// The merge table as stored: 4 bytes per merge, `left` then `right`, little-endian
    /// (allocated fallibly).
    pub fn table(&self) -> Result<Vec<u8>, WriteError> {
        try_collect(
            self.merges.len().saturating_mul(4),
            self.merges
                .iter()
                .flat_map(|&(l, r)| l.to_le_bytes().into_iter().chain(r.to_le_bytes())),
        )
    }
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
    /// The BPE tokenizer of a byte-level model (written as format v4); `None`: the vocabulary
    /// is encoded by greedy longest match (characters).
    pub bpe: Option<BpeParams>,
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
    /// A section's values are missing, or of the wrong type.
    Missing {
        /// Which section.
        kind: TensorKind,
        /// Its layer.
        layer: u16,
    },
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
    /// The system refused a buffer (every large one is allocated fallibly).
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
    },
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
            WriteError::Missing { kind, layer } => {
                write!(f, "layer {layer}: no {kind:?} values of the schema's type")
            }
            WriteError::NotTernary { what } => write!(f, "{what}: weight outside {{-1, 0, 1}}"),
            WriteError::BadValue { what } => write!(f, "{what}: value out of range"),
            WriteError::Reload(e) => write!(f, "written blob does not load: {e}"),
            WriteError::OutOfMemory { bytes } => {
                write!(f, "the system refused a buffer of {bytes} bytes")
            }
        }
    }
}

impl core::error::Error for WriteError {}

/// A vector of `n` elements `fill`, allocated fallibly.
fn try_filled<T: Clone>(n: usize, fill: T) -> Result<Vec<T>, WriteError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| WriteError::OutOfMemory {
            bytes: n.saturating_mul(core::mem::size_of::<T>()),
        })?;
    v.resize(n, fill);
    Ok(v)
}

/// The items of `it` (at most `n` of them), collected into a vector allocated fallibly.
fn try_collect<T>(n: usize, it: impl Iterator<Item = T>) -> Result<Vec<T>, WriteError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| WriteError::OutOfMemory {
            bytes: n.saturating_mul(core::mem::size_of::<T>()),
        })?;
    v.extend(it.take(n));
    Ok(v)
}

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

/// Packs `m` into `dst` as `format` (`Ternary2`: weight `c` in bits `2·(c % 4)` of byte
/// `c / 4`; `Ternary5`: weight `c` is base-3 digit `c / rb` of byte `c % rb`).
fn put_ternary(
    dst: &mut [u8],
    what: &'static str,
    m: &TernaryParams,
    rows: u32,
    cols: u32,
    format: ElemFormat,
) -> Result<(), WriteError> {
    let (rows, cols) = (rows as usize, cols as usize);
    check_len(what, m.weights.len(), rows * cols)?;
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    for (r, row) in m.weights.chunks_exact(cols.max(1)).enumerate() {
        for (c, &w) in row.iter().enumerate() {
            if !(-1..=1).contains(&w) {
                return Err(WriteError::NotTernary { what });
            }
            match format {
                ElemFormat::Ternary2 { row_bytes } => {
                    dst[r * row_bytes as usize + c / 4] |= encode_ternary(w) << (2 * (c % 4))
                }
                ElemFormat::Ternary5 { row_bytes } => {
                    let rb = row_bytes as usize;
                    // Digits of one byte never exceed 242 in total: no overflow.
                    dst[r * rb + c % rb] += encode_base3(w) * POW3[c / rb];
                }
                _ => return Err(WriteError::BadValue { what }),
            }
        }
    }
    Ok(())
}

impl ModelParams {
    /// Serializes to a blob with every matrix 2-bit (format v1), checked by loading it back.
    pub fn to_blob(&self) -> Result<Vec<u8>, WriteError> {
        self.to_blob_with(MatrixEncodings::default())
    }

    /// Serializes to a blob with matrix `i` of every layer (schema order) stored as
    /// `ternary[i]`: format v4 for a BPE model, else v3 for a gated FFN, else v1 when all are
    /// 2-bit, else v2. Checked by loading it back.
    pub fn to_blob_with(&self, ternary: MatrixEncodings) -> Result<Vec<u8>, WriteError> {
        let layout = self.check(ternary)?;
        let mut data = try_filled(layout.data_len(), 0u8)?;
        let mut table = Vec::new();
        for e in layout.entries() {
            table.extend(postcard::to_allocvec(&e).map_err(|_| WriteError::BadValue {
                what: "tensor table",
            })?);
            let dst = &mut data[e.offset as usize..(e.offset + e.len) as usize];
            self.put_section(&e, dst)?;
        }
        let info = HeaderInfo {
            config: self.config,
            norm_eps: self.norm_eps,
            vocab_bytes_len: layout
                .global_entry(TensorKind::VocabBytes)
                .map_or(0, |e| e.len),
            val_loss_micro_nats: self.val_loss_micro_nats,
            metadata: &self.metadata,
            n_tensors: layout.n_tensors() as u32,
        };
        let mut header =
            postcard::to_allocvec(&info).map_err(|_| WriteError::BadValue { what: "header" })?;
        header.extend(table);
        let (major, flags) = match &self.bpe {
            None => (layout.format_major(), layout.flags()),
            Some(bpe) => {
                let merges = bpe.table()?;
                let item = TokenizerInfo {
                    merges: &merges,
                    chars_per_kilotoken: bpe.chars_per_kilotoken,
                };
                header.extend(
                    postcard::to_allocvec(&item)
                        .map_err(|_| WriteError::BadValue { what: "tokenizer" })?,
                );
                (4, layout.flags() | FLAG_BPE)
            }
        };
        let blob = assemble(major, flags, &header, &data)?;
        Model::from_bytes(&blob).map_err(WriteError::Reload)?;
        Ok(blob)
    }

    /// Checks the parts that are not sections (config, metadata, vocabulary, eps, layer
    /// count) and returns the layout.
    fn check(&self, ternary: MatrixEncodings) -> Result<Layout, WriteError> {
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
        let vb_len = self.vocab.iter().map(Vec::len).sum::<usize>();
        let vb_len = u32::try_from(vb_len).map_err(|_| WriteError::Config(ConfigError::Size))?;
        Layout::with_encodings(c, vb_len, ternary).map_err(WriteError::Config)
    }

    /// Writes the values of section `e` into `dst` (zeroed, `e.len` bytes).
    fn put_section(&self, e: &TensorEntry, dst: &mut [u8]) -> Result<(), WriteError> {
        let c = &self.config;
        let spec = schema::spec_of(e.kind).ok_or(WriteError::Missing {
            kind: e.kind,
            layer: e.layer,
        })?;
        let layer = || {
            self.layers
                .get(e.layer as usize)
                .ok_or(WriteError::Missing {
                    kind: e.kind,
                    layer: e.layer,
                })
        };
        let missing = WriteError::Missing {
            kind: e.kind,
            layer: e.layer,
        };
        match (spec.source, e.kind) {
            (Source::Vocab, TensorKind::VocabOffsets) => {
                let mut off = 0u32;
                for (k, t) in core::iter::once(&[][..])
                    .chain(self.vocab.iter().map(Vec::as_slice))
                    .enumerate()
                {
                    off += t.len() as u32;
                    dst[4 * k..4 * (k + 1)].copy_from_slice(&off.to_le_bytes());
                }
            }
            (Source::Vocab, _) => {
                let mut at = 0;
                for t in &self.vocab {
                    dst[at..at + t.len()].copy_from_slice(t);
                    at += t.len();
                }
            }
            (Source::Embedding { .. }, _) => {
                let d = c.d_model as usize;
                check_len("embedding", self.embedding.len(), c.vocab_size as usize * d)?;
                let rb = match e.format {
                    ElemFormat::Int8Rows { row_bytes } => row_bytes as usize,
                    _ => d,
                };
                for (row, out) in self.embedding.chunks_exact(d).zip(dst.chunks_exact_mut(rb)) {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = *v as u8;
                    }
                }
            }
            (Source::EmbeddingScales, _) => {
                let n = c.vocab_size as usize;
                check_len("embedding_scales", self.embedding_scales.len(), n)?;
                put_dyadics(dst, "embedding_scales", &self.embedding_scales)?;
            }
            (Source::Rope, _) => {
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
            (Source::Gain { name }, TensorKind::FinalNorm) => {
                put_gains(dst, name, &self.final_norm, e.cols)?
            }
            (Source::Gain { name }, kind) => {
                let g = layer()?.gains(kind).ok_or(missing)?;
                put_gains(dst, name, g, e.cols)?
            }
            (Source::Ternary { name }, kind) => {
                let m = layer()?.ternary(kind).ok_or(missing)?;
                put_ternary(dst, name, m, e.rows, e.cols, e.format)?
            }
            (Source::LayerScales, _) => {
                let lp = layer()?;
                let mut gammas = Vec::with_capacity(schema::MATRICES_PER_LAYER);
                for s in schema::layer_specs(c) {
                    if matches!(s.source, Source::Ternary { .. }) {
                        let m = lp.ternary(s.kind).ok_or(WriteError::Missing {
                            kind: s.kind,
                            layer: e.layer,
                        })?;
                        gammas.push(m.gamma);
                    }
                }
                put_dyadics(dst, "gamma", &gammas)?;
            }
        }
        Ok(())
    }
}

/// Prefix + header + zero padding to [`DATA_ALIGN`] + data, with the CRC.
fn assemble(major: u16, flags: u32, header: &[u8], data: &[u8]) -> Result<Vec<u8>, WriteError> {
    let too_big = WriteError::Config(ConfigError::Size);
    let header_end = PREFIX_LEN + header.len();
    let data_offset = round_up(header_end, DATA_ALIGN).ok_or(too_big)?;
    let total = data_offset + data.len();
    if total > u32::MAX as usize {
        return Err(too_big);
    }
    let mut blob = try_filled(total, 0u8)?;
    blob[PREFIX_LEN..header_end].copy_from_slice(header);
    blob[data_offset..].copy_from_slice(data);
    let crc = CRC32.checksum(&blob[PREFIX_LEN..]);
    blob[..8].copy_from_slice(&MAGIC);
    blob[8..10].copy_from_slice(&major.to_le_bytes());
    blob[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    blob[12..16].copy_from_slice(&(header.len() as u32).to_le_bytes());
    blob[16..20].copy_from_slice(&(data_offset as u32).to_le_bytes());
    blob[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
    blob[24..28].copy_from_slice(&crc.to_le_bytes());
    blob[28..32].copy_from_slice(&flags.to_le_bytes());
    Ok(blob)
}

impl ModelParams {
    /// The parameters of a loaded model, to write it again (say in another ternary encoding:
    /// `tools repack`). Every value is read back exactly, so
    /// `from_model(m)?.to_blob_with(*m.layout().encodings())` is the blob `m` was loaded from.
    /// Every weight becomes a byte (about 5 times a base-3 blob's size): the large vectors are
    /// allocated fallibly ([`WriteError::OutOfMemory`]).
    pub fn from_model(m: &Model<'_>) -> Result<ModelParams, WriteError> {
        let c = *m.config();
        let d = c.d_model as usize;
        let vocab = (0..c.vocab_size)
            .map(|i| m.token_bytes(i as u16).unwrap_or(&[]).to_vec())
            .collect();
        let rb = crate::blob::format::int8_row_bytes(c.d_model);
        let embedding = try_collect(
            c.vocab_size as usize * d,
            m.embedding()
                .chunks_exact(rb.max(1))
                .flat_map(|row| row[..d.min(row.len())].iter().copied()),
        )?;
        let rope = try_collect(
            c.ctx_len as usize * c.head_dim() as usize,
            (0..c.ctx_len as usize).flat_map(|t| {
                m.rope_row(t)
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }),
        )?;
        let mut layers = Vec::new();
        for l in 0..c.n_layers as usize {
            let mut tensors = Vec::new();
            for s in schema::layer_specs(&c) {
                let values = match s.source {
                    Source::Gain { .. } => {
                        LayerTensor::Gains(m.layer_gains(l, s.kind).iter().collect())
                    }
                    Source::Ternary { .. } => {
                        let t = m.layer_matrix(l, s.kind);
                        LayerTensor::Ternary(TernaryParams {
                            weights: unpack(&t)?,
                            gamma: t.gamma,
                        })
                    }
                    _ => continue,
                };
                tensors.push((s.kind, values));
            }
            layers.push(LayerParams { tensors });
        }
        Ok(ModelParams {
            config: c,
            norm_eps: m.norm_eps(),
            val_loss_micro_nats: m.val_loss_micro_nats(),
            metadata: m.metadata().into(),
            vocab,
            bpe: match m.merges() {
                None => None,
                Some(merges) => Some(BpeParams {
                    merges: try_collect(merges.len(), merges.iter())?,
                    chars_per_kilotoken: m.chars_per_kilotoken(),
                }),
            },
            embedding,
            embedding_scales: m.embedding_scales().collect(),
            rope,
            final_norm: m.final_norm().iter().collect(),
            layers,
        })
    }
}

/// The weights of a loaded matrix, row-major `[rows][cols]`, in `{-1, 0, 1}` (allocated
/// fallibly).
fn unpack(t: &crate::blob::model::TernaryMatrix<'_>) -> Result<Vec<i8>, WriteError> {
    use crate::blob::format::TernaryEncoding;
    use crate::kernels::{decode_base3, decode_ternary};
    let mut w = try_collect(t.rows * t.cols, core::iter::empty())?;
    for row in t.data.chunks_exact(t.row_bytes.max(1)).take(t.rows) {
        for c in 0..t.cols {
            let v = match t.encoding {
                TernaryEncoding::Packed2 => decode_ternary(row[c / 4] >> (2 * (c % 4))),
                TernaryEncoding::Base3 => decode_base3(row[c % t.row_bytes], c / t.row_bytes),
            };
            w.push(v as i8);
        }
    }
    Ok(w)
}
