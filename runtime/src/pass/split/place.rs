//! The split pass's placement: which rows of which matrices are copied to fast RAM ([`RowCopy`]).

use crate::blob::format::TensorKind;
use crate::blob::model::{Gains, LayerWeights, Model, TernaryMatrix};

/// The block matrices, in the order of a [`RowCopy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mat {
    Q,
    K,
    V,
    O,
    Up,
    Gate,
    Down,
}

pub(super) const MATS: [Mat; 7] = [
    Mat::Q,
    Mat::K,
    Mat::V,
    Mat::O,
    Mat::Up,
    Mat::Gate,
    Mat::Down,
];

pub(super) fn matrix<'a>(w: &LayerWeights<'a>, m: Mat) -> Option<TernaryMatrix<'a>> {
    match m {
        Mat::Q => Some(w.wq),
        Mat::K => Some(w.wk),
        Mat::V => Some(w.wv),
        Mat::O => Some(w.wo),
        Mat::Up => Some(w.w_up),
        Mat::Gate => w.w_gate,
        Mat::Down => Some(w.w_down),
    }
}

/// Parts of a rows-copied fraction ([`RowCopy`]).
pub(super) const FRACTION_ONE: usize = 1024;

/// The split pass's placement: a copy, in fast memory, of what both cores or the serial steps
/// read every token (the LM head's embedding and its row scales, every norm's gains: when they
/// fit) and of the same fraction of the first rows of every block matrix, so that this core's
/// share of each matrix (its first rows) and as much of the other core's as fits are read from
/// RAM, and only the other core streams the rest from the model (XIP flash on a Pico 2): two
/// cores streaming at once would break the flash link's chained transfers
/// (firmware/COST.md, "Two cores"). Byte-for-byte copies: results do not change.
#[derive(Clone, Copy, Debug)]
pub struct RowCopy<'b> {
    pub(super) bytes: &'b [u8],
    pub(super) per_layer: usize,
    /// Bytes copied of each matrix of a block, and where they start in a block's copy.
    pub(super) len: [usize; 7],
    pub(super) offset: [usize; 7],
    pub(super) embedding: &'b [u8],
    /// The norms' gains: per block `attn_norm [d]`, `attn_sub_norm [d]`, `ffn_norm [d]`,
    /// `ffn_sub_norm [F]` (4 bytes each), then the final norm `[d]`, then the embedding's row
    /// scales `[V]` (8 bytes each); empty when they did not fit.
    pub(super) small: &'b [u8],
    pub(super) fraction: usize,
}

/// The gains a [`RowCopy`] holds per block, in order.
pub(super) const GAINS: [TensorKind; 4] = [
    TensorKind::AttnNorm,
    TensorKind::AttnSubNorm,
    TensorKind::FfnNorm,
    TensorKind::FfnSubNorm,
];

impl<'b> RowCopy<'b> {
    /// Copies into `ram` the embedding (if it fits), then the first `⌊rows · f / 1024⌋` rows of
    /// every block matrix for the largest `f ≤ 1024` that fits. Returns the copy and the bytes
    /// used.
    pub fn place(model: &Model<'_>, ram: &'b mut [u8]) -> (RowCopy<'b>, usize) {
        let layers = model.config().n_layers as usize;
        let w0 = model.layer(0);
        let shapes = MATS.map(|m| matrix(&w0, m).map_or((0, 0), |t| (t.rows, t.row_bytes)));
        let emb: &[i8] = model.embedding();
        let (emb_ram, rest) = if ram.len() >= emb.len() {
            ram.split_at_mut(emb.len())
        } else {
            ram.split_at_mut(0)
        };
        for (o, e) in emb_ram.iter_mut().zip(emb) {
            *o = *e as u8;
        }
        // The gains and the embedding's scales, in the order of `small`.
        let c = model.config();
        let (d4, f4) = (4 * c.d_model as usize, 4 * c.ffn_dim as usize);
        let scales = model.embedding_scale_bytes();
        let small_len = layers * (3 * d4 + f4) + d4 + scales.len();
        let (small_ram, rest) = if rest.len() >= small_len {
            rest.split_at_mut(small_len)
        } else {
            rest.split_at_mut(0)
        };
        if !small_ram.is_empty() {
            let mut at = 0;
            let mut put = |src: &[u8]| {
                if let Some(d) = small_ram.get_mut(at..at + src.len()) {
                    d.copy_from_slice(src);
                }
                at += src.len();
            };
            for l in 0..layers {
                for kind in GAINS {
                    put(model.layer_gains(l, kind).bytes());
                }
            }
            put(model.final_norm().bytes());
            put(scales);
        }
        let per_layer = |f: usize| -> usize {
            shapes
                .iter()
                .map(|&(rows, rb)| rows * f / FRACTION_ONE * rb)
                .sum()
        };
        let (mut lo, mut hi) = (0, FRACTION_ONE);
        while lo < hi {
            let f = (lo + hi).div_ceil(2);
            if per_layer(f).saturating_mul(layers) <= rest.len() {
                lo = f;
            } else {
                hi = f - 1;
            }
        }
        let fraction = lo;
        let mut len = [0; 7];
        let mut offset = [0; 7];
        let mut at = 0;
        for (i, &(rows, rb)) in shapes.iter().enumerate() {
            len[i] = rows * fraction / FRACTION_ONE * rb;
            offset[i] = at;
            at += len[i];
        }
        let per_layer = at;
        let total = per_layer * layers;
        let (bytes, _) = rest.split_at_mut(total.min(rest.len()));
        for l in 0..layers {
            let w = model.layer(l);
            for (i, m) in MATS.iter().enumerate() {
                let src = matrix(&w, *m).map_or(&[][..], |t| t.data);
                let at = l * per_layer + offset[i];
                if let (Some(d), Some(s)) = (bytes.get_mut(at..at + len[i]), src.get(..len[i])) {
                    d.copy_from_slice(s);
                }
            }
        }
        let used = emb_ram.len() + small_ram.len() + bytes.len();
        let copy = RowCopy {
            bytes,
            per_layer,
            len,
            offset,
            embedding: emb_ram,
            small: small_ram,
            fraction,
        };
        (copy, used)
    }

    /// Rows of each matrix copied, in 1024ths.
    pub fn fraction(&self) -> u32 {
        self.fraction as u32
    }

    /// Whether the LM head's embedding is in the copy.
    pub fn has_embedding(&self) -> bool {
        !self.embedding.is_empty()
    }

    /// Whether the norms' gains and the embedding's scales are in the copy.
    pub fn has_gains(&self) -> bool {
        !self.small.is_empty()
    }

    /// Block `l`'s weights with its gains read from the copy (when it holds them).
    pub(super) fn layer(
        &self,
        mut w: LayerWeights<'b>,
        l: usize,
        c: &crate::blob::format::Config,
    ) -> LayerWeights<'b> {
        if self.small.is_empty() {
            return w;
        }
        let (d4, f4) = (4 * c.d_model as usize, 4 * c.ffn_dim as usize);
        let mut at = l * (3 * d4 + f4);
        let mut take = |n: usize| {
            let g = Gains::from_bytes(self.small.get(at..at + n).unwrap_or(&[]));
            at += n;
            g
        };
        w.attn_norm = take(d4);
        w.attn_sub_norm = take(d4);
        w.ffn_norm = take(d4);
        w.ffn_sub_norm = take(f4);
        w
    }

    /// The final norm's gains and the embedding's row scales from the copy.
    pub(super) fn head_norm_and_scales(
        &self,
        c: &crate::blob::format::Config,
    ) -> Option<(Gains<'b>, &'b [u8])> {
        if self.small.is_empty() {
            return None;
        }
        let (d4, f4) = (4 * c.d_model as usize, 4 * c.ffn_dim as usize);
        let at = c.n_layers as usize * (3 * d4 + f4);
        let gains = Gains::from_bytes(self.small.get(at..at + d4)?);
        Some((gains, self.small.get(at + d4..)?))
    }

    pub(super) fn head(&self, l: usize, m: Mat) -> &'b [u8] {
        let i = m as usize;
        let at = l * self.per_layer + self.offset[i];
        self.bytes.get(at..at + self.len[i]).unwrap_or(&[])
    }
}
