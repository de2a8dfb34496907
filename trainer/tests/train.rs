//! Training end to end on the CPU: a tiny model learns a structured corpus, and a run that is
//! stopped and resumed ends bit-identical to one that ran straight through.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use trainer::backend::{Cpu, CpuDevice};
use trainer::config::{MatrixOptimizer, TrainConfig};
use trainer::data::Corpus;
use trainer::rng::SplitMix64;
use trainer::train::{self, Outcome, RunSpec};
use trainer::Preset;

/// burn-flex's RNG is process-global and `train::train` seeds it, so two trainings running at once
/// in one process (test threads) would draw each other's dropout masks. The trainer runs one
/// training per process; the tests here take turns.
static ONE_TRAINING_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_TRAINING_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Random words from a fixed list: within a word every character is determined by the previous
/// ones, so a model can get far below the unigram entropy (only the word choice is random).
fn words_corpus(n_words: usize, seed: u64) -> String {
    const WORDS: [&str; 8] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut rng = SplitMix64::new(seed);
    let mut s = String::new();
    for _ in 0..n_words {
        s.push_str(WORDS[rng.below(8) as usize]);
        s.push(' ');
    }
    s
}

fn unigram_entropy_nats(text: &str) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = text.chars().count() as f64;
    counts
        .values()
        .map(|&k| -(k as f64 / n) * (k as f64 / n).ln())
        .sum()
}

fn spec(out: &Path, corpus: &Corpus, steps: usize) -> RunSpec {
    let mut model = Preset::Tiny.model();
    model.vocab_size = corpus.vocab.len();
    model.ctx_len = 32;
    let mut t = Preset::Tiny.train();
    t.steps = steps;
    t.batch_size = 16;
    t.warmup_steps = 10;
    t.eval_every = 20;
    t.val_batches = 2;
    t.checkpoint_every = 1000;
    RunSpec {
        model,
        train: t,
        preset: "tiny".into(),
        data_path: "generated".into(),
        out: out.to_path_buf(),
        command: vec!["test".into()],
        stop_after: None,
        progress: false,
        backend_name: "flex-cpu".into(),
    }
}

/// Columns `cols` of every step row of a run's `metrics.csv` (`step,tokens,lr,weight_decay,
/// train_loss,grad_norm,val_loss_q_fixed_batches,tokens_per_s,wall_s`), joined by commas.
fn metric_columns(out: &Path, cols: std::ops::Range<usize>) -> Vec<String> {
    let (skip, take) = (cols.start, cols.len());
    std::fs::read_to_string(out.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .skip(skip)
                .take(take)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn finished(o: Outcome) -> trainer::runinfo::Summary {
    match o {
        Outcome::Finished(s) => s,
        Outcome::Stopped(n) => panic!("stopped at {n}"),
    }
}

#[test]
fn tiny_model_learns_structure() {
    let _turn = one_at_a_time();
    let text = words_corpus(6000, 7);
    let h = unigram_entropy_nats(&text);
    let corpus = Corpus::from_text(&text, 32).unwrap();
    let out = tmp("learn");
    let s = spec(&out, &corpus, 200);
    let sum = finished(
        train::train::<Cpu>(
            &[CpuDevice::default()],
            &s,
            &corpus,
            false,
            &AtomicBool::new(false),
        )
        .unwrap(),
    );
    eprintln!(
        "unigram entropy {h:.3} nats, quantized val loss {:.4}, float {:.4}",
        sum.quantized_val_loss, sum.float_val_loss
    );
    // The float forward of the same weights is another model: learnt too, not the same loss.
    assert!(sum.float_val_loss < h, "{}", sum.float_val_loss);
    assert_ne!(sum.float_val_loss, sum.quantized_val_loss);
    // Measured (flex CPU): unigram entropy 2.589 nats; quantized val loss 0.395 after 200 steps.
    // The floor is ln(8)/6.4 ≈ 0.32 nats/char (one of 8 words per 6.4 characters on average).
    assert!(h > 2.5);
    assert!(sum.quantized_val_loss < 0.6, "{}", sum.quantized_val_loss);
    for f in [
        "config.json",
        "vocab.json",
        "weights.safetensors",
        "summary.json",
        "metrics.csv",
        "loss.svg",
        "command.txt",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resume_is_bit_identical() {
    let _turn = one_at_a_time();
    check_resume(0.0, 0, MatrixOptimizer::Adamw);
}

/// A float warm start whose switch to QAT falls after the resume (step 16 of 24, resumed at 9)
/// resumes bit-identically too, and changes the trained weights.
#[test]
fn resume_across_the_float_warm_start_is_bit_identical() {
    let _turn = one_at_a_time();
    let float = check_resume(0.0, 16, MatrixOptimizer::Adamw);
    let qat = check_resume(0.0, 0, MatrixOptimizer::Adamw);
    assert!(float != qat, "16 float steps did not change the weights");
}

/// Trains 12 steps on a small words corpus with `edit` applied to the schedule; returns the
/// per-step weight-decay and train-loss columns of `metrics.csv`.
fn short_run(name: &str, edit: impl FnOnce(&mut TrainConfig)) -> (Vec<String>, Vec<String>) {
    let corpus = Corpus::from_text(&words_corpus(3000, 5), 32).unwrap();
    let out = tmp(name);
    let mut s = spec(&out, &corpus, 12);
    edit(&mut s.train);
    let dev = [CpuDevice::default()];
    finished(train::train::<Cpu>(&dev, &s, &corpus, false, &AtomicBool::new(false)).unwrap());
    let columns = (metric_columns(&out, 3..4), metric_columns(&out, 4..5));
    let _ = std::fs::remove_dir_all(&out);
    columns
}

/// `float_steps = k` trains the first k steps without quantizers and every later one with them:
/// its per-step losses agree with a longer warm start up to step k and not after, and differ from
/// QAT from the first step at step 1.
#[test]
fn float_warm_start_switches_at_its_step() {
    let _turn = one_at_a_time();
    let losses = |k: usize| short_run(&format!("float-{k}"), |t| t.float_steps = k).1;
    let (qat, four, eight) = (losses(0), losses(4), losses(8));
    assert_eq!(four.len(), 12);
    assert_ne!(qat[0], four[0], "step 1 is not float");
    assert_eq!(four[..4], eight[..4], "the first 4 steps differ");
    assert_ne!(four[4], eight[4], "step 5 is float in both");
}

/// `dropout_from = k` ("late dropout") trains the first k steps without dropout and every later
/// one with it; `weight_decay_stage2` is the decay from mid-run on: both change the per-step
/// losses exactly from their step on. Input noise changes them from the first step.
#[test]
fn late_dropout_stage2_decay_and_input_noise_start_at_their_steps() {
    let _turn = one_at_a_time();
    let run = |name: &str, dropout: f64, from: usize, wd2: f64| {
        short_run(&format!("late-{name}"), |t| {
            (t.dropout, t.dropout_from, t.weight_decay_stage2) = (dropout, from, wd2);
        })
    };
    let (wd, none) = run("none", 0.0, 0, 0.0);
    let (_, from4) = run("from4", 0.2, 4, 0.0);
    let (_, from8) = run("from8", 0.2, 8, 0.0);
    assert_eq!(none[..4], from4[..4], "dropout before its step");
    assert_ne!(none[4], from4[4], "no dropout at step 5");
    assert_eq!(from4[..4], from8[..4]);
    assert_ne!(
        from4[4], from8[4],
        "dropout at step 5 of a run that starts it at 8"
    );
    let (wd2, decayed) = run("wd2", 0.0, 0, 0.25);
    assert!(
        wd[6..].iter().all(|w| w.parse::<f64>().unwrap() == 0.0),
        "{wd:?}"
    );
    assert!(
        wd2[6..].iter().all(|w| w.parse::<f64>().unwrap() == 0.25),
        "{wd2:?}"
    );
    assert_eq!(wd[..6], wd2[..6], "stage 1's decay changed");
    assert_eq!(
        none[..7],
        decayed[..7],
        "stage 2's decay acted before it applies"
    );
    assert_ne!(none[7..], decayed[7..], "stage 2's decay did nothing");
    let (_, noised) = short_run("late-noise", |t| t.input_noise = 0.1);
    assert_ne!(none[0], noised[0], "input noise left step 1 alone");
}

/// Dropout masks come from the backend RNG, seeded per step: a resumed run draws the same ones.
#[test]
fn resume_with_dropout_is_bit_identical() {
    let _turn = one_at_a_time();
    let with = check_resume(0.2, 0, MatrixOptimizer::Adamw);
    let without = check_resume(0.0, 0, MatrixOptimizer::Adamw);
    assert!(
        with != without,
        "dropout 0.2 did not change the trained weights"
    );
}

/// Muon's momentum buffers are checkpointed (`opt_muon.bin`): a run resumed at step 9 of 24 is
/// bit-identical (the stage-2 switch at step 12, where Muon is rebuilt with the new weight decay and
/// its momentum carried over, comes after the resume), and Muon trains other weights than AdamW.
#[test]
fn resume_with_muon_is_bit_identical() {
    let _turn = one_at_a_time();
    let muon = check_resume(0.0, 0, MatrixOptimizer::Muon);
    let adamw = check_resume(0.0, 0, MatrixOptimizer::Adamw);
    assert!(muon != adamw, "Muon trained the same weights as AdamW");
}

/// A gated FFN's gate is in the checkpoint: a run resumed at step 9 of 24 ends bit-identical,
/// and the gate changes the trained weights.
#[test]
fn resume_with_a_gated_ffn_is_bit_identical() {
    let _turn = one_at_a_time();
    let (gated, _, split) = check_resume_spec_at("gated", 9, |s| {
        s.model.ffn_gated = true;
        s.model.ffn_dim = 96;
    });
    let _ = std::fs::remove_dir_all(&split);
    let plain = check_resume(0.0, 0, MatrixOptimizer::Adamw);
    assert!(gated != plain, "the gated FFN trained the same weights");
}

/// Trains 24 steps straight and 9 + 15 with a resume (in stage 1: the stage-2 switch at step 12
/// then runs on restored optimiser state); asserts identical weights, losses and
/// metrics; returns the weights file.
fn check_resume(dropout: f64, float_steps: usize, optimizer: MatrixOptimizer) -> Vec<u8> {
    let tag = format!("{dropout}-{float_steps}-{optimizer:?}");
    let (weights, _, split) = check_resume_at(&tag, 9, |t| {
        t.dropout = dropout;
        t.float_steps = float_steps;
        t.optimizer = optimizer;
    });
    assert_eq!(
        split.join("checkpoint/opt_muon.bin").exists(),
        optimizer == MatrixOptimizer::Muon
    );
    let _ = std::fs::remove_dir_all(&split);
    weights
}

/// Trains 24 steps with `edit` applied to the schedule, straight and `stop` + the rest with a
/// resume; asserts identical weights, summaries and per-step metrics; returns the weights file,
/// the summary and the resumed run's directory (for the caller to inspect and remove).
fn check_resume_at(
    tag: &str,
    stop: usize,
    edit: impl Fn(&mut TrainConfig),
) -> (Vec<u8>, trainer::runinfo::Summary, PathBuf) {
    check_resume_spec_at(tag, stop, |s| edit(&mut s.train))
}

/// [`check_resume_at`] with `edit` applied to the whole run spec (model shape included).
fn check_resume_spec_at(
    tag: &str,
    stop: usize,
    edit: impl Fn(&mut RunSpec),
) -> (Vec<u8>, trainer::runinfo::Summary, PathBuf) {
    let text = words_corpus(3000, 11);
    let corpus = Corpus::from_text(&text, 32).unwrap();
    let dev = [CpuDevice::default()];
    let no = AtomicBool::new(false);
    let spec_edited = |out: &Path| {
        let mut s = spec(out, &corpus, 24);
        edit(&mut s);
        s
    };

    let straight = tmp(&format!("straight-{tag}"));
    let a =
        finished(train::train::<Cpu>(&dev, &spec_edited(&straight), &corpus, false, &no).unwrap());

    let split = tmp(&format!("split-{tag}"));
    let mut s = spec_edited(&split);
    s.stop_after = Some(stop);
    match train::train::<Cpu>(&dev, &s, &corpus, false, &no).unwrap() {
        Outcome::Stopped(n) if n == stop => {}
        o => panic!("expected a stop at {stop}, got {o:?}"),
    }
    s.stop_after = None;
    let b = finished(train::train::<Cpu>(&dev, &s, &corpus, true, &no).unwrap());

    let wa = std::fs::read(straight.join("weights.safetensors")).unwrap();
    let wb = std::fs::read(split.join("weights.safetensors")).unwrap();
    assert!(wa == wb, "weights differ after resume ({tag})");
    assert_eq!(a.quantized_val_loss, b.quantized_val_loss);
    assert_eq!(
        a.last_weights_quantized_val_loss,
        b.last_weights_quantized_val_loss
    );
    assert_eq!(a.tokens_seen, b.tokens_seen);
    // The per-step losses agree too (columns step..val; tokens/s and wall time differ).
    assert_eq!(
        metric_columns(&straight, 0..7),
        metric_columns(&split, 0..7)
    );
    let _ = std::fs::remove_dir_all(&straight);
    (wa, a, split)
}

/// Weight averages (`--ema`) start at mid-run, never change the training (per-step losses and
/// the last weights' loss are those of the same run without them), are checkpointed (a run
/// resumed after they started is bit-identical), and the first of them is the exported model.
#[test]
fn ema_exports_an_average_and_resumes_bit_identically() {
    let _turn = one_at_a_time();
    let (plain_w, plain, plain_dir) = check_resume_at("no-ema", 17, |_| {});
    let (ema_w, ema, ema_dir) = check_resume_at("ema", 17, |t| t.ema_decays = vec![0.8, 0.5]);
    assert!(ema_dir.join("checkpoint/ema0.bin").exists());
    assert!(ema_dir.join("checkpoint/ema1.bin").exists());
    assert!(!plain_dir.join("checkpoint/ema0.bin").exists());
    assert_eq!(
        metric_columns(&plain_dir, 0..7),
        metric_columns(&ema_dir, 0..7),
        "the averages changed the training"
    );
    assert_eq!(
        ema.last_weights_quantized_val_loss,
        plain.quantized_val_loss
    );
    assert_eq!(
        plain.quantized_val_loss,
        plain.last_weights_quantized_val_loss
    );
    assert!(plain.averages.is_empty());
    let decays: Vec<f64> = ema.averages.iter().map(|a| a.decay).collect();
    assert_eq!(decays, [0.8, 0.5]);
    assert_eq!(ema.quantized_val_loss, ema.averages[0].quantized_val_loss);
    assert_ne!(
        ema.averages[0].quantized_val_loss,
        ema.averages[1].quantized_val_loss
    );
    assert!(ema_w != plain_w, "the exported weights are the last ones");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ema_dir.join("checkpoint/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["ema_start"], 12);
    let _ = std::fs::remove_dir_all(&plain_dir);
    let _ = std::fs::remove_dir_all(&ema_dir);
}
