//! `tools eval`: the validation loss of a blob, computed by the integer runtime on the split
//! and windows the trainer uses for its `quantized_val_loss` (`trainer/EXPORT.md`), per token
//! and per character of the scored text, whatever the tokenizer.

use std::collections::HashMap;

use anyhow::{bail, Result};
use runtime::{encode, session_bytes_prefill, Model, Session, LOGIT_FRAC_BITS};
use serde::Serialize;

/// The validation split of `text` (nanoGPT's: characters `⌊9n/10⌋..n` of the text, whatever
/// the tokenizer) as token ids: a byte-level BPE model's encoding of that text (the runtime's
/// encoder, as the trainer's), else one token per character.
pub fn validation_tokens(model: &Model<'_>, text: &str) -> Result<Vec<u16>> {
    if model.merges().is_some() {
        let n = text.chars().count();
        let at = text
            .char_indices()
            .nth(9 * n / 10)
            .map_or(text.len(), |(i, _)| i);
        let split = &text.as_bytes()[at..];
        let mut ids = vec![0u16; split.len()];
        let k = encode(model, split, &mut ids).map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.truncate(k);
        return Ok(ids);
    }
    let mut ids = HashMap::new();
    for id in 0..model.config().vocab_size as u16 {
        if let Some(b) = model.token_bytes(id) {
            ids.insert(b, id);
        }
    }
    let n = text.chars().count();
    let start = 9 * n / 10;
    let mut buf = [0u8; 4];
    text.chars()
        .enumerate()
        .skip(start)
        .map(|(i, ch)| {
            let bytes: &[u8] = ch.encode_utf8(&mut buf).as_bytes();
            match ids.get(bytes) {
                Some(&id) => Ok(id),
                None => bail!(
                    "character {ch:?} (U+{:04X}) at character {i} of the data is not in the model's vocabulary",
                    ch as u32
                ),
            }
        })
        .collect()
}

/// `−ln softmax(logits)[target]` for Q15.16 logits, in f64. The differences are taken in
/// `i64`: logits of a valid blob may span more than `2^31` units.
pub fn nll(logits: &[i32], target: u16) -> f64 {
    let unit = 1.0 / (1u64 << LOGIT_FRAC_BITS) as f64;
    let max = i64::from(logits.iter().copied().max().unwrap_or(0));
    let rel = |l: i32| (i64::from(l) - max) as f64 * unit;
    let sum: f64 = logits.iter().map(|&l| rel(l).exp()).sum();
    let target = logits.get(target as usize).copied().unwrap_or(i32::MIN);
    sum.ln() - rel(target)
}

/// Characters in a token's bytes: the bytes that are not UTF-8 continuation bytes (a character
/// counts where its first byte is, so a text's tokens sum to its characters).
pub fn char_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

/// Result of [`evaluate`].
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// `"bpe"` (byte-level BPE) or `"char"` (any other vocabulary).
    pub tokenizer: &'static str,
    /// Windows of `ctx_len + 1` tokens evaluated.
    pub windows: usize,
    /// Positions predicted (`windows · ctx_len`).
    pub positions: usize,
    /// Mean NLL in nats per predicted token, from the integer runtime's logits (per character
    /// for a character model).
    pub integer_val_loss: f64,
    /// Characters of the predicted tokens.
    pub scored_chars: usize,
    /// Bytes of the predicted tokens.
    pub scored_bytes: usize,
    /// The NLL sum per character of the predicted tokens: comparable across tokenizers.
    pub nats_per_char: f64,
    /// The NLL sum in bits per byte of the predicted tokens.
    pub bits_per_byte: f64,
    /// Characters of the split per token of its encoding.
    pub chars_per_token: f64,
    /// The trainer's `quantized_val_loss` recorded in the blob (nats per token), if any.
    pub trainer_quantized_val_loss: Option<f64>,
    /// The same per character of the predicted tokens (the same windows as the trainer's).
    pub trainer_nats_per_char: Option<f64>,
    /// `integer_val_loss − trainer_quantized_val_loss` (nats per token).
    pub gap: Option<f64>,
    /// Wall time of the evaluation.
    pub seconds: f64,
}

/// Mean NLL over consecutive non-overlapping windows of `ctx_len + 1` tokens (a fresh context
/// per window, run as one block: bit-identical to token-by-token forwards), at most
/// `max_windows` of them, on `threads` threads. `progress` is called after each window.
///
/// The result is the same to the last bit for any thread count: each window's NLLs are summed
/// in position order, and the window sums are added in window order, whichever thread computed
/// them.
pub fn evaluate(
    model: Model<'_>,
    tokens: &[u16],
    max_windows: Option<usize>,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport> {
    let t0 = std::time::Instant::now();
    let ctx = model.config().ctx_len as usize;
    let mut windows: Vec<&[u16]> = tokens.chunks_exact(ctx + 1).collect();
    if let Some(m) = max_windows {
        windows.truncate(m);
    }
    if windows.is_empty() {
        bail!(
            "the validation split has {} tokens, fewer than one window of ctx_len + 1 = {}",
            tokens.len(),
            ctx + 1
        );
    }
    let threads = threads.clamp(1, windows.len());
    let per = windows.len().div_ceil(threads);
    // One window is one block: every weight is read once per window (batched prefill).
    let block = ctx as u32;
    // The NLL sum of each window of `chunk`, in order.
    let sum_windows = |chunk: &[&[u16]]| -> Result<Vec<f64>> {
        let mut mem =
            crate::memory::zeroed(session_bytes_prefill(model.config(), ctx as u32, block))?;
        let mut session = Session::with_block(model, ctx as u32, block, &mut mem)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let v = model.config().vocab_size as usize;
        let mut sums = Vec::with_capacity(chunk.len());
        for w in chunk {
            session.reset();
            let logits = session
                .forward_block(&w[..ctx])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut sum = 0.0;
            for (t, l) in logits.chunks_exact(v).enumerate() {
                sum += nll(l, w[t + 1]);
            }
            sums.push(sum);
            progress();
        }
        Ok(sums)
    };
    let sums: Vec<Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = windows
            .chunks(per)
            .enumerate()
            .map(|(k, chunk)| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || sum_windows(chunk))
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot start eval thread {} of {threads}: {e} (try a smaller --threads)",
                            k + 1
                        )
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| bail!("an eval thread panicked")),
                Err(e) => Err(e),
            })
            .collect()
    });
    // Window order, whatever the split into threads.
    let mut total = 0.0;
    for chunk in sums {
        for s in chunk? {
            total += s;
        }
    }
    let positions = windows.len() * ctx;
    let loss = total / positions as f64;
    let size = |t: u16| {
        let b = model.token_bytes(t).unwrap_or(&[]);
        (char_count(b), b.len())
    };
    let (mut chars, mut bytes) = (0usize, 0usize);
    for w in &windows {
        for &t in &w[1..] {
            let (c, b) = size(t);
            chars += c;
            bytes += b;
        }
    }
    let split_chars: usize = tokens.iter().map(|&t| size(t).0).sum();
    let per_char = positions as f64 / chars.max(1) as f64;
    let trainer = model.val_loss_micro_nats().map(|m| m as f64 / 1e6);
    Ok(EvalReport {
        tokenizer: if model.merges().is_some() {
            "bpe"
        } else {
            "char"
        },
        windows: windows.len(),
        positions,
        integer_val_loss: loss,
        scored_chars: chars,
        scored_bytes: bytes,
        nats_per_char: total / chars.max(1) as f64,
        bits_per_byte: total / std::f64::consts::LN_2 / bytes.max(1) as f64,
        chars_per_token: split_chars as f64 / tokens.len().max(1) as f64,
        trainer_quantized_val_loss: trainer,
        trainer_nats_per_char: trainer.map(|t| t * per_char),
        gap: trainer.map(|t| loss - t),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::nll;

    #[test]
    fn nll_of_uniform_logits_is_ln_v() {
        let l = [7 << 16; 4];
        assert!((nll(&l, 2) - 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn nll_survives_logits_spanning_more_than_i32() {
        // A valid blob with extreme scales: the difference overflows i32.
        let l = [i32::MAX, i32::MIN, 0];
        let n = nll(&l, 1);
        let expect = (i32::MAX as f64 - i32::MIN as f64) / 65536.0;
        assert!(n.is_finite() && (n - expect).abs() < 1e-6, "{n}");
        assert!(nll(&l, 0).abs() < 1e-9);
    }

    #[test]
    fn nll_prefers_the_larger_logit() {
        let l = [0, 2 << 16];
        let expect = (1.0 + (-2f64).exp()).ln();
        assert!((nll(&l, 1) - expect).abs() < 1e-12);
        assert!(nll(&l, 0) > nll(&l, 1));
    }
}
