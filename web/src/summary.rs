//! The model summary the page shows: `tools inspect`'s own code, compiled in.
//!
//! `tools` is a command-line crate (clap, Ctrl-C handling, file I/O) that does not build for
//! `wasm32-unknown-unknown`; its inspect module depends on nothing but the runtime and serde,
//! so the binding compiles that one file. The page therefore shows, character for character,
//! what `tools inspect` (and `tools inspect --json`) prints (a test checks it).

#[path = "../../tools/src/inspect.rs"]
mod inspect;

use runtime::Model;

/// `tools inspect`'s text report and `tools inspect --json`'s output (a trailing newline each,
/// as the command prints them) of the model loaded from `blob`.
pub fn both(model: &Model<'_>, blob: &[u8]) -> (String, String) {
    let report = inspect::inspect(model, blob);
    let json =
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    (report.to_string(), json + "\n")
}
