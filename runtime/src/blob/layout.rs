//! The canonical placement of every section of a blob, computed from the config and the
//! [`schema`](mod@crate::schema) alone. The reader checks the header's tensor table against it and
//! the writer places sections with it, so the two cannot disagree.

use crate::blob::format::{
    int8_row_bytes, round_up, Config, ConfigError, ElemFormat, TensorEntry, TensorKind,
    TernaryEncoding, FLAG_FFN_GATED, SECTION_ALIGN,
};
use crate::blob::schema::{self, Encoding, MatrixEncodings, TensorSpec, GLOBAL, LAYER};

/// Where every section lies in the data region (see `FORMAT.md` §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    config: Config,
    vocab_bytes_len: u32,
    /// The encoding of each of a layer's ternary matrices, in schema order (the same in every
    /// layer, so that all layers have one size).
    ternary: MatrixEncodings,
    /// Offsets of the global sections (data-relative), in [`GLOBAL`] order.
    global: [u32; GLOBAL.len()],
    /// Offsets of the layer sections relative to the layer's start, in [`LAYER`] order (those
    /// the model holds: [`schema::layer_specs`]).
    layer: [u32; LAYER.len()],
    /// Start of layer 0.
    layers_start: u32,
    /// Bytes from one layer's start to the next.
    layer_stride: u32,
    /// Length of the data region.
    total: u32,
}

/// Places `specs` one after the other from `pos`, each at a multiple of [`SECTION_ALIGN`];
/// returns the end.
fn place(
    layout: &Layout,
    specs: &[TensorSpec],
    offsets: &mut [u32],
    mut pos: usize,
) -> Result<usize, ConfigError> {
    for (spec, off) in specs.iter().zip(offsets) {
        pos = round_up(pos, SECTION_ALIGN).ok_or(ConfigError::Size)?;
        *off = u32::try_from(pos).map_err(|_| ConfigError::Size)?;
        pos = pos
            .checked_add(layout.len_of(spec)?)
            .ok_or(ConfigError::Size)?;
    }
    Ok(pos)
}

impl Layout {
    /// Computes the layout with every ternary matrix 2-bit (format v1); `Err` when the config
    /// is invalid or the blob would exceed 4 GiB.
    pub fn new(config: Config, vocab_bytes_len: u32) -> Result<Layout, ConfigError> {
        Layout::with_encodings(config, vocab_bytes_len, Default::default())
    }

    /// Computes the layout with matrix `i` of every layer (schema order, as in `LayerScales`)
    /// stored as `ternary[i]` (entries of matrices the model does not hold are ignored and read
    /// back as the default, 2-bit).
    pub fn with_encodings(
        config: Config,
        vocab_bytes_len: u32,
        ternary: MatrixEncodings,
    ) -> Result<Layout, ConfigError> {
        config.validate()?;
        // The encodings of matrices this model does not hold are not part of it.
        let mut ternary = ternary;
        let held = schema::matrices_per_layer(&config);
        for e in ternary.iter_mut().skip(held) {
            *e = TernaryEncoding::default();
        }
        let mut l = Layout {
            config,
            vocab_bytes_len,
            ternary,
            global: [0; GLOBAL.len()],
            layer: [0; LAYER.len()],
            layers_start: 0,
            layer_stride: 0,
            total: 0,
        };
        let mut global = l.global;
        let end = place(&l, GLOBAL, &mut global, 0)?;
        let mut layer = l.layer;
        let rel = place(&l, schema::layer_specs(&config), &mut layer, 0)?;
        let layers_start = round_up(end, SECTION_ALIGN).ok_or(ConfigError::Size)?;
        let stride = round_up(rel, SECTION_ALIGN).ok_or(ConfigError::Size)?;
        let total = stride
            .checked_mul(config.n_layers as usize)
            .and_then(|v| v.checked_add(layers_start))
            .ok_or(ConfigError::Size)?;
        // The whole blob (prefix + header + data) must stay below 4 GiB: leave 1 MiB of room.
        if total > (u32::MAX as usize) - (1 << 20) {
            return Err(ConfigError::Size);
        }
        l.global = global;
        l.layer = layer;
        l.layers_start = layers_start as u32;
        l.layer_stride = stride as u32;
        l.total = total as u32;
        Ok(l)
    }

    /// The encoding of each of a layer's ternary matrices (schema order).
    pub const fn encodings(&self) -> &MatrixEncodings {
        &self.ternary
    }

    /// The encoding of ternary matrix `kind` (`None` when `kind` is not a layer matrix).
    pub fn encoding_of(&self, kind: TensorKind) -> Option<TernaryEncoding> {
        self.ternary.get(schema::matrix_index(kind)?).copied()
    }

    /// The major format version a blob with this layout is written as: 3 for a gated FFN,
    /// else 1 when every matrix is 2-bit (a v1 blob, readable by older runtimes), else 2.
    pub fn format_major(&self) -> u16 {
        // Entries of matrices the model does not hold are 2-bit (`with_encodings`).
        if self.config.ffn_gated {
            3
        } else if self.ternary.iter().all(|e| *e == TernaryEncoding::Packed2) {
            1
        } else {
            2
        }
    }

    /// The prefix flags of a blob with this layout ([`FLAG_FFN_GATED`]).
    pub const fn flags(&self) -> u32 {
        if self.config.ffn_gated {
            FLAG_FFN_GATED
        } else {
            0
        }
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
        GLOBAL.len() + schema::layer_sections(&self.config) * self.config.n_layers as usize
    }

    /// `(rows, cols, format)` of a section.
    fn shape_of(&self, spec: &TensorSpec) -> (u32, u32, ElemFormat) {
        let rows = spec.rows.eval(&self.config, self.vocab_bytes_len);
        let cols = spec.cols.eval(&self.config, self.vocab_bytes_len);
        let format = match spec.encoding {
            Encoding::Bytes => ElemFormat::Bytes,
            Encoding::U32 => ElemFormat::U32,
            Encoding::Int8Rows => ElemFormat::Int8Rows {
                row_bytes: int8_row_bytes(cols) as u32,
            },
            Encoding::Dyadic => ElemFormat::Dyadic,
            Encoding::Fixed { frac_bits } => ElemFormat::FixedI32 {
                frac_bits: frac_bits as u8,
            },
            Encoding::Ternary => self.encoding_of(spec.kind).unwrap_or_default().format(cols),
        };
        (rows, cols, format)
    }

    /// Byte length of a section.
    fn len_of(&self, spec: &TensorSpec) -> Result<usize, ConfigError> {
        let (rows, cols, format) = self.shape_of(spec);
        let (rows, cols) = (rows as usize, cols as usize);
        let per_row = match format {
            ElemFormat::Bytes => Some(cols),
            ElemFormat::U32 | ElemFormat::FixedI32 { .. } => cols.checked_mul(4),
            ElemFormat::Dyadic => cols.checked_mul(8),
            ElemFormat::Int8Rows { row_bytes }
            | ElemFormat::Ternary2 { row_bytes }
            | ElemFormat::Ternary5 { row_bytes } => Some(row_bytes as usize),
        };
        per_row
            .and_then(|r| r.checked_mul(rows))
            .ok_or(ConfigError::Size)
    }

    fn make_entry(&self, spec: &TensorSpec, layer: u16, offset: u32) -> Option<TensorEntry> {
        let (rows, cols, format) = self.shape_of(spec);
        let len = u32::try_from(self.len_of(spec).ok()?).ok()?;
        Some(TensorEntry {
            kind: spec.kind,
            layer,
            rows,
            cols,
            format,
            offset,
            len,
        })
    }

    /// Entry `i` of the canonical tensor table (`None` past the end).
    pub fn entry(&self, i: usize) -> Option<TensorEntry> {
        if let Some(spec) = GLOBAL.get(i) {
            return self.make_entry(spec, 0, *self.global.get(i)?);
        }
        let j = i - GLOBAL.len();
        let specs = schema::layer_specs(&self.config);
        let (layer, k) = (j / specs.len(), j % specs.len());
        if layer >= self.config.n_layers as usize {
            return None;
        }
        let offset = self.layers_start + self.layer_stride * layer as u32 + *self.layer.get(k)?;
        self.make_entry(specs.get(k)?, layer as u16, offset)
    }

    /// The canonical entries in table order.
    pub fn entries(&self) -> impl Iterator<Item = TensorEntry> + '_ {
        (0..self.n_tensors()).map_while(|i| self.entry(i))
    }

    /// The canonical entry of section `kind` of layer `l`.
    pub fn layer_entry(&self, l: usize, kind: TensorKind) -> Option<TensorEntry> {
        let specs = schema::layer_specs(&self.config);
        let k = specs.iter().position(|s| s.kind == kind)?;
        self.entry(GLOBAL.len() + l.checked_mul(specs.len())? + k)
    }

    /// The canonical entry of global section `kind`.
    pub fn global_entry(&self, kind: TensorKind) -> Option<TensorEntry> {
        self.entry(schema::global_index(kind)?)
    }

    /// Bytes from one layer's start to the next.
    pub(crate) const fn layer_stride(&self) -> usize {
        self.layer_stride as usize
    }

    /// Byte range of all layers' sections (and the padding between them) in the data region.
    pub(crate) fn layers_range(&self) -> core::ops::Range<usize> {
        let start = self.layers_start as usize;
        let len = self.layer_stride as usize * self.config.n_layers as usize;
        start..start + len
    }
}
