//! `trainer`: BitNet b1.58 quantization-aware training; writes a run dir for `tools pack`.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use trainer::config::{MatrixOptimizer, ModelConfig, TokenizerKind, TrainConfig};
use trainer::data::Corpus;
use trainer::error::shown;
use trainer::runinfo::{self, RunConfig};
use trainer::train::{self, Outcome, RunSpec};
use trainer::{backend, Preset, TrainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// CUDA if built with `--features cuda` and a device answers, else CPU
    Auto,
    /// flex on the CPU (SIMD + rayon threads; RAYON_NUM_THREADS sets the count)
    Cpu,
    /// CUDA (needs `--features cuda`)
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Qat {
    /// Q1 (ternary weights) and Q2 (int8 BitLinear inputs) through the STE
    Q12,
    /// also Q3–Q5 (int8 embedding/head, int8 q/k/v): training forward = quantized evaluation
    All,
}

/// Train a BitNet b1.58 (ternary) language model (characters or byte-level BPE) and write a run
/// directory (config.json, vocab.json, tokenizer.json for BPE, weights.safetensors,
/// summary.json, metrics.csv, loss.svg, checkpoint/) that `tools pack` turns into a blob. See
/// trainer/EXPORT.md.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// UTF-8 text corpus (any text file up to 256 MiB); the first 90% of its characters
    /// train, the last 10% validate (default: tiny Shakespeare where this project's workplace
    /// keeps it, ../shared/data/tinyshakespeare.txt; it is public at
    /// https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt).
    /// With --resume the default is the corpus the run recorded (config.json's data_path);
    /// either way it must be the run's corpus (its FNV-1a hash is checked)
    #[arg(long)]
    data: Option<PathBuf>,
    /// model size and schedule to start from (flags below override single values)
    #[arg(long, value_enum, default_value = "mcu")]
    preset: Preset,
    /// run directory to create (a new or empty directory: one holding other files is refused)
    /// or, with --resume, to continue [default: runs/<preset>]
    #[arg(long = "out", value_name = "OUT")]
    out_arg: Option<PathBuf>,
    /// `--out`, or its default
    #[arg(skip)]
    out: PathBuf,
    /// total optimiser steps (the LR/weight-decay schedule spans these)
    #[arg(long)]
    steps: Option<usize>,
    /// continue the run in --out from its checkpoint (hyper-parameters come from its config.json;
    /// only --steps may change)
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    overrides: Overrides,
    /// compute backend
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// CUDA device indices for data-parallel training, e.g. `0,1,2,3` (each device takes an
    /// equal share of every batch; gradients are summed on the first)
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
    /// stop after this many steps with a checkpoint, as if interrupted (resume later)
    #[arg(long)]
    stop_after: Option<usize>,
    /// no progress output
    #[arg(long)]
    quiet: bool,
}

/// `--vocab` when `--tokenizer bpe` is given without it.
const DEFAULT_BPE_VOCAB: usize = 512;

/// Declares the flags that override one value of the preset, each written once: its help, its
/// clap attributes, its type and where its value goes. They make [`Overrides`], a clap argument
/// group with `any` (was one given?) and `apply` (write them into the model and training config).
macro_rules! overrides {
    ($($(#[$attr:meta])* $name:ident: $ty:ty => |$model:ident, $tc:ident, $v:ident| $apply:expr;)*) => {
        /// Values that override the preset's (a fresh run only: a resumed run keeps its
        /// config.json).
        #[derive(Debug, Default, clap::Args)]
        struct Overrides {
            $($(#[$attr])* $name: Option<$ty>,)*
        }

        impl Overrides {
            /// Whether any override was given.
            fn any(&self) -> bool {
                false $(|| self.$name.is_some())*
            }

            /// Writes the given values into `model` and `tc`.
            #[allow(unused_variables)]
            fn apply(&self, model: &mut ModelConfig, tc: &mut TrainConfig) {
                $(if let Some($v) = self.$name.clone() {
                    let ($model, $tc) = (&mut *model, &mut *tc);
                    $apply;
                })*
            }
        }
    };
}

overrides! {
    /// how text becomes tokens: `char` (one token per character of the corpus) or `bpe`
    /// (byte-level BPE learned from the training split: any text encodes) [default: the
    /// preset's, `char`]
    #[arg(long, value_enum)]
    tokenizer: TokenizerKind => |m, t, v| t.tokenizer = v;
    /// with `--tokenizer bpe`: vocabulary size to learn, 256 byte tokens plus merges (e.g. 512
    /// or 1024) [default: 512]
    #[arg(long)]
    vocab: usize => |m, t, v| t.bpe_vocab = v;
    /// seed of parameter init and batch sampling
    #[arg(long)]
    seed: u64 => |m, t, v| t.seed = v;
    /// residual width
    #[arg(long)]
    d_model: usize => |m, t, v| m.d_model = v;
    /// number of blocks
    #[arg(long)]
    layers: usize => |m, t, v| m.n_layers = v;
    /// query heads (must divide d-model; head_dim must be even)
    #[arg(long)]
    heads: usize => |m, t, v| m.n_heads = v;
    /// key/value heads (must divide heads)
    #[arg(long)]
    kv_heads: usize => |m, t, v| m.n_kv_heads = v;
    /// feed-forward hidden width
    #[arg(long)]
    ffn: usize => |m, t, v| m.ffn_dim = v;
    /// gated feed-forward block, relu²(gate·h) ⊙ up·h (a third [d, F] matrix; blob format v3):
    /// `--ffn-gated` or `--ffn-gated true` turns it on, `--ffn-gated false` off (the `mcu`
    /// preset's default is on)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    ffn_gated: bool => |m, t, v| m.ffn_gated = v;
    /// context length
    #[arg(long)]
    ctx: usize => |m, t, v| m.ctx_len = v;
    /// sequences per step
    #[arg(long)]
    batch: usize => |m, t, v| t.batch_size = v;
    /// peak learning rate
    #[arg(long)]
    lr: f64 => |m, t, v| t.lr = v;
    /// stage-2 learning rate as a fraction of --lr (from mid-run on)
    #[arg(long)]
    lr_stage2: f64 => |m, t, v| t.lr_stage2 = v;
    /// where the stage-2 cosine ends, as a fraction of its start (default 0.1; 0 = to zero)
    #[arg(long)]
    lr_stage2_end: f64 => |m, t, v| t.lr_stage2_end = v;
    /// linear warmup steps
    #[arg(long)]
    warmup: usize => |m, t, v| t.warmup_steps = v;
    /// stage-1 AdamW weight decay on matrices and the embedding
    #[arg(long)]
    weight_decay: f64 => |m, t, v| t.weight_decay = v;
    /// stage-2 AdamW weight decay (from mid-run on; default 0)
    #[arg(long)]
    weight_decay_stage2: f64 => |m, t, v| t.weight_decay_stage2 = v;
    /// global gradient-norm clip (0 = off)
    #[arg(long)]
    grad_clip: f64 => |m, t, v| t.grad_clip = v;
    /// dropout on the residual branches while training (0 = off)
    #[arg(long)]
    dropout: f64 => |m, t, v| t.dropout = v;
    /// apply --dropout only from this 0-based step on ("late dropout"; default 0)
    #[arg(long)]
    dropout_from: usize => |m, t, v| t.dropout_from = v;
    /// replace each training input character with this probability by a random one drawn from
    /// the training split (input noising; 0 = off)
    #[arg(long)]
    input_noise: f64 => |m, t, v| t.input_noise = v;
    /// float warm start: train the first N steps without quantizers, then quantization-aware
    #[arg(long)]
    float_steps: usize => |m, t, v| t.float_steps = v;
    /// optimiser of the BitLinear matrices (embedding and gains: AdamW)
    #[arg(long, value_enum)]
    optimizer: MatrixOptimizer => |m, t, v| t.optimizer = v;
    /// exponential moving averages of the weights over stage 2, e.g. `0.99` or `0.99,0.995`: the
    /// run exports the first and reports the quantized validation loss of each; `0` = none
    /// (the `mcu` preset: 0.99)
    #[arg(long, value_delimiter = ',')]
    ema: Vec<f64> => |m, t, v| t.ema_decays = if v == [0.0] { Vec::new() } else { v };
    /// validate (quantized, on fixed random validation batches) every N steps
    #[arg(long)]
    eval_every: usize => |m, t, v| t.eval_every = v;
    /// number of fixed validation batches
    #[arg(long)]
    val_batches: usize => |m, t, v| t.val_batches = v;
    /// write a checkpoint every N steps (also at the end, and on Ctrl-C, SIGTERM or SIGHUP)
    #[arg(long)]
    checkpoint_every: usize => |m, t, v| t.checkpoint_every = v;
    /// which quantization points training applies through the STE
    #[arg(long, value_enum)]
    qat: Qat => |m, t, v| t.qat_all = v == Qat::All;
}

/// The default corpus of a fresh run.
const DEFAULT_DATA: &str = "../shared/data/tinyshakespeare.txt";

fn build_spec(cli: &Cli) -> Result<(RunSpec, Corpus), TrainError> {
    let (mut model, mut tc, preset) = if cli.resume {
        let saved = RunConfig::read(&cli.out).map_err(|e| match e {
            TrainError::Io { .. } => TrainError::Resume(format!(
                "`{}` holds no run to resume (no config.json)",
                shown(&cli.out)
            )),
            e => e,
        })?;
        if cli.overrides.any() {
            return Err(TrainError::Config(
                "with --resume the hyper-parameters come from the run's config.json; only --steps may change"
                    .into(),
            ));
        }
        (saved.model, saved.train, saved.preset)
    } else {
        let (mut model, mut tc) = (cli.preset.model(), cli.preset.train());
        cli.overrides.apply(&mut model, &mut tc);
        // `--tokenizer bpe` without `--vocab`: the default size (`--vocab` with `--tokenizer
        // char` stays, for validate to refuse).
        if tc.tokenizer == TokenizerKind::Bpe && cli.overrides.vocab.is_none() {
            tc.bpe_vocab = DEFAULT_BPE_VOCAB;
        }
        (model, tc, cli.preset.name().to_string())
    };
    tc.steps = cli.steps.unwrap_or(tc.steps);
    // Shape rules first (vocab_size is not known yet: check with a placeholder).
    model.vocab_size = model.vocab_size.max(1);
    trainer::config::check_model(&model)?;
    tc.validate()?;
    tc.validate_for(&model)?;
    // A file where the run directory should be: say so before reading the corpus.
    if cli.out.exists() && !cli.out.is_dir() {
        return Err(TrainError::Config(format!(
            "--out `{}` is a file, not a run directory",
            shown(&cli.out)
        )));
    }
    // A new run goes into a new or empty directory, never over someone's files.
    if !cli.resume {
        runinfo::check_fresh_out(&cli.out)?;
    }

    let saved = if cli.resume {
        Some(RunConfig::read(&cli.out)?)
    } else {
        None
    };
    // With --resume and no --data: the corpus the run recorded.
    let data = match (&cli.data, &saved) {
        (Some(d), _) => d.clone(),
        (None, Some(saved)) => PathBuf::from(&saved.data_path),
        (None, None) => PathBuf::from(DEFAULT_DATA),
    };
    let corpus = Corpus::load_with(&data, model.ctx_len, tc.tokenizer, tc.bpe_vocab).map_err(
        |e| match (&cli.data, e) {
            (None, TrainError::Data(m)) if cli.resume => TrainError::Data(format!(
            "{m} (the corpus recorded in the run's config.json; pass --data to give its new place)"
        )),
            (_, e) => e,
        },
    )?;
    if let Some(saved) = &saved {
        if saved.data_fnv1a64 != format!("{:016x}", corpus.fingerprint) {
            return Err(TrainError::Resume(format!(
                "`{}` is not the corpus this run was trained on (its FNV-1a hash is {:016x}, \
                 the run's config.json records {})",
                shown(&data),
                corpus.fingerprint,
                saved.data_fnv1a64
            )));
        }
        if corpus.vocab.len() != saved.model.vocab_size {
            return Err(TrainError::Resume(format!(
                "the run's config.json says vocab_size {}, its corpus gives {} tokens ({:?} vocabulary)",
                saved.model.vocab_size,
                corpus.vocab.len(),
                saved.train.tokenizer
            )));
        }
        runinfo::check_resume(saved, &model, &tc)?;
    } else {
        model.vocab_size = corpus.vocab.len();
        trainer::config::check_model(&model)?;
    }
    // Is the output dir writable? Find out now, not after an hour of training.
    std::fs::create_dir_all(&cli.out).map_err(TrainError::io("create the output dir", &cli.out))?;
    let probe = cli.out.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(TrainError::io("write into the output dir", &cli.out))?;
    let _ = std::fs::remove_file(&probe);

    let spec = RunSpec {
        model,
        train: tc,
        preset,
        data_path: data,
        out: cli.out.clone(),
        command: std::env::args().collect(),
        stop_after: cli.stop_after,
        progress: !cli.quiet,
        backend_name: String::new(),
    };
    if cli.resume {
        // vocab.json (and command.txt) against the corpus just verified.
        runinfo::restore_start_files(&spec, &corpus)?;
    }
    Ok((spec, corpus))
}

fn run(cli: Cli) -> Result<i32, TrainError> {
    // The first of SIGINT/SIGTERM/SIGHUP: a checkpoint after the current step, then exit
    // 128 + its number; a second one: exit at once. Installed first, so that no signal finds
    // the process without it.
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicI32::new(0));
    install_signal_handler(stop.clone(), signal.clone())?;
    let (mut spec, corpus) = build_spec(&cli)?;
    let want_cuda = match cli.backend {
        BackendArg::Cpu => false,
        BackendArg::Cuda => {
            if !cfg!(feature = "cuda") {
                return Err(TrainError::Config(
                    "--backend cuda needs a trainer built with `--features cuda`".into(),
                ));
            }
            if !backend::cuda_available() {
                return Err(TrainError::Config(
                    "--backend cuda: no CUDA device answers".into(),
                ));
            }
            true
        }
        BackendArg::Auto => backend::cuda_available(),
    };
    if !want_cuda && cli.devices.len() > 1 {
        return Err(TrainError::Config(
            "--devices with several devices needs CUDA".into(),
        ));
    }

    let m = &spec.model;
    let info = format!(
        "{} params (d {} L {} H {} Hkv {} F {}{} ctx {}), vocab {} ({}), {} train / {} val chars ({} / {} tokens), {} steps x {} x {}",
        m.n_params(),
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.n_kv_heads,
        m.ffn_dim,
        if m.ffn_gated { " gated" } else { "" },
        m.ctx_len,
        m.vocab_size,
        match spec.train.tokenizer {
            TokenizerKind::Char => "characters",
            TokenizerKind::Bpe => "byte-level BPE",
        },
        corpus.train_chars,
        corpus.val_chars,
        corpus.train.len(),
        corpus.val.len(),
        spec.train.steps,
        spec.train.batch_size,
        m.ctx_len
    );

    let outcome = if want_cuda {
        #[cfg(feature = "cuda")]
        {
            let idx = if cli.devices.is_empty() {
                vec![0]
            } else {
                cli.devices.clone()
            };
            let devs: Vec<_> = idx
                .iter()
                .map(|&i| burn::backend::cuda::CudaDevice::new(i))
                .collect();
            spec.backend_name = format!(
                "cuda:{}",
                idx.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            runinfo::log_line(&format!("backend: {} (CUDA)", spec.backend_name));
            runinfo::log_line(&info);
            train::train::<backend::Gpu>(&devs, &spec, &corpus, cli.resume, &stop)?
        }
        #[cfg(not(feature = "cuda"))]
        unreachable!("cuda_available() is false without the feature")
    } else {
        spec.backend_name = format!("flex-cpu ({} threads)", backend::cpu_threads());
        runinfo::log_line(&format!("backend: {} (no CUDA device)", spec.backend_name));
        runinfo::log_line(&info);
        let dev = backend::CpuDevice::default();
        train::train::<backend::Cpu>(&[dev], &spec, &corpus, cli.resume, &stop)?
    };
    match outcome {
        Outcome::Finished(s) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&s).expect("serialisable")
            );
            runinfo::log_line(&format!(
                "done: quantized val loss {:.4} nats/token = {:.4} nats/char ({:.4} bits/byte, {:.3} chars/token), {:.0} tok/s, run dir {}",
                s.quantized_val_loss,
                s.quantized_val_nats_per_char,
                s.quantized_val_bits_per_byte,
                s.val_chars_per_token,
                s.tokens_per_s,
                shown(&spec.out)
            ));
            Ok(0)
        }
        Outcome::Stopped(step) => {
            runinfo::log_line(&format!(
                "stopped at step {step}; continue with --resume --out {}",
                shown(&spec.out)
            ));
            Ok(match signal.load(Ordering::SeqCst) {
                0 => 0,
                sig => 128 + sig,
            })
        }
    }
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP all stop the run with a checkpoint after the current
/// step (`stop`; `signal` keeps the first one's number for the exit status); a second one
/// exits at once.
fn install_signal_handler(stop: Arc<AtomicBool>, signal: Arc<AtomicI32>) -> Result<(), TrainError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| TrainError::Config(format!("cannot install the signal handler: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if stop.swap(true, Ordering::SeqCst) {
                    std::process::exit(128 + sig); // the second signal: leave now
                }
                signal.store(sig, Ordering::SeqCst);
                let name = match sig {
                    SIGINT => "Ctrl-C",
                    SIGTERM => "SIGTERM",
                    _ => "SIGHUP",
                };
                eprintln!("\n[trainer] {name}: writing a checkpoint after this step (a second signal quits at once)");
            }
        })
        .map_err(|e| TrainError::Config(format!("cannot start the signal handler: {e}")))?;
    Ok(())
}

fn main() {
    let mut cli = Cli::parse();
    cli.out = cli
        .out_arg
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(cli.preset.name()));
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
