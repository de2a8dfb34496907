//! Tokenizer over the blob's vocabulary: a byte-level BPE model's merges
//! ([`bpe`](crate::bpe)) or, for other vocabularies (characters), greedy longest match to
//! encode; a table lookup to decode.

use crate::blob::model::Model;
use crate::error::EncodeError;

/// Encodes `text` into `out`; returns the number of tokens written. `out.len() ≥ text.len()`
/// always suffices (a token is at least one byte).
///
/// - A byte-level BPE model ([`Model::merges`]): any bytes, with the merges
///   ([`Merges::encode`](crate::bpe::Merges::encode): at most `M · len(text)` pair comparisons,
///   a 128-byte work array). Never [`EncodeError::Unknown`].
/// - Any other vocabulary (characters): greedy longest match over the token byte strings
///   (ties: the lowest id). [`EncodeError::Unknown`] names the first byte offset no token
///   starts (and the UTF-8 character there). Cost: `O(len(text) · Σ token lengths)` in the
///   worst case.
///
/// Errors: [`EncodeError::OutputFull`] when `out` is too short.
pub fn encode(model: &Model<'_>, text: &[u8], out: &mut [u16]) -> Result<usize, EncodeError> {
    if let Some(merges) = model.merges() {
        return merges.encode(text, out);
    }
    let vocab = model.config().vocab_size as usize;
    let mut pos = 0usize;
    let mut n = 0usize;
    while let Some(rest) = text.get(pos..).filter(|r| !r.is_empty()) {
        let mut best: Option<(u16, usize)> = None;
        for id in 0..vocab as u16 {
            let Some(tok) = model.token_bytes(id) else {
                continue;
            };
            if tok.len() > best.map_or(0, |b| b.1) && rest.starts_with(tok) {
                best = Some((id, tok.len()));
            }
        }
        let Some((id, len)) = best else {
            let ch = rest
                .get(..utf8_len(rest[0]).min(rest.len()))
                .and_then(|b| core::str::from_utf8(b).ok())
                .and_then(|s| s.chars().next());
            return Err(EncodeError::Unknown {
                offset: pos as u32,
                byte: rest[0],
                ch,
            });
        };
        let slot = out
            .get_mut(n)
            .ok_or(EncodeError::OutputFull { written: n as u32 })?;
        *slot = id;
        n += 1;
        pos += len;
    }
    Ok(n)
}

/// Length of the UTF-8 sequence a leading byte announces (1 for invalid leaders).
fn utf8_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// The bytes of `token` (empty for an id outside the vocabulary).
pub fn decode<'a>(model: &Model<'a>, token: u16) -> &'a [u8] {
    model.token_bytes(token).unwrap_or(&[])
}
