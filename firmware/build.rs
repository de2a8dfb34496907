//! Build script: picks the board's `memory.x`, passes the link scripts, and turns the
//! build-time settings (environment variables) into constants in `$OUT_DIR/settings.rs`.
//!
//! Two modes. Without `FIRMWARE_PROMPT` the firmware serves the interactive line protocol
//! (`runtime::chat`) on its serial ports, starting from the settings below; with it, it
//! generates once from that prompt and stops (the QEMU parity tests and cost runs).
//! Without `FIRMWARE_MODEL` the model is read at boot from the flash partition at
//! `0x1010_0000` (`src/partition.rs`, written by `tools uf2`); with it, that blob is embedded.
//! The defaults are those of `tools generate`, so both print the same text.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `FIRMWARE_MODEL` | (none: the flash partition) | model blob to embed; a relative path is relative to `firmware/` |
//! | `FIRMWARE_CTX` | the model's `ctx_len` | context (positions) of the session, with an embedded model |
//! | `FIRMWARE_PROMPT` | (none: interactive) | generate once from this text, byte for byte (pass a newline as a newline, e.g. `$'a\nb'` in bash) |
//! | `FIRMWARE_TOKENS` | `100` | number of tokens to generate after the prompt |
//! | `FIRMWARE_SEED` | `0` | sampling seed (`u64`) |
//! | `FIRMWARE_TEMPERATURE` | `0.8` | sampling temperature as a decimal (at most 3 decimals, e.g. `0.8`); `0` = greedy |
//! | `FIRMWARE_TOP_K` | `0` | sample among the `k` most likely tokens; `0` = all |
//! | `FIRMWARE_CORES` | `2` on two-core boards (`pico2`, `an521`), `1` on `qemu` | cores sharing each token's work at start (the chat's `/cores`) |
//! | `FIRMWARE_SELFTEST` | (none) | `panic`, `hardfault`, `stack-overflow` or `bad-blob`: trigger that failure on purpose (one-shot mode) |

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));

    let pico2 = env::var_os("CARGO_FEATURE_PICO2").is_some();
    let qemu = env::var_os("CARGO_FEATURE_QEMU").is_some();
    let an521 = env::var_os("CARGO_FEATURE_AN521").is_some();
    let board = match (pico2, qemu, an521) {
        (true, false, false) => "pico2",
        (false, true, false) => "qemu",
        (false, false, true) => "an521",
        _ => fail(
            "enable exactly one board feature: `pico2` (the default), `qemu` or `an521` \
             (`cargo build --release --no-default-features --features qemu`)",
        ),
    };
    // Boards whose second core runs half of each token (src/cores.rs).
    println!("cargo::rustc-check-cfg=cfg(two_cores)");
    if board_cores(board) == 2 {
        println!("cargo:rustc-cfg=two_cores");
    }

    // The board's memory map becomes `memory.x`, which cortex-m-rt's `link.x` includes.
    let memory = manifest_dir.join(format!("memory-{board}.x"));
    fs::copy(&memory, out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rerun-if-changed={}", memory.display());
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");

    let settings = Settings::from_env(board);
    let model = ModelInfo::load(&manifest_dir, board);
    let mut rust = settings.to_rust();
    rust.push_str(&model.to_rust());
    fs::write(out.join("settings.rs"), rust).expect("write settings.rs");
}

/// RAM of the board: the Pico 2's 512 KiB on both boards, so that the QEMU twin (4 MiB)
/// refuses, in CI, a model that would not fit the real board.
const fn ram_bytes(board: &str) -> usize {
    match board.as_bytes() {
        b"pico2" | b"qemu" | b"an521" => 512 * 1024,
        _ => 0,
    }
}
/// Cores a board runs the model on at most.
const fn board_cores(board: &str) -> u32 {
    match board.as_bytes() {
        b"pico2" | b"an521" => 2,
        _ => 1,
    }
}

/// Kept free for the stack (the forward pass needs little; the guard catches overflow).
const STACK_RESERVE: usize = 32 * 1024;
/// Other statics (defmt, USB and UART drivers, the chat's line buffers): 1.3 KiB on the Pico 2
/// (`.bss` beyond the arena plus `.uninit`), reserved with room to spare.
const STATICS_RESERVE: usize = 8 * 1024;
/// The runtime's per-token code, copied to RAM at reset (its `ram-code` feature: `.data`;
/// 54.2 KiB on the QEMU board, 55.3 KiB on the Pico 2, with the base-3 and 2-bit kernels). The
/// linker scripts (`memory-*.x`) fail the build when the statics and this code leave less than
/// `STACK_RESERVE` of the 512 KiB.
const RAM_CODE_RESERVE: usize = 56 * 1024;
/// The same on two-core boards, which also hold the split pass (`runtime::workers`) and the
/// core-1 loop in RAM.
const RAM_CODE_RESERVE_TWO_CORES: usize = 60 * 1024;
/// Flash for the code and an embedded model: below the model partition at 0x1010_0000
/// (`memory-*.x`), less room for the code.
const FLASH_FOR_MODEL: usize = 1024 * 1024 - 256 * 1024;

/// The working-memory arena of a board: what its RAM has left for a session.
const fn arena_bytes(board: &str) -> usize {
    let code = if board_cores(board) == 2 {
        RAM_CODE_RESERVE_TWO_CORES
    } else {
        RAM_CODE_RESERVE
    };
    ram_bytes(board) - STACK_RESERVE - STATICS_RESERVE - code
}

/// The embedded model (if any): its path and context; and the arena every model must fit.
struct ModelInfo {
    embedded: Option<(PathBuf, u32)>,
    arena_bytes: usize,
}

impl ModelInfo {
    fn load(manifest_dir: &std::path::Path, board: &str) -> Self {
        let arena_bytes = arena_bytes(board);
        let Some(given) = var("FIRMWARE_MODEL").filter(|m| !m.is_empty()) else {
            if var("FIRMWARE_CTX").is_some() {
                fail("FIRMWARE_CTX needs an embedded model (FIRMWARE_MODEL); a flashed model runs with its own ctx_len");
            }
            return ModelInfo {
                embedded: None,
                arena_bytes,
            };
        };
        let path = manifest_dir.join(given);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(&path).unwrap_or_else(|e| {
            fail(&format!(
                "cannot read the model blob {} ({e}).\n\
                 Pass a model at build time: FIRMWARE_MODEL=/path/to/model.bin cargo build --release \
                 (a relative path is relative to firmware/), or leave FIRMWARE_MODEL unset to read \
                 the model from the flash partition (tools uf2).\n\
                 A random-weight test model: cargo run -p runtime --features writer --example random_blob -- \
                 /tmp/mcu.bin --preset mcu --seed 1",
                path.display(),
            ))
        });
        let model = runtime::Model::from_bytes(&bytes).unwrap_or_else(|e| {
            fail(&format!(
                "the model blob {} is not valid: {e}",
                path.display()
            ))
        });
        let config = *model.config();
        let ctx_len = match var("FIRMWARE_CTX") {
            None => config.ctx_len,
            Some(text) => text
                .trim()
                .parse()
                .ok()
                .filter(|&c| c >= 1 && c <= config.ctx_len)
                .unwrap_or_else(|| {
                    fail(&format!(
                        "FIRMWARE_CTX={text:?}: expected 1..={}",
                        config.ctx_len
                    ))
                }),
        };
        let work_bytes = if board_cores(board) == 2 {
            runtime::session_bytes_workers(&config, ctx_len, 1)
        } else {
            model.session_bytes(ctx_len)
        };
        if work_bytes > arena_bytes {
            let ram = ram_bytes(board);
            fail(&format!(
                "the model {} needs {work_bytes} bytes of working memory for a context of {ctx_len} \
                 positions, but board `{board}` has {ram} bytes of RAM, of which {arena_bytes} can hold it \
                 ({STACK_RESERVE} kept for the stack, {STATICS_RESERVE} for other statics). \
                 Use a smaller model or a shorter context (FIRMWARE_CTX).",
                path.display()
            ));
        }
        if bytes.len() > FLASH_FOR_MODEL {
            fail(&format!(
                "the model {} has {} bytes; at most {FLASH_FOR_MODEL} fit in the flash next to the code \
                 (a bigger model goes into the flash partition: leave FIRMWARE_MODEL unset, use tools uf2)",
                path.display(),
                bytes.len()
            ));
        }
        ModelInfo {
            embedded: Some((path, ctx_len)),
            arena_bytes,
        }
    }

    fn to_rust(&self) -> String {
        let arena = self.arena_bytes;
        let mut rust = format!(
            "/// Bytes of the static working-memory arena (RAM less stack and statics reserves).
pub const ARENA_BYTES: usize = {arena};
"
        );
        match &self.embedded {
            None => rust.push_str(
                "/// No model embedded (`FIRMWARE_MODEL` unset): it is read from the flash partition.
pub static MODEL: Option<&[u8]> = None;
/// The flashed model runs with its own context length.
pub const CTX_LEN: Option<u32> = None;
",
            ),
            Some((path, ctx_len)) => {
                let path = path
                    .to_str()
                    .unwrap_or_else(|| fail("the model path must be UTF-8"));
                rust.push_str(&format!(
                    "/// Positions of the session (`FIRMWARE_CTX`, default the model's `ctx_len`).
pub const CTX_LEN: Option<u32> = Some({ctx_len});
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);
static MODEL_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!({path:?}));
/// The embedded model blob (`FIRMWARE_MODEL`), 16-byte aligned, in flash.
pub static MODEL: Option<&[u8]> = Some(&MODEL_ALIGNED.0);
"
                ));
            }
        }
        rust
    }
}

/// The generation settings, fixed at build time.
struct Settings {
    prompt: Option<String>,
    tokens: u32,
    seed: u64,
    temperature_milli: u32,
    top_k: u32,
    selftest: &'static str,
    cores: u32,
}

impl Settings {
    fn from_env(board: &str) -> Self {
        let prompt = var("FIRMWARE_PROMPT");
        let tokens = parse("FIRMWARE_TOKENS", 100);
        let seed = parse("FIRMWARE_SEED", 0);
        let temperature_milli = match var("FIRMWARE_TEMPERATURE") {
            None => 800,
            Some(text) => parse_milli(&text).unwrap_or_else(|| {
                fail(&format!(
                    "FIRMWARE_TEMPERATURE={text:?}: expected a decimal number with at most 3 \
                     decimals, e.g. 0.8"
                ))
            }),
        };
        let top_k = parse("FIRMWARE_TOP_K", 0);
        let selftest = match var("FIRMWARE_SELFTEST").as_deref() {
            None | Some("") => "None",
            Some("panic") => "Some(SelfTest::Panic)",
            Some("hardfault") => "Some(SelfTest::HardFault)",
            Some("stack-overflow") => "Some(SelfTest::StackOverflow)",
            Some("bad-blob") => "Some(SelfTest::BadBlob)",
            Some(other) => fail(&format!(
                "FIRMWARE_SELFTEST={other:?}: expected panic, hardfault, stack-overflow or bad-blob"
            )),
        };
        let most = board_cores(board);
        let cores = parse("FIRMWARE_CORES", most);
        if !(1..=most).contains(&cores) {
            fail(&format!(
                "FIRMWARE_CORES={cores}: board `{board}` runs the model on 1{} core{}",
                if most == 2 { " or 2" } else { "" },
                if most == 2 { "s" } else { "" }
            ));
        }
        Settings {
            prompt,
            tokens,
            seed,
            temperature_milli,
            top_k,
            selftest,
            cores,
        }
    }

    fn to_rust(&self) -> String {
        let Settings {
            prompt,
            tokens,
            seed,
            temperature_milli,
            top_k,
            selftest,
            cores,
        } = self;
        format!(
            "// Generated by build.rs from the FIRMWARE_* environment variables.
/// One-shot mode: the text the generation starts from (`FIRMWARE_PROMPT`); `None` = serve
/// the interactive protocol.
pub const PROMPT: Option<&str> = {prompt:?};
/// Tokens generated after the prompt (`FIRMWARE_TOKENS`; the chat's starting `/tokens`).
pub const TOKENS: u32 = {tokens};
/// Sampling seed (`FIRMWARE_SEED`).
pub const SEED: u64 = {seed};
/// Sampling temperature in thousandths, 0 = greedy (`FIRMWARE_TEMPERATURE`).
pub const TEMPERATURE_MILLI: u32 = {temperature_milli};
/// Top-k cut-off, 0 = none (`FIRMWARE_TOP_K`).
pub const TOP_K: u32 = {top_k};
/// Failure to trigger on purpose (`FIRMWARE_SELFTEST`).
pub const SELFTEST: Option<SelfTest> = {selftest};
/// Cores sharing each token's work at start (`FIRMWARE_CORES`; the chat's `/cores`; always 1,
/// and unused, on a one-core board).
#[allow(dead_code)]
pub const CORES: u32 = {cores};
"
        )
    }
}

fn var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok()
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> T {
    match var(name) {
        None => default,
        Some(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name}={text:?} is not a valid number"))),
    }
}

/// `"0.8"` → 800: a decimal with at most 3 decimals, read exactly (no floating point).
fn parse_milli(text: &str) -> Option<u32> {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (int.is_empty() && frac.is_empty())
    {
        return None;
    }
    let int: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: u32 = format!("{frac:0<3}").parse().ok()?;
    int.checked_mul(1000)?.checked_add(frac)
}

/// Stops the build with one clear message.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
