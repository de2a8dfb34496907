//! The model summary the page shows: the report of the `inspect` crate, which `tools inspect`
//! prints. The page therefore shows, character for character, what `tools inspect` (and
//! `tools inspect --json`) prints (a test checks it).

use runtime::Model;

/// `tools inspect`'s text report and `tools inspect --json`'s output (a trailing newline each,
/// as the command prints them) of the model loaded from `blob`.
pub fn both(model: &Model<'_>, blob: &[u8]) -> (String, String) {
    let report = inspect::inspect(model, blob);
    let json =
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    (report.to_string(), json + "\n")
}
