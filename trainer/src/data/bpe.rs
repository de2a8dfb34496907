//! Learning a byte-level BPE vocabulary (`--tokenizer bpe --vocab N`) from the training split.
//!
//! The tokenizer is the runtime's (`runtime::bpe`, blob format v4): tokens `0..256` are the
//! bytes, merge `i` joins two earlier tokens into token `256 + i`, texts are cut into chunks
//! (`runtime::bpe::chunks`) and merges never cross a chunk. Learning counts the chunks of the
//! training text, then repeatedly merges the most frequent adjacent pair (ties: the smallest
//! `(left, right)` ids), applying each merge to every chunk exactly as the runtime's encoder
//! does, so the runtime encodes the training text into the segmentation learned here
//! (`tests::the_runtime_encodes_the_training_chunks_as_learned`). A pair whose concatenation
//! is already a token is skipped (the vocabulary stays a set of distinct strings, as the blob
//! requires), and learning stops early when no pair occurs twice.
//!
//! The encoding itself is the runtime's ([`Bpe::encode`] calls `runtime::bpe::Merges::encode`),
//! so the trainer, `tools eval` and the device cannot disagree.

use std::collections::{HashMap, HashSet};

use runtime::bpe::{self, Merges, CHUNK_MAX};

/// A byte-level BPE tokenizer: its merges and the byte strings of its `256 + M` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bpe {
    /// Merge `i` = `(left, right)`, making token `256 + i`.
    pub merges: Vec<(u16, u16)>,
    /// Token byte strings in id order.
    pub tokens: Vec<Vec<u8>>,
}

impl Bpe {
    /// The 256 byte tokens, no merges.
    pub fn bytes_only() -> Self {
        Self {
            merges: Vec::new(),
            tokens: (0..=255u8).map(|b| vec![b]).collect(),
        }
    }

    /// The tokenizer of `merges` (the token strings follow from them); `None` when a merge names
    /// a token not made before it or makes a token longer than a chunk.
    pub fn from_merges(merges: &[(u16, u16)]) -> Option<Self> {
        let mut bpe = Self::bytes_only();
        for &(l, r) in merges {
            let id = bpe.tokens.len();
            if l as usize >= id || r as usize >= id || id > runtime::format::MAX_VOCAB as usize {
                return None;
            }
            let t = [&bpe.tokens[l as usize][..], &bpe.tokens[r as usize][..]].concat();
            if t.len() > CHUNK_MAX {
                return None;
            }
            bpe.tokens.push(t);
            bpe.merges.push((l, r));
        }
        Some(bpe)
    }

    /// Learns up to `vocab_size − 256` merges from `text` (see the module docs).
    pub fn learn(text: &[u8], vocab_size: usize) -> Self {
        let mut bpe = Self::bytes_only();
        let target = vocab_size.min(runtime::format::MAX_VOCAB as usize);
        // Distinct chunks with their counts, in a fixed order (the counts decide, not the order).
        let mut counts: HashMap<&[u8], u64> = HashMap::new();
        for c in bpe::chunks(text) {
            *counts.entry(c).or_default() += 1;
        }
        let mut chunks: Vec<(&[u8], u64)> = counts.into_iter().collect();
        chunks.sort_unstable();
        let mut words: Vec<(Vec<u16>, u64)> = chunks
            .iter()
            .map(|&(c, n)| (c.iter().map(|&b| u16::from(b)).collect(), n))
            .collect();
        // Pair counts over all chunks, and which chunks hold each pair (may list chunks that
        // no longer do; they are skipped).
        let mut pairs: HashMap<(u16, u16), u64> = HashMap::new();
        let mut holders: HashMap<(u16, u16), Vec<u32>> = HashMap::new();
        for (wi, (w, n)) in words.iter().enumerate() {
            for p in w.windows(2) {
                *pairs.entry((p[0], p[1])).or_default() += n;
                holders.entry((p[0], p[1])).or_default().push(wi as u32);
            }
        }
        let mut known: HashSet<Vec<u8>> = bpe.tokens.iter().cloned().collect();
        let mut skipped: HashSet<(u16, u16)> = HashSet::new();
        while bpe.tokens.len() < target {
            // Most frequent pair; ties: the smallest ids.
            let best = pairs
                .iter()
                .filter(|(p, &n)| n >= 2 && !skipped.contains(*p))
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(&p, _)| p);
            let Some((l, r)) = best else { break };
            let t = [&bpe.tokens[l as usize][..], &bpe.tokens[r as usize][..]].concat();
            if known.contains(&t) {
                skipped.insert((l, r));
                continue;
            }
            let id = bpe.tokens.len() as u16;
            known.insert(t.clone());
            bpe.tokens.push(t);
            bpe.merges.push((l, r));
            let mut list = holders.remove(&(l, r)).unwrap_or_default();
            list.dedup();
            for wi in list {
                let (w, n) = &mut words[wi as usize];
                if !w.windows(2).any(|p| p[0] == l && p[1] == r) {
                    continue;
                }
                for p in w.windows(2) {
                    let k = (p[0], p[1]);
                    if let Some(c) = pairs.get_mut(&k) {
                        *c -= *n;
                        if *c == 0 {
                            pairs.remove(&k);
                        }
                    }
                }
                // The runtime's rule: left to right, no overlap.
                let mut merged = Vec::with_capacity(w.len());
                let mut j = 0;
                while j < w.len() {
                    if j + 1 < w.len() && w[j] == l && w[j + 1] == r {
                        merged.push(id);
                        j += 2;
                    } else {
                        merged.push(w[j]);
                        j += 1;
                    }
                }
                for p in merged.windows(2) {
                    let k = (p[0], p[1]);
                    *pairs.entry(k).or_default() += *n;
                    if p[0] == id || p[1] == id {
                        holders.entry(k).or_default().push(wi);
                    }
                }
                *w = merged;
            }
            pairs.remove(&(l, r));
        }
        bpe
    }

    /// Number of tokens, `256 + M`.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never: there are always the 256 byte tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The merge table as the blob stores it (4 bytes per merge, little-endian ids).
    pub fn table(&self) -> Vec<u8> {
        self.merges
            .iter()
            .flat_map(|&(l, r)| l.to_le_bytes().into_iter().chain(r.to_le_bytes()))
            .collect()
    }

    /// The token ids of `text`: the runtime's encoder with these merges.
    pub fn encode(&self, text: &[u8]) -> Vec<u32> {
        let table = self.table();
        // `learn` and `from_merges` keep the table within the runtime's limits.
        let merges = Merges::from_bytes(&table).unwrap_or(Merges::EMPTY);
        let mut out = vec![0u16; text.len()];
        let n = merges.encode(text, &mut out).unwrap_or(0);
        out[..n].iter().map(|&t| u32::from(t)).collect()
    }

    /// `vocab.json`'s strings: each token's bytes as the characters U+0000..U+00FF with those
    /// code points (ISO-8859-1), so every byte string is one JSON string (`trainer/EXPORT.md`).
    pub fn strings(&self) -> Vec<String> {
        self.tokens.iter().map(|t| latin1(t)).collect()
    }
}

/// Bytes as the characters with those code points (ISO-8859-1): `vocab.json`'s encoding of a
/// byte-level token.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The bytes of a [`latin1`] string; `None` if it holds a character above U+00FF.
pub fn from_latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Characters a token's bytes hold: the bytes that are not UTF-8 continuation bytes (so a
/// character counts where its first byte is, and a text's counts sum to its characters).
pub fn char_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let words = [
            "the",
            "king",
            "queen",
            "thee",
            "thou",
            "art",
            "and",
            "caf\u{e9}",
            "to",
            "be",
        ];
        let mut s = String::new();
        let mut x = 7u64;
        for i in 0..4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(words[(x >> 33) as usize % words.len()]);
            s.push(if i % 11 == 10 { '\n' } else { ' ' });
        }
        s
    }

    #[test]
    fn the_runtime_encodes_the_training_chunks_as_learned() {
        let text = sample();
        let bpe = Bpe::learn(text.as_bytes(), 256 + 30);
        assert_eq!(bpe.merges.len(), 30);
        // Run to the end (no pair repeats any more), every chunk of the text is one token, and
        // the runtime's encoder finds it.
        let all = Bpe::learn(text.as_bytes(), 1000);
        assert!(all.len() < 1000);
        let table = all.table();
        let merges = Merges::from_bytes(&table).unwrap();
        let mut work = [0u16; CHUNK_MAX];
        for c in bpe::chunks(text.as_bytes()) {
            let n = merges.encode_chunk(c, &mut work);
            assert_eq!(n, 1, "{:?}", String::from_utf8_lossy(c));
            assert_eq!(all.tokens[work[0] as usize], c);
        }
        // Frequent whole words became tokens.
        for w in [" the", " king", " caf\u{e9}"] {
            assert!(
                bpe.tokens.iter().any(|t| t == w.as_bytes()),
                "{w:?} is not a token"
            );
        }
        // Distinct strings, each its merge's concatenation.
        let set: HashSet<&Vec<u8>> = bpe.tokens.iter().collect();
        assert_eq!(set.len(), bpe.len());
        assert_eq!(Bpe::from_merges(&bpe.merges).unwrap(), bpe);
        // Encoding round-trips, and is shorter than the bytes.
        let ids = bpe.encode(text.as_bytes());
        let back: Vec<u8> = ids
            .iter()
            .flat_map(|&t| bpe.tokens[t as usize].clone())
            .collect();
        assert_eq!(back, text.as_bytes());
        assert!(ids.len() * 3 < text.len(), "{} tokens", ids.len());
        // Learning is deterministic.
        assert_eq!(Bpe::learn(text.as_bytes(), 256 + 30), bpe);
    }

    #[test]
    fn merge_counts_are_the_reference_counts() {
        // Reference learner: recount every pair over the runtime's encoding of each chunk with
        // the merges so far, take the most frequent (ties: smallest ids), skip known strings.
        let text = sample();
        let text = &text.as_bytes()[..6000];
        let fast = Bpe::learn(text, 256 + 25);
        let mut slow = Bpe::bytes_only();
        let mut skipped = HashSet::new();
        while slow.merges.len() < 25 {
            let mut counts: HashMap<(u16, u16), u64> = HashMap::new();
            let table = slow.table();
            let m = Merges::from_bytes(&table).unwrap();
            let mut work = [0u16; CHUNK_MAX];
            for c in bpe::chunks(text) {
                let k = m.encode_chunk(c, &mut work);
                for p in work[..k].windows(2) {
                    *counts.entry((p[0], p[1])).or_default() += 1;
                }
            }
            let best = counts
                .iter()
                .filter(|(p, &n)| n >= 2 && !skipped.contains(*p))
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(&p, _)| p)
                .unwrap();
            let t = [
                &slow.tokens[best.0 as usize][..],
                &slow.tokens[best.1 as usize][..],
            ]
            .concat();
            if slow.tokens.contains(&t) {
                skipped.insert(best);
                continue;
            }
            slow.tokens.push(t);
            slow.merges.push(best);
        }
        assert_eq!(fast, slow);
    }

    #[test]
    fn learning_stops_when_no_pair_repeats() {
        let bpe = Bpe::learn(b"abcd", 1000);
        assert!(bpe.merges.is_empty());
        let bpe = Bpe::learn(b"ab ab ab", 1000);
        // "ab", " a"+"b" → " ab" ... whatever repeats, then nothing.
        assert!(!bpe.merges.is_empty() && bpe.len() < 270);
        assert_eq!(Bpe::learn(b"", 600), Bpe::bytes_only());
    }

    #[test]
    fn latin1_round_trips_every_byte_string() {
        let all: Vec<u8> = (0..=255u8).collect();
        let s = latin1(&all);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(from_latin1(&s).unwrap(), all);
        assert_eq!(from_latin1("\u{100}"), None);
        assert_eq!(latin1(b" the"), " the");
        assert_eq!(char_count("caf\u{e9}".as_bytes()), 4);
        assert_eq!(char_count(b"\xa9"), 0);
    }
}
