//! `tools`: pack a trainer run into a blob and exercise blobs on the host.
//!
//! Data goes to stdout, progress and diagnostics to stderr; failures exit non-zero with a
//! one-line reason.

use std::io::{stdout, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tools::{bench, blob, chat, eval, generate, inspect, pack, uf2};

#[derive(Parser)]
#[command(
    name = "tools",
    version,
    about = "Pack, inspect and run ternary language-model blobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn a trainer run directory into a blob (ternary weights, fixed-point constants).
    Pack {
        /// The trainer's run directory (config.json, vocab.json, weights.safetensors, summary.json).
        #[arg(long)]
        run: PathBuf,
        /// The blob to write (replaced atomically; nothing is left behind on error).
        #[arg(long)]
        out: PathBuf,
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
        /// Text to continue; every character must be in the model's vocabulary.
        #[arg(long, default_value = "ROMEO:")]
        prompt: String,
        /// Tokens to generate (past the context the window slides: the last ctx/2 tokens are kept).
        #[arg(long, default_value_t = 100)]
        tokens: usize,
        /// Seed of the sampler's PRNG.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sampling temperature; 0 = greedy. Used in thousandths (0.8 → 800).
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Sample among the K most likely tokens only; 0 = all.
        #[arg(long, default_value_t = 0)]
        top_k: u32,
    },
    /// Talk to a blob the way the board talks over serial: each line of stdin is a prompt or a
    /// command (/temp, /topk, /seed, /tokens, /stats, /help); replies go to stdout.
    Chat {
        /// The blob (default: the shipped model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Starting temperature (`/temp`); 0 = greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Starting top-k (`/topk`); 0 = all.
        #[arg(long, default_value_t = 0)]
        top_k: u32,
        /// Starting seed (`/seed`), applied afresh to every prompt.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Starting tokens per prompt (`/tokens`).
        #[arg(long, default_value_t = 100)]
        tokens: u32,
    },
    /// Write a UF2 file for a Pico 2's boot ROM (hold BOOTSEL, plug in, copy the file): a model
    /// blob goes to the model partition at 0x10100000, a firmware ELF to its own addresses.
    Uf2 {
        /// A model blob (`tools pack`) or the firmware's ELF file.
        input: PathBuf,
        /// The UF2 file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Validation loss (nats/char) of a blob on the trainer's 90/10 split, by the integer runtime.
    Eval {
        /// The blob.
        #[arg(long)]
        model: PathBuf,
        /// The corpus the model was trained on (its last 10% is the validation split).
        #[arg(long)]
        data: PathBuf,
        /// Evaluate only the first N windows (the comparison with the trainer needs them all).
        #[arg(long)]
        max_windows: Option<usize>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Prefill and decode tokens/s, per-token latency and session RAM of a blob on this host.
    Bench {
        /// The blob (default: the shipped model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Timed rounds over the whole context (after one warm-up round).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // `tools … | head` closes stdout early: not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tools: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pack { run, out } => {
            let bytes = pack::pack(&run, &out)?;
            eprintln!(
                "packed {} into {} ({} bytes)",
                run.display(),
                out.display(),
                bytes.len()
            );
            Ok(())
        }
        Command::Inspect { file, json } => {
            let bytes = blob::read(&file)?;
            let model = blob::load(&file, &bytes)?;
            let report = inspect::inspect(&model, &bytes);
            if json {
                writeln!(stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                write!(stdout(), "{report}")?;
            }
            Ok(())
        }
        Command::Generate {
            model,
            prompt,
            tokens,
            seed,
            temperature,
            top_k,
        } => {
            let path = blob::model_path(model.as_deref());
            let bytes = blob::read(&path)?;
            let model = blob::load(&path, &bytes)?;
            let config = generate::sampler(temperature, top_k, seed)?;
            generate::generate(
                model,
                &prompt,
                tokens,
                config,
                &mut std::io::stdout().lock(),
            )?;
            Ok(())
        }
        Command::Chat {
            model,
            temperature,
            top_k,
            seed,
            tokens,
        } => chat_command(model, chat::settings(temperature, top_k, seed, tokens)?),
        Command::Uf2 { input, out } => uf2_command(&input, &out),
        Command::Eval {
            model,
            data,
            max_windows,
            threads,
            json,
        } => {
            let bytes = blob::read(&model)?;
            let m = blob::load(&model, &bytes)?;
            let text = std::fs::read_to_string(&data)
                .with_context(|| format!("cannot read {} as UTF-8 text", data.display()))?;
            let tokens = eval::validation_tokens(&m, &text)?;
            let ctx = m.config().ctx_len as usize;
            let total = (tokens.len() / (ctx + 1)).min(max_windows.unwrap_or(usize::MAX));
            let bar = ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} windows, {per_sec}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let report = eval::evaluate(m, &tokens, max_windows, threads, &|| bar.inc(1))?;
            bar.finish_and_clear();
            if json {
                writeln!(stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                writeln!(stdout(),
                    "integer val loss   {:.4} nats/char over {} positions ({} windows of {}), {:.1} s",
                    report.integer_val_loss, report.positions, report.windows, ctx + 1, report.seconds
                )?;
                match (report.trainer_quantized_val_loss, report.gap) {
                    (Some(t), Some(g)) => {
                        writeln!(
                            stdout(),
                            "trainer quantized  {t:.4} nats/char (recorded in the blob)"
                        )?;
                        writeln!(stdout(), "gap                {g:+.5} nats")?;
                    }
                    _ => writeln!(stdout(), "trainer quantized  (not recorded in the blob)")?,
                }
            }
            Ok(())
        }
        Command::Bench {
            model,
            rounds,
            json,
        } => {
            let path = blob::model_path(model.as_deref());
            let bytes = blob::read(&path)?;
            let m = blob::load(&path, &bytes)?;
            let r = bench::bench(m, bytes.len(), rounds.max(1))?;
            if json {
                writeln!(stdout(), "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(stdout(), "model              {}", path.display())?;
                writeln!(
                    stdout(),
                    "prefill            {:.0} tokens/s ({} tokens × {} rounds)",
                    r.prefill_tokens_per_s,
                    r.prefill_tokens,
                    r.rounds
                )?;
                writeln!(
                    stdout(),
                    "decode             {:.0} tokens/s ({} tokens × {} rounds)",
                    r.decode_tokens_per_s,
                    r.decode_tokens,
                    r.rounds
                )?;
                writeln!(
                    stdout(),
                    "decode latency     median {:.1} µs, p99 {:.1} µs",
                    r.decode_latency_median_us,
                    r.decode_latency_p99_us
                )?;
                writeln!(
                    stdout(),
                    "session RAM        {} bytes (ctx {})",
                    r.session_ram_bytes,
                    r.ctx_len
                )?;
                writeln!(stdout(), "flash              {} bytes", r.flash_bytes)?;
            }
            Ok(())
        }
    }
}

/// `tools chat`: the serial protocol on stdin/stdout.
fn chat_command(model: Option<PathBuf>, settings: runtime::chat::Settings) -> Result<()> {
    let path = blob::model_path(model.as_deref());
    let bytes = blob::read(&path)?;
    let model = blob::load(&path, &bytes)?;
    chat::install_ctrl_c()?;
    let mut term = chat::StdTerminal::new(stdout().lock());
    chat::chat(model, settings, &mut std::io::stdin().lock(), &mut term)
}

/// `tools uf2`: a model blob or a firmware ELF as a UF2 file for the RP2350 boot ROM.
fn uf2_command(input: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let uf2 = uf2::uf2_for(&bytes).with_context(|| input.display().to_string())?;
    std::fs::write(out, &uf2).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {} ({} blocks of 512 bytes, family RP2350 Arm Secure {:#010x})",
        out.display(),
        uf2.len() / uf2::BLOCK_BYTES,
        uf2::FAMILY_RP2350_ARM_S
    );
    Ok(())
}
