//! Interactive mode (no `FIRMWARE_PROMPT`): the chat protocol of `runtime::chat` on the
//! board's serial ports. The model comes from the flash partition (or is embedded); when it
//! is absent, invalid or too big the greeting and every prompt say so, and the commands keep
//! working.

use core::convert::Infallible;

use runtime::chat::{Chat, ModelProblem, Settings, Terminal, MAX_TOKENS};
use runtime::Session;

use crate::{settings, source, work};

/// The starting settings (`FIRMWARE_TOKENS`, `FIRMWARE_SEED`, … at build time).
const START: Settings = Settings {
    temperature_milli: settings::TEMPERATURE_MILLI,
    top_k: settings::TOP_K,
    seed: settings::SEED,
    tokens: if settings::TOKENS < MAX_TOKENS {
        settings::TOKENS
    } else {
        MAX_TOKENS
    },
};

/// Serves the protocol on `term`. Returns only after Ctrl-D, and only when `exit_on_end`
/// (the QEMU twin, whose stdin has ended); a board keeps serving.
pub fn serve<T: Terminal<Error = Infallible>>(
    term: &mut T,
    exit_on_end: bool,
    cores: source::Cores,
) {
    let session = open_session(cores);
    if let Err(problem) = &session {
        defmt::warn!("no model: {}", defmt::Display2Format(problem));
    }
    let mut chat = Chat::new(session, START);
    let Ok(()) = chat.greet(term);
    loop {
        let Ok(busy) = chat.poll(term);
        if chat.ended() && exit_on_end {
            return;
        }
        if !busy {
            core::hint::spin_loop();
        }
    }
}

/// The model's session in the static arena, or why there is none.
fn open_session(cores: source::Cores) -> Result<Session<'static, 'static>, ModelProblem> {
    let (blob, origin) = source::blob()?;
    // The arena is taken here only, once: `None` cannot happen (it would read "needs 0 bytes").
    let arena = work::take().ok_or(ModelProblem::TooBig {
        needed: 0,
        available: 0,
    })?;
    let loaded = source::load(blob, origin, arena)?;
    let needed = source::session_bytes(&loaded.model, loaded.ctx_len);
    let too_big = ModelProblem::TooBig {
        needed: u32::try_from(needed).unwrap_or(u32::MAX),
        available: work::ARENA_BYTES as u32,
    };
    let config = loaded.model.config();
    defmt::info!(
        "model: {} bytes ({}), vocab {}, d {}, layers {}, ctx {}; working memory {} of {} bytes",
        loaded.blob_len,
        loaded.origin,
        config.vocab_size,
        config.d_model,
        config.n_layers,
        loaded.ctx_len,
        needed,
        arena.len()
    );
    source::place(loaded, arena, cores).map_err(|_| too_big)
}
