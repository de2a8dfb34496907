//! What a blob holds: the report of `tools inspect` (text through `Display`, JSON through
//! `Serialize`), built from a loaded [`Model`] and its bytes. Its own crate so that the web page
//! shows the same report from the same code: `tools` is a command-line crate that does not
//! build for `wasm32-unknown-unknown`.

#![warn(missing_docs)]

use std::fmt;

use runtime::format::ElemFormat;
use runtime::schema::{self, Source};
use runtime::{session_bytes, session_bytes_prefill, Config, Model};
use serde::Serialize;

/// One row of the tensor table.
#[derive(Clone, Debug, Serialize)]
pub struct TensorRow {
    /// Section kind.
    pub kind: String,
    /// Layer (0 for global sections).
    pub layer: u16,
    /// Logical rows.
    pub rows: u32,
    /// Logical columns.
    pub cols: u32,
    /// Storage.
    pub format: String,
    /// Offset in the data region.
    pub offset: u32,
    /// Bytes.
    pub len: u32,
}

/// Everything `inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// `major.minor`.
    pub format_version: String,
    /// The stored CRC-32 (verified: a blob that fails it does not load).
    pub checksum: String,
    /// Dimensions, as stored in the header.
    pub config: Config,
    /// Whether every block's FFN is gated (format v3's prefix flag; not part of `config`'s
    /// serialized form).
    pub ffn_gated: bool,
    /// `"bpe"` (byte-level BPE, format v4) or `"char"` (tokens matched greedily: characters).
    pub tokenizer: String,
    /// The BPE merges (`[left, right]`, merge `i` makes token `256 + i`); empty for characters.
    pub merges: Vec<[u16; 2]>,
    /// Characters per token of the trainer's validation split, if the blob records it.
    pub chars_per_token: Option<f64>,
    /// The token strings, lossily decoded.
    pub vocab: Vec<String>,
    /// Blob size (flash).
    pub flash_bytes: usize,
    /// Ternary weights in the model.
    pub ternary_weights: u64,
    /// Bytes of the ternary sections plus their scales (padding included).
    pub ternary_bytes: u64,
    /// `8 · ternary_bytes / ternary_weights`.
    pub bits_per_ternary_weight: f64,
    /// All parameters (ternary + embedding + gains).
    pub parameters: u64,
    /// `8 · flash_bytes / parameters`.
    pub bits_per_parameter_overall: f64,
    /// Session RAM: working memory of a session over the whole context that runs one token per
    /// pass (as the firmware does).
    pub session_ram_bytes: usize,
    /// Prefill session RAM: the same with room to prefill blocks of half the context at once
    /// (as `tools generate` and `tools bench` do on a host).
    pub prefill_session_ram_bytes: usize,
    /// The trainer's quantized validation loss recorded in the blob.
    pub trainer_quantized_val_loss: Option<f64>,
    /// Free-form metadata.
    pub metadata: String,
    /// The tensor table.
    pub tensors: Vec<TensorRow>,
    /// The tokens as the text output shows them.
    #[serde(skip)]
    pub token_display: Vec<String>,
}

/// A token for people: a quoted string when its bytes are UTF-8, else a byte string with `\xNN`
/// escapes (a byte-level token may hold part of a character); control characters escaped.
pub fn show_token(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("b\"{}\"", bytes.escape_ascii()),
    }
}

fn format_name(f: ElemFormat) -> String {
    match f {
        ElemFormat::Bytes => "u8".into(),
        ElemFormat::U32 => "u32".into(),
        ElemFormat::Int8Rows { row_bytes } => format!("i8 rows of {row_bytes} B"),
        ElemFormat::Dyadic => "dyadic".into(),
        ElemFormat::FixedI32 { frac_bits } => format!("i32 Q.{frac_bits}"),
        ElemFormat::Ternary2 { row_bytes } => format!("2-bit ternary, rows of {row_bytes} B"),
        ElemFormat::Ternary5 { row_bytes } => format!("base-3 ternary, rows of {row_bytes} B"),
    }
}

/// Inspects a loaded model; `blob` is its bytes.
pub fn inspect(model: &Model<'_>, blob: &[u8]) -> Inspection {
    let c = *model.config();
    let layout = model.layout();
    let mut tensors = Vec::new();
    let (mut tw, mut tb, mut params) = (0u64, 0u64, 0u64);
    for e in layout.entries() {
        let elems = e.rows as u64 * e.cols as u64;
        // Parameters: what the trainer learned (matrices, embedding, gains). Ternary bytes
        // include the matrices' scales.
        match schema::spec_of(e.kind).map(|s| s.source) {
            Some(Source::Ternary { .. }) => {
                tw += elems;
                tb += e.len as u64;
                params += elems;
            }
            Some(Source::LayerScales) => tb += e.len as u64,
            Some(Source::Embedding { .. } | Source::Gain { .. }) => params += elems,
            _ => {}
        }
        tensors.push(TensorRow {
            kind: format!("{:?}", e.kind),
            layer: e.layer,
            rows: e.rows,
            cols: e.cols,
            format: format_name(e.format),
            offset: e.offset,
            len: e.len,
        });
    }
    let crc = blob
        .get(24..28)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    Inspection {
        format_version: format!("{}.{}", model.version_major(), model.version_minor()),
        checksum: format!("CRC-32 {crc:08x} (verified)"),
        config: c,
        ffn_gated: c.ffn_gated,
        tokenizer: if model.merges().is_some() {
            "bpe"
        } else {
            "char"
        }
        .into(),
        merges: model
            .merges()
            .map(|m| m.iter().map(|(l, r)| [l, r]).collect())
            .unwrap_or_default(),
        chars_per_token: model.chars_per_kilotoken().map(|k| f64::from(k) / 1000.0),
        token_display: (0..c.vocab_size as u16)
            .map(|i| show_token(model.token_bytes(i).unwrap_or(&[])))
            .collect(),
        vocab: (0..c.vocab_size as u16)
            .map(|i| String::from_utf8_lossy(model.token_bytes(i).unwrap_or(&[])).into_owned())
            .collect(),
        flash_bytes: blob.len(),
        ternary_weights: tw,
        ternary_bytes: tb,
        bits_per_ternary_weight: 8.0 * tb as f64 / tw.max(1) as f64,
        parameters: params,
        bits_per_parameter_overall: 8.0 * blob.len() as f64 / params.max(1) as f64,
        session_ram_bytes: session_bytes(&c, c.ctx_len),
        prefill_session_ram_bytes: session_bytes_prefill(&c, c.ctx_len, (c.ctx_len / 2).max(1)),
        trainer_quantized_val_loss: model.val_loss_micro_nats().map(|m| m as f64 / 1e6),
        metadata: model.metadata().to_string(),
        tensors,
    }
}

/// `s` safe for a terminal: control characters (escape sequences among them) and the
/// bidirectional-override characters become `\u{…}` escapes; `\` is doubled so the output
/// stays unambiguous. The one escape of the project: `tools` (its `term` module) and the
/// trainer (paths in its messages) call it too.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "format        v{}, {}",
            self.format_version, self.checksum
        )?;
        writeln!(
            f,
            "config        vocab {} · d_model {} · layers {} · heads {} (kv {}) · ffn {}{} · ctx {} · rope θ {}",
            c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim,
            if c.ffn_gated { " gated" } else { "" }, c.ctx_len, c.rope_theta
        )?;
        if self.tokenizer == "bpe" {
            let cpt = self
                .chars_per_token
                .map(|x| format!(", {x:.3} chars/token on the trainer's validation split"))
                .unwrap_or_default();
            writeln!(
                f,
                "tokenizer     byte-level BPE: 256 byte tokens + {} merges{cpt}",
                self.merges.len()
            )?;
            let shown: String = (self.merges.iter().enumerate())
                .map(|(i, [l, r])| {
                    let tok = |t: &u16| {
                        self.token_display
                            .get(*t as usize)
                            .cloned()
                            .unwrap_or_default()
                    };
                    format!("{}+{}={} ", tok(l), tok(r), tok(&(256 + i as u16)))
                })
                .collect();
            writeln!(f, "merges        {}", shown.trim_end())?;
        } else {
            let shown: String = self.vocab.iter().map(|t| format!("{t:?} ")).collect();
            writeln!(
                f,
                "vocabulary    {} tokens: {}",
                c.vocab_size,
                shown.trim_end()
            )?;
        }
        writeln!(
            f,
            "flash         {} bytes ({:.1} KiB), {} parameters, {:.2} bits/parameter overall",
            self.flash_bytes,
            self.flash_bytes as f64 / 1024.0,
            self.parameters,
            self.bits_per_parameter_overall
        )?;
        writeln!(
            f,
            "ternary       {} weights in {} bytes: {:.3} bits/weight (scales and padding included)",
            self.ternary_weights, self.ternary_bytes, self.bits_per_ternary_weight
        )?;
        writeln!(
            f,
            "session RAM   {} bytes ({:.1} KiB) for ctx {}, one token per pass (as on a board)",
            self.session_ram_bytes,
            self.session_ram_bytes as f64 / 1024.0,
            c.ctx_len
        )?;
        writeln!(
            f,
            "prefill RAM   {} bytes ({:.1} KiB) for ctx {}, prefill in blocks of {} (as tools generate)",
            self.prefill_session_ram_bytes,
            self.prefill_session_ram_bytes as f64 / 1024.0,
            c.ctx_len,
            (c.ctx_len / 2).max(1)
        )?;
        if let Some(l) = self.trainer_quantized_val_loss {
            if self.tokenizer == "bpe" {
                writeln!(
                    f,
                    "trainer loss  {l:.4} nats/token (quantized eval mode; `tools eval` gives nats/char)"
                )?;
            } else {
                writeln!(f, "trainer loss  {l:.4} nats/char (quantized eval mode)")?;
            }
        }
        if !self.metadata.is_empty() {
            writeln!(f, "metadata      {}", printable(&self.metadata))?;
        }
        writeln!(f, "tensors       {}", self.tensors.len())?;
        writeln!(
            f,
            "  {:<16} {:>5} {:>6} {:>6} {:>9} {:>8}  format",
            "kind", "layer", "rows", "cols", "offset", "bytes"
        )?;
        for t in &self.tensors {
            writeln!(
                f,
                "  {:<16} {:>5} {:>6} {:>6} {:>9} {:>8}  {}",
                t.kind, t.layer, t.rows, t.cols, t.offset, t.len, t.format
            )?;
        }
        Ok(())
    }
}
