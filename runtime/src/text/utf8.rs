//! Streaming output that never splits a UTF-8 character: a byte-level token may end in the
//! middle of one, so the bytes of an incomplete sequence at the end are held back until the
//! next token completes it (at most 3 bytes, no allocation).

/// Length of the UTF-8 sequence that byte `b` starts: 2 to 4 for a leading byte
/// (`0xC2..=0xF4`), else 1 (ASCII, a continuation byte or a byte that never occurs in UTF-8).
const fn sequence_len(b: u8) -> usize {
    match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

const fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// How many bytes at the end of `bytes` are an incomplete UTF-8 sequence: a leading byte
/// followed by fewer continuation bytes than it announces (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for k in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - k];
        if is_continuation(b) {
            continue;
        }
        return if sequence_len(b) > k { k } else { 0 };
    }
    0
}

/// Passes bytes on in pieces that never end inside a UTF-8 character.
///
/// [`push`](Utf8Stream::push) forwards everything except an incomplete sequence at the end,
/// which it holds (at most 3 bytes) until later bytes complete it; a byte that cannot continue
/// it releases the held bytes as they are (invalid UTF-8 is passed on, never dropped or
/// repaired). [`finish`](Utf8Stream::finish) releases what is left. The bytes that come out
/// are exactly the bytes that went in, in order. For text that is valid UTF-8 token by token
/// (every character-level model) nothing is ever held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    held: [u8; 4],
    len: u8,
}

impl Utf8Stream {
    /// An empty stream.
    pub const fn new() -> Utf8Stream {
        Utf8Stream {
            held: [0; 4],
            len: 0,
        }
    }

    /// The bytes held back, waiting for the rest of their character.
    pub fn held(&self) -> &[u8] {
        self.held.get(..self.len as usize).unwrap_or(&[])
    }

    /// Feeds `bytes`; calls `emit` with every piece that can go out now (possibly none). The
    /// first error of `emit` is returned; the stream is then in an unspecified but safe state.
    pub fn push<E>(
        &mut self,
        bytes: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = bytes;
        // Complete (or give up on) the held sequence first.
        while self.len > 0 {
            let Some((&b, after)) = rest.split_first() else {
                return Ok(());
            };
            if is_continuation(b) {
                self.held[self.len as usize] = b;
                self.len += 1;
                rest = after;
                if self.len as usize == sequence_len(self.held[0]) {
                    self.len = 0;
                    emit(&self.held[..sequence_len(self.held[0])])?;
                }
            } else {
                // Cut short: pass the held bytes on as they are, then `b` as usual.
                let n = self.len as usize;
                self.len = 0;
                emit(&self.held[..n])?;
            }
        }
        let tail = incomplete_tail(rest);
        let (now, later) = rest.split_at(rest.len() - tail);
        if !now.is_empty() {
            emit(now)?;
        }
        self.held[..tail].copy_from_slice(later);
        self.len = tail as u8;
        Ok(())
    }

    /// Releases the held bytes (the end of the output: an incomplete character goes out as
    /// it is).
    pub fn finish<E>(&mut self, mut emit: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let n = self.len as usize;
        self.len = 0;
        if n > 0 {
            emit(&self.held[..n])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::sampler::Pcg32;
    use std::vec::Vec;

    /// Feeds `pieces`, returns what came out, piece by piece.
    fn run(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = Utf8Stream::new();
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, |b| {
                out.push(b.to_vec());
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        s.finish(|b| {
            out.push(b.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        out
    }

    /// Byte ranges of the valid UTF-8 characters of `bytes` (what a decoder would show).
    fn valid_chars(bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let (valid, skip) = match core::str::from_utf8(&bytes[i..]) {
                Ok(s) => (s.len(), 0),
                Err(e) => (
                    e.valid_up_to(),
                    e.error_len().unwrap_or(bytes.len() - i - e.valid_up_to()),
                ),
            };
            let s = core::str::from_utf8(&bytes[i..i + valid]).unwrap();
            for (k, c) in s.char_indices() {
                ranges.push((i + k, i + k + c.len_utf8()));
            }
            i += valid + skip;
        }
        ranges
    }

    #[test]
    fn a_character_split_across_tokens_arrives_whole() {
        // "é€😀" as bytes, cut everywhere.
        let text = "aé€😀b".as_bytes();
        for cut1 in 0..=text.len() {
            for cut2 in cut1..=text.len() {
                let out = run(&[&text[..cut1], &text[cut1..cut2], &text[cut2..]]);
                assert_eq!(out.concat(), text);
                for piece in &out {
                    assert!(
                        core::str::from_utf8(piece).is_ok(),
                        "{piece:?} split a char"
                    );
                }
            }
        }
        // Byte by byte: each character comes out in one piece.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        let out = run(&bytes);
        let want: Vec<Vec<u8>> = "aé€😀b"
            .chars()
            .map(|c| c.encode_utf8(&mut [0; 4]).as_bytes().to_vec())
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn invalid_bytes_pass_through_unchanged() {
        let mut rng = Pcg32::new(3, 4);
        for _ in 0..2000 {
            let len = rng.next_u32() as usize % 12;
            // Mostly bytes that matter to UTF-8.
            let pick = [
                0x41u8, 0x80, 0xBF, 0xC2, 0xC3, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0xFF, 0xC0,
            ];
            let bytes: Vec<u8> = (0..len)
                .map(|_| pick[rng.next_u32() as usize % pick.len()])
                .collect();
            let cuts: Vec<&[u8]> = bytes.chunks(1 + rng.next_u32() as usize % 3).collect();
            let out = run(&cuts);
            assert_eq!(out.concat(), bytes);
            // No piece boundary falls inside a valid character of the input.
            let mut boundaries = Vec::new();
            let mut at = 0;
            for piece in &out {
                at += piece.len();
                boundaries.push(at);
            }
            for (start, end) in valid_chars(&bytes) {
                assert!(
                    !boundaries.iter().any(|&b| start < b && b < end),
                    "{bytes:x?} cut inside {start}..{end}: {out:x?}"
                );
            }
        }
        assert_eq!(
            run(&[b"\xe2\x82", b"x"]),
            [b"\xe2\x82".to_vec(), b"x".to_vec()]
        );
        assert_eq!(run(&[b"\xf0\x9f"]), [b"\xf0\x9f".to_vec()]);
        assert!(run(&[b""]).is_empty());
    }

    #[test]
    fn an_error_of_the_sink_comes_back() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(b"ab", |_| Err(7)), Err(7));
        s.push(b"\xc3", |_| Ok::<(), i32>(())).unwrap();
        assert_eq!(s.held(), b"\xc3");
        assert_eq!(s.finish(|_| Err(8)), Err(8));
    }
}
