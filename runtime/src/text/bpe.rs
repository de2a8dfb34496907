//! Byte-level BPE (blob format v4, `FORMAT.md` §8): the chunking rule, the merge table and
//! the encoder. No allocation, bounded memory, any bytes in.
//!
//! A BPE vocabulary is **canonical**: token `b < 256` is the single byte `b`; merge `i` joins
//! two earlier tokens `(left, right)` (both `< 256 + i`) into token `256 + i`, whose bytes are
//! `left`'s followed by `right`'s. So every byte string has an encoding, the merge graph has no
//! cycle by construction, and the vocabulary is `256 + M` tokens for `M` merges.
//!
//! Encoding cuts the text into **chunks** ([`chunk_len`]) and encodes each on its own (merges
//! never cross a chunk boundary), applying the merges in rank order ([`Merges::encode_chunk`]).
//! The trainer learns its merges on the same chunks, so the runtime's encoding of a training
//! text is the segmentation the trainer trained on.

use crate::error::{EncodeError, TokenizerError};

pub use crate::blob::format::{BYTE_TOKENS, CHUNK_MAX, MAX_MERGES};

/// The byte classes of the chunking rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// ASCII letters and digits, `'`, and every byte ≥ 0x80 (so a UTF-8 character is never
    /// cut by a class change).
    Word,
    /// `' '`.
    Space,
    /// `'\n'`.
    Newline,
    /// Everything else: punctuation, tab, `'\r'`, other control bytes.
    Other,
}

const fn class(b: u8) -> Class {
    match b {
        b' ' => Class::Space,
        b'\n' => Class::Newline,
        b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' | b'\'' | 0x80..=0xFF => Class::Word,
        _ => Class::Other,
    }
}

/// Length of the chunk at the start of `text` (0 for an empty text): one space followed by a
/// run of word bytes or of other bytes (`" the"`, `" --"`), else a maximal run of bytes of one
/// class (`"the"`, `"\n\n"`, `"   "`, `",'"`), cut at [`CHUNK_MAX`] bytes.
pub fn chunk_len(text: &[u8]) -> usize {
    let Some(&first) = text.first() else {
        return 0;
    };
    let mut run = class(first);
    let mut i = 1;
    if run == Class::Space {
        if let Some(&next) = text.get(1) {
            let c = class(next);
            if c == Class::Word || c == Class::Other {
                run = c;
                i = 2;
            }
        }
    }
    while i < CHUNK_MAX && text.get(i).is_some_and(|&b| class(b) == run) {
        i += 1;
    }
    i
}

/// The chunks of `text` in order ([`chunk_len`]); they concatenate to `text`.
pub fn chunks(text: &[u8]) -> Chunks<'_> {
    Chunks { rest: text }
}

/// Iterator over the chunks of a text ([`chunks`]).
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let n = chunk_len(self.rest);
        if n == 0 {
            return None;
        }
        let (chunk, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

/// A merge table as stored in a blob: `4·M` bytes, merge `i` = `left` (`u16` LE), `right`
/// (`u16` LE), making token `256 + i`. Merge `i` has rank `i`: lower ranks apply first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merges<'a> {
    bytes: &'a [u8],
}

impl<'a> Merges<'a> {
    /// No merges: the encoder then yields one token per byte.
    pub const EMPTY: Merges<'static> = Merges { bytes: &[] };

    /// The table stored in `bytes`; `None` unless its length is a multiple of 4 and it holds
    /// at most [`MAX_MERGES`] merges. The token ids are not checked here
    /// ([`Merges::check_references`]; the loader checks everything).
    pub const fn from_bytes(bytes: &'a [u8]) -> Option<Merges<'a>> {
        if !bytes.len().is_multiple_of(4) || bytes.len() / 4 > MAX_MERGES {
            return None;
        }
        Some(Merges { bytes })
    }

    /// The stored bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of merges `M` (the vocabulary is `256 + M` tokens).
    pub const fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// `true` without merges.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Merge `i`: `(left, right)`.
    pub fn get(&self, i: usize) -> Option<(u16, u16)> {
        let b = self.bytes.get(4 * i..4 * i + 4)?;
        Some((
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        ))
    }

    /// The merges in rank order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u16)> + 'a {
        self.bytes.chunks_exact(4).map(|b| {
            (
                u16::from_le_bytes([b[0], b[1]]),
                u16::from_le_bytes([b[2], b[3]]),
            )
        })
    }

    /// Every merge names two tokens made before it: `left, right < 256 + i`. This is what rules
    /// out a merge that names itself, a later merge, or an id outside the vocabulary, and so
    /// any cycle.
    pub fn check_references(&self) -> Result<(), TokenizerError> {
        for (i, (l, r)) in self.iter().enumerate() {
            let limit = BYTE_TOKENS + i;
            for token in [l, r] {
                if token as usize >= limit {
                    return Err(TokenizerError::Reference {
                        index: i as u32,
                        token,
                    });
                }
            }
        }
        Ok(())
    }

    /// Encodes one chunk of at most [`CHUNK_MAX`] bytes (longer input is cut there) into
    /// `work`; returns how many tokens it holds.
    ///
    /// Starting from one token per byte, each merge in rank order replaces every occurrence of
    /// its pair, left to right without overlap. A merged token pairs only with merges of a
    /// higher rank (a merge names earlier tokens only), so this is exactly "merge the
    /// lowest-ranked adjacent pair, leftmost first, until none is left", in at most
    /// `M · len` pair comparisons.
    pub fn encode_chunk(&self, chunk: &[u8], work: &mut [u16; CHUNK_MAX]) -> usize {
        let mut len = chunk.len().min(CHUNK_MAX);
        for (w, &b) in work.iter_mut().zip(chunk) {
            *w = u16::from(b);
        }
        for (i, (l, r)) in self.iter().enumerate() {
            if len < 2 {
                break;
            }
            let Some(first) = (0..len - 1).find(|&j| work[j] == l && work[j + 1] == r) else {
                continue;
            };
            // `from_bytes` keeps `M ≤ MAX_MERGES`, so the id fits.
            let id = (BYTE_TOKENS + i) as u16;
            let (mut read, mut write) = (first, first);
            while read < len {
                if read + 1 < len && work[read] == l && work[read + 1] == r {
                    work[write] = id;
                    read += 2;
                } else {
                    work[write] = work[read];
                    read += 1;
                }
                write += 1;
            }
            len = write;
        }
        len
    }

    /// Encodes `text` (any bytes) into `out`, chunk by chunk; returns the number of tokens.
    /// A chunk whose tokens do not fit is not written (`OutputFull` counts the tokens of the
    /// chunks before it).
    ///
    /// Memory: a [`CHUNK_MAX`]-token work array on the stack. Time: at most `M` passes over
    /// each chunk, `M · len(text)` pair comparisons in all. Errors: only
    /// [`EncodeError::OutputFull`] (`out.len() ≥ text.len()` always suffices).
    pub fn encode(&self, text: &[u8], out: &mut [u16]) -> Result<usize, EncodeError> {
        let mut work = [0u16; CHUNK_MAX];
        let mut n = 0usize;
        for chunk in chunks(text) {
            let k = self.encode_chunk(chunk, &mut work);
            let dst = out
                .get_mut(n..n + k)
                .ok_or(EncodeError::OutputFull { written: n as u32 })?;
            dst.copy_from_slice(&work[..k]);
            n += k;
        }
        Ok(n)
    }
}

/// Checks a BPE vocabulary against its merges (the loader, for a blob with
/// [`FLAG_BPE`](crate::format::FLAG_BPE)): `vocab_size = 256 + M`, token `b < 256` is the byte
/// `b`, every merge names earlier tokens, token `256 + i` is its merge's concatenation and at
/// most [`CHUNK_MAX`] bytes. `token(id)` gives a token's bytes. Cost: linear in the vocabulary
/// bytes.
pub(crate) fn check_vocab<'t>(
    merges: &Merges<'_>,
    vocab_size: u32,
    token: impl Fn(u16) -> &'t [u8],
) -> Result<(), TokenizerError> {
    let m = merges.len();
    if vocab_size as usize != BYTE_TOKENS + m {
        return Err(TokenizerError::Count {
            vocab_size,
            merges: m as u32,
        });
    }
    for b in 0..BYTE_TOKENS as u16 {
        if token(b) != [b as u8] {
            return Err(TokenizerError::ByteToken { token: b });
        }
    }
    merges.check_references()?;
    for (i, (l, r)) in merges.iter().enumerate() {
        let id = (BYTE_TOKENS + i) as u16;
        let (t, a, b) = (token(id), token(l), token(r));
        if t.len() > CHUNK_MAX {
            return Err(TokenizerError::TooLong { token: id });
        }
        if t.len() != a.len() + b.len() || !t.starts_with(a) || !t.ends_with(b) {
            return Err(TokenizerError::Concat { index: i as u32 });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::sampler::Pcg32;
    use std::collections::HashMap;
    use std::vec::Vec;

    fn table(merges: &[(u16, u16)]) -> Vec<u8> {
        merges
            .iter()
            .flat_map(|&(l, r)| l.to_le_bytes().into_iter().chain(r.to_le_bytes()))
            .collect()
    }

    /// The reference: repeatedly merge the adjacent pair of lowest rank, leftmost first.
    fn reference(merges: &[(u16, u16)], chunk: &[u8]) -> Vec<u16> {
        let rank: HashMap<(u16, u16), usize> =
            merges.iter().enumerate().map(|(i, &p)| (p, i)).collect();
        let mut t: Vec<u16> = chunk.iter().map(|&b| u16::from(b)).collect();
        loop {
            let best = (0..t.len().saturating_sub(1))
                .filter_map(|j| rank.get(&(t[j], t[j + 1])).map(|&r| (r, j)))
                .min();
            let Some((r, j)) = best else { return t };
            t[j] = (BYTE_TOKENS + r) as u16;
            t.remove(j + 1);
        }
    }

    /// Bytes of every token of a table.
    fn token_strings(merges: &[(u16, u16)]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..=255u8).map(|b| std::vec![b]).collect();
        for &(l, r) in merges {
            let mut t = v[l as usize].clone();
            t.extend_from_slice(&v[r as usize]);
            v.push(t);
        }
        v
    }

    /// Random merges over a small alphabet, so that they apply often.
    fn random_merges(rng: &mut Pcg32, n: usize, alphabet: &[u8]) -> Vec<(u16, u16)> {
        let mut m = Vec::new();
        let mut strings = token_strings(&m);
        let mut ids: Vec<u16> = alphabet.iter().map(|&b| u16::from(b)).collect();
        while m.len() < n {
            let l = ids[rng.next_u32() as usize % ids.len()];
            let r = ids[rng.next_u32() as usize % ids.len()];
            let mut s = strings[l as usize].clone();
            s.extend_from_slice(&strings[r as usize]);
            if s.len() > 8 || strings.contains(&s) {
                continue;
            }
            m.push((l, r));
            ids.push((BYTE_TOKENS + m.len() - 1) as u16);
            strings = token_strings(&m);
        }
        m
    }

    #[test]
    fn chunks_follow_the_rule() {
        let text = b"ROMEO:\nI'll  go, the  --caf\xc3\xa9 \n\n\t x";
        let got: Vec<&[u8]> = chunks(text).collect();
        let want: [&[u8]; 15] = [
            b"ROMEO",
            b":",
            b"\n",
            b"I'll",
            b"  ",
            b"go",
            b",",
            b" the",
            b"  ",
            b"--",
            b"caf\xc3\xa9",
            b" ",
            b"\n\n",
            b"\t",
            b" x",
        ];
        assert_eq!(got, want);
        // FORMAT.md's example.
        let doc: Vec<&[u8]> = chunks(b"ROMEO:\nI'll go, the king").collect();
        let want: [&[u8]; 8] = [
            b"ROMEO", b":", b"\n", b"I'll", b" go", b",", b" the", b" king",
        ];
        assert_eq!(doc, want);
        assert_eq!(got.concat(), text);
        let long = [b'a'; 150];
        let lens: Vec<usize> = chunks(&long).map(<[u8]>::len).collect();
        assert_eq!(lens, [64, 64, 22]);
        assert_eq!(chunks(b"").count(), 0);
    }

    #[test]
    fn encoding_matches_the_reference_on_random_text() {
        let mut rng = Pcg32::new(11, 3);
        for case in 0..200 {
            let alphabet: &[u8] = if case % 2 == 0 {
                b"ab "
            } else {
                b"abc\n\xc3\xa9"
            };
            let merges = random_merges(&mut rng, 1 + case % 40, alphabet);
            let bytes = table(&merges);
            let m = Merges::from_bytes(&bytes).unwrap();
            m.check_references().unwrap();
            let len = rng.next_u32() as usize % 200;
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.next_u32() as usize % alphabet.len()])
                .collect();
            let want: Vec<u16> = chunks(&text).flat_map(|c| reference(&merges, c)).collect();
            let mut out = std::vec![0u16; text.len()];
            let n = m.encode(&text, &mut out).unwrap();
            assert_eq!(&out[..n], &want[..], "case {case}");
            // Decoding gives the text back.
            let strings = token_strings(&merges);
            let back: Vec<u8> = out[..n]
                .iter()
                .flat_map(|&t| strings[t as usize].clone())
                .collect();
            assert_eq!(back, text, "case {case}");
        }
    }

    #[test]
    fn any_bytes_round_trip() {
        let mut rng = Pcg32::new(5, 9);
        let merges = random_merges(&mut rng, 60, b"\x00\xff\xc3\x80ab \n");
        let bytes = table(&merges);
        let m = Merges::from_bytes(&bytes).unwrap();
        let strings = token_strings(&merges);
        for len in [0usize, 1, 2, 63, 64, 65, 300] {
            let text: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            let mut out = std::vec![0u16; len];
            let n = m.encode(&text, &mut out).unwrap();
            let back: Vec<u8> = out[..n]
                .iter()
                .flat_map(|&t| strings[t as usize].clone())
                .collect();
            assert_eq!(back, text);
        }
        // Too small an output says how far it got (in whole chunks).
        let mut out = [0u16; 3];
        assert_eq!(
            Merges::EMPTY.encode(b"ab cd", &mut out),
            Err(EncodeError::OutputFull { written: 2 })
        );
    }

    #[test]
    fn overlapping_pairs_merge_left_to_right() {
        // "aaa" with (a, a): [aa, a]; "aaaa": [aa, aa]; then (aa, a) on "aaaaa" → [aa, aaa].
        let merges = [(97, 97), (256, 97)];
        let bytes = table(&merges);
        let m = Merges::from_bytes(&bytes).unwrap();
        let mut w = [0u16; CHUNK_MAX];
        let n = m.encode_chunk(b"aaa", &mut w);
        assert_eq!(&w[..n], &[257]);
        let n = Merges::from_bytes(&bytes[..4])
            .unwrap()
            .encode_chunk(b"aaa", &mut w);
        assert_eq!(&w[..n], &[256, 97]);
        let n = m.encode_chunk(b"aaaaa", &mut w);
        assert_eq!(&w[..n], &[256, 257]);
        assert_eq!(reference(&merges, b"aaaaa"), [256, 257]);
    }

    #[test]
    fn references_must_name_earlier_tokens() {
        for (merges, bad) in [
            (&[(97u16, 256u16)][..], (0, 256)),
            (&[(97, 98), (258, 97)][..], (1, 258)),
            (&[(97, 98), (257, 97)][..], (1, 257)),
            (&[(65535, 97)][..], (0, 65535)),
        ] {
            let bytes = table(merges);
            assert_eq!(
                Merges::from_bytes(&bytes).unwrap().check_references(),
                Err(TokenizerError::Reference {
                    index: bad.0,
                    token: bad.1
                })
            );
        }
        assert!(Merges::from_bytes(&[0; 5]).is_none());
        let too_many = std::vec![0u8; 4 * (MAX_MERGES + 1)];
        assert!(Merges::from_bytes(&too_many).is_none());
    }
}
