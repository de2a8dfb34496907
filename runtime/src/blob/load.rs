//! [`Model::from_bytes`]: the loader. Validates a blob completely, once (`FORMAT.md`,
//! "Loader guarantees"), then hands it to the borrowed view in `model.rs`.

use super::model::{u16_at, u32_at, CRC32};
use crate::error::{ConfigError, LoadError, Section};
use crate::fixed::{Dyadic, DYADIC_EXP_MAX, DYADIC_EXP_MIN};
use crate::format::{
    known_flags, round_up, Config, ElemFormat, HeaderInfo, TensorEntry, TensorKind,
    TernaryEncoding, DATA_ALIGN, FLAG_FFN_GATED, MAGIC, MAX_METADATA, PREFIX_LEN, ROPE_FRAC_BITS,
    VERSION_MAJOR, VERSION_MAJOR_MIN,
};
use crate::layout::Layout;
use crate::model::Model;
use crate::schema::{self, Encoding, MatrixEncodings};

impl<'a> Model<'a> {
    /// Validates `blob` completely (see `FORMAT.md`, "Loader guarantees") and borrows it.
    ///
    /// Never panics; any inconsistency is a [`LoadError`]. Cost: one CRC-32 pass and one
    /// validation pass over the bytes.
    pub fn from_bytes(blob: &'a [u8]) -> Result<Model<'a>, LoadError> {
        let prefix = blob.get(..PREFIX_LEN).ok_or(LoadError::TooShort)?;
        if prefix.get(..8) != Some(&MAGIC[..]) {
            return Err(LoadError::BadMagic);
        }
        let rd = |at| u32_at(prefix, at).ok_or(LoadError::TooShort);
        let major = u16_at(prefix, 8).ok_or(LoadError::TooShort)?;
        let minor = u16_at(prefix, 10).ok_or(LoadError::TooShort)?;
        if !(VERSION_MAJOR_MIN..=VERSION_MAJOR).contains(&major) {
            return Err(LoadError::UnsupportedVersion { major, minor });
        }
        let header_len = rd(12)? as usize;
        let data_offset = rd(16)? as usize;
        let data_len = rd(20)? as usize;
        let stored_crc = rd(24)?;
        let flags = rd(28)?;
        let header_end = PREFIX_LEN
            .checked_add(header_len)
            .ok_or(LoadError::BadLength)?;
        if round_up(header_end, DATA_ALIGN) != Some(data_offset)
            || data_offset.checked_add(data_len) != Some(blob.len())
        {
            return Err(LoadError::BadLength);
        }
        let rest = blob.get(PREFIX_LEN..).ok_or(LoadError::BadLength)?;
        let computed = CRC32.checksum(rest);
        if computed != stored_crc {
            return Err(LoadError::Checksum {
                stored: stored_crc,
                computed,
            });
        }
        if flags & !known_flags(major) != 0 {
            return Err(LoadError::UnknownFlags { flags });
        }

        // The header: HeaderInfo, then n_tensors TensorEntry items (postcard).
        let header = blob
            .get(PREFIX_LEN..header_end)
            .ok_or(LoadError::BadLength)?;
        let (info, mut rest) =
            postcard::take_from_bytes::<HeaderInfo>(header).map_err(|_| LoadError::BadHeader)?;
        if info.metadata.len() > MAX_METADATA {
            return Err(LoadError::BadHeader);
        }
        let config = Config {
            ffn_gated: flags & FLAG_FFN_GATED != 0,
            ..info.config
        };
        let layout = Layout::new(config, info.vocab_bytes_len).map_err(LoadError::BadConfig)?;
        let eps = info.norm_eps;
        if eps.mant == 0 || !eps.is_storable() {
            return Err(LoadError::BadConfig(ConfigError::NormEps));
        }
        if info.n_tensors as usize != layout.n_tensors() {
            return Err(LoadError::TensorCount {
                found: info.n_tensors,
                expected: layout.n_tensors() as u32,
            });
        }
        // The matrices' encodings are the one choice the table holds (format v2): read them
        // from layer 0's entries, then the whole table must equal the layout they give.
        let ternary = table_encodings(&config, rest)?;
        if major == 1 && ternary != MatrixEncodings::default() {
            let k = ternary.iter().position(|e| *e != TernaryEncoding::Packed2);
            return Err(LoadError::BadTensorTable {
                index: k.and_then(matrix_table_index).unwrap_or(0) as u32,
            });
        }
        let layout = Layout::with_encodings(config, info.vocab_bytes_len, ternary)
            .map_err(LoadError::BadConfig)?;
        if layout.data_len() != data_len {
            return Err(LoadError::BadLength);
        }
        for i in 0..layout.n_tensors() {
            let (entry, r) =
                postcard::take_from_bytes::<TensorEntry>(rest).map_err(|_| LoadError::BadHeader)?;
            if layout.entry(i) != Some(entry) {
                return Err(LoadError::BadTensorTable { index: i as u32 });
            }
            rest = r;
        }
        // Minor versions may append fields to the header; 1.0 has none.
        if minor == 0 && !rest.is_empty() {
            return Err(LoadError::BadHeader);
        }
        let pad = blob
            .get(header_end..data_offset)
            .ok_or(LoadError::BadLength)?;
        if pad.iter().any(|b| *b != 0) {
            return Err(LoadError::BadSection {
                section: Section::Padding,
                kind: TensorKind::VocabOffsets,
                layer: 0,
                offset: 0,
            });
        }
        let data = blob.get(data_offset..).ok_or(LoadError::BadLength)?;
        validate_sections(&layout, data)?;

        let hd = Dyadic::from_u64(info.config.head_dim() as u64, 0);
        Ok(Model {
            layout,
            norm_eps: eps.normalized(),
            inv_sqrt_head_dim: hd.rsqrt(),
            val_loss_micro_nats: info.val_loss_micro_nats,
            metadata: info.metadata,
            version_major: major,
            version_minor: minor,
            data,
            copy: &[],
            copy_start: 0,
        })
    }
}

/// Table index of layer 0's ternary matrix number `k` (schema order).
fn matrix_table_index(k: usize) -> Option<usize> {
    let kind = schema::LAYER
        .iter()
        .filter(|s| s.encoding == Encoding::Ternary)
        .nth(k)?
        .kind;
    Some(schema::GLOBAL.len() + schema::layer_index(kind)?)
}

/// The ternary encodings layer 0's table entries declare (`table`: the postcard entries after
/// `HeaderInfo`) for a model with config `c`. Only the encodings are taken; the caller compares
/// every entry afterwards.
fn table_encodings(c: &Config, mut table: &[u8]) -> Result<MatrixEncodings, LoadError> {
    let mut enc = MatrixEncodings::default();
    let mut k = 0;
    let specs = schema::layer_specs(c);
    for i in 0..schema::GLOBAL.len() + specs.len() {
        let (entry, r) =
            postcard::take_from_bytes::<TensorEntry>(table).map_err(|_| LoadError::BadHeader)?;
        table = r;
        let Some(spec) = i
            .checked_sub(schema::GLOBAL.len())
            .and_then(|j| specs.get(j))
        else {
            continue;
        };
        if spec.encoding == Encoding::Ternary {
            let bad = LoadError::BadTensorTable { index: i as u32 };
            *enc.get_mut(k).ok_or(bad)? = TernaryEncoding::of(entry.format).ok_or(bad)?;
            k += 1;
        }
    }
    Ok(enc)
}

/// Checks every section's contents and that all bytes between sections are zero.
fn validate_sections(layout: &Layout, data: &[u8]) -> Result<(), LoadError> {
    // Names the section (kind and layer) of entry `e`: errors say "layer 5 w_gate".
    let bad = |section, e: &TensorEntry, offset: usize| LoadError::BadSection {
        section,
        kind: e.kind,
        layer: e.layer,
        offset: offset as u32,
    };
    let mut covered = 0usize;
    let mut last = None;
    for e in layout.entries() {
        let start = e.offset as usize;
        let end = start + e.len as usize;
        let gap = data.get(covered..start).ok_or(LoadError::BadLength)?;
        if let Some(p) = gap.iter().position(|b| *b != 0) {
            return Err(bad(Section::Padding, &e, covered + p));
        }
        last = Some(e);
        covered = end;
        let s = data.get(start..end).ok_or(LoadError::BadLength)?;
        match (e.kind, e.format) {
            (TensorKind::VocabOffsets, _) => {
                let mut prev = None;
                for (k, c) in s.chunks_exact(4).enumerate() {
                    let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    let ok = match prev {
                        None => v == 0,
                        Some(p) => v > p, // every token has at least one byte
                    };
                    if !ok {
                        return Err(bad(Section::Vocab, &e, k * 4));
                    }
                    prev = Some(v);
                }
                let vb = layout.global_entry(TensorKind::VocabBytes).map(|e| e.len);
                if prev != vb {
                    return Err(bad(Section::Vocab, &e, s.len()));
                }
                let vocab_bytes = layout
                    .entry(1)
                    .map_or(0..0, |e| e.offset as usize..(e.offset + e.len) as usize);
                let bytes = data.get(vocab_bytes).ok_or(LoadError::BadLength)?;
                if let Some(k) = first_duplicate_token(s, bytes) {
                    return Err(bad(Section::Vocab, &e, k * 4));
                }
            }
            (TensorKind::Embedding, ElemFormat::Int8Rows { row_bytes }) => {
                let rb = row_bytes as usize;
                for (r, row) in s.chunks_exact(rb.max(1)).enumerate() {
                    let pad = row.get(e.cols as usize..).unwrap_or(&[]);
                    if let Some(p) = pad.iter().position(|b| *b != 0) {
                        return Err(bad(Section::Embedding, &e, r * rb + e.cols as usize + p));
                    }
                }
            }
            (_, ElemFormat::Dyadic) => {
                for (k, c) in s.chunks_exact(8).enumerate() {
                    let exp = i32::from_le_bytes([c[4], c[5], c[6], c[7]]);
                    if !(DYADIC_EXP_MIN..=DYADIC_EXP_MAX).contains(&exp) {
                        return Err(bad(Section::Scale, &e, k * 8));
                    }
                }
            }
            (TensorKind::Rope, _) => {
                let one = 1i32 << ROPE_FRAC_BITS;
                for (k, c) in s.chunks_exact(4).enumerate() {
                    let v = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    if !(-one..=one).contains(&v) {
                        return Err(bad(Section::Rope, &e, k * 4));
                    }
                }
            }
            (_, ElemFormat::Ternary2 { row_bytes }) => {
                validate_ternary(s, row_bytes as usize, e.cols as usize)
                    .map_err(|off| bad(Section::Ternary, &e, off))?;
            }
            (_, ElemFormat::Ternary5 { row_bytes }) => {
                validate_ternary5(s, row_bytes as usize, e.cols as usize)
                    .map_err(|off| bad(Section::Ternary, &e, off))?;
            }
            _ => {} // token bytes, gains: every value is allowed
        }
    }
    let tail = data.get(covered..).ok_or(LoadError::BadLength)?;
    if let (Some(p), Some(e)) = (tail.iter().position(|b| *b != 0), last) {
        return Err(bad(Section::Padding, &e, covered + p));
    }
    Ok(())
}

/// The id of the first token that repeats an earlier one, given the validated offsets (`V+1`
/// little-endian `u32`, strictly increasing) and the token bytes. Without an allocator: one
/// pass when the tokens are in strictly increasing byte order (every vocabulary the trainer
/// writes), else a comparison of every pair (only equal lengths are compared byte-wise).
fn first_duplicate_token(offsets: &[u8], bytes: &[u8]) -> Option<usize> {
    let off = |k: usize| {
        offsets
            .get(4 * k..4 * k + 4)
            .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
    };
    let n = (offsets.len() / 4).saturating_sub(1);
    let tok = |k: usize| bytes.get(off(k)..off(k + 1)).unwrap_or(&[]);
    if (1..n).all(|k| tok(k - 1) < tok(k)) {
        return None;
    }
    (1..n).find(|&k| {
        let t = tok(k);
        (0..k).any(|j| off(j + 1) - off(j) == t.len() && tok(j) == t)
    })
}

/// Every code is `0b00`, `0b01` or `0b11`, and codes past `cols` are `0b00`.
fn validate_ternary(s: &[u8], row_bytes: usize, cols: usize) -> Result<(), usize> {
    if row_bytes == 0 {
        return Ok(());
    }
    let full = cols / 4; // bytes whose 4 codes are all real weights
    let part = cols % 4; // real codes in byte `full`
    for (r, row) in s.chunks_exact(row_bytes).enumerate() {
        for (k, &b) in row.iter().enumerate() {
            // 0b10 in any field: high bit set, low bit clear.
            let invalid = (b >> 1) & !b & 0x55 != 0;
            let allowed_mask: u8 = if k < full {
                0xFF
            } else if k == full {
                ((1u16 << (2 * part)) - 1) as u8
            } else {
                0
            };
            if invalid || b & !allowed_mask != 0 {
                return Err(r * row_bytes + k);
            }
        }
    }
    Ok(())
}

/// Every byte of a base-3 row is below 243 and its digits past `cols` are 0: byte `b` holds
/// the weights `b + k·row_bytes`, `k < 5`, so only its first `ceil((cols − b) / row_bytes)`
/// digits are weights.
fn validate_ternary5(s: &[u8], row_bytes: usize, cols: usize) -> Result<(), usize> {
    if row_bytes == 0 {
        return Ok(());
    }
    // Bytes below `full` hold five weights (every byte < 243 allowed); only the last few
    // (at most 4 per row, as `5·row_bytes < cols + 5`) have padding digits.
    let full = cols.saturating_sub(4 * row_bytes);
    for (r, row) in s.chunks_exact(row_bytes).enumerate() {
        for (b, &v) in row.iter().enumerate() {
            let limit = if b < full {
                243
            } else {
                3u32.pow(cols.saturating_sub(b).div_ceil(row_bytes).min(5) as u32)
            };
            if v as u32 >= limit {
                return Err(r * row_bytes + b);
            }
        }
    }
    Ok(())
}
