//! The command line: clap definitions and one small function per subcommand. `src/main.rs`
//! parses, calls [`run`] with stdout, and turns an error into a one-line message; tests call
//! [`run`] in-process with any writer.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use runtime::{session_bytes_prefill, Config, Model};

use crate::memory::{self, DEFAULT_MAX_MEMORY};
use crate::term::shown;
use crate::{atomic, bench, blob, chat, eval, files, generate, inspect, pack, uf2};

/// Upper bound of `eval --threads`.
pub const MAX_THREADS: u64 = 1024;
/// Upper bound of `bench --rounds`.
pub const MAX_ROUNDS: u64 = 1_000_000;

/// `tools`: pack, inspect and run ternary language-model blobs.
#[derive(Debug, Parser)]
#[command(
    name = "tools",
    version,
    about = "Pack, inspect and run ternary language-model blobs"
)]
pub struct Cli {
    /// Say on stderr what was done to run the model here (a base-3 blob repacked to 2-bit in
    /// memory for this CPU's SIMD kernels); quiet by default.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The kernel level shared by generate, eval and bench.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KernelLevel {
    /// Run the kernels at this level instead of the best one the CPU has: `portable`, `avx2`,
    /// `avxvnni`, `avx512vnni` or `neon` (every level computes the same integers, so only the
    /// speed changes; a level the CPU cannot run is refused).
    #[arg(long, value_name = "LEVEL")]
    pub kernels: Option<String>,
}

impl KernelLevel {
    /// Applies the level (process-wide), if one was given.
    pub fn apply(&self) -> Result<()> {
        if let Some(k) = &self.kernels {
            bench::force_level(k)?;
        }
        Ok(())
    }
}

/// How `pack` and `repack` store the ternary matrices.
#[derive(Debug, Clone, clap::Args)]
pub struct Encodings {
    /// How the ternary matrices are stored: `base3` (5 weights per byte, 1.6 bits: format
    /// v2) or `2bit` (4 per byte, rows padded to 16 bytes: format v1). A gated FFN makes
    /// the blob format v3 either way, a byte-level BPE vocabulary v4.
    #[arg(long, value_name = "ENCODING", default_value = "base3", value_parser = pack::parse_encoding)]
    pub ternary: runtime::TernaryEncoding,
    /// One matrix kind stored differently, e.g. `w_down=2bit` (names as in the run dir:
    /// wq, wk, wv, wo, w_up, w_down, and w_gate of a gated FFN); repeatable.
    #[arg(long = "ternary-for", value_name = "MATRIX=ENCODING", value_parser = pack::parse_override)]
    pub ternary_for: Vec<(usize, runtime::TernaryEncoding)>,
}

/// The sampler's settings, shared by `generate` and `chat` (where they are the starting values
/// of `/temp`, `/topk` and `/seed`).
#[derive(Debug, Clone, clap::Args)]
pub struct Sampling {
    /// Sampling temperature, 0 to 100; 0 = greedy. Used in thousandths (0.8 → 800).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the K most likely tokens only; 0 = all.
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Seed of the sampler's PRNG (chat: applied afresh to every prompt).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The working-memory cap shared by repack, generate, chat, eval and bench.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MemoryCap {
    /// Most working memory (session, latency samples, corpus, the copy of the matrices the
    /// kernels read, a base-3 blob's weights unpacked to repack them) to allocate, in bytes or with a unit (K, M, G, T: powers of 1024). A blob
    /// whose configuration needs more is refused, and so is one that needs more than the machine
    /// has available (free memory and swap), whatever the cap.
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = memory::parse_bytes)]
    pub max_memory: u64,
}

impl Default for MemoryCap {
    fn default() -> Self {
        MemoryCap {
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// What the commands that run a model on this host share: the memory cap, and whether to say
/// what was done to run it here.
#[derive(Debug, Clone, Copy, Default)]
struct HostModel {
    memory: MemoryCap,
    verbose: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn a trainer run directory into a blob (ternary weights, fixed-point constants).
    Pack {
        /// The trainer's run directory (config.json, vocab.json, tokenizer.json of a BPE run,
        /// weights.safetensors, summary.json).
        #[arg(long)]
        run: PathBuf,
        /// The blob to write: replaced atomically through a temporary `.NAME.tmp.PID.RANDOM` in
        /// the same directory; nothing is left behind on error, Ctrl-C, SIGTERM or SIGHUP. An
        /// existing OUT that is not a regular file (a device, a directory), or that is one of the
        /// run's files (also through a link), is refused.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        #[allow(missing_docs)]
        encodings: Encodings,
    },
    /// Rewrite a blob with its ternary matrices in another encoding (say a v1 blob as base 3):
    /// the same weights and outputs, a different size.
    Repack {
        /// The blob to read.
        model: PathBuf,
        /// The blob to write (atomically, as `pack --out`); MODEL itself, also through a link,
        /// is refused (write to another name, then rename).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        #[allow(missing_docs)]
        encodings: Encodings,
        #[command(flatten)]
        #[allow(missing_docs)]
        memory: MemoryCap,
    },
    /// Show a blob's format version, config, vocabulary, tensor table, sizes and checksum.
    Inspect {
        /// The blob.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stream generated text to stdout: the prompt, then the continuation, nothing else.
    Generate {
        /// The blob (default: the model shipped in the repository, models/shakespeare-mcu.bin).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Text to continue: any UTF-8 for a byte-level BPE model; for a character model every
        /// character must be in its vocabulary.
        #[arg(long, default_value = "ROMEO:")]
        prompt: String,
        /// Tokens to generate (past the context the window slides: the last ctx/2 tokens are kept).
        #[arg(long, default_value_t = 100)]
        tokens: usize,
        #[command(flatten)]
        #[allow(missing_docs)]
        sampling: Sampling,
        #[command(flatten)]
        #[allow(missing_docs)]
        level: KernelLevel,
        #[command(flatten)]
        #[allow(missing_docs)]
        memory: MemoryCap,
    },
    /// Talk to a blob the way the board talks over serial: each line of stdin is a prompt or a
    /// command (/temp, /topk, /seed, /tokens, /stats, /help); replies go to stdout.
    Chat {
        /// The blob (default: the shipped model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        #[allow(missing_docs)]
        sampling: Sampling,
        /// Starting tokens per prompt (`/tokens`), 0 to 1000000.
        #[arg(long, default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(0..=i64::from(runtime::chat::MAX_TOKENS)))]
        tokens: u32,
        #[command(flatten)]
        #[allow(missing_docs)]
        memory: MemoryCap,
    },
    /// Write a UF2 file for a Pico 2's boot ROM (hold BOOTSEL, plug in, copy the file): a model
    /// blob goes to the model partition at 0x10100000, a firmware ELF to its own addresses.
    Uf2 {
        /// A model blob (`tools pack`) or the firmware's ELF file.
        input: PathBuf,
        /// The UF2 file to write (atomically, as `pack --out`; an existing non-regular file, and
        /// INPUT itself, also through a link, are refused).
        #[arg(long)]
        out: PathBuf,
    },
    /// Validation loss of a blob on the trainer's 90/10 split of the text, by the integer
    /// runtime: nats per character (and bits per byte, nats per token) whatever the tokenizer.
    Eval {
        /// The blob.
        #[arg(long)]
        model: PathBuf,
        /// The corpus the model was trained on (its last 10% is the validation split).
        #[arg(long)]
        data: PathBuf,
        /// Evaluate only the first N windows, N ≥ 1 (the comparison with the trainer needs them all).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_windows: Option<u64>,
        /// Worker threads, 1 to 1024 (default: all cores; fewer when --max-memory cannot hold a
        /// session per thread).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_THREADS))]
        threads: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        #[allow(missing_docs)]
        level: KernelLevel,
        #[command(flatten)]
        #[allow(missing_docs)]
        memory: MemoryCap,
    },
    /// Prefill and decode tokens/s, per-token latency and prefill session RAM of a blob on this host.
    Bench {
        /// The blob (default: the shipped model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Timed rounds over the whole context (after one warm-up round), 1 to 1000000.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=MAX_ROUNDS))]
        rounds: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        #[allow(missing_docs)]
        level: KernelLevel,
        #[command(flatten)]
        #[allow(missing_docs)]
        memory: MemoryCap,
    },
}

/// Runs one parsed command line; data goes to `out`, progress to stderr.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let verbose = cli.verbose;
    match cli.command {
        Command::Pack {
            run,
            out: blob,
            encodings: e,
        } => pack_cmd(&run, &blob, e.ternary, &e.ternary_for),
        Command::Repack {
            model,
            out: blob,
            encodings: e,
            memory,
        } => repack_cmd(&model, &blob, e.ternary, &e.ternary_for, memory),
        Command::Inspect { file, json } => inspect_cmd(&file, json, out),
        Command::Generate {
            model,
            prompt,
            tokens,
            sampling: s,
            level,
            memory,
        } => {
            let sampler = generate::sampler(s.temperature, s.top_k, s.seed)?;
            level.apply()?;
            let host = HostModel { memory, verbose };
            generate_cmd(model.as_deref(), &prompt, tokens, sampler, host, out)
        }
        Command::Chat {
            model,
            sampling: s,
            tokens,
            memory,
        } => chat_cmd(
            model.as_deref(),
            chat::settings(s.temperature, s.top_k, s.seed, tokens)?,
            HostModel { memory, verbose },
        ),
        Command::Uf2 { input, out: uf2 } => uf2_cmd(&input, &uf2),
        Command::Eval {
            model,
            data,
            max_windows,
            threads,
            json,
            level,
            memory,
        } => {
            level.apply()?;
            let host = HostModel { memory, verbose };
            eval_cmd(&model, &data, max_windows, threads, json, host, out)
        }
        Command::Bench {
            model,
            rounds,
            json,
            level,
            memory,
        } => {
            level.apply()?;
            let host = HostModel { memory, verbose };
            bench_cmd(model.as_deref(), rounds as usize, json, host, out)
        }
    }
}

/// `tools pack`.
fn pack_cmd(
    run: &Path,
    blob: &Path,
    ternary: runtime::TernaryEncoding,
    overrides: &[(usize, runtime::TernaryEncoding)],
) -> Result<()> {
    let bytes = pack::pack_with(run, blob, ternary, overrides)?;
    eprintln!(
        "packed {} into {} ({} bytes)",
        shown(run),
        shown(blob),
        bytes.len()
    );
    Ok(())
}

/// `tools repack`.
fn repack_cmd(
    model: &Path,
    blob: &Path,
    ternary: runtime::TernaryEncoding,
    overrides: &[(usize, runtime::TernaryEncoding)],
    cap: MemoryCap,
) -> Result<()> {
    atomic::check_output(blob, &[model])?;
    let bytes = blob::read(model)?;
    let m = blob::load(model, &bytes)?;
    let ternary = pack::encodings(m.config(), ternary, overrides)?;
    let new = blob::repack(model, &m, ternary, cap.max_memory)?;
    atomic::write_atomically(blob, &[model], &new)?;
    eprintln!(
        "repacked {} ({} bytes, format v{}) into {} ({} bytes, format v{})",
        shown(model),
        bytes.len(),
        m.version_major(),
        shown(blob),
        new.len(),
        u16::from_le_bytes([new[8], new[9]]),
    );
    Ok(())
}

/// `tools inspect`.
fn inspect_cmd(file: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    let bytes = blob::read(file)?;
    let model = blob::load(file, &bytes)?;
    let report = inspect::inspect(&model, &bytes);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}

/// The model from `bytes` as this host runs it (its matrices' copies in `copies`,
/// [`blob::load_for_host`]) and a session over its whole context, prefilling `block(config)`
/// tokens at a time, checked against the cap together with the copies. Returns the model, the
/// copies' bytes and the session's.
fn load_for_session<'a>(
    path: &Path,
    bytes: &'a [u8],
    copies: &'a mut blob::HostCopies,
    host: HostModel,
    block: &dyn Fn(&Config) -> u32,
) -> Result<(Model<'a>, u64, u64)> {
    let session = |c: &Config| session_bytes_prefill(c, c.ctx_len, block(c)) as u64;
    let beside = blob::Beside {
        what: "a session over the model's whole context",
        bytes: &session,
    };
    let max = host.memory.max_memory;
    let (model, held) = blob::load_for_host(path, bytes, copies, max, host.verbose, beside)?;
    let need = session(model.config());
    Ok((model, held, need))
}

/// `tools generate`.
fn generate_cmd(
    model: Option<&Path>,
    prompt: &str,
    tokens: usize,
    sampler: runtime::SamplerConfig,
    host: HostModel,
    out: &mut dyn Write,
) -> Result<()> {
    let path = blob::model_path(model);
    let bytes = blob::read(&path)?;
    let mut copies = blob::HostCopies::default();
    let block = |c: &Config| (c.ctx_len / 2).max(1);
    let (model, _, _) = load_for_session(&path, &bytes, &mut copies, host, &block)?;
    generate::generate(model, prompt, tokens, sampler, out)
}

/// `tools chat`.
fn chat_cmd(
    model: Option<&Path>,
    settings: runtime::chat::Settings,
    host: HostModel,
) -> Result<()> {
    let path = blob::model_path(model);
    let bytes = blob::read(&path)?;
    let mut copies = blob::HostCopies::default();
    let (model, _, _) = load_for_session(&path, &bytes, &mut copies, host, &|_| 1)?;
    let mut term = chat::StdTerminal::new(std::io::stdout().lock());
    chat::chat(model, settings, &mut std::io::stdin().lock(), &mut term)
}

/// Largest input `tools uf2` reads: the Pico 2's whole 4 MiB flash.
const MAX_UF2_INPUT: u64 = 4 << 20;

/// `tools uf2`: a model blob or a firmware ELF as a UF2 file for the RP2350 boot ROM.
fn uf2_cmd(input: &Path, out: &Path) -> Result<()> {
    atomic::check_output(out, &[input])?;
    let bytes = files::read_capped(input, "input", MAX_UF2_INPUT)?;
    let uf2 = uf2::uf2_for(&bytes).with_context(|| shown(input))?;
    atomic::write_atomically(out, &[input], &uf2)?;
    eprintln!(
        "wrote {} ({} blocks of 512 bytes, family RP2350 Arm Secure {:#010x})",
        shown(out),
        uf2.len() / uf2::BLOCK_BYTES,
        uf2::FAMILY_RP2350_ARM_S
    );
    Ok(())
}

/// `tools eval`.
fn eval_cmd(
    model_path: &Path,
    data: &Path,
    max_windows: Option<u64>,
    threads: Option<u64>,
    json: bool,
    host: HostModel,
    out: &mut dyn Write,
) -> Result<()> {
    let cap = host.memory;
    let bytes = blob::read(model_path)?;
    let mut copies = blob::HostCopies::default();
    let (m, held, session) =
        load_for_session(model_path, &bytes, &mut copies, host, &|c| c.ctx_len)?;
    // The corpus, its validation tokens (2 bytes per character of the last tenth) and one
    // session must fit the cap; more threads only while their sessions fit too.
    let (file, len) = files::open_regular(data, "data file")?;
    let base = (session + held).saturating_add(len).saturating_add(len / 5);
    memory::check(base, cap.max_memory)
        .with_context(|| format!("the corpus {} ({len} bytes) and one session", shown(data)))?;
    let text = files::read_rest(file, Vec::new(), len, data, "data file")?;
    let text = String::from_utf8(text)
        .map_err(|e| anyhow::anyhow!("data file {} is not UTF-8 text ({e})", shown(data)))?;
    let tokens = eval::validation_tokens(&m, &text)?;
    drop(text);
    let ctx = m.config().ctx_len as usize;
    let max_windows = max_windows.map(|w| usize::try_from(w).unwrap_or(usize::MAX));
    let total = (tokens.len() / (ctx + 1)).min(max_windows.unwrap_or(usize::MAX));
    let wanted = threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |t| t as usize,
    );
    let fit = (cap.max_memory.saturating_sub(base) / session.max(1)).saturating_add(1);
    let threads = wanted
        .min(usize::try_from(fit).unwrap_or(usize::MAX))
        .max(1);
    if threads < wanted.min(total) {
        eprintln!("eval: {threads} threads (a session per thread needs {session} bytes; --max-memory {} holds no more)", cap.max_memory);
    }
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} windows, {per_sec}, ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = eval::evaluate(m, &tokens, max_windows, threads, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let r = &report;
    if r.tokenizer == "char" {
        // One token per character: nats per token are nats per character.
        writeln!(
            out,
            "integer val loss   {:.4} nats/char over {} positions ({} windows of {}), {:.1} s",
            r.integer_val_loss,
            r.positions,
            r.windows,
            ctx + 1,
            r.seconds
        )?;
    } else {
        writeln!(
            out,
            "integer val loss   {:.4} nats/char over {} characters ({} positions, {} windows of {} tokens), {:.1} s",
            r.nats_per_char, r.scored_chars, r.positions, r.windows, ctx + 1, r.seconds
        )?;
    }
    writeln!(
        out,
        "                   {:.4} bits/byte, {:.4} nats/token, {:.3} chars/token ({} tokenizer)",
        r.bits_per_byte, r.integer_val_loss, r.chars_per_token, r.tokenizer
    )?;
    match (r.trainer_quantized_val_loss, r.trainer_nats_per_char, r.gap) {
        (Some(t), _, Some(g)) if r.tokenizer == "char" => {
            writeln!(
                out,
                "trainer quantized  {t:.4} nats/char (recorded in the blob)"
            )?;
            writeln!(out, "gap                {g:+.5} nats")?;
        }
        (Some(t), Some(c), Some(g)) => {
            writeln!(
                out,
                "trainer quantized  {c:.4} nats/char ({t:.4} nats/token recorded in the blob)"
            )?;
            writeln!(out, "gap                {g:+.5} nats/token")?;
        }
        _ => writeln!(out, "trainer quantized  (not recorded in the blob)")?,
    }
    Ok(())
}

/// `tools bench`.
fn bench_cmd(
    model: Option<&Path>,
    rounds: usize,
    json: bool,
    host: HostModel,
    out: &mut dyn Write,
) -> Result<()> {
    let cap = host.memory;
    let path = blob::model_path(model);
    let bytes = blob::read(&path)?;
    let mut copies = blob::HostCopies::default();
    let what = format!("a session and the latency samples of {rounds} rounds");
    let (m, held) = blob::load_for_host(
        &path,
        &bytes,
        &mut copies,
        cap.max_memory,
        host.verbose,
        blob::Beside {
            what: &what,
            bytes: &|c| bench::bench_bytes(c, rounds),
        },
    )?;
    let mut r = bench::bench(m, bytes.len(), rounds)?;
    r.matrix_copy_bytes = held;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    write!(
        out,
        "{}",
        bench::Text {
            report: &r,
            model: &path
        }
    )?;
    Ok(())
}
