//! The sections a forward pass reads, resolved once at load: the global sections, and block 0's
//! sections with the shapes of its matrices (block `l`'s lie `l · stride` bytes further on, see
//! [`Layout`]). [`Model::layer`](crate::Model::layer) and the per-token lookups (embedding row,
//! RoPE row, LM head) then cost a few additions instead of a walk through the schema and the
//! canonical layout for every section of every block of every token.

use core::ops::Range;

use crate::format::{ternary_row_bytes, ElemFormat, TensorEntry, TensorKind, TernaryEncoding};
use crate::kernels::tiled::tiled_len;
use crate::layout::Layout;
use crate::schema::{self, GLOBAL, LAYER, MATRICES_PER_LAYER};

/// Bytes `offset..offset + len` of the data region (of block 0 for a block's section).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    offset: u32,
    len: u32,
}

impl Span {
    fn of(entry: Option<TensorEntry>) -> Span {
        entry.map_or(Span::default(), |e| Span {
            offset: e.offset,
            len: e.len,
        })
    }

    /// The byte range, `shift` bytes further on.
    pub(crate) fn range(self, shift: usize) -> Range<usize> {
        let start = self.offset as usize + shift;
        start..start + self.len as usize
    }
}

/// A block's ternary matrix: where block 0's lies, its shape and storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MatrixSpan {
    /// Block 0's section.
    pub span: Span,
    /// Output dimension.
    pub rows: u32,
    /// Input dimension (before padding).
    pub cols: u32,
    /// Stored bytes per row.
    pub row_bytes: u32,
    /// How the rows are stored.
    pub encoding: TernaryEncoding,
    /// Where block 0's copy lies in a row-tiled buffer
    /// ([`Model::with_tiled`](crate::Model::with_tiled)).
    pub tiled: Span,
}

impl MatrixSpan {
    /// Input length of the tiled copy: the 2-bit padded width (the pass's activation stride),
    /// whatever the blob's encoding.
    pub(crate) fn tiled_cols(&self) -> usize {
        ternary_row_bytes(self.cols) * 4
    }
}

/// The position of ternary matrix `kind` among a block's matrices (its `γ` in `LayerScales`),
/// at compile time.
const fn matrix_slot(kind: TensorKind) -> usize {
    let mut i = 0;
    let mut slot = 0;
    while i < LAYER.len() {
        if LAYER[i].kind as u8 == kind as u8 {
            return slot;
        }
        if matches!(LAYER[i].encoding, schema::Encoding::Ternary) {
            slot += 1;
        }
        i += 1;
    }
    MATRICES_PER_LAYER // not a layer matrix: an impossible slot (the asserts below catch it)
}

/// Slots of a block's matrices in [`Sections::matrices`] (schema order, the `γ` order).
pub(crate) const WQ: usize = matrix_slot(TensorKind::Wq);
/// See [`WQ`].
pub(crate) const WK: usize = matrix_slot(TensorKind::Wk);
/// See [`WQ`].
pub(crate) const WV: usize = matrix_slot(TensorKind::Wv);
/// See [`WQ`].
pub(crate) const WO: usize = matrix_slot(TensorKind::Wo);
/// See [`WQ`].
pub(crate) const W_UP: usize = matrix_slot(TensorKind::WUp);
/// See [`WQ`].
pub(crate) const W_DOWN: usize = matrix_slot(TensorKind::WDown);
/// See [`WQ`].
pub(crate) const W_GATE: usize = matrix_slot(TensorKind::WGate);

/// Every section a pass reads (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sections {
    /// The global sections in [`GLOBAL`] order.
    pub global: [Span; GLOBAL.len()],
    /// Block 0's `LayerScales`.
    pub scales: Span,
    /// Block 0's gains: attention norm, attention sub-norm, FFN norm, FFN sub-norm.
    pub gains: [Span; 4],
    /// Block 0's matrices in schema order ([`WQ`], …).
    pub matrices: [MatrixSpan; MATRICES_PER_LAYER],
    /// Bytes from one block's sections to the next's.
    pub stride: u32,
    /// Bytes from one block's tiled matrices to the next's.
    pub tiled_stride: u32,
}

/// Slots of the gains in [`Sections::gains`].
pub(crate) const ATTN_NORM: usize = 0;
/// See [`ATTN_NORM`].
pub(crate) const ATTN_SUB_NORM: usize = 1;
/// See [`ATTN_NORM`].
pub(crate) const FFN_NORM: usize = 2;
/// See [`ATTN_NORM`].
pub(crate) const FFN_SUB_NORM: usize = 3;

impl Sections {
    /// The sections of `layout` (a validated layout: its offsets and lengths fit `u32`; tiled
    /// offsets saturate, and a tiled copy that large is never made).
    pub(crate) fn new(layout: &Layout) -> Sections {
        let mut s = Sections {
            stride: layout.layer_stride() as u32,
            ..Sections::default()
        };
        for (span, spec) in s.global.iter_mut().zip(GLOBAL) {
            *span = Span::of(layout.global_entry(spec.kind));
        }
        s.scales = Span::of(layout.layer_entry(0, TensorKind::LayerScales));
        let gains = [
            TensorKind::AttnNorm,
            TensorKind::AttnSubNorm,
            TensorKind::FfnNorm,
            TensorKind::FfnSubNorm,
        ];
        for (span, kind) in s.gains.iter_mut().zip(gains) {
            *span = Span::of(layout.layer_entry(0, kind));
        }
        let mut tiled = 0u32;
        let matrices = LAYER
            .iter()
            .filter(|spec| spec.encoding == schema::Encoding::Ternary);
        for (m, spec) in s.matrices.iter_mut().zip(matrices) {
            let Some(e) = layout.layer_entry(0, spec.kind) else {
                continue;
            };
            let (row_bytes, encoding) = match e.format {
                f @ (ElemFormat::Ternary2 { row_bytes } | ElemFormat::Ternary5 { row_bytes }) => {
                    (row_bytes, TernaryEncoding::of(f).unwrap_or_default())
                }
                _ => continue,
            };
            *m = MatrixSpan {
                span: Span::of(Some(e)),
                rows: e.rows,
                cols: e.cols,
                row_bytes,
                encoding,
                tiled: Span::default(),
            };
            let len = tiled_len(e.rows as usize, m.tiled_cols());
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            m.tiled = Span { offset: tiled, len };
            tiled = tiled.saturating_add(len);
        }
        s.tiled_stride = tiled;
        s
    }

    /// The global section `kind` (empty when the model has none).
    pub(crate) fn global(&self, kind: TensorKind) -> Span {
        schema::global_index(kind)
            .and_then(|i| self.global.get(i).copied())
            .unwrap_or_default()
    }
}

// The slots above are the schema's `γ` order.
const _: () = assert!(WQ == 0 && WK == 1 && WV == 2 && WO == 3 && W_UP == 4);
const _: () = assert!(W_DOWN == 5 && W_GATE == 6 && MATRICES_PER_LAYER == 7);
