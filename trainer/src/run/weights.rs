//! `weights.safetensors`: the model's latent f32 weights under the names of `trainer/EXPORT.md`,
//! byte-identical for equal weights.

use crate::config::EXPORT_VERSION;
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::run::files::write_atomic;
use burn::tensor::backend::Backend;
use runtime::schema;
use std::path::Path;

/// `(name, shape, f32 values)` of every trainer tensor of the model schema
/// ([`runtime::schema`]): those of [`schema::GLOBAL`], then layer by layer those of
/// [`schema::LAYER`] that the model holds as `layers.{l}.{name}` (`layers.{l}.w_gate` only for
/// a gated FFN).
/// (`weights.safetensors` stores them sorted by name.)
///
/// # Panics
/// When the schema names a tensor the model does not have (`Model::global_param` and
/// `Block::param` must know every trainer tensor of the schema; tested).
pub fn export_tensors<B: Backend>(model: &Model<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let missing = |kind| -> ! { panic!("schema tensor {kind:?} is not a parameter of the model") };
    let mut out = Vec::new();
    for spec in schema::GLOBAL {
        if let Some(name) = spec.trainer_name() {
            let p = model
                .global_param(spec.kind)
                .unwrap_or_else(|| missing(spec.kind));
            let (dims, values) = p.to_vec();
            out.push((name.to_string(), dims, values));
        }
    }
    for (l, layer) in model.layers.iter().enumerate() {
        for spec in schema::LAYER {
            let present = spec.when.holds(layer.ffn.gate.is_some());
            if let (true, Some(name)) = (present, spec.trainer_name()) {
                let p = layer.param(spec.kind).unwrap_or_else(|| missing(spec.kind));
                let (dims, values) = p.to_vec();
                let mut full = String::new();
                schema::layer_tensor_name(&mut full, l, name).expect("a String takes any write");
                out.push((full, dims, values));
            }
        }
    }
    out
}

/// Writes the latent f32 weights as safetensors (little-endian F32, names of `EXPORT.md`).
pub fn write_weights<B: Backend>(model: &Model<B>, path: &Path) -> Result<()> {
    let tensors = export_tensors(model);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("shape matches data");
            (n.clone(), view)
        })
        .collect();
    let meta = std::collections::HashMap::from([
        ("export_version".to_string(), EXPORT_VERSION.to_string()),
        (
            "content".to_string(),
            "bitnet-mcu latent f32 weights".to_string(),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Io {
        what: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    write_atomic(path, &sorted_header(bytes))
}

/// safetensors writes `__metadata__` from a `HashMap`, so its key order (and the file's bytes)
/// changes from one process to the next. Re-emits the JSON header with sorted keys (same tensors,
/// same offsets, padded with spaces to 8 bytes as safetensors does): equal weights give equal files.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    use std::collections::BTreeMap;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote a JSON header");
    if let Some(m) = header.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> =
            serde_json::from_value(m.take()).expect("string metadata");
        *m = serde_json::to_value(sorted).expect("serialisable");
    }
    let mut text = serde_json::to_string(&header).expect("serialisable");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, Preset};
    use burn::backend::Flex;

    /// The export holds exactly the schema's trainer tensors, named as the run dir names them and
    /// shaped as `TensorSpec::trainer_shape` says (a GQA config, so `wk` is narrower than `wq`).
    #[test]
    fn export_follows_the_schema() {
        let cfg = ModelConfig {
            vocab_size: 11,
            d_model: 16,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ffn_dim: 24,
            ffn_gated: false,
            ctx_len: 8,
            ..Preset::Tiny.model()
        };
        let rt = runtime::Config {
            vocab_size: 11,
            d_model: 16,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ffn_dim: 24,
            ctx_len: 8,
            rope_theta: 10000,
            ffn_gated: false,
        };
        let model = Model::<Flex>::new(&cfg, &Default::default(), 1);
        let got: Vec<(String, Vec<usize>)> = export_tensors(&model)
            .into_iter()
            .map(|(name, dims, values)| {
                assert_eq!(values.len(), dims.iter().product::<usize>(), "{name}");
                (name, dims)
            })
            .collect();
        let shape = |s: &schema::TensorSpec| -> Vec<usize> {
            let shape = s.trainer_shape(&rt).expect("a trainer tensor");
            shape.dims().iter().map(|&d| d as usize).collect()
        };
        let mut want = Vec::new();
        for s in schema::GLOBAL.iter().filter(|s| s.trainer_name().is_some()) {
            want.push((s.trainer_name().unwrap().to_string(), shape(s)));
        }
        for l in 0..2 {
            for s in schema::layer_specs(&rt)
                .iter()
                .filter(|s| s.trainer_name().is_some())
            {
                let name = format!("layers.{l}.{}", s.trainer_name().unwrap());
                want.push((name, shape(s)));
            }
        }
        assert_eq!(got, want);
        // the names trainer/EXPORT.md lists
        assert_eq!(got[0], ("embed".to_string(), vec![11, 16]));
        assert!(got.contains(&("layers.1.wk".to_string(), vec![16, 8])));
        assert!(got.contains(&("layers.0.ffn_sub_norm".to_string(), vec![24])));
        assert_eq!(got.len(), 2 + 2 * 10);
    }

    /// A gated FFN adds one `[d, F]` matrix per layer: its export holds the schema's
    /// `layers.{l}.w_gate`, its parameter count says so, and its forward runs.
    #[test]
    fn gated_ffn_exports_its_gate() {
        let cfg = ModelConfig {
            vocab_size: 11,
            ffn_gated: true,
            ..Preset::Tiny.model()
        };
        let plain = ModelConfig {
            ffn_gated: false,
            ..cfg.clone()
        };
        let (d, f) = (cfg.d_model, cfg.ffn_dim);
        assert_eq!(cfg.n_params(), plain.n_params() + cfg.n_layers * d * f);
        let dev = Default::default();
        let model = Model::<Flex>::new(&cfg, &dev, 1);
        let got = export_tensors(&model);
        let plain_names: Vec<String> = export_tensors(&Model::<Flex>::new(&plain, &dev, 1))
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        assert_eq!(got.len(), plain_names.len() + cfg.n_layers);
        let count: usize = got.iter().map(|(_, _, v)| v.len()).sum();
        assert_eq!(count, cfg.n_params());
        for l in 0..cfg.n_layers {
            let gate = got
                .iter()
                .find(|(n, _, _)| *n == format!("layers.{l}.w_gate"));
            assert_eq!(gate.map(|(_, dims, _)| dims.clone()), Some(vec![d, f]));
        }
        let tab = crate::model::Tables::new(&cfg, &dev);
        let tokens = burn::tensor::Tensor::<Flex, 2, burn::tensor::Int>::zeros([2, 5], &dev);
        let logits = model.forward(tokens, &tab, crate::model::QuantMode::EVAL);
        assert_eq!(logits.dims(), [2, 5, 11]);
        assert!(logits
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|x| x.is_finite()));
    }
}
