//! The model's tensors, declared once.
//!
//! [`GLOBAL`] and [`LAYER`] list every section of a blob in file order: its kind, its shape as a
//! function of the [`Config`], how its elements are stored ([`Encoding`]) and where its values
//! come from ([`Source`]: which trainer tensor, through which quantization point of
//! `docs/MODEL.md`). Everything else iterates these two tables:
//!
//! - the canonical [`Layout`](crate::Layout) (offsets, the header's tensor table) and the loader's
//!   section checks ([`Model::from_bytes`](crate::Model::from_bytes));
//! - the blob writer (feature `writer`), which takes a layer's values by kind;
//! - `tools pack` (which trainer tensors a run dir must hold, with which shapes, and how each is
//!   converted) and the trainer's export (the tensor names of `weights.safetensors`);
//! - the test oracles (random models draw their parameters in this order).
//!
//! Adding a tensor to every block is one row in [`LAYER`] and one variant appended to
//! [`TensorKind`]; the trainer's module and the forward pass then use it. A row that only some
//! models have (the gate of a gated FFN, [`When::GatedFfn`]) sits at the end of [`LAYER`], so
//! that a model's layer sections are always a prefix of the table ([`layer_specs`]) and the
//! sections and `γ` order of the models without it do not move.

use crate::blob::format::{Config, TensorKind, GAIN_FRAC_BITS, ROPE_FRAC_BITS};

/// A tensor dimension as a function of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// 1 (vectors have one row).
    One,
    /// `V`.
    Vocab,
    /// `V + 1`.
    VocabPlusOne,
    /// The total byte length of the vocabulary's token strings.
    VocabBytes,
    /// `d`.
    DModel,
    /// `Hkv · hd`.
    KvDim,
    /// `F`.
    Ffn,
    /// `T` (the RoPE table's positions).
    Ctx,
    /// `hd` (`cos, sin` pairs of one position: `hd / 2` pairs).
    HeadDim,
    /// The number of ternary matrices of a layer ([`matrices_per_layer`]).
    LayerMatrices,
}

impl Dim {
    /// The value of this dimension for `c` (a validated config: nothing overflows).
    pub const fn eval(self, c: &Config, vocab_bytes_len: u32) -> u32 {
        match self {
            Dim::One => 1,
            Dim::Vocab => c.vocab_size,
            Dim::VocabPlusOne => c.vocab_size.saturating_add(1),
            Dim::VocabBytes => vocab_bytes_len,
            Dim::DModel => c.d_model,
            Dim::KvDim => c.kv_dim(),
            Dim::Ffn => c.ffn_dim,
            Dim::Ctx => c.ctx_len,
            Dim::HeadDim => c.head_dim(),
            Dim::LayerMatrices => matrices_per_layer(c) as u32,
        }
    }
}

/// How a section's elements are stored (the byte-level form is
/// [`ElemFormat`](crate::format::ElemFormat), which adds the row padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `u8` bytes.
    Bytes,
    /// `u32`, little-endian.
    U32,
    /// `i8` rows zero-padded to 16 bytes.
    Int8Rows,
    /// [`Dyadic`](crate::Dyadic) scales (8 bytes each).
    Dyadic,
    /// `i32` with `frac_bits` fractional bits.
    Fixed {
        /// Fractional bits.
        frac_bits: u32,
    },
    /// Ternary weights, in the [`TernaryEncoding`](crate::format::TernaryEncoding) the blob
    /// chose for this matrix kind (2-bit or base 3).
    Ternary,
}

/// Where a section's values come from (`docs/MODEL.md` names the quantization points).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The vocabulary (the run's `vocab.json`): offsets or concatenated bytes.
    Vocab,
    /// Trainer tensor `name` `[V, d]`, quantized to int8 rows (Q3). Its row scales are the
    /// [`EmbeddingScales`](Source::EmbeddingScales) section.
    Embedding {
        /// Tensor name in the run dir.
        name: &'static str,
    },
    /// The row scales `e_v` of the embedding's Q3 quantization.
    EmbeddingScales,
    /// The RoPE table, computed at pack time from `rope_theta`.
    Rope,
    /// Trainer gain vector `name` `[cols]`, as Q15.16.
    Gain {
        /// Tensor name in the run dir (layer tensors: `layers.{l}.{name}`).
        name: &'static str,
    },
    /// Trainer BitLinear weight `name`, stored `[cols, rows]` (`[d_in, d_out]`, burn's
    /// orientation), ternarized with its absmean scale `γ` (Q1).
    Ternary {
        /// Tensor name in the run dir (layer tensors: `layers.{l}.{name}`).
        name: &'static str,
    },
    /// The `γ` of the layer's [`Ternary`](Source::Ternary) sections, in table order.
    LayerScales,
}

/// Which models hold a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Every model.
    Always,
    /// Models with a gated FFN ([`Config::ffn_gated`], format v3).
    GatedFfn,
}

impl When {
    /// Whether a model whose FFN is gated (`ffn_gated`) or not holds the section.
    pub const fn holds(self, ffn_gated: bool) -> bool {
        match self {
            When::Always => true,
            When::GatedFfn => ffn_gated,
        }
    }
}

/// One section of the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The kind written in the tensor table.
    pub kind: TensorKind,
    /// Logical rows.
    pub rows: Dim,
    /// Logical columns (elements per row, before padding).
    pub cols: Dim,
    /// Element storage.
    pub encoding: Encoding,
    /// Where the values come from.
    pub source: Source,
    /// Which models hold it.
    pub when: When,
}

impl TensorSpec {
    /// Whether a model with config `c` holds this section.
    pub const fn present(&self, c: &Config) -> bool {
        self.when.holds(c.ffn_gated)
    }

    /// The trainer tensor this section is made from, if any (`None` for derived sections).
    pub const fn trainer_name(&self) -> Option<&'static str> {
        match self.source {
            Source::Embedding { name } | Source::Gain { name } | Source::Ternary { name } => {
                Some(name)
            }
            _ => None,
        }
    }

    /// The shape of the trainer tensor (run dir, `weights.safetensors`) for config `c`:
    /// `[rows, cols]` for the embedding, `[cols]` for gains, `[cols, rows]` for BitLinear
    /// weights (`[d_in, d_out]`); `None` for derived sections.
    pub const fn trainer_shape(&self, c: &Config) -> Option<TrainerShape> {
        let (r, k) = (self.rows.eval(c, 0), self.cols.eval(c, 0));
        match self.source {
            Source::Embedding { .. } => Some(TrainerShape::matrix(r, k)),
            Source::Gain { .. } => Some(TrainerShape {
                dims: [k, 0],
                rank: 1,
            }),
            Source::Ternary { .. } => Some(TrainerShape::matrix(k, r)),
            _ => None,
        }
    }
}

/// The shape of a tensor in the trainer's run dir: one or two dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainerShape {
    dims: [u32; 2],
    rank: usize,
}

impl TrainerShape {
    const fn matrix(a: u32, b: u32) -> TrainerShape {
        TrainerShape {
            dims: [a, b],
            rank: 2,
        }
    }

    /// The dimensions, outermost first (row-major).
    pub fn dims(&self) -> &[u32] {
        self.dims.get(..self.rank).unwrap_or(&[])
    }
}

const fn spec(
    kind: TensorKind,
    rows: Dim,
    cols: Dim,
    encoding: Encoding,
    source: Source,
) -> TensorSpec {
    TensorSpec {
        kind,
        rows,
        cols,
        encoding,
        source,
        when: When::Always,
    }
}

const GAIN: Encoding = Encoding::Fixed {
    frac_bits: GAIN_FRAC_BITS,
};

const fn gain(kind: TensorKind, n: Dim, name: &'static str) -> TensorSpec {
    spec(kind, Dim::One, n, GAIN, Source::Gain { name })
}

const fn ternary(kind: TensorKind, rows: Dim, cols: Dim, name: &'static str) -> TensorSpec {
    spec(
        kind,
        rows,
        cols,
        Encoding::Ternary,
        Source::Ternary { name },
    )
}

/// The sections before the layers, in file order.
pub const GLOBAL: &[TensorSpec] = &[
    spec(
        TensorKind::VocabOffsets,
        Dim::One,
        Dim::VocabPlusOne,
        Encoding::U32,
        Source::Vocab,
    ),
    spec(
        TensorKind::VocabBytes,
        Dim::One,
        Dim::VocabBytes,
        Encoding::Bytes,
        Source::Vocab,
    ),
    spec(
        TensorKind::Embedding,
        Dim::Vocab,
        Dim::DModel,
        Encoding::Int8Rows,
        Source::Embedding { name: "embed" },
    ),
    spec(
        TensorKind::EmbeddingScales,
        Dim::One,
        Dim::Vocab,
        Encoding::Dyadic,
        Source::EmbeddingScales,
    ),
    spec(
        TensorKind::Rope,
        Dim::Ctx,
        Dim::HeadDim,
        Encoding::Fixed {
            frac_bits: ROPE_FRAC_BITS,
        },
        Source::Rope,
    ),
    gain(TensorKind::FinalNorm, Dim::DModel, "final_norm"),
];

/// The sections of every block, in file order (each layer repeats them).
pub const LAYER: &[TensorSpec] = &[
    spec(
        TensorKind::LayerScales,
        Dim::One,
        Dim::LayerMatrices,
        Encoding::Dyadic,
        Source::LayerScales,
    ),
    gain(TensorKind::AttnNorm, Dim::DModel, "attn_norm"),
    ternary(TensorKind::Wq, Dim::DModel, Dim::DModel, "wq"),
    ternary(TensorKind::Wk, Dim::KvDim, Dim::DModel, "wk"),
    ternary(TensorKind::Wv, Dim::KvDim, Dim::DModel, "wv"),
    gain(TensorKind::AttnSubNorm, Dim::DModel, "attn_sub_norm"),
    ternary(TensorKind::Wo, Dim::DModel, Dim::DModel, "wo"),
    gain(TensorKind::FfnNorm, Dim::DModel, "ffn_norm"),
    ternary(TensorKind::WUp, Dim::Ffn, Dim::DModel, "w_up"),
    gain(TensorKind::FfnSubNorm, Dim::Ffn, "ffn_sub_norm"),
    ternary(TensorKind::WDown, Dim::DModel, Dim::Ffn, "w_down"),
    // Rows that only some models hold come last (see the module docs).
    TensorSpec {
        when: When::GatedFfn,
        ..ternary(TensorKind::WGate, Dim::Ffn, Dim::DModel, "w_gate")
    },
];

/// The most ternary matrices a layer holds (the length of [`MatrixEncodings`]).
pub const MATRICES_PER_LAYER: usize = count_ternary(LAYER);

/// The storage of each of a layer's ternary matrices, in [`LAYER`] order (the order of
/// [`matrix_index`]); the same in every layer. Entries of matrices a model does not hold are
/// ignored.
pub type MatrixEncodings = [crate::blob::format::TernaryEncoding; MATRICES_PER_LAYER];

/// The sections of every block of a model with config `c`, in file order: a prefix of [`LAYER`].
pub const fn layer_specs(c: &Config) -> &'static [TensorSpec] {
    let (head, _) = LAYER.split_at(layer_sections(c));
    head
}

/// How many sections each block of a model with config `c` holds.
pub const fn layer_sections(c: &Config) -> usize {
    let mut n = LAYER.len();
    while n > 0 && !LAYER[n - 1].present(c) {
        n -= 1;
    }
    n
}

/// How many ternary matrices each block of a model with config `c` holds (the entries of its
/// [`LayerScales`](TensorKind::LayerScales)).
pub const fn matrices_per_layer(c: &Config) -> usize {
    count_ternary(layer_specs(c))
}

// The sections some models lack form a suffix of `LAYER`: present rows never follow absent ones.
const _: () = {
    let mut seen_optional = false;
    let mut i = 0;
    while i < LAYER.len() {
        let optional = !matches!(LAYER[i].when, When::Always);
        assert!(
            optional || !seen_optional,
            "optional LAYER rows must come last"
        );
        seen_optional |= optional;
        i += 1;
    }
};

const fn count_ternary(specs: &[TensorSpec]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < specs.len() {
        if matches!(specs[i].source, Source::Ternary { .. }) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Position of `kind` in [`GLOBAL`].
pub fn global_index(kind: TensorKind) -> Option<usize> {
    GLOBAL.iter().position(|s| s.kind == kind)
}

/// Position of `kind` in [`LAYER`].
pub fn layer_index(kind: TensorKind) -> Option<usize> {
    LAYER.iter().position(|s| s.kind == kind)
}

/// The spec of `kind`, global or per layer.
pub fn spec_of(kind: TensorKind) -> Option<&'static TensorSpec> {
    GLOBAL.iter().chain(LAYER).find(|s| s.kind == kind)
}

/// Index of the ternary matrix `kind` among its layer's matrices (its `γ` in `LayerScales`).
pub fn matrix_index(kind: TensorKind) -> Option<usize> {
    LAYER
        .iter()
        .filter(|s| matches!(s.source, Source::Ternary { .. }))
        .position(|s| s.kind == kind)
}

/// The run-dir name of layer `layer`'s tensor `name`: `layers.{layer}.{name}` (trainer/EXPORT.md).
/// Written into `out` so that `no_std` callers need no allocation.
pub fn layer_tensor_name(
    out: &mut impl core::fmt::Write,
    layer: usize,
    name: &str,
) -> core::fmt::Result {
    write!(out, "layers.{layer}.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_matrices_counted() {
        let all: std::vec::Vec<_> = GLOBAL.iter().chain(LAYER).map(|s| s.kind).collect();
        for (i, k) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(k), "{k:?} twice");
        }
        assert_eq!(MATRICES_PER_LAYER, 7);
        assert_eq!(matrix_index(TensorKind::Wq), Some(0));
        assert_eq!(matrix_index(TensorKind::WDown), Some(5));
        assert_eq!(matrix_index(TensorKind::WGate), Some(6));
        assert_eq!(matrix_index(TensorKind::AttnNorm), None);
    }

    #[test]
    fn a_gated_ffn_adds_its_gate_after_every_other_section() {
        let mut c = Config {
            vocab_size: 65,
            d_model: 128,
            n_layers: 6,
            n_heads: 4,
            n_kv_heads: 4,
            ffn_dim: 336,
            ctx_len: 128,
            rope_theta: 10000,
            ffn_gated: false,
        };
        assert_eq!(matrices_per_layer(&c), 6);
        assert!(layer_specs(&c).iter().all(|s| s.kind != TensorKind::WGate));
        c.ffn_gated = true;
        assert_eq!(matrices_per_layer(&c), 7);
        assert_eq!(layer_specs(&c).len(), LAYER.len());
        assert_eq!(
            layer_specs(&c).last().map(|s| s.kind),
            Some(TensorKind::WGate)
        );
        let gate = spec_of(TensorKind::WGate).unwrap();
        assert_eq!(gate.trainer_shape(&c).unwrap().dims(), &[128, 336]); // [d_in, d_out]
        assert_eq!(Dim::LayerMatrices.eval(&c, 0), 7);
    }

    #[test]
    fn trainer_shapes_follow_burn_orientation() {
        let c = Config {
            vocab_size: 65,
            d_model: 128,
            n_layers: 6,
            n_heads: 4,
            n_kv_heads: 2,
            ffn_dim: 512,
            ctx_len: 128,
            rope_theta: 10000,
            ffn_gated: false,
        };
        let wk = spec_of(TensorKind::Wk).unwrap();
        assert_eq!(wk.trainer_shape(&c).unwrap().dims(), &[128, 64]); // [d_in, d_out]
        let up = spec_of(TensorKind::WUp).unwrap();
        assert_eq!(up.trainer_shape(&c).unwrap().dims(), &[128, 512]);
        let emb = spec_of(TensorKind::Embedding).unwrap();
        assert_eq!(emb.trainer_shape(&c).unwrap().dims(), &[65, 128]);
        let g = spec_of(TensorKind::FfnSubNorm).unwrap();
        assert_eq!(g.trainer_shape(&c).unwrap().dims(), &[512]);
        assert_eq!(spec_of(TensorKind::Rope).unwrap().trainer_name(), None);
    }
}
