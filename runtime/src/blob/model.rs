//! The loaded model: borrowed views of a validated blob's sections (execute in place,
//! nothing copied). This file is the one place that maps the blob to weights; the loader
//! and its validation are in `load.rs`.

use crate::blob::format::{Config, ElemFormat, TensorEntry, TensorKind, TernaryEncoding};
use crate::blob::layout::Layout;
use crate::blob::schema;
use crate::fixed::Dyadic;
use crate::text::bpe::Merges;

/// CRC-32 (ISO-HDLC, the zlib/PNG one) over everything after the prefix.
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A validated model borrowing its weights from the blob. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub(super) layout: Layout,
    pub(super) norm_eps: Dyadic,
    pub(super) inv_sqrt_head_dim: Dyadic,
    pub(super) val_loss_micro_nats: Option<u64>,
    pub(super) metadata: &'a str,
    pub(super) version_major: u16,
    pub(super) version_minor: u16,
    pub(super) data: &'a [u8],
    /// A copy of `data[copy_start..copy_start + copy.len()]` in faster memory, read instead of
    /// those bytes ([`Model::with_copy`]); empty when there is none.
    pub(super) copy: &'a [u8],
    pub(super) copy_start: usize,
    /// The merge table of a byte-level BPE model (format v4, `FLAG_BPE`), validated.
    pub(super) merges: Option<Merges<'a>>,
    pub(super) chars_per_kilotoken: Option<u32>,
}

/// A vector of fixed-point norm gains in the blob (`i32` Q15.16, little-endian).
#[derive(Clone, Copy, Debug)]
pub struct Gains<'a>(&'a [u8]);

impl<'a> Gains<'a> {
    /// Number of gains.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Gains over stored bytes (little-endian `i32`: a copy of a section, or tests).
    #[cfg(any(test, feature = "workers"))]
    pub(crate) const fn from_bytes(bytes: &'a [u8]) -> Gains<'a> {
        Gains(bytes)
    }
    /// The gains as stored: `4·len()` bytes, little-endian `i32` (the x86-64 quantizers load
    /// them eight at a time, the 32-bit twins one word at a time).
    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.0
    }
    /// The gains in order (Q15.16).
    pub fn iter(&self) -> impl Iterator<Item = i32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// A ternary matrix `[rows][cols]` in the blob with its scale `γ`, 2-bit (rows padded to 16
/// bytes) or base 3 (see `FORMAT.md`).
#[derive(Clone, Copy, Debug)]
pub struct TernaryMatrix<'a> {
    /// Packed rows, `rows · row_bytes` bytes, every code valid.
    pub data: &'a [u8],
    /// Output dimension.
    pub rows: usize,
    /// Input dimension (before padding).
    pub cols: usize,
    /// Stored bytes per row.
    pub row_bytes: usize,
    /// How the rows are stored.
    pub encoding: TernaryEncoding,
    /// The matrix scale `γ` (normalized).
    pub gamma: Dyadic,
}

impl TernaryMatrix<'_> {
    /// Length of the input vector the kernels read: `row_bytes` times the weights per byte
    /// (`cols` plus padding columns, whose weights are 0).
    pub fn input_len(&self) -> usize {
        self.row_bytes * self.encoding.weights_per_byte()
    }
}

/// The weights of one block.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a> {
    /// Attention RMSNorm gain `[d]`.
    pub attn_norm: Gains<'a>,
    /// `[d][d]`.
    pub wq: TernaryMatrix<'a>,
    /// `[Hkv·hd][d]`.
    pub wk: TernaryMatrix<'a>,
    /// `[Hkv·hd][d]`.
    pub wv: TernaryMatrix<'a>,
    /// Attention sub-norm gain `[d]`.
    pub attn_sub_norm: Gains<'a>,
    /// `[d][d]`.
    pub wo: TernaryMatrix<'a>,
    /// FFN RMSNorm gain `[d]`.
    pub ffn_norm: Gains<'a>,
    /// `[F][d]`.
    pub w_up: TernaryMatrix<'a>,
    /// FFN sub-norm gain `[F]`.
    pub ffn_sub_norm: Gains<'a>,
    /// `[d][F]`.
    pub w_down: TernaryMatrix<'a>,
    /// `[F][d]`, the gate of a gated FFN ([`Config::ffn_gated`]); `None` for the plain FFN.
    pub w_gate: Option<TernaryMatrix<'a>>,
}

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn dyadic_at(b: &[u8], at: usize) -> Option<Dyadic> {
    let mant = u32_at(b, at)?;
    let exp = u32_at(b, at + 4)? as i32;
    Some(Dyadic { mant, exp })
}

impl<'a> Model<'a> {
    /// The byte range of the blob's data region that every forward pass reads in full: the
    /// sections of all blocks (the last block's trailing padding is not stored). Pass its
    /// start to [`Model::with_copy`].
    pub fn hot_range(&self) -> core::ops::Range<usize> {
        let r = self.layout.layers_range();
        let end = r.end.min(self.data.len());
        r.start.min(end)..end
    }

    /// Copies the data-region bytes `start..start + ram.len()` (cut at the end of the data)
    /// into `ram` and returns a model that reads those bytes from `ram` from then on: for a
    /// blob in slow memory (XIP flash) and spare fast RAM. The copy is byte for byte, so
    /// results do not change (no kernel needs more than byte alignment; a 16-byte aligned
    /// `ram` keeps the sections' word alignment). Returns the model and the bytes copied.
    pub fn with_copy(self, start: usize, ram: &'a mut [u8]) -> (Model<'a>, usize) {
        let n = ram.len().min(self.data.len().saturating_sub(start));
        let (Some(src), Some(dst)) = (self.data.get(start..start + n), ram.get_mut(..n)) else {
            return (self, 0);
        };
        dst.copy_from_slice(src);
        let copied = Model {
            copy: dst,
            copy_start: start,
            ..self
        };
        (copied, n)
    }

    /// Data-region bytes `range`, from the copy when it holds all of them.
    fn bytes(&self, range: core::ops::Range<usize>) -> &'a [u8] {
        let copy_end = self.copy_start + self.copy.len();
        if range.start >= self.copy_start && range.end <= copy_end && range.start <= range.end {
            if let Some(b) = self
                .copy
                .get(range.start - self.copy_start..range.end - self.copy_start)
            {
                return b;
            }
        }
        self.data.get(range).unwrap_or(&[])
    }

    /// Model dimensions.
    pub fn config(&self) -> &Config {
        self.layout.config()
    }

    /// The canonical section layout (also the header's tensor table: `layout().entry(i)`).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Major format version of the blob (1 to 3).
    pub fn version_major(&self) -> u16 {
        self.version_major
    }

    /// Minor format version of the blob.
    pub fn version_minor(&self) -> u16 {
        self.version_minor
    }

    /// `norm_eps` of the RMSNorms.
    pub fn norm_eps(&self) -> Dyadic {
        self.norm_eps
    }

    /// The trainer's quantized validation loss (micro-nats per token), if the blob has it.
    pub fn val_loss_micro_nats(&self) -> Option<u64> {
        self.val_loss_micro_nats
    }

    /// The header's free-form metadata string.
    pub fn metadata(&self) -> &'a str {
        self.metadata
    }

    /// The merge table of a byte-level BPE model (format v4), `None` for a model whose
    /// vocabulary is characters (or any other token strings, encoded by greedy longest match).
    /// Validated by the loader: token `b < 256` is byte `b`, merge `i` makes token `256 + i`.
    pub fn merges(&self) -> Option<Merges<'a>> {
        self.merges
    }

    /// Characters per 1000 tokens of the trainer's validation split, if the blob records it
    /// (BPE models).
    pub fn chars_per_kilotoken(&self) -> Option<u32> {
        self.chars_per_kilotoken
    }

    /// The byte string of token `id`, `None` when `id >= vocab_size`.
    pub fn token_bytes(&self, id: u16) -> Option<&'a [u8]> {
        let offs = self.global(TensorKind::VocabOffsets);
        let bytes = self.global(TensorKind::VocabBytes);
        let i = id as usize * 4;
        let start = u32_at(offs, i)? as usize;
        let end = u32_at(offs, i + 4)? as usize;
        bytes.get(start..end)
    }

    pub(crate) fn inv_sqrt_head_dim(&self) -> Dyadic {
        self.inv_sqrt_head_dim
    }

    fn global(&self, kind: TensorKind) -> &'a [u8] {
        self.section(self.layout.global_entry(kind))
    }

    fn section(&self, entry: Option<TensorEntry>) -> &'a [u8] {
        entry.map_or(&[], |e| self.bytes(Layout::range(&e)))
    }

    /// Gains `kind` of layer `l`.
    pub(crate) fn layer_gains(&self, l: usize, kind: TensorKind) -> Gains<'a> {
        Gains(self.section(self.layout.layer_entry(l, kind)))
    }

    /// Ternary matrix `kind` of layer `l` with its `γ`.
    #[cfg(feature = "writer")]
    pub(crate) fn layer_matrix(&self, l: usize, kind: TensorKind) -> TernaryMatrix<'a> {
        let scales = self.section(self.layout.layer_entry(l, TensorKind::LayerScales));
        self.layer_matrix_in(l, kind, scales)
    }

    /// Ternary matrix `kind` of layer `l` with its `γ` from `scales`, the layer's
    /// `LayerScales` section.
    fn layer_matrix_in(&self, l: usize, kind: TensorKind, scales: &[u8]) -> TernaryMatrix<'a> {
        let e = self.layout.layer_entry(l, kind);
        let (rows, cols, row_bytes, encoding) = match e.map(|e| (e.rows, e.cols, e.format)) {
            Some((
                r,
                c,
                f @ (ElemFormat::Ternary2 { row_bytes } | ElemFormat::Ternary5 { row_bytes }),
            )) => (
                r as usize,
                c as usize,
                row_bytes as usize,
                TernaryEncoding::of(f).unwrap_or_default(),
            ),
            _ => (0, 0, 0, TernaryEncoding::Packed2),
        };
        let gamma = schema::matrix_index(kind)
            .and_then(|i| dyadic_at(scales, i * 8))
            .unwrap_or(Dyadic::ZERO)
            .normalized();
        TernaryMatrix {
            data: self.section(e),
            rows,
            cols,
            row_bytes,
            encoding,
            gamma,
        }
    }

    /// Int8 embedding row of `token` (`row_bytes` long, zero padded) and its scale `e_v`.
    pub(crate) fn embedding_row(&self, token: usize) -> (&'a [i8], Dyadic) {
        let rb = crate::blob::format::int8_row_bytes(self.config().d_model);
        let rows = self.global(TensorKind::Embedding);
        let row = rows.get(token * rb..(token + 1) * rb).unwrap_or(&[]);
        let scale =
            dyadic_at(self.global(TensorKind::EmbeddingScales), token * 8).unwrap_or(Dyadic::ZERO);
        (as_i8(row), scale.normalized())
    }

    /// The whole embedding table (rows of `int8_row_bytes(d)`) for the LM head.
    pub(crate) fn embedding(&self) -> &'a [i8] {
        as_i8(self.global(TensorKind::Embedding))
    }

    /// The row scales `e_v` of every token (the LM head reads them all).
    pub(crate) fn embedding_scales(&self) -> impl Iterator<Item = Dyadic> + 'a {
        scales_of(self.embedding_scale_bytes())
    }

    /// The stored row scales of the embedding (8 bytes each).
    pub(crate) fn embedding_scale_bytes(&self) -> &'a [u8] {
        self.global(TensorKind::EmbeddingScales)
    }
}

/// Decodes stored `Dyadic` row scales (8 bytes each: `mant`, `exp`, little-endian), normalized.
pub(crate) fn scales_of(bytes: &[u8]) -> impl Iterator<Item = Dyadic> + '_ {
    bytes.chunks_exact(8).map(|c| {
        let mant = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let exp = i32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        Dyadic { mant, exp }.normalized()
    })
}

impl<'a> Model<'a> {
    /// RoPE `(cos, sin)` pairs for position `t`: `head_dim/2` pairs of Q1.30 `i32`.
    pub(crate) fn rope_row(&self, t: usize) -> &'a [u8] {
        let n = self.config().head_dim() as usize * 4;
        self.global(TensorKind::Rope)
            .get(t * n..(t + 1) * n)
            .unwrap_or(&[])
    }

    /// Final RMSNorm gain.
    pub(crate) fn final_norm(&self) -> Gains<'a> {
        Gains(self.global(TensorKind::FinalNorm))
    }

    /// The weights of block `l` (`l < n_layers`).
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn layer(&self, l: usize) -> LayerWeights<'a> {
        let scales = self.section(self.layout.layer_entry(l, TensorKind::LayerScales));
        LayerWeights {
            attn_norm: self.layer_gains(l, TensorKind::AttnNorm),
            wq: self.layer_matrix_in(l, TensorKind::Wq, scales),
            wk: self.layer_matrix_in(l, TensorKind::Wk, scales),
            wv: self.layer_matrix_in(l, TensorKind::Wv, scales),
            attn_sub_norm: self.layer_gains(l, TensorKind::AttnSubNorm),
            wo: self.layer_matrix_in(l, TensorKind::Wo, scales),
            ffn_norm: self.layer_gains(l, TensorKind::FfnNorm),
            w_up: self.layer_matrix_in(l, TensorKind::WUp, scales),
            ffn_sub_norm: self.layer_gains(l, TensorKind::FfnSubNorm),
            w_down: self.layer_matrix_in(l, TensorKind::WDown, scales),
            w_gate: self
                .config()
                .ffn_gated
                .then(|| self.layer_matrix_in(l, TensorKind::WGate, scales)),
        }
    }
}

/// Views bytes as `i8`.
fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: `u8` and `i8` have the same size and alignment and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}
