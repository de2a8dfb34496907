//! The data pipeline: the vocabulary (characters, or byte-level BPE learned from the training
//! split: [`bpe`]), the 90/10 split of the text, random training batches and the
//! validation windows of the quantized evaluation.

pub mod bpe;
pub mod rng;

use crate::config::TokenizerKind;
use crate::data::bpe::{char_count, Bpe};
use crate::data::rng::SplitMix64;
use crate::error::{shown, Result, TrainError};
use std::path::Path;

/// Character vocabulary: the distinct characters of the corpus sorted by code point; a token id
/// is the index in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    /// token strings in id order (each one character)
    pub tokens: Vec<char>,
}

impl Vocab {
    /// The vocabulary of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut tokens: Vec<char> = text.chars().collect();
        tokens.sort_unstable();
        tokens.dedup();
        Self { tokens }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Token id of every character of `text`; `None` if one is not in the vocabulary.
    pub fn encode(&self, text: &str) -> Option<Vec<u32>> {
        text.chars()
            .map(|c| self.tokens.binary_search(&c).ok().map(|i| i as u32))
            .collect()
    }

    /// The token strings, for `vocab.json`.
    pub fn strings(&self) -> Vec<String> {
        self.tokens.iter().map(|c| c.to_string()).collect()
    }
}

/// A run's tokenizer: the characters of the corpus, or byte-level BPE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokenizer {
    /// One token per character (the distinct characters of the whole corpus).
    Char(Vocab),
    /// Byte-level BPE learned from the training split.
    Bpe(Bpe),
}

impl Tokenizer {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            Tokenizer::Char(v) => v.len(),
            Tokenizer::Bpe(b) => b.len(),
        }
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which kind it is.
    pub fn kind(&self) -> TokenizerKind {
        match self {
            Tokenizer::Char(_) => TokenizerKind::Char,
            Tokenizer::Bpe(_) => TokenizerKind::Bpe,
        }
    }

    /// The token strings, for `vocab.json` (BPE tokens as ISO-8859-1: `trainer/EXPORT.md`).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Tokenizer::Char(v) => v.strings(),
            Tokenizer::Bpe(b) => b.strings(),
        }
    }

    /// `(characters, bytes)` of token `id`'s text (a character counts where its first byte is).
    pub fn token_size(&self, id: u32) -> (usize, usize) {
        match self {
            Tokenizer::Char(v) => (1, v.tokens.get(id as usize).map_or(0, |c| c.len_utf8())),
            Tokenizer::Bpe(b) => b
                .tokens
                .get(id as usize)
                .map_or((0, 0), |t| (char_count(t), t.len())),
        }
    }
}

/// The encoded corpus split nanoGPT's way, on the text: its first ⌊9n/10⌋ characters train,
/// the rest validate, whatever the tokenizer.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// the tokenizer: the characters of the whole corpus, or BPE learned from the training split
    pub vocab: Tokenizer,
    /// token ids of the training split
    pub train: Vec<u32>,
    /// token ids of the validation split
    pub val: Vec<u32>,
    /// FNV-1a 64 of the file's bytes (to check that `--resume` sees the same data)
    pub fingerprint: u64,
    /// number of characters in the corpus
    pub n_chars: usize,
    /// characters of the training split
    pub train_chars: usize,
    /// characters of the validation split
    pub val_chars: usize,
}

/// What the validation windows score ([`val_windows`]): predicted tokens and the characters
/// and bytes of their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scored {
    /// predicted positions (tokens)
    pub tokens: usize,
    /// characters of the predicted tokens
    pub chars: usize,
    /// bytes of the predicted tokens
    pub bytes: usize,
}

impl Corpus {
    /// What the validation windows of `ctx + 1` tokens score: every token but the first of each
    /// window, no trailing partial window.
    pub fn val_scored(&self, ctx: usize) -> Scored {
        let mut s = Scored::default();
        for w in self.val.chunks_exact(ctx + 1) {
            for &t in &w[1..] {
                let (c, b) = self.vocab.token_size(t);
                s.tokens += 1;
                s.chars += c;
                s.bytes += b;
            }
        }
        s
    }
}

/// FNV-1a 64-bit hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Largest corpus the trainer reads: 256 MiB. Held as text and as `u32` ids, that is about
/// 1.3 GiB while loading; tiny Shakespeare is 1.1 MB.
pub const MAX_CORPUS_BYTES: u64 = 256 << 20;

/// Where the default corpus comes from, for the error of a missing `--data` file.
pub const CORPUS_HINT: &str = "--data takes any UTF-8 text file; tiny Shakespeare (1,115,394 bytes) \
     is public at https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

impl Corpus {
    /// Reads and splits the UTF-8 file at `path` with the character vocabulary; `ctx_len` is
    /// checked against both splits. Anything but a regular file of at most
    /// [`MAX_CORPUS_BYTES`] is refused before reading.
    pub fn load(path: &Path, ctx_len: usize) -> Result<Self> {
        Self::load_with(path, ctx_len, TokenizerKind::Char, 0)
    }

    /// [`Corpus::load`] with the tokenizer `kind` (`bpe_vocab`: the BPE vocabulary to learn,
    /// 256 byte tokens plus merges).
    pub fn load_with(
        path: &Path,
        ctx_len: usize,
        kind: TokenizerKind,
        bpe_vocab: usize,
    ) -> Result<Self> {
        use std::io::Read;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TrainError::Data(format!(
                    "data file `{}` does not exist ({CORPUS_HINT})",
                    shown(path)
                )))
            }
            Err(e) => return Err(TrainError::io("read the data file", path)(e)),
        };
        if !meta.is_file() {
            return Err(TrainError::Data(format!(
                "data file `{}` is not a regular file ({CORPUS_HINT})",
                shown(path)
            )));
        }
        if meta.len() > MAX_CORPUS_BYTES {
            return Err(TrainError::Data(format!(
                "data file `{}` is {} bytes, more than the {MAX_CORPUS_BYTES} bytes the trainer reads",
                shown(path),
                meta.len()
            )));
        }
        let file = std::fs::File::open(path)
            .map_err(TrainError::io("read the data file", path.to_path_buf()))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // One byte more than allowed tells a file that grew since it was measured.
        file.take(MAX_CORPUS_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(TrainError::io("read the data file", path.to_path_buf()))?;
        if bytes.len() as u64 > MAX_CORPUS_BYTES {
            return Err(TrainError::Data(format!(
                "data file `{}` grew past {MAX_CORPUS_BYTES} bytes while it was read",
                shown(path)
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            TrainError::Data(format!(
                "data file `{}` is not UTF-8 text ({e})",
                shown(path)
            ))
        })?;
        Self::from_text_with(&text, ctx_len, kind, bpe_vocab)
            .map_err(|e| TrainError::Data(format!("`{}`: {e}", shown(path))))
    }

    /// Builds the character vocabulary and the split from `text`.
    pub fn from_text(text: &str, ctx_len: usize) -> std::result::Result<Self, String> {
        Self::from_text_with(text, ctx_len, TokenizerKind::Char, 0)
    }

    /// Splits `text` at character ⌊9n/10⌋ and tokenizes both parts: with the characters of the
    /// whole text, or (`TokenizerKind::Bpe`) with a byte-level BPE vocabulary of up to
    /// `bpe_vocab` tokens learned from the training part only.
    pub fn from_text_with(
        text: &str,
        ctx_len: usize,
        kind: TokenizerKind,
        bpe_vocab: usize,
    ) -> std::result::Result<Self, String> {
        if text.is_empty() {
            return Err("the corpus is empty".into());
        }
        if kind == TokenizerKind::Bpe {
            return Self::bpe_from_text(text, ctx_len, bpe_vocab);
        }
        let vocab = Vocab::from_text(text);
        if vocab.len() > runtime::format::MAX_VOCAB as usize {
            return Err(format!(
                "the corpus has {} distinct characters; a model holds at most {} (token ids are 16-bit)",
                vocab.len(),
                runtime::format::MAX_VOCAB as usize
            ));
        }
        if vocab.len() < 2 {
            return Err(format!(
                "the corpus has a single distinct character ({:?}): there is nothing to predict",
                vocab.tokens[0]
            ));
        }
        let mut train = vocab
            .encode(text)
            .ok_or("a character outside the vocabulary built from the same text")?;
        let n = train.len();
        let n_train = n * 9 / 10;
        let val = train.split_off(n_train);
        // A window needs ctx_len + 1 tokens (inputs and shifted targets) in each split.
        if val.len() < ctx_len + 1 || train.len() < ctx_len + 1 {
            return Err(format!(
                "the corpus has {n} characters; with ctx {ctx_len} it needs at least {} \
                 (each split must hold one window of ctx+1 characters)",
                10 * (ctx_len + 1) + 1
            ));
        }
        Ok(Self {
            train_chars: train.len(),
            val_chars: val.len(),
            vocab: Tokenizer::Char(vocab),
            train,
            val,
            fingerprint: fnv1a64(text.as_bytes()),
            n_chars: n,
        })
    }

    fn bpe_from_text(
        text: &str,
        ctx_len: usize,
        bpe_vocab: usize,
    ) -> std::result::Result<Self, String> {
        let n = text.chars().count();
        let n_train = n * 9 / 10;
        let at = text
            .char_indices()
            .nth(n_train)
            .map_or(text.len(), |(i, _)| i);
        let (train_text, val_text) = text.split_at(at);
        let bpe = Bpe::learn(train_text.as_bytes(), bpe_vocab);
        let train = bpe.encode(train_text.as_bytes());
        let val = bpe.encode(val_text.as_bytes());
        if val.len() < ctx_len + 1 || train.len() < ctx_len + 1 {
            return Err(format!(
                "the corpus encodes to {} training and {} validation tokens; with ctx {ctx_len} \
                 each split must hold one window of ctx+1 = {} tokens",
                train.len(),
                val.len(),
                ctx_len + 1
            ));
        }
        Ok(Self {
            vocab: Tokenizer::Bpe(bpe),
            train,
            val,
            fingerprint: fnv1a64(text.as_bytes()),
            n_chars: n,
            train_chars: n_train,
            val_chars: n - n_train,
        })
    }
}

/// One batch of token ids, row-major: `inputs[b*t + i]` predicts `targets[b*t + i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `[batch, ctx]` input ids
    pub inputs: Vec<i32>,
    /// `[batch, ctx]` target ids (inputs shifted by one)
    pub targets: Vec<i32>,
    /// number of sequences
    pub batch: usize,
    /// sequence length
    pub ctx: usize,
}

/// `batch` windows starting at uniform random offsets in `0..len-ctx` (nanoGPT's `get_batch`).
pub fn random_batch(data: &[u32], batch: usize, ctx: usize, rng: &mut SplitMix64) -> Batch {
    let mut inputs = Vec::with_capacity(batch * ctx);
    let mut targets = Vec::with_capacity(batch * ctx);
    for _ in 0..batch {
        let start = rng.below((data.len() - ctx) as u64) as usize;
        inputs.extend(data[start..start + ctx].iter().map(|&t| t as i32));
        targets.extend(data[start + 1..start + ctx + 1].iter().map(|&t| t as i32));
    }
    Batch {
        inputs,
        targets,
        batch,
        ctx,
    }
}

/// Input noising ("data noising as smoothing", Xie et al. 2017, unigram noising): each input id
/// is replaced, with probability `p`, by the id at a uniform random position of `data` — a draw
/// from the split's character frequencies. Targets stay: the model learns to predict the text
/// from a corrupted context. Training only; `p = 0` leaves the batch alone and draws nothing.
pub fn noise_inputs(batch: &mut Batch, data: &[u32], p: f64, rng: &mut SplitMix64) {
    if p <= 0.0 {
        return;
    }
    // p as a 64-bit threshold: a draw below it replaces (p < 1, so it fits).
    let threshold = (p * 18_446_744_073_709_551_616.0) as u64;
    for id in &mut batch.inputs {
        if rng.next_u64() < threshold {
            *id = data[rng.below(data.len() as u64) as usize] as i32;
        }
    }
}

/// The windows of the quantized validation loss: the split cut into consecutive, non-overlapping
/// windows of `ctx + 1` tokens (a trailing partial window is dropped), grouped `batch` at a time.
pub fn val_windows(data: &[u32], ctx: usize, batch: usize) -> Vec<Batch> {
    let windows: Vec<&[u32]> = data.chunks_exact(ctx + 1).collect();
    windows
        .chunks(batch)
        .map(|group| {
            let mut inputs = Vec::with_capacity(group.len() * ctx);
            let mut targets = Vec::with_capacity(group.len() * ctx);
            for w in group {
                inputs.extend(w[..ctx].iter().map(|&t| t as i32));
                targets.extend(w[1..].iter().map(|&t| t as i32));
            }
            Batch {
                inputs,
                targets,
                batch: group.len(),
                ctx,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_sorted_and_split() {
        let text = "hello world, hello burn! ".repeat(20);
        let c = Corpus::from_text(&text, 8).unwrap();
        let Tokenizer::Char(v) = &c.vocab else {
            panic!("not a character vocabulary")
        };
        assert_eq!(v.tokens[0], ' ');
        assert!(v.tokens.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(c.train.len() + c.val.len(), text.chars().count());
        assert_eq!(c.train.len(), text.chars().count() * 9 / 10);
        assert_eq!((c.train_chars, c.val_chars), (c.train.len(), c.val.len()));
        // Every token is one character: the scored characters are the scored tokens.
        let s = c.val_scored(8);
        assert_eq!(s.tokens, c.val.len() / 9 * 8);
        assert_eq!((s.chars, s.bytes), (s.tokens, s.tokens));
    }

    #[test]
    fn a_bpe_split_is_the_same_text_as_the_character_split() {
        let text = "caf\u{e9} au lait, the king; ".repeat(60);
        let chars = Corpus::from_text(&text, 8).unwrap();
        let c = Corpus::from_text_with(&text, 8, TokenizerKind::Bpe, 300).unwrap();
        let Tokenizer::Bpe(bpe) = &c.vocab else {
            panic!("not BPE")
        };
        assert!(bpe.len() <= 300 && bpe.len() > 256);
        assert_eq!(
            (c.train_chars, c.val_chars),
            (chars.train_chars, chars.val_chars)
        );
        // The validation tokens decode to exactly the character split's text.
        let val_text: String = text.chars().skip(chars.train_chars).collect();
        let back: Vec<u8> = c
            .val
            .iter()
            .flat_map(|&t| bpe.tokens[t as usize].clone())
            .collect();
        assert_eq!(back, val_text.as_bytes());
        // Fewer tokens than characters; the scored characters are those of the targets.
        assert!(c.val.len() < c.val_chars);
        let s = c.val_scored(8);
        let windows = c.val.len() / 9;
        assert_eq!(s.tokens, windows * 8);
        let want: usize = c
            .val
            .chunks_exact(9)
            .flat_map(|w| w[1..].iter())
            .map(|&t| char_count(&bpe.tokens[t as usize]))
            .sum();
        assert_eq!(s.chars, want);
        assert!(s.chars > s.tokens && s.bytes > s.chars);
        // A text too short in tokens says so.
        let e = Corpus::from_text_with(&"ab ".repeat(40), 16, TokenizerKind::Bpe, 400).unwrap_err();
        assert!(e.contains("tokens"), "{e}");
    }

    #[test]
    fn one_distinct_character_is_refused() {
        let e = Corpus::from_text(&"a".repeat(1000), 8).unwrap_err();
        assert!(e.contains("single distinct character"), "{e}");
    }

    #[test]
    fn more_characters_than_token_ids_are_refused() {
        let text: String = (0x4e00u32..0x4e00 + 70_000)
            .filter_map(char::from_u32)
            .collect();
        let e = Corpus::from_text(&text, 8).unwrap_err();
        assert!(e.contains("distinct characters"), "{e}");
    }

    #[test]
    fn too_short_and_empty() {
        assert!(Corpus::from_text("", 4).is_err());
        assert!(Corpus::from_text("abcdefghij", 4).is_err());
    }

    #[test]
    fn windows_drop_partial() {
        let data: Vec<u32> = (0..25).collect();
        let w = val_windows(&data, 4, 2); // 5 full windows of 5, none left
        assert_eq!(w.iter().map(|b| b.batch).sum::<usize>(), 5);
        assert_eq!(w[0].inputs, vec![0, 1, 2, 3, 5, 6, 7, 8]);
        assert_eq!(w[0].targets, vec![1, 2, 3, 4, 6, 7, 8, 9]);
        let w = val_windows(&data[..24], 4, 8);
        assert_eq!(w[0].batch, 4);
    }

    #[test]
    fn input_noise_replaces_a_share_of_the_inputs_by_the_split_s_characters() {
        let data: Vec<u32> = (0..4096).map(|i| if i % 4 == 0 { 7 } else { 9 }).collect();
        let clean = random_batch(&data, 64, 128, &mut SplitMix64::new(3));
        let mut b = clean.clone();
        noise_inputs(&mut b, &data, 0.0, &mut SplitMix64::new(5));
        assert_eq!(b, clean, "p = 0 changed the batch");
        let mut b = clean.clone();
        noise_inputs(&mut b, &data, 0.2, &mut SplitMix64::new(5));
        assert_eq!(b.targets, clean.targets, "targets changed");
        assert!(
            b.inputs.iter().all(|&t| t == 7 || t == 9),
            "an id not in the split"
        );
        // A replaced id differs from the original with probability 2·¼·¾ = 0.375 here.
        let n = b.inputs.len() as f64;
        let changed = b
            .inputs
            .iter()
            .zip(&clean.inputs)
            .filter(|(a, c)| a != c)
            .count();
        let share = changed as f64 / n;
        assert!((share - 0.2 * 0.375).abs() < 0.01, "changed share {share}");
        let mut again = clean.clone();
        noise_inputs(&mut again, &data, 0.2, &mut SplitMix64::new(5));
        assert_eq!(again, b, "the same stream gave another noise");
    }

    #[test]
    fn batches_shift_by_one() {
        let data: Vec<u32> = (0..100).collect();
        let b = random_batch(&data, 3, 10, &mut SplitMix64::new(1));
        for r in 0..3 {
            for i in 0..10 {
                assert_eq!(b.targets[r * 10 + i], b.inputs[r * 10 + i] + 1);
            }
        }
    }
}
