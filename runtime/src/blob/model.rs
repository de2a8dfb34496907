//! The loaded model: borrowed views of a validated blob's sections (execute in place,
//! nothing copied). This file is the one place that maps the blob to weights; the loader
//! and its validation are in `load.rs`.

use super::sections::{self, MatrixSpan, Sections};
use crate::blob::format::{Config, TensorKind, TernaryEncoding};
use crate::blob::layout::Layout;
#[cfg(feature = "writer")]
use crate::blob::schema;
use crate::error::Error;
use crate::fixed::Dyadic;
use crate::kernels::tiled::{tile_base3, tile_packed2, TiledMatrix};
use crate::text::bpe::Merges;

/// CRC-32 (ISO-HDLC, the zlib/PNG one) over everything after the prefix.
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A validated model borrowing its weights from the blob. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub(super) layout: Layout,
    /// The sections a pass reads, resolved once from `layout`.
    pub(super) sections: Sections,
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
    /// The 2-bit matrices of every block in the row-tiled layout ([`Model::with_tiled`]),
    /// block after block, each block's in schema order; empty when there is none.
    pub(super) tiled: &'a [u8],
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
    /// The same weights in the row-tiled layout of the x86-64 kernels
    /// ([`kernels::tiled`](crate::kernels::tiled)), when the model has that copy
    /// ([`Model::with_tiled`]); its input is the 2-bit padded width.
    pub tiled: Option<TiledMatrix<'a>>,
}

impl<'a> TernaryMatrix<'a> {
    /// The tiled copy, when the kernels at the current level read it
    /// ([`kernels::tiled_level`](crate::kernels::tiled_level)).
    #[inline]
    pub fn tiled_kernel(&self) -> Option<TiledMatrix<'a>> {
        self.tiled.filter(|_| crate::kernels::tiled_level())
    }

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
        self.bytes(self.sections.global(kind).range(0))
    }

    /// Gains `kind` of layer `l` (the writer; the split pass copies them to RAM).
    #[cfg(any(feature = "writer", feature = "workers"))]
    pub(crate) fn layer_gains(&self, l: usize, kind: TensorKind) -> Gains<'a> {
        let w = self.layer(l);
        match kind {
            TensorKind::AttnNorm => w.attn_norm,
            TensorKind::AttnSubNorm => w.attn_sub_norm,
            TensorKind::FfnNorm => w.ffn_norm,
            TensorKind::FfnSubNorm => w.ffn_sub_norm,
            _ => Gains(&[]),
        }
    }

    /// Ternary matrix `kind` of layer `l` with its `γ` (for the writer; an empty matrix when
    /// `kind` is not one of the model's).
    #[cfg(feature = "writer")]
    pub(crate) fn layer_matrix(&self, l: usize, kind: TensorKind) -> TernaryMatrix<'a> {
        let s = &self.sections;
        let shift = l.saturating_mul(s.stride as usize);
        let scales = self.bytes(s.scales.range(shift));
        let m = schema::matrix_index(kind)
            .filter(|&i| i < schema::matrices_per_layer(self.config()))
            .and_then(|i| Some((i, s.matrices.get(i)?)));
        match m {
            Some((i, m)) => self.matrix_at(l, shift, m, scales, i),
            None => self.matrix_at(l, shift, &MatrixSpan::default(), &[], 0),
        }
    }

    /// Matrix `m` of block `l` (whose sections lie `shift` bytes after block 0's) with its `γ`
    /// from `scales`, the block's `LayerScales`, and its tiled copy when the model has one.
    fn matrix_at(
        &self,
        l: usize,
        shift: usize,
        m: &MatrixSpan,
        scales: &[u8],
        slot: usize,
    ) -> TernaryMatrix<'a> {
        let gamma = dyadic_at(scales, slot * 8)
            .unwrap_or(Dyadic::ZERO)
            .normalized();
        let tiled = if self.tiled.is_empty() || m.tiled.range(0).is_empty() {
            None
        } else {
            let shift = l.saturating_mul(self.sections.tiled_stride as usize);
            self.tiled
                .get(m.tiled.range(shift))
                .and_then(|t| TiledMatrix::new(t, m.rows as usize, m.tiled_cols()))
        };
        TernaryMatrix {
            data: self.bytes(m.span.range(shift)),
            rows: m.rows as usize,
            cols: m.cols as usize,
            row_bytes: m.row_bytes as usize,
            encoding: m.encoding,
            gamma,
            tiled,
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

    /// The weights of block `l` (`l < n_layers`): block 0's sections, resolved at load,
    /// `l` strides further on.
    #[cfg_attr(feature = "ram-code", link_section = ".data.runtime.hot")]
    pub fn layer(&self, l: usize) -> LayerWeights<'a> {
        let s = &self.sections;
        let shift = l.saturating_mul(s.stride as usize);
        let scales = self.bytes(s.scales.range(shift));
        let gains = |i: usize| Gains(self.bytes(s.gains[i].range(shift)));
        let matrix = |i: usize| self.matrix_at(l, shift, &s.matrices[i], scales, i);
        LayerWeights {
            attn_norm: gains(sections::ATTN_NORM),
            wq: matrix(sections::WQ),
            wk: matrix(sections::WK),
            wv: matrix(sections::WV),
            attn_sub_norm: gains(sections::ATTN_SUB_NORM),
            wo: matrix(sections::WO),
            ffn_norm: gains(sections::FFN_NORM),
            w_up: matrix(sections::W_UP),
            ffn_sub_norm: gains(sections::FFN_SUB_NORM),
            w_down: matrix(sections::W_DOWN),
            w_gate: self.config().ffn_gated.then(|| matrix(sections::W_GATE)),
        }
    }

    /// Bytes [`Model::with_tiled`] needs: the matrices of every block in the row-tiled layout
    /// (two bits per weight, rows as wide as the 2-bit encoding pads them, the last tile of each
    /// matrix padded to 16 rows), plus 63 for aligning the start of the buffer to 64 bytes.
    /// Saturates.
    pub fn tiled_bytes(&self) -> usize {
        (self.sections.tiled_stride as usize)
            .saturating_mul(self.config().n_layers as usize)
            .saturating_add(63)
    }

    /// Writes the matrices of every block (2-bit or base 3) into `buf` in the row-tiled layout
    /// ([`kernels::tiled`](crate::kernels::tiled)) and returns a model whose matrices carry that
    /// copy ([`TernaryMatrix::tiled`]). The x86-64 SIMD kernels (AVX2, AVX-VNNI, AVX-512 VNNI) read
    /// it ([`kernels::tiled_level`](crate::kernels::tiled_level)); the portable, Arm and
    /// WebAssembly kernels keep reading the blob. The same weights, so the same results bit for
    /// bit. A host allocates `buf` ([`Model::tiled_bytes`]); the runtime allocates nothing.
    ///
    /// Errors: [`Error::BufferTooSmall`] when `buf` holds fewer than [`Model::tiled_bytes`].
    pub fn with_tiled(self, buf: &'a mut [u8]) -> Result<Model<'a>, Error> {
        let needed = self.tiled_bytes();
        let too_small = Error::BufferTooSmall {
            needed: u32::try_from(needed).unwrap_or(u32::MAX),
            given: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        };
        let skip = buf.as_ptr().align_offset(64).min(63);
        let len = needed - 63;
        let out = buf.get_mut(skip..skip + len).ok_or(too_small)?;
        let s = self.sections;
        let layers = self.config().n_layers as usize;
        for (l, block) in out
            .chunks_exact_mut(s.tiled_stride.max(1) as usize)
            .take(layers)
            .enumerate()
        {
            let shift = l * s.stride as usize;
            for m in s.matrices.iter().filter(|m| !m.tiled.range(0).is_empty()) {
                let (Some(dst), w) = (
                    block.get_mut(m.tiled.range(0)),
                    self.bytes(m.span.range(shift)),
                ) else {
                    return Err(too_small);
                };
                let (rows, rb) = (m.rows as usize, m.row_bytes as usize);
                match m.encoding {
                    TernaryEncoding::Packed2 => tile_packed2(w, rb, rows, dst),
                    TernaryEncoding::Base3 => tile_base3(w, rb, rows, m.tiled_cols(), dst),
                }
                .ok_or(too_small)?;
            }
        }
        let tiled: &'a [u8] = out;
        Ok(Model { tiled, ..self })
    }
}

/// Views bytes as `i8`.
fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: `u8` and `i8` have the same size and alignment and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}
