//! Property tests: random hostile run directories through `pack`, and random values
//! of every numeric command-line argument through the CLI, in-process. The property is the same
//! for both: no panic, and a failure leaves no file behind; a success is a loadable blob.

mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use clap::Parser;
use common::{blob, run_config, tmp, write_run, TINY};
use proptest::prelude::*;
use serde_json::{json, Value};
use tools::cli::{run, Cli};

/// Numbers an adversary tries, as JSON values.
fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..40).prop_map(|n| json!(n)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        Just(json!(-1e-300)),
        Just(json!(u32::MAX)),
        Just(json!(u32::MAX as u64 + 1)),
        Just(json!(u64::MAX)),
        Just(json!(1u64 << 40)),
        Just(json!(32768)),
        Just(json!(32769)),
        Just(json!(65535)),
        Just(json!("8")),
        Just(Value::Null),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<u64>().prop_map(|n| json!(n)),
    ]
}

/// Strings with multi-byte characters, control characters and extreme lengths.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,8}",
        "[éあ😀\u{1b}\u{7}\u{202e}x]{0,40}",
        (1usize..1200).prop_map(|n| "é".repeat(n)),
        (1usize..500).prop_map(|n| "😀".repeat(n)),
    ]
}

const KEYS: [&str; 11] = [
    "export_version",
    "vocab_size",
    "d_model",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "ffn_dim",
    "ctx_len",
    "rope_theta",
    "norm_eps",
    "seed",
];

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pack_never_panics_on_a_hostile_run_dir(
        changes in proptest::collection::vec((0..KEYS.len(), hostile_number()), 0..4),
        preset in hostile_string(),
        trainer_version in hostile_string(),
        vocab in proptest::option::of(proptest::collection::vec(hostile_string(), 0..8)),
        summary in proptest::option::of((hostile_number(), hostile_number())),
        drop_key in proptest::option::of(0..KEYS.len()),
    ) {
        let dir = tmp("prop-pack");
        write_run(&dir);
        let mut c = run_config();
        for (k, v) in &changes {
            c[KEYS[*k]] = v.clone();
        }
        c["preset"] = json!(preset);
        c["trainer_version"] = json!(trainer_version);
        if let Some(k) = drop_key {
            c.as_object_mut().unwrap().remove(KEYS[k]);
        }
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        if let Some(v) = &vocab {
            std::fs::write(dir.join("vocab.json"), json!(v).to_string()).unwrap();
        }
        if let Some((steps, loss)) = &summary {
            let s = json!({"steps": steps, "quantized_val_loss": loss});
            std::fs::write(dir.join("summary.json"), s.to_string()).unwrap();
        }
        let out = dir.join("model.bin");
        let r = catch_unwind(AssertUnwindSafe(|| tools::pack::pack(&dir, &out)));
        prop_assert!(r.is_ok(), "pack panicked on {c}");
        match r.unwrap() {
            Ok(b) => {
                prop_assert!(runtime::Model::from_bytes(&b).is_ok());
                prop_assert_eq!(std::fs::read(&out).unwrap(), b);
            }
            Err(e) => {
                prop_assert!(!out.exists());
                let msg = format!("{e:#}");
                prop_assert!(!msg.is_empty() && msg.len() < 2000, "{}", msg);
            }
        }
        prop_assert!(temp_files(&dir).is_empty());
    }
}

/// A writer that fails like a closed pipe after `left` bytes (so `generate --tokens 10^18`
/// ends).
struct Limited {
    left: usize,
}

impl Write for Limited {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.len() > self.left {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.left -= b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Argument values an adversary tries for a numeric flag.
fn hostile_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..24).prop_map(|n| n.to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e3".to_string()),
        Just("0.8".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-0".to_string()),
        Just("".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("4294967296".to_string()),
        Just("1000001".to_string()),
        Just("1025".to_string()),
        Just("1024".to_string()),
        Just("100G".to_string()),
        Just("1K".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
    ]
}

fn fixtures() -> &'static (String, String) {
    static F: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = tmp("prop-cli");
        let model = dir.join("tiny.bin");
        std::fs::write(&model, blob(TINY, "tiny")).unwrap();
        let data = dir.join("data.txt");
        let text: String = (0..2000)
            .map(|i| (b'a' + (i * 3 % 5) as u8) as char)
            .collect();
        std::fs::write(&data, text).unwrap();
        (
            model.to_string_lossy().into_owned(),
            data.to_string_lossy().into_owned(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn numeric_arguments_never_panic(
        cmd in 0..3usize,
        values in proptest::collection::vec((0..6usize, hostile_arg()), 0..4),
    ) {
        let (model, data) = fixtures();
        let mut args: Vec<String> = vec!["tools".into()];
        let flags: &[&str] = match cmd {
            0 => {
                args.extend(["generate", "--model", model, "--prompt", "abc"].map(String::from));
                &["--tokens", "--seed", "--temperature", "--top-k", "--max-memory", "--tokens"]
            }
            1 => {
                args.extend(["eval", "--model", model, "--data", data].map(String::from));
                &["--max-windows", "--threads", "--max-memory", "--threads", "--max-windows", "--max-memory"]
            }
            _ => {
                args.extend(["bench", "--model", model].map(String::from));
                &["--rounds", "--max-memory", "--rounds", "--max-memory", "--rounds", "--max-memory"]
            }
        };
        for (f, v) in &values {
            args.push(format!("{}={v}", flags[*f]));
        }
        let Ok(cli) = Cli::try_parse_from(&args) else {
            return Ok(()); // a usage error: clap's message, status 2
        };
        // Bench rounds within bounds but slow in a debug test build: parse only.
        if let tools::cli::Command::Bench { rounds, .. } = &cli.command {
            prop_assume!(*rounds <= 64);
        }
        let r = catch_unwind(AssertUnwindSafe(|| run(cli, &mut Limited { left: 4096 })));
        prop_assert!(r.is_ok(), "panicked on {:?}", args);
    }
}
