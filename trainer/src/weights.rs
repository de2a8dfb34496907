//! `weights.safetensors`: the model's latent f32 weights under the names of `trainer/EXPORT.md`,
//! byte-identical for equal weights.

use crate::config::EXPORT_VERSION;
use crate::error::{Result, TrainError};
use crate::files::write_atomic;
use crate::model::Model;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use std::path::Path;

/// `(name, shape, f32 values)` of every tensor of `weights.safetensors`, in file order.
pub fn export_tensors<B: Backend>(model: &Model<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    fn t<B: Backend, const D: usize>(
        name: String,
        x: Tensor<B, D>,
    ) -> (String, Vec<usize>, Vec<f32>) {
        let shape = x.dims().to_vec();
        let data = x
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 tensor");
        (name, shape, data)
    }
    let mut v = vec![t("embed".into(), model.embed.val())];
    for (i, l) in model.layers.iter().enumerate() {
        let p = |s: &str| format!("layers.{i}.{s}");
        v.push(t(p("attn_norm"), l.attn_norm.gain.val()));
        v.push(t(p("wq"), l.attn.wq.weight.val()));
        v.push(t(p("wk"), l.attn.wk.weight.val()));
        v.push(t(p("wv"), l.attn.wv.weight.val()));
        v.push(t(p("attn_sub_norm"), l.attn.sub_norm.gain.val()));
        v.push(t(p("wo"), l.attn.wo.weight.val()));
        v.push(t(p("ffn_norm"), l.ffn_norm.gain.val()));
        v.push(t(p("w_up"), l.ffn.up.weight.val()));
        v.push(t(p("ffn_sub_norm"), l.ffn.sub_norm.gain.val()));
        v.push(t(p("w_down"), l.ffn.down.weight.val()));
    }
    v.push(t("final_norm".into(), model.final_norm.gain.val()));
    v
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
