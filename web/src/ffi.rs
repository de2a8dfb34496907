//! The C API the page calls: WebAssembly exports that pass only integers and pointers, so any
//! JavaScript (or any C caller) drives the engine without generated glue.
//!
//! Data crosses through two buffers that the module owns: the caller asks for an *input*
//! buffer of `len` bytes ([`bitnet_input`]), writes into it and calls a function that consumes
//! it; a function that produces bytes (a message, a token, a summary) leaves them in the
//! *output* buffer ([`bitnet_output`], [`bitnet_output_len`]), valid until the next call. In
//! WebAssembly any call may grow the memory: take a fresh view of it after each call.
//!
//! Return codes: `0` done / finished, `1` a token is in the output buffer ([`bitnet_step`]),
//! `-1` an error whose message (UTF-8) is in the output buffer.
//!
//! ```text
//! p = bitnet_input(blob.len); copy blob to p; bitnet_load()        → 0 | -1
//! bitnet_summary(0 | 1)                                             → 0 (text | JSON) | -1
//! p = bitnet_input(n); copy "temperature=0.8\ntop_k=0\nseed=0\ntokens=100" to p;
//! bitnet_settings()                                                 → 0 | -1
//! p = bitnet_input(n); copy prompt (UTF-8) to p; bitnet_start()     → 0 | -1
//! loop { bitnet_step() }                                            → 1 (token bytes) | 0 | -1
//! bitnet_status()                                                   → 0 (JSON: progress)
//! bitnet_kernels(1 | 0)                                             → 0 (portable | best kernels)
//! ```

use std::cell::RefCell;

use runtime::kernels::{detected, force_portable, level, set_level};

use crate::engine::{Engine, MAX_MEMORY};
use crate::settings::Settings;

/// Success, or the end of a generation ([`bitnet_step`]).
pub const OK: i32 = 0;
/// [`bitnet_step`]: a token's bytes are in the output buffer.
pub const TOKEN: i32 = 1;
/// An error; its message is in the output buffer.
pub const ERROR: i32 = -1;

/// Everything the exports share. WebAssembly modules run on one thread; a thread-local keeps
/// the host build (tests) honest about that too.
#[derive(Default)]
struct State {
    input: Vec<u8>,
    output: Vec<u8>,
    engine: Option<Engine>,
    settings: Settings,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

impl State {
    /// Puts `bytes` in the output buffer.
    fn put(&mut self, bytes: &[u8]) {
        self.output.clear();
        self.output.extend_from_slice(bytes);
    }

    /// Puts `message` in the output buffer and returns [`ERROR`].
    fn fail(&mut self, message: &str) -> i32 {
        self.put(message.as_bytes());
        ERROR
    }
}

/// An input buffer of `len` bytes (zeroed) for the next call to consume; null when `len` is
/// over 1 GiB or the allocator refuses it. The previous input is dropped.
#[no_mangle]
pub extern "C" fn bitnet_input(len: usize) -> *mut u8 {
    with(|s| {
        s.input = Vec::new();
        if len > MAX_MEMORY || s.input.try_reserve_exact(len).is_err() {
            return std::ptr::null_mut();
        }
        s.input.resize(len, 0);
        s.input.as_mut_ptr()
    })
}

/// Start of the output buffer.
#[no_mangle]
pub extern "C" fn bitnet_output() -> *const u8 {
    with(|s| s.output.as_ptr())
}

/// Length of the output buffer, bytes.
#[no_mangle]
pub extern "C" fn bitnet_output_len() -> usize {
    with(|s| s.output.len())
}

/// Loads the input buffer as a model blob, replacing the model loaded before. `-1`: the blob
/// is refused, the message says why, and the model loaded before stays loaded (a generation in
/// progress ends either way).
#[no_mangle]
pub extern "C" fn bitnet_load() -> i32 {
    with(|s| {
        let blob = std::mem::take(&mut s.input);
        if let Some(e) = s.engine.as_mut() {
            e.stop();
        }
        match Engine::load(blob) {
            Ok(e) => {
                s.engine = Some(e);
                s.output.clear();
                OK
            }
            Err(m) => s.fail(&m),
        }
    })
}

/// Puts the loaded model's summary in the output buffer: `tools inspect`'s text, or with
/// `json` non-zero `tools inspect --json`'s.
#[no_mangle]
pub extern "C" fn bitnet_summary(json: u32) -> i32 {
    with(|s| match &s.engine {
        Some(e) => {
            s.output.clear();
            s.output.extend_from_slice(e.summary(json != 0).as_bytes());
            OK
        }
        None => s.fail("no model is loaded"),
    })
}

/// Reads generation settings from the input buffer: UTF-8 `key=value` lines, `temperature`,
/// `top_k`, `seed`, `tokens` (`tools generate`'s flags and defaults; a missing key takes the
/// default). They apply to the next [`bitnet_start`].
#[no_mangle]
pub extern "C" fn bitnet_settings() -> i32 {
    with(|s| {
        let input = std::mem::take(&mut s.input);
        let parsed = std::str::from_utf8(&input)
            .map_err(|_| "the settings are not UTF-8".to_string())
            .and_then(|t| Settings::parse(t).map_err(|e| e.to_string()));
        match parsed {
            Ok(settings) => {
                s.settings = settings;
                OK
            }
            Err(m) => s.fail(&m),
        }
    })
}

/// Starts a generation continuing the prompt in the input buffer (UTF-8), with the settings
/// of the last [`bitnet_settings`]. `-1`: no model, an empty prompt, or a character outside
/// the model's vocabulary (the message names it, as `tools generate` does).
#[no_mangle]
pub extern "C" fn bitnet_start() -> i32 {
    with(|s| {
        let prompt = std::mem::take(&mut s.input);
        let settings = s.settings;
        let Some(engine) = s.engine.as_mut() else {
            return s.fail("no model is loaded");
        };
        match engine.start(&prompt, settings) {
            Ok(()) => {
                s.output.clear();
                OK
            }
            Err(m) => s.fail(&m),
        }
    })
}

/// The next token: `1` with its bytes in the output buffer, `0` once the settings' number of
/// tokens is out (or nothing was started), `-1` on an error. The first step of a generation
/// runs the prompt through the model.
#[no_mangle]
pub extern "C" fn bitnet_step() -> i32 {
    with(|s| {
        let Some(engine) = s.engine.as_mut() else {
            return s.fail("no model is loaded");
        };
        match engine.step() {
            Ok(Some(bytes)) => {
                s.output.clear();
                s.output.extend_from_slice(bytes);
                TOKEN
            }
            Ok(None) => {
                s.output.clear();
                OK
            }
            Err(m) => s.fail(&m),
        }
    })
}

/// Runs the portable kernels (`portable` non-zero) or the best this module has (`simd128`), from
/// now on; the level also decides, at [`bitnet_load`], whether a base-3 blob is repacked to
/// 2-bit for SIMD kernels. The output buffer gets the level's name. For speed comparisons: every
/// level computes the same bits.
#[no_mangle]
pub extern "C" fn bitnet_kernels(portable: u32) -> i32 {
    // `detected()` is always supported; should that ever fail, the portable kernels remain.
    if portable != 0 || set_level(detected()).is_err() {
        force_portable();
    }
    with(|s| {
        s.put(level().name().as_bytes());
        OK
    })
}

/// Puts a JSON object in the output buffer: `loaded`, `generated` (tokens of the generation
/// in progress or last finished), `slides` (its context-window slides), `kernels` (the
/// runtime's kernel family), `ctx_len`.
#[no_mangle]
pub extern "C" fn bitnet_status() -> i32 {
    with(|s| {
        let status = match &s.engine {
            Some(e) => {
                let (generated, slides) = e.progress();
                serde_json::json!({
                    "loaded": true,
                    "generated": generated,
                    "slides": slides,
                    "kernels": e.kernels(),
                    "ctx_len": e.model().config().ctx_len,
                })
            }
            None => serde_json::json!({ "loaded": false }),
        };
        s.put(status.to_string().as_bytes());
        OK
    })
}
