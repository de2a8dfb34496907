//! [`Model::from_bytes`]: the loader. Validates a blob completely, once (`FORMAT.md`,
//! "Loader guarantees"), then hands it to the borrowed view in `model.rs`.

use super::model::{u16_at, u32_at, CRC32};
use super::sections::Sections;
use crate::blob::format::{
    known_flags, round_up, Config, ElemFormat, HeaderInfo, TensorEntry, TensorKind,
    TernaryEncoding, TokenizerInfo, DATA_ALIGN, FLAG_BPE, FLAG_FFN_GATED, MAGIC, MAX_METADATA,
    PREFIX_LEN, ROPE_FRAC_BITS, VERSION_MAJOR, VERSION_MAJOR_MIN, VOCAB_CHECK_CHUNK,
};
use crate::blob::layout::Layout;
use crate::blob::model::Model;
use crate::blob::schema::{self, Encoding, MatrixEncodings};
use crate::error::{ConfigError, LoadError, Section, TokenizerError};
use crate::fixed::{Dyadic, DYADIC_EXP_MAX, DYADIC_EXP_MIN};
use crate::text::bpe::{self, Merges};

impl<'a> Model<'a> {
    /// Validates `blob` completely (see `FORMAT.md`, "Loader guarantees") and borrows it.
    ///
    /// Never panics; any inconsistency is a [`LoadError`]. Cost: one CRC-32 pass and one
    /// validation pass over the bytes, plus the vocabulary's duplicate check, which sorts token
    /// ids [`VOCAB_CHECK_CHUNK`] at a time in 2 KiB of stack (bound: [`Model::from_bytes_in`]).
    pub fn from_bytes(blob: &'a [u8]) -> Result<Model<'a>, LoadError> {
        let mut scratch = [0u8; 2 * VOCAB_CHECK_CHUNK];
        Model::from_bytes_in(blob, &mut scratch)
    }

    /// [`Model::from_bytes`] with the caller's `scratch` memory for the vocabulary's duplicate
    /// check (its contents on return are unspecified; the model does not borrow it).
    ///
    /// A vocabulary in strictly increasing byte order (every vocabulary the trainer writes) is
    /// checked in one pass. Otherwise token ids (2 bytes each) are sorted `c` at a time,
    /// `c = max(scratch.len() / 2, 1)`, and every later token is looked up in each sorted chunk:
    /// at most `⌈V/c⌉ · (c + V) · (⌈log₂ c⌉ + 1)` token comparisons, each at most a token's
    /// length in bytes. With `scratch.len() ≥ 2·V` (128 KiB covers any vocabulary) that is
    /// `O(V log V)`; a firmware passes its session arena before the session takes it.
    pub fn from_bytes_in(blob: &'a [u8], scratch: &mut [u8]) -> Result<Model<'a>, LoadError> {
        let Prefix {
            major,
            minor,
            header_end,
            data_offset,
            data_len,
            flags,
        } = read_prefix(blob)?;

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
        // v4 with FLAG_BPE: the tokenizer follows the table (FORMAT.md §8).
        let tokenizer = if flags & FLAG_BPE != 0 {
            let (t, r) = postcard::take_from_bytes::<TokenizerInfo>(rest)
                .map_err(|_| LoadError::BadHeader)?;
            rest = r;
            Some(t)
        } else {
            None
        };
        // Minor versions may append fields to the header; x.0 has none.
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
        validate_sections(&layout, data, scratch)?;

        let merges = match tokenizer {
            None => None,
            Some(t) => Some(Merges::from_bytes(t.merges).ok_or(LoadError::BadTokenizer(
                TokenizerError::TableLength {
                    bytes: t.merges.len() as u32,
                },
            ))?),
        };
        let hd = Dyadic::from_u64(info.config.head_dim() as u64, 0);
        let model = Model {
            sections: Sections::new(&layout),
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
            tiled: &[],
            merges,
            chars_per_kilotoken: tokenizer.and_then(|t| t.chars_per_kilotoken),
        };
        if let Some(m) = &merges {
            bpe::check_vocab(m, config.vocab_size, |id| {
                model.token_bytes(id).unwrap_or(&[])
            })
            .map_err(LoadError::BadTokenizer)?;
        }
        Ok(model)
    }
}

/// The fixed prefix of a blob (FORMAT.md §2), checked: magic, a supported version, lengths that
/// add up to the blob's, the CRC-32 of everything after the prefix, known flags.
struct Prefix {
    major: u16,
    minor: u16,
    /// End of the postcard header (= `PREFIX_LEN` + its length).
    header_end: usize,
    data_offset: usize,
    data_len: usize,
    flags: u32,
}

fn read_prefix(blob: &[u8]) -> Result<Prefix, LoadError> {
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
    Ok(Prefix {
        major,
        minor,
        header_end,
        data_offset,
        data_len,
        flags,
    })
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
fn validate_sections(layout: &Layout, data: &[u8], scratch: &mut [u8]) -> Result<(), LoadError> {
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
                if let Some(k) = first_duplicate_token(s, bytes, scratch, &mut 0) {
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
/// little-endian `u32`, strictly increasing) and the token bytes, without an allocator: one
/// pass when the tokens are in strictly increasing byte order; otherwise ids sorted by
/// bytes a chunk at a time in `scratch` (2 bytes per id; a 2-entry stack array when it holds
/// less), each later token looked up in the chunk by binary search (the bound is on
/// [`Model::from_bytes_in`]). `compares` counts token comparisons (tests hold it to the bound).
pub(crate) fn first_duplicate_token(
    offsets: &[u8],
    bytes: &[u8],
    scratch: &mut [u8],
    compares: &mut u64,
) -> Option<usize> {
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
    let mut small = [0u16; 2];
    // SAFETY: every bit pattern is a valid `u16`; `align_to_mut` only hands out aligned ones.
    let (_, ids, _) = unsafe { scratch.align_to_mut::<u16>() };
    let ids: &mut [u16] = if ids.len() >= 2 { ids } else { &mut small };
    let chunk = ids.len().min(n).max(1);
    let mut first: Option<usize> = None;
    let mut start = 0;
    // Ids fit `u16`: `n ≤ 65535` (FORMAT.md limits).
    while start < n && first.is_none_or(|f| start < f) {
        let end = (start + chunk).min(n);
        let sorted = &mut ids[..end - start];
        for (k, id) in sorted.iter_mut().enumerate() {
            *id = (start + k) as u16;
        }
        // Equal tokens sort by id, so a run's second id is its first repeat.
        sorted.sort_unstable_by(|&a, &b| {
            *compares += 1;
            tok(a as usize).cmp(tok(b as usize)).then(a.cmp(&b))
        });
        for w in sorted.windows(2) {
            *compares += 1;
            if tok(w[0] as usize) == tok(w[1] as usize) {
                let k = w[1] as usize;
                first = Some(first.map_or(k, |f| f.min(k)));
            }
        }
        for k in end..first.unwrap_or(n).min(n) {
            let t = tok(k);
            let found = sorted
                .binary_search_by(|&id| {
                    *compares += 1;
                    tok(id as usize).cmp(t)
                })
                .is_ok();
            if found {
                first = Some(first.map_or(k, |f| f.min(k)));
                break;
            }
        }
        start = end;
    }
    first
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

#[cfg(test)]
mod tests {
    use super::first_duplicate_token;
    use crate::text::sampler::Pcg32;
    use std::vec::Vec;

    /// A vocabulary's `VocabOffsets` and `VocabBytes` sections.
    fn sections(tokens: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let (mut offsets, mut bytes) = (0u32.to_le_bytes().to_vec(), Vec::new());
        for t in tokens {
            bytes.extend_from_slice(t);
            offsets.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
        (offsets, bytes)
    }

    /// The first id equal to an earlier one, by comparing every pair.
    fn first_duplicate_by_pairs(tokens: &[Vec<u8>]) -> Option<usize> {
        (1..tokens.len()).find(|&k| tokens[..k].contains(&tokens[k]))
    }

    fn check(tokens: &[Vec<u8>], scratch_bytes: usize) -> (Option<usize>, u64) {
        let (offsets, bytes) = sections(tokens);
        let mut scratch = std::vec![0u8; scratch_bytes];
        let mut compares = 0;
        let found = first_duplicate_token(&offsets, &bytes, &mut scratch, &mut compares);
        (found, compares)
    }

    /// `⌈V/c⌉ · (c + V) · (⌈log₂ c⌉ + 1)` (Model::from_bytes_in).
    fn bound(v: usize, c: usize) -> u64 {
        let log = usize::BITS - (c.max(2) - 1).leading_zeros();
        (v.div_ceil(c) * (c + v)) as u64 * (log as u64 + 1)
    }

    #[test]
    fn finds_the_first_repeat_for_any_chunk_size() {
        let mut rng = Pcg32::new(7, 1);
        for case in 0..300 {
            let v = 1 + rng.next_u32() as usize % 200;
            // Few distinct short strings, so that repeats are common but not certain.
            let alphabet = 2 + rng.next_u32() % 6;
            let tokens: Vec<Vec<u8>> = (0..v)
                .map(|_| {
                    let len = 1 + rng.next_u32() as usize % 3;
                    (0..len)
                        .map(|_| b'a' + (rng.next_u32() % alphabet) as u8)
                        .collect()
                })
                .collect();
            let want = first_duplicate_by_pairs(&tokens);
            for scratch in [0, 3, 4, 6, 10, 64, 2 * v, 4 * v + 2] {
                assert_eq!(
                    check(&tokens, scratch).0,
                    want,
                    "case {case}, scratch {scratch}"
                );
            }
        }
    }

    #[test]
    fn a_sorted_vocabulary_costs_no_comparison() {
        let tokens: Vec<Vec<u8>> = (0u8..=255).map(|b| std::vec![b]).collect();
        assert_eq!(check(&tokens, 0), (None, 0));
    }

    /// The largest vocabulary the format allows (65535 tokens), distinct and in decreasing
    /// order, is the worst case: nothing ends the search early.
    #[test]
    fn the_largest_unsorted_vocabulary_stays_within_the_bound() {
        let v = crate::blob::format::MAX_VOCAB as usize;
        let tokens: Vec<Vec<u8>> = (0..v)
            .rev()
            .map(|k| (k as u16).to_be_bytes().to_vec())
            .collect();
        for chunk in [crate::blob::format::VOCAB_CHECK_CHUNK, v] {
            let (found, compares) = check(&tokens, 2 * chunk);
            assert_eq!(found, None);
            std::eprintln!(
                "V {v}, chunk {chunk}: {compares} comparisons, bound {}",
                bound(v, chunk)
            );
            assert!(
                compares <= bound(v, chunk),
                "{compares} > {} (chunk {chunk})",
                bound(v, chunk)
            );
        }
        // One repeat at the very end is found.
        let mut last = tokens.clone();
        last[v - 1] = last[0].clone();
        assert_eq!(
            check(&last, 2 * crate::blob::format::VOCAB_CHECK_CHUNK).0,
            Some(v - 1)
        );
    }
}
