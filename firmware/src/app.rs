//! One-shot mode (`FIRMWARE_PROMPT` set): load the model, encode the prompt, generate, stream
//! the text out, stop. (Without it the firmware serves the chat protocol: `serve.rs`.)
//!
//! Generic over the text sink (`embedded_io::Write`), the LED (`OutputPin`, toggled per
//! token) and the cost counter, so the same code runs on every board.

use core::fmt;

use embedded_hal::digital::OutputPin;
use embedded_io::Write;
use runtime::chat::ModelProblem;
use runtime::{EncodeError, Error, Generator, SamplerConfig, Session};

use crate::cost::{CostCounter, PhaseCost};
use crate::settings::{self, SelfTest};
use crate::source::Loaded;

/// Longest prompt, in tokens (at most one token per byte, for any model).
const MAX_PROMPT_TOKENS: usize = 256;

/// Why the application stopped early.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum AppError {
    /// The model is absent, invalid or too big.
    Model(ModelProblem),
    /// The prompt could not be encoded with the model's vocabulary.
    Encode(EncodeError),
    /// The runtime refused a step (buffer too small, context full, ...).
    Run(Error),
    /// The working memory was already handed out.
    WorkMemoryTaken,
    /// Writing to the text sink failed.
    Output,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Model(e) => write!(f, "{e}"),
            AppError::Encode(e) => write!(f, "the prompt cannot be encoded: {e}"),
            AppError::Run(e) => write!(f, "generation failed: {e}"),
            AppError::WorkMemoryTaken => f.write_str("the working memory is already in use"),
            AppError::Output => f.write_str("writing the text output failed"),
        }
    }
}

/// Runs the configured generation from `prompt_text`, streaming text to `out`: load, place,
/// generate, report.
pub fn run<W: Write, L: OutputPin, C: CostCounter>(
    prompt_text: &str,
    out: &mut W,
    led: &mut L,
    cost: &mut C,
    cores: crate::source::Cores,
) -> Result<(), AppError> {
    run_selftest();
    let arena = crate::work::take().ok_or(AppError::WorkMemoryTaken)?;
    let loaded = load(arena, cost)?;
    let prompt = encode(&loaded, prompt_text)?;
    defmt::info!(
        "working memory {} bytes for a context of {} (needs {})",
        arena.len(),
        loaded.ctx_len,
        crate::source::session_bytes(&loaded.model, loaded.ctx_len)
    );
    let mut session = crate::source::place(loaded, arena, cores).map_err(AppError::Run)?;
    defmt::info!("cores: {} of {}", session.cores(), session.max_cores());
    let (prefill, decode) = generate(&mut session, prompt_text, &prompt, out, led, cost)?;
    report::<C>(&prefill, &decode);
    Ok(())
}

/// The model (embedded or flashed; `FIRMWARE_SELFTEST=bad-blob` truncates it by a byte),
/// validated with `arena` as the loader's scratch, and logged.
fn load<C: CostCounter>(arena: &mut [u8], cost: &mut C) -> Result<Loaded, AppError> {
    let (blob, origin) = crate::source::blob().map_err(AppError::Model)?;
    let blob = match settings::SELFTEST {
        // A truncated blob must be refused, never run.
        Some(SelfTest::BadBlob) => blob.get(..blob.len().saturating_sub(1)).unwrap_or(&[]),
        _ => blob,
    };
    let t0 = cost.now();
    let loaded = crate::source::load(blob, origin, arena).map_err(AppError::Model)?;
    let config = *loaded.model.config();
    defmt::info!(
        "model: {} bytes ({}), vocab {}, d {}, layers {}, heads {}/{}, ffn {}{=str}, ctx {}; validated in {} {}",
        blob.len(),
        origin,
        config.vocab_size,
        config.d_model,
        config.n_layers,
        config.n_heads,
        config.n_kv_heads,
        config.ffn_dim,
        if config.ffn_gated { " gated" } else { "" },
        config.ctx_len,
        cost.now() - t0,
        C::UNIT
    );
    Ok(loaded)
}

/// The prompt's tokens: a fixed-capacity vector (no allocator) that carries its length.
fn encode(
    loaded: &Loaded,
    prompt_text: &str,
) -> Result<heapless::Vec<u16, MAX_PROMPT_TOKENS>, AppError> {
    let mut prompt: heapless::Vec<u16, MAX_PROMPT_TOKENS> = heapless::Vec::new();
    // Cannot fail: the capacity is MAX_PROMPT_TOKENS (an empty buffer would surface as
    // EncodeError::OutputFull below anyway).
    let _ = prompt.resize_default(MAX_PROMPT_TOKENS);
    let n = runtime::encode(&loaded.model, prompt_text.as_bytes(), &mut prompt)
        .map_err(AppError::Encode)?;
    prompt.truncate(n);
    Ok(prompt)
}

/// Writes the prompt, then `settings::TOKENS` tokens as they come, toggling the LED per token;
/// returns what the prefill (the first step) and the decode steps cost.
fn generate<W: Write, L: OutputPin, C: CostCounter>(
    session: &mut Session<'_, '_>,
    prompt_text: &str,
    prompt: &[u16],
    out: &mut W,
    led: &mut L,
    cost: &mut C,
) -> Result<(PhaseCost, PhaseCost), AppError> {
    let sampling = SamplerConfig {
        temperature_milli: settings::TEMPERATURE_MILLI,
        top_k: settings::TOP_K,
        seed: settings::SEED,
    };
    defmt::info!(
        "prompt {} tokens, generating {} (temperature {}/1000, top-k {}, seed {})",
        prompt.len(),
        settings::TOKENS,
        sampling.temperature_milli,
        sampling.top_k,
        sampling.seed
    );
    out.write_all(prompt_text.as_bytes())
        .map_err(|_| AppError::Output)?;
    out.flush().map_err(|_| AppError::Output)?;

    let mut generator = Generator::new(session, prompt, sampling);
    // The first call runs the prompt (prefill) and samples; each later call forwards the
    // previous token and samples (decode).
    let mut prefill = PhaseCost::default();
    let mut decode = PhaseCost::default();
    let mut led_on = false;
    // A byte-level token may end inside a UTF-8 character: the serial line gets it whole.
    let mut text = runtime::Utf8Stream::new();
    for i in 0..settings::TOKENS {
        let t = cost.now();
        crate::cost::cost_checkpoint();
        let step = generator.next_token();
        crate::cost::cost_checkpoint();
        let Some(token) = step.map_err(AppError::Run)? else {
            defmt::warn!("context full after {} generated tokens", i);
            break;
        };
        let spent = cost.now() - t;
        if i == 0 {
            prefill.tokens = prompt.len() as u32;
            prefill.total = spent;
        } else {
            decode.add(spent);
        }
        text.push(runtime::decode(generator.session().model(), token), |b| {
            out.write_all(b)
        })
        .map_err(|_| AppError::Output)?;
        out.flush().map_err(|_| AppError::Output)?;
        led_on = !led_on;
        let _ = if led_on {
            led.set_high()
        } else {
            led.set_low()
        };
        defmt::debug!("token {} = {}: {} {}", i, token, spent, C::UNIT);
    }
    text.finish(|b| out.write_all(b))
        .map_err(|_| AppError::Output)?;
    out.flush().map_err(|_| AppError::Output)?;
    let _ = led.set_low();
    Ok((prefill, decode))
}

/// Logs what the phases cost (`firmware/cost.sh` reads these lines).
fn report<C: CostCounter>(prefill: &PhaseCost, decode: &PhaseCost) {
    defmt::info!(
        "cost: prefill {} tokens {} {} ({} per token); decode {} tokens {} {} ({} per token)",
        prefill.tokens,
        prefill.total,
        C::UNIT,
        prefill.per_token(),
        decode.tokens,
        decode.total,
        C::UNIT,
        decode.per_token()
    );
    let per_token = decode.per_token().max(1);
    let milli_tokens_per_s = C::PER_SECOND * 1000 / per_token;
    defmt::info!(
        "decode: {}.{=u64:03} tokens/s at 150 MHz ({})",
        milli_tokens_per_s / 1000,
        milli_tokens_per_s % 1000,
        C::RATE_NOTE
    );
}

/// Triggers the failure asked for by `FIRMWARE_SELFTEST`, to check that it is reported.
fn run_selftest() {
    match settings::SELFTEST {
        None | Some(SelfTest::BadBlob) => {}
        Some(SelfTest::Panic) => panic!("self-test panic"),
        Some(SelfTest::HardFault) => {
            // A load from an address with nothing behind it: a BusFault, escalated.
            // SAFETY: deliberately faulting.
            let value = unsafe { (0xF000_0000 as *const u32).read_volatile() };
            defmt::error!("read {} from an unmapped address", value);
        }
        Some(SelfTest::StackOverflow) => {
            let sum = crate::fault::recurse(0);
            defmt::error!("recursion returned {}", sum);
        }
    }
}
