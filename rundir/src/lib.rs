//! The run directory's contract (trainer/EXPORT.md) between `trainer`, which writes it, and
//! `tools pack`, which reads it: the format versions, [`EXPORT_VERSION`] (characters) and
//! [`EXPORT_VERSION_BPE`] (byte-level BPE), and the model's shape as `config.json` spells it,
//! [`ModelConfig`].
//!
//! The shape has one set of rules, the runtime's: [`ModelConfig::validate`] converts it to the
//! blob's [`runtime::Config`] and runs [`runtime::Config::validate`] (every dimension within
//! the format's limits, `runtime/FORMAT.md`), so a model the trainer accepts is one that packs
//! and runs. The real-valued fields (`rope_theta`, `norm_eps`) are checked here, where floats
//! are allowed; the runtime stores them as integers.

#![warn(missing_docs)]

use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the run-directory format (trainer/EXPORT.md) of a character run, which the
/// trainer writes and `tools pack` reads.
pub const EXPORT_VERSION: u32 = 1;
/// Version of the run-directory format of a byte-level BPE run (`tokenizer.json`, `vocab.json`
/// as ISO-8859-1 byte strings): a reader that knows only version 1 must refuse it.
pub const EXPORT_VERSION_BPE: u32 = 2;

/// The model's shape. Field names are the `config.json` keys and the names of `docs/MODEL.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// number of tokens (characters of the corpus)
    pub vocab_size: usize,
    /// residual width `d`
    pub d_model: usize,
    /// number of blocks
    pub n_layers: usize,
    /// query heads; `head_dim = d_model / n_heads`
    pub n_heads: usize,
    /// key/value heads (grouped-query attention)
    pub n_kv_heads: usize,
    /// hidden width of the feed-forward block
    pub ffn_dim: usize,
    /// gated feed-forward block, `down(subnorm(relu²(gate·h) ⊙ up·h))`, with a third `[d, F]`
    /// matrix (`layers.{l}.w_gate`, packed as blob format v3). Absent in runs written before
    /// it existed (= plain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ffn_gated: bool,
    /// context length trained and RoPE table length
    pub ctx_len: usize,
    /// RoPE base (a whole number: the blob stores it as `u32`)
    pub rope_theta: f64,
    /// epsilon of every RMSNorm
    pub norm_eps: f64,
}

/// Why a [`ModelConfig`] is not a shape the runtime can run.
#[derive(Debug, Clone, PartialEq)]
pub enum ShapeError {
    /// A rule of [`runtime::Config::validate`]: names the field, the value and the limit.
    Config(runtime::ConfigError),
    /// `rope_theta` is not a whole number in `2..=u32::MAX`.
    RopeTheta(f64),
    /// `norm_eps` is not a positive finite number.
    NormEps(f64),
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapeError::Config(e) => e.fmt(f),
            ShapeError::RopeTheta(t) => write!(
                f,
                "rope_theta {t:e} is not a whole number in 2..=4294967295 (the blob stores it as u32)"
            ),
            ShapeError::NormEps(e) => {
                write!(f, "norm_eps {e:e} is not a positive finite number")
            }
        }
    }
}

impl std::error::Error for ShapeError {}

impl ModelConfig {
    /// `d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Number of parameters (the embedding counted once: it is tied to the LM head).
    pub fn n_params(&self) -> usize {
        let (d, f, hd) = (self.d_model, self.ffn_dim, self.head_dim());
        let attn = d * self.n_heads * hd + 2 * d * self.n_kv_heads * hd + d * d;
        let ffn_mats = if self.ffn_gated { 3 } else { 2 };
        let per_layer = attn + ffn_mats * d * f + 2 * d + f + d;
        self.vocab_size * d + self.n_layers * per_layer + d
    }

    /// The blob's shape, checked by the runtime's rules: the first broken one as an error.
    /// A dimension beyond `u32` is reported at `u32::MAX`, which is over every limit.
    pub fn validate(&self) -> Result<runtime::Config, ShapeError> {
        let dim = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let theta = self.rope_theta;
        if !(theta.fract() == 0.0 && (2.0..=u32::MAX as f64).contains(&theta)) {
            return Err(ShapeError::RopeTheta(theta));
        }
        let config = runtime::Config {
            vocab_size: dim(self.vocab_size),
            d_model: dim(self.d_model),
            n_layers: dim(self.n_layers),
            n_heads: dim(self.n_heads),
            n_kv_heads: dim(self.n_kv_heads),
            ffn_dim: dim(self.ffn_dim),
            ctx_len: dim(self.ctx_len),
            rope_theta: theta as u32,
            ffn_gated: self.ffn_gated,
        };
        config.validate().map_err(ShapeError::Config)?;
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(ShapeError::NormEps(self.norm_eps));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{ConfigError, Dim};

    fn mcu() -> ModelConfig {
        ModelConfig {
            vocab_size: 65,
            d_model: 128,
            n_layers: 6,
            n_heads: 4,
            n_kv_heads: 4,
            ffn_dim: 336,
            ffn_gated: true,
            ctx_len: 128,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
        }
    }

    #[test]
    fn the_runtime_rules_name_field_value_and_limit() {
        let c = mcu().validate().unwrap();
        assert_eq!((c.d_model, c.ffn_dim, c.rope_theta), (128, 336, 10000));
        let broken = |f: &dyn Fn(&mut ModelConfig)| {
            let mut m = mcu();
            f(&mut m);
            m.validate().unwrap_err()
        };
        let e = broken(&|m| m.n_layers = 5000);
        assert_eq!(
            e,
            ShapeError::Config(ConfigError::TooLarge {
                dim: Dim::NLayers,
                value: 5000,
                max: runtime::format::MAX_LAYERS
            })
        );
        assert!(
            e.to_string().starts_with("n_layers 5000 is more than"),
            "{e}"
        );
        let e = broken(&|m| m.ctx_len = usize::MAX);
        assert!(
            e.to_string().starts_with("ctx_len 4294967295 is more than"),
            "{e}"
        );
        assert_eq!(
            broken(&|m| m.ffn_dim = 0),
            ShapeError::Config(ConfigError::Zero(Dim::FfnDim))
        );
        assert!(matches!(
            broken(&|m| m.n_heads = 3),
            ShapeError::Config(ConfigError::HeadDim { .. })
        ));
        assert!(matches!(
            broken(&|m| m.n_kv_heads = 3),
            ShapeError::Config(ConfigError::KvHeads { .. })
        ));
        assert!(matches!(
            broken(&|m| m.rope_theta = 1e4 + 0.5),
            ShapeError::RopeTheta(_)
        ));
        assert!(matches!(
            broken(&|m| m.norm_eps = f64::NAN),
            ShapeError::NormEps(_)
        ));
    }

    #[test]
    fn config_json_keys() {
        let v = serde_json::to_value(mcu()).unwrap();
        for key in [
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "ffn_dim",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let mut plain = mcu();
        plain.ffn_gated = false;
        let v = serde_json::to_value(&plain).unwrap();
        assert!(
            v.get("ffn_gated").is_none(),
            "a plain FFN writes no ffn_gated key"
        );
        let back: ModelConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, plain);
    }
}
