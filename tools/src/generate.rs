//! `tools generate`: stream a continuation of a prompt, token by token.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use runtime::{
    decode, encode, session_bytes_prefill, Generator, Model, SamplerConfig, Session, Utf8Stream,
};

/// Highest temperature (the runtime's [`runtime::chat::MAX_TEMPERATURE_MILLI`], in units).
pub const MAX_TEMPERATURE: f64 = 100.0;

/// `x` in at most a few dozen characters: plain for everyday magnitudes, else in scientific
/// notation (`1e308`, not a 309-digit number; `-1e-300`, not 300 zeros).
pub fn short_number(x: f64) -> String {
    if x.is_finite() && (x == 0.0 || (1e-3..1e9).contains(&x.abs())) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// The runtime's sampler settings for a real-valued temperature (used in thousandths, as the
/// firmware's build-time setting is).
pub fn sampler(temperature: f64, top_k: u32, seed: u64) -> Result<SamplerConfig> {
    if !(temperature.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&temperature)) {
        bail!(
            "temperature must be between 0 and 100, got {}",
            short_number(temperature)
        );
    }
    Ok(SamplerConfig {
        temperature_milli: (temperature * 1000.0).round() as u32,
        top_k,
        seed,
    })
}

/// Writes `prompt`, then `tokens` generated tokens, to `out`, flushing after each token (a
/// UTF-8 character that a byte-level model spreads over several tokens goes out whole, when
/// its last byte arrives; [`Utf8Stream`]). The
/// session spans the model's whole context; the runtime's [`Generator`] slides its window when
/// the context is full, exactly as the firmware does (the prompt and each slide's re-feed run as
/// blocks of up to `ctx_len / 2` tokens here, one token at a time on the firmware: the same
/// bits).
pub fn generate(
    model: Model<'_>,
    prompt: &str,
    tokens: usize,
    config: SamplerConfig,
    out: &mut (impl Write + ?Sized),
) -> Result<()> {
    let mut ids = vec![0u16; prompt.len()];
    let n = encode(&model, prompt.as_bytes(), &mut ids).map_err(|e| anyhow!("prompt: {e}"))?;
    if n == 0 {
        bail!("the prompt must not be empty");
    }
    let ctx = model.config().ctx_len;
    let block = (ctx / 2).max(1);
    let mut mem = crate::memory::zeroed(session_bytes_prefill(model.config(), ctx, block))?;
    let mut session =
        Session::with_block(model, ctx, block, &mut mem).map_err(|e| anyhow!("{e}"))?;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let mut text = Utf8Stream::new();
    for tok in Generator::new(&mut session, &ids[..n], config).take(tokens) {
        text.push(decode(&model, tok.map_err(|e| anyhow!("{e}"))?), |b| {
            out.write_all(b)
        })?;
        out.flush()?;
    }
    text.finish(|b| out.write_all(b))?;
    out.flush()?;
    Ok(())
}
