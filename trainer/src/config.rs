//! Hyper-parameters: the model's shape (`ModelConfig`, the contract of `docs/MODEL.md`), the
//! optimisation schedule (`TrainConfig`) and the three presets.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};

pub use rundir::{ModelConfig, EXPORT_VERSION, EXPORT_VERSION_BPE};
use runtime::{ConfigError, Dim};

/// Largest vocabulary, a BPE one included (token ids are `u16` in the blob).
const MAX_VOCAB: usize = runtime::format::MAX_VOCAB as usize;

/// The run-dir format version of a run with tokenizer `kind`.
pub fn export_version(kind: TokenizerKind) -> u32 {
    match kind {
        TokenizerKind::Char => EXPORT_VERSION,
        TokenizerKind::Bpe => EXPORT_VERSION_BPE,
    }
}

/// Largest number of parameters: the packed blob stays under the format's 4 GiB, and the
/// optimiser state (weights, gradients, two moments: 16 bytes each) under 64 GiB.
pub const MAX_PARAMS: usize = 4 << 30;
/// Most tokens in one training batch (`batch × ctx`): 64× the `small` preset's 16,384.
pub const MAX_BATCH_TOKENS: usize = 1 << 20;
/// Most tokens in the fixed validation batches (`val_batches × batch × ctx`), held in memory.
pub const MAX_VAL_TOKENS: usize = 1 << 26;
/// Most attention scores of one layer in one step (`batch × heads × ctx²`, f32: 16 GiB).
/// These limits are sanity bounds against absurd overrides, not a memory budget.
pub const MAX_ATTENTION_SCORES: usize = 1 << 32;
/// Most optimiser steps of one run.
pub const MAX_STEPS: usize = 1_000_000_000;
/// Most EMA decays of one run (`--ema`): each keeps a full copy of the model.
pub const MAX_EMA: usize = 8;

/// The flags of `trainer` that set a dimension, for messages (the shape's rules name the
/// `config.json` keys).
fn flags(e: &ConfigError) -> &'static str {
    let dim = |d: Dim| match d {
        Dim::VocabSize => "the corpus's distinct characters",
        Dim::DModel => "--d-model",
        Dim::NLayers => "--layers",
        Dim::NHeads => "--heads",
        Dim::NKvHeads => "--kv-heads",
        Dim::FfnDim => "--ffn",
        Dim::CtxLen => "--ctx",
    };
    match *e {
        ConfigError::Zero(d) | ConfigError::TooLarge { dim: d, .. } => dim(d),
        ConfigError::HeadDim { .. } => "--d-model, --heads",
        ConfigError::KvHeads { .. } => "--heads, --kv-heads",
        ConfigError::NormEps | ConfigError::Size => "the preset",
    }
}

/// Every rule a model shape must satisfy to train here: the runtime's rules
/// ([`ModelConfig::validate`], so every trained model packs and runs) and the trainer's own
/// bound on parameters; the first broken one as an error.
pub fn check_model(m: &ModelConfig) -> Result<()> {
    m.validate().map_err(|e| {
        TrainError::Config(match &e {
            rundir::ShapeError::Config(c) => format!("{e} (set by {})", flags(c)),
            _ => e.to_string(),
        })
    })?;
    // Dimensions are bounded above by now, so this cannot overflow.
    if m.n_params() > MAX_PARAMS {
        return Err(TrainError::Config(format!(
            "{} parameters is more than {MAX_PARAMS} (the packed blob must stay under 4 GiB)",
            m.n_params()
        )));
    }
    Ok(())
}

fn default_lr_stage2_end() -> f64 {
    0.1
}

/// The optimisation schedule and run settings. Field names are the `config.json` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// total optimiser steps of the run (the schedule is laid out over these)
    pub steps: usize,
    /// sequences per step
    pub batch_size: usize,
    /// peak learning rate (stage 1)
    pub lr: f64,
    /// stage-2 learning rate as a fraction of `lr` (applied from `steps / 2` on)
    pub lr_stage2: f64,
    /// where the stage-2 cosine ends, as a fraction of its start `lr·lr_stage2` (the b1.58
    /// recipe: 0.1; 0 = to zero). Absent in runs written before it existed (= 0.1).
    #[serde(default = "default_lr_stage2_end")]
    pub lr_stage2_end: f64,
    /// linear warmup steps
    pub warmup_steps: usize,
    /// AdamW weight decay of stage 1 on the matrices and the embedding
    pub weight_decay: f64,
    /// the same from `steps / 2` on (the b1.58 recipe: 0; the `mcu` preset: 0.4). Absent in
    /// runs written before it existed (= 0).
    #[serde(default)]
    pub weight_decay_stage2: f64,
    /// AdamW beta1
    pub beta1: f64,
    /// AdamW beta2
    pub beta2: f64,
    /// AdamW epsilon
    pub adam_eps: f64,
    /// global gradient-norm clip (0 = off)
    pub grad_clip: f64,
    /// seed of parameter init and of the batch sampler
    pub seed: u64,
    /// periodic validation every N steps (fixed random batches)
    pub eval_every: usize,
    /// number of fixed validation batches for periodic validation
    pub val_batches: usize,
    /// checkpoint every N steps
    pub checkpoint_every: usize,
    /// apply Q3–Q5 (embedding, head, q/k/v) with STE during training as well as Q1–Q2
    pub qat_all: bool,
    /// dropout on the two residual branches of every block (attention and FFN outputs) while
    /// training; 0 = off. Evaluation never drops. Absent in runs written before it existed.
    #[serde(default)]
    pub dropout: f64,
    /// the 0-based step from which `dropout` applies ("late dropout"); 0 = from the start.
    /// Absent in runs written before it existed.
    #[serde(default)]
    pub dropout_from: usize,
    /// input noising: each training input character is replaced, with this probability, by one
    /// drawn from the training split's character frequencies (targets stay); 0 = off.
    /// Absent in runs written before it existed.
    #[serde(default)]
    pub input_noise: f64,
    /// float warm start: the first `float_steps` steps train without any quantizer (Q1–Q5 off),
    /// the rest with quantization-aware training as `qat_all` says; 0 = QAT from the first step.
    /// Absent in runs written before it existed.
    #[serde(default)]
    pub float_steps: usize,
    /// optimiser of the BitLinear matrices (the embedding and the gains always use AdamW).
    /// Absent in runs written before it existed (= AdamW).
    #[serde(default)]
    pub optimizer: MatrixOptimizer,
    /// exponential moving averages of the weights over stage 2: one average per decay β, each
    /// started from the weights at `steps / 2` and updated after every later step
    /// (`avg += (1 − β)·(w − avg)`). The run exports the first average instead of the last
    /// weights and reports the quantized validation loss of each; empty = off. Absent in runs
    /// written before it existed.
    #[serde(default)]
    pub ema_decays: Vec<f64>,
    /// the tokenizer: one token per character of the corpus, or byte-level BPE learned from the
    /// training split. Absent for character runs (and in runs written before it existed).
    #[serde(default, skip_serializing_if = "TokenizerKind::is_char")]
    pub tokenizer: TokenizerKind,
    /// with `tokenizer: bpe`, the vocabulary to learn: 256 byte tokens plus up to
    /// `bpe_vocab − 256` merges (fewer when no pair of the training text repeats). Absent
    /// (0) for character runs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bpe_vocab: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// How text becomes tokens (`--tokenizer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// one token per character: the distinct characters of the corpus
    #[default]
    Char,
    /// byte-level BPE: 256 byte tokens plus merges learned from the training split (`--vocab`);
    /// any text encodes
    Bpe,
}

impl TokenizerKind {
    /// `true` for [`TokenizerKind::Char`].
    pub fn is_char(&self) -> bool {
        *self == TokenizerKind::Char
    }
}

/// The optimiser of the BitLinear weight matrices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatrixOptimizer {
    /// AdamW, like every other parameter
    #[default]
    Adamw,
    /// Muon (burn's: Nesterov momentum 0.95, 5 Newton–Schulz steps) with its update scaled to
    /// AdamW's RMS (`0.2·sqrt(max(rows, cols))`), so the same learning rate and weight decay apply
    Muon,
}

/// A named starting point for `ModelConfig` + `TrainConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// ~70k parameters: tests and smoke runs (about a minute on 2 cores)
    Tiny,
    /// ~1.2M parameters: fits a Raspberry Pi Pico 2 (2-bit weights ≈ 300 KB, int8 KV cache ≈ 196 KB)
    Mcu,
    /// ~5.8M parameters: for a GPU
    Small,
}

impl Preset {
    /// The preset's name as written in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Mcu => "mcu",
            Preset::Small => "small",
        }
    }

    /// Model shape of the preset (vocab_size is filled in from the corpus later).
    pub fn model(self) -> ModelConfig {
        let (d_model, n_layers, n_heads, n_kv_heads, ffn_dim, ctx_len) = match self {
            Preset::Tiny => (64, 2, 4, 4, 128, 64),
            // Gated FFN at F 336: the same parameters as the plain FFN at 512 (1.18 M against
            // 1.19 M), no worse (1.4735 on average over five seeds against the plain FFN's
            // 1.4748 over two) and cheaper on the M33 (docs/ABLATIONS.md, "Gated FFN").
            Preset::Mcu => (128, 6, 4, 4, 336, 128),
            Preset::Small => (256, 8, 8, 4, 1024, 256),
        };
        ModelConfig {
            vocab_size: 0,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_dim,
            ffn_gated: self == Preset::Mcu,
            ctx_len,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
        }
    }

    /// Training schedule of the preset.
    pub fn train(self) -> TrainConfig {
        let (steps, batch_size, lr, warmup_steps) = match self {
            Preset::Tiny => (300, 16, 3e-3, 30),
            Preset::Mcu => (4000, 32, 3e-3, 100),
            Preset::Small => (5000, 64, 2e-3, 300),
        };
        TrainConfig {
            steps,
            batch_size,
            lr,
            lr_stage2: 0.3,
            lr_stage2_end: 0.1,
            warmup_steps,
            weight_decay: 0.1,
            // `mcu` raises its decay in stage 2: 0.4 gains 0.016 at 4000 steps (docs/ABLATIONS.md).
            weight_decay_stage2: if self == Preset::Mcu { 0.4 } else { 0.0 },
            beta1: 0.9,
            beta2: 0.95,
            adam_eps: 1e-8,
            grad_clip: 1.0,
            seed: 1337,
            eval_every: if self == Preset::Tiny { 50 } else { 100 },
            val_batches: 8,
            checkpoint_every: if self == Preset::Tiny { 100 } else { 250 },
            qat_all: true,
            // `small` overfits tiny Shakespeare without it (measured on an H200, trainer/README.md);
            // on `mcu` 0.05 gains ~0.01 with a ~0.01 spread (docs/ABLATIONS.md): off there.
            dropout: if self == Preset::Small { 0.2 } else { 0.0 },
            dropout_from: 0,
            input_noise: 0.0,
            float_steps: 0,
            optimizer: MatrixOptimizer::Adamw,
            // `mcu` exports an average of its last ~100 steps: β 0.99 gains 0.010-0.012 on two
            // seeds (docs/ABLATIONS.md).
            ema_decays: if self == Preset::Mcu {
                vec![0.99]
            } else {
                Vec::new()
            },
            tokenizer: TokenizerKind::Char,
            bpe_vocab: 0,
        }
    }
}

impl TrainConfig {
    /// Rules the schedule must satisfy.
    pub fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.steps == 0 {
            return err("steps must be at least 1");
        }
        if self.steps > MAX_STEPS {
            return Err(TrainError::Config(format!(
                "steps {} is more than {MAX_STEPS}",
                self.steps
            )));
        }
        if self.batch_size == 0 {
            return err("batch must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return err("lr must be a positive number");
        }
        if !(self.lr_stage2 > 0.0 && self.lr_stage2 <= 1.0) {
            return err("lr stage-2 factor must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.lr_stage2_end) {
            return err("lr stage-2 end must be in [0, 1]");
        }
        if !(self.weight_decay >= 0.0
            && self.weight_decay.is_finite()
            && self.weight_decay_stage2 >= 0.0
            && self.weight_decay_stage2.is_finite()
            && self.grad_clip >= 0.0
            && self.grad_clip.is_finite())
        {
            return err("weight decay and grad clip must be finite numbers >= 0");
        }
        let betas = (0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2);
        if !(betas && self.adam_eps > 0.0 && self.adam_eps.is_finite()) {
            return err("AdamW betas must be in [0, 1) and its epsilon a positive number");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err("dropout must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.input_noise) {
            return err("input noise must be in [0, 1)");
        }
        if self.ema_decays.len() > MAX_EMA {
            return Err(TrainError::Config(format!(
                "at most {MAX_EMA} EMA decays (each keeps a copy of the model), not {}",
                self.ema_decays.len()
            )));
        }
        if !self.ema_decays.iter().all(|b| *b > 0.0 && *b < 1.0) {
            return err("every EMA decay must be in (0, 1)");
        }
        if self.dropout_from >= self.steps {
            return Err(TrainError::Config(format!(
                "dropout-from {} must be less than steps {}",
                self.dropout_from, self.steps
            )));
        }
        if self.float_steps >= self.steps {
            return Err(TrainError::Config(format!(
                "float-steps {} must be less than steps {} (at least one quantization-aware step)",
                self.float_steps, self.steps
            )));
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 || self.val_batches == 0 {
            return err("eval-every, checkpoint-every and val-batches must be at least 1");
        }
        match self.tokenizer {
            TokenizerKind::Char if self.bpe_vocab != 0 => {
                return err("--vocab sets the size of a BPE vocabulary: it needs --tokenizer bpe")
            }
            TokenizerKind::Bpe if !(256..=MAX_VOCAB).contains(&self.bpe_vocab) => {
                return Err(TrainError::Config(format!(
                    "a BPE vocabulary has 256 byte tokens plus merges: --vocab must be in 256..={MAX_VOCAB}, not {}",
                    self.bpe_vocab
                )))
            }
            _ => {}
        }
        Ok(())
    }

    /// Rules that tie the schedule to the model: the batches must fit in memory.
    pub fn validate_for(&self, model: &ModelConfig) -> Result<()> {
        let step_tokens = self.batch_size.saturating_mul(model.ctx_len);
        if step_tokens > MAX_BATCH_TOKENS {
            return Err(TrainError::Config(format!(
                "batch {} × ctx {} = {step_tokens} tokens per step is more than {MAX_BATCH_TOKENS}",
                self.batch_size, model.ctx_len
            )));
        }
        // Attention probabilities `[b, H, t, t]` (burn's tensor-op path materialises them).
        let scores = step_tokens
            .saturating_mul(model.n_heads)
            .saturating_mul(model.ctx_len);
        if scores > MAX_ATTENTION_SCORES {
            return Err(TrainError::Config(format!(
                "batch {} × heads {} × ctx² {}² = {scores} attention scores per layer is more than {MAX_ATTENTION_SCORES}",
                self.batch_size, model.n_heads, model.ctx_len
            )));
        }
        let val_tokens = step_tokens.saturating_mul(self.val_batches);
        if val_tokens > MAX_VAL_TOKENS {
            return Err(TrainError::Config(format!(
                "val-batches {} × batch {} × ctx {} = {val_tokens} validation tokens is more than {MAX_VAL_TOKENS}",
                self.val_batches, self.batch_size, model.ctx_len
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_sizes() {
        let mut m = Preset::Mcu.model();
        m.vocab_size = 65;
        check_model(&m).unwrap();
        // ≈ 1.2M like the PyTorch reference
        assert!(
            (1_150_000..1_250_000).contains(&m.n_params()),
            "{}",
            m.n_params()
        );
        let mut s = Preset::Small.model();
        s.vocab_size = 65;
        assert!((4_000_000..8_000_000).contains(&s.n_params()));
        let mut t = Preset::Tiny.model();
        t.vocab_size = 65;
        assert!(t.n_params() < 100_000);
    }

    #[test]
    fn out_of_range_overrides_are_refused() {
        let msg = |f: &dyn Fn(&mut ModelConfig)| {
            let mut m = Preset::Tiny.model();
            m.vocab_size = 65;
            f(&mut m);
            check_model(&m).unwrap_err().to_string()
        };
        assert!(msg(&|m| m.d_model = 1 << 40).contains("d_model"));
        assert!(msg(&|m| m.n_layers = 1_000_000_000_000).contains("layers"));
        assert!(msg(&|m| m.ctx_len = usize::MAX).contains("ctx"));
        assert!(msg(&|m| m.ffn_dim = 1 << 20).contains("ffn"));
        assert!(msg(&|m| m.vocab_size = 70_000).contains("vocab"));
        assert!(msg(&|m| m.rope_theta = f64::INFINITY).contains("rope_theta"));
        let big = msg(&|m| {
            m.d_model = 32768;
            m.n_heads = 128;
            m.n_kv_heads = 128;
            m.n_layers = 1024;
        });
        assert!(big.contains("parameters"), "{big}");

        let model = Preset::Tiny.model();
        let tmsg = |f: &dyn Fn(&mut TrainConfig)| {
            let mut t = Preset::Tiny.train();
            f(&mut t);
            t.validate()
                .and_then(|_| t.validate_for(&model))
                .unwrap_err()
                .to_string()
        };
        assert!(tmsg(&|t| t.batch_size = 1 << 40).contains("tokens per step"));
        assert!(tmsg(&|t| t.val_batches = 1 << 40).contains("validation tokens"));
        let long = ModelConfig {
            ctx_len: 32768,
            ..Preset::Tiny.model()
        };
        let mut t = Preset::Tiny.train();
        t.batch_size = 2; // 2 × 4 heads × 2^30 = 2^33 scores
        let e = t.validate_for(&long).unwrap_err().to_string();
        assert!(e.contains("attention scores"), "{e}");
        assert!(tmsg(&|t| t.weight_decay = f64::NAN).contains("weight decay"));
        assert!(tmsg(&|t| t.weight_decay_stage2 = -0.1).contains("weight decay"));
        assert!(tmsg(&|t| t.lr_stage2_end = -0.1).contains("stage-2 end"));
        assert!(tmsg(&|t| t.lr_stage2_end = f64::NAN).contains("stage-2 end"));
        assert!(tmsg(&|t| t.ema_decays = vec![0.9, 1.0]).contains("EMA decay"));
        assert!(tmsg(&|t| t.ema_decays = vec![f64::NAN]).contains("EMA decay"));
        assert!(tmsg(&|t| t.ema_decays = vec![0.5; MAX_EMA + 1]).contains("at most"));
        assert!(tmsg(&|t| t.dropout_from = t.steps).contains("dropout-from"));
        assert!(tmsg(&|t| t.input_noise = 1.0).contains("input noise"));
        assert!(tmsg(&|t| t.grad_clip = f64::INFINITY).contains("grad clip"));
        assert!(tmsg(&|t| t.steps = usize::MAX).contains("steps"));
        assert!(tmsg(&|t| t.steps = 0).contains("steps"));
        let t = Preset::Small.train();
        t.validate_for(&Preset::Small.model()).unwrap();
    }

    #[test]
    fn invalid_shapes() {
        let mut m = Preset::Tiny.model();
        m.vocab_size = 10;
        m.n_heads = 3;
        let e = check_model(&m).unwrap_err().to_string();
        assert!(
            e.contains("must be n_heads (3) times") && e.contains("--heads"),
            "{e}"
        );
        let mut m = Preset::Tiny.model();
        m.vocab_size = 10;
        m.n_kv_heads = 3;
        let e = check_model(&m).unwrap_err().to_string();
        assert!(e.contains("multiple of n_kv_heads (3)"), "{e}");
        let mut m = Preset::Tiny.model();
        m.vocab_size = 10;
        m.d_model = 60; // head_dim 15
        assert!(check_model(&m)
            .unwrap_err()
            .to_string()
            .contains("even head_dim"));
    }

    /// A `config.json` written before `dropout`, `dropout_from`, `float_steps`, `optimizer`,
    /// `weight_decay_stage2`, `input_noise`, `ema_decays` and `lr_stage2_end` existed reads with
    /// their defaults (0, 0, 0, AdamW, 0, 0, none, 0.1); the optimiser's JSON names are lowercase.
    #[test]
    fn older_train_configs_read_with_defaults() {
        let mut v = serde_json::to_value(Preset::Mcu.train()).unwrap();
        let o = v.as_object_mut().unwrap();
        let keys = ["dropout", "dropout_from", "float_steps", "optimizer"];
        for k in keys.into_iter().chain([
            "weight_decay_stage2",
            "input_noise",
            "ema_decays",
            "lr_stage2_end",
        ]) {
            assert!(o.remove(k).is_some(), "{k} is not a key");
        }
        let t: TrainConfig = serde_json::from_value(v).unwrap();
        assert_eq!((t.dropout, t.dropout_from, t.float_steps), (0.0, 0, 0));
        assert_eq!((t.weight_decay_stage2, t.input_noise), (0.0, 0.0));
        assert!(t.ema_decays.is_empty());
        assert_eq!(t.lr_stage2_end, 0.1);
        assert_eq!(t.optimizer, MatrixOptimizer::Adamw);
        let muon = serde_json::to_string(&MatrixOptimizer::Muon).unwrap();
        assert_eq!(muon, "\"muon\"");
    }
}
