//! The tokenizer of a run directory (`trainer/EXPORT.md`): a character vocabulary
//! (`export_version` 1: `vocab.json` holds the characters) or byte-level BPE (`export_version`
//! 2: `vocab.json` holds each token's bytes as ISO-8859-1 characters, `tokenizer.json` the
//! merges). Everything is checked before pack builds a blob from it.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use runtime::bpe::{Merges, BYTE_TOKENS, CHUNK_MAX, MAX_MERGES};
use runtime::writer::BpeParams;
use serde::Deserialize;

/// Largest `tokenizer.json` read: 65279 merges of `[65535, 65535],` and then some.
pub const MAX_TOKENIZER_JSON_BYTES: u64 = 4 << 20;

/// The keys of `tokenizer.json` pack uses (others are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct TokenizerFile {
    /// `"bpe"`.
    pub kind: String,
    /// 256: token `b < 256` is the byte `b`.
    pub byte_tokens: usize,
    /// Merge `i` = `[left, right]`, making token `256 + i`.
    pub merges: Vec<[u16; 2]>,
    /// Characters of the validation split per token of its encoding, if recorded.
    #[serde(default)]
    pub val_chars_per_token: Option<f64>,
}

/// A run's vocabulary as the blob stores it: token byte strings, and the BPE merges of a
/// byte-level run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunTokens {
    /// Token byte strings in id order.
    pub tokens: Vec<Vec<u8>>,
    /// The merges of a byte-level BPE run; `None` for characters.
    pub bpe: Option<BpeParams>,
}

/// The bytes of a `vocab.json` string of a BPE run: each character is one byte, its code point
/// (ISO-8859-1); `None` if one is above U+00FF.
pub fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// The tokens of a character run: each string's UTF-8 bytes.
pub fn char_tokens(vocab: &[String]) -> RunTokens {
    RunTokens {
        tokens: vocab.iter().map(|t| t.as_bytes().to_vec()).collect(),
        bpe: None,
    }
}

/// The tokens of a BPE run: `vocab.json`'s strings as bytes, checked against `tokenizer.json`'s
/// merges (the blob's rules, `runtime/FORMAT.md` §8: token `b < 256` is byte `b`, merge `i`
/// names earlier tokens and token `256 + i` is their concatenation, at most 64 bytes).
pub fn bpe_tokens(dir: &Path, vocab: &[String], file: &TokenizerFile) -> Result<RunTokens> {
    let name = dir.join("tokenizer.json");
    let p = crate::term::shown(&name);
    ensure!(
        file.kind == "bpe",
        "{p}: kind {:?} is not a tokenizer this pack knows (\"bpe\")",
        file.kind
    );
    ensure!(
        file.byte_tokens == BYTE_TOKENS,
        "{p}: byte_tokens is {}, a byte-level vocabulary has {BYTE_TOKENS}",
        file.byte_tokens
    );
    ensure!(
        file.merges.len() <= MAX_MERGES,
        "{p}: {} merges, more than the {MAX_MERGES} a blob holds",
        file.merges.len()
    );
    ensure!(
        vocab.len() == BYTE_TOKENS + file.merges.len(),
        "vocab.json has {} tokens but {p} has {} merges: a BPE vocabulary has 256 + merges tokens",
        vocab.len(),
        file.merges.len()
    );
    let tokens = vocab
        .iter()
        .enumerate()
        .map(|(i, s)| {
            latin1_bytes(s).with_context(|| {
                format!("vocab.json: token {i} {s:?} has a character above U+00FF (a BPE run stores bytes as ISO-8859-1)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for (b, t) in tokens.iter().take(BYTE_TOKENS).enumerate() {
        ensure!(
            t.as_slice() == [b as u8],
            "vocab.json: token {b} must be the single byte {b:#04x} in a BPE vocabulary"
        );
    }
    let bpe = BpeParams {
        merges: file.merges.iter().map(|&[l, r]| (l, r)).collect(),
        chars_per_kilotoken: file
            .val_chars_per_token
            .filter(|c| c.is_finite() && *c > 0.0 && *c < 1e6)
            .map(|c| (c * 1000.0).round() as u32),
    };
    let table = bpe.table().map_err(|e| anyhow::anyhow!("{p}: {e}"))?;
    let merges = Merges::from_bytes(&table).context("too many merges")?;
    merges
        .check_references()
        .map_err(|e| anyhow::anyhow!("{p}: {e}"))?;
    for (i, (l, r)) in merges.iter().enumerate() {
        let id = BYTE_TOKENS + i;
        let t = &tokens[id];
        let (a, b) = (&tokens[l as usize], &tokens[r as usize]);
        if t.len() != a.len() + b.len() || !t.starts_with(a) || !t.ends_with(b) {
            bail!("vocab.json: token {id} is not the concatenation of merge {i} (tokens {l} and {r}) of {p}");
        }
        ensure!(
            t.len() <= CHUNK_MAX,
            "vocab.json: token {id} is {} bytes long, more than a chunk ({CHUNK_MAX})",
            t.len()
        );
    }
    Ok(RunTokens {
        tokens,
        bpe: Some(bpe),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_one_byte_per_character() {
        assert_eq!(latin1_bytes("a\u{e9}\u{ff}\n").unwrap(), b"a\xe9\xff\n");
        assert_eq!(latin1_bytes("\u{100}"), None);
    }
}
