//! The C API on the host, as the page drives it: the same calls, the same bytes as
//! `tools generate`, `tools inspect --json`'s summary, and a refused blob that leaves the loaded
//! model in place. Also the temperature rule against `tools generate`'s own.

use bitnet_web::ffi::*;
use bitnet_web::settings::temperature_milli;
use clap::Parser;

fn put(bytes: &[u8]) {
    let p = bitnet_input(bytes.len());
    assert!(!p.is_null());
    // SAFETY: `bitnet_input` returned a buffer of `bytes.len()` bytes, valid until the next call.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
}

fn output() -> Vec<u8> {
    // SAFETY: the output buffer is valid until the next call.
    unsafe { std::slice::from_raw_parts(bitnet_output(), bitnet_output_len()).to_vec() }
}

fn tools(args: &[&str]) -> Vec<u8> {
    let cli = tools::cli::Cli::try_parse_from(std::iter::once("tools").chain(args.iter().copied()))
        .unwrap();
    let mut out = Vec::new();
    tools::cli::run(cli, &mut out).unwrap();
    out
}

fn generate(prompt: &str, settings: &str) -> Vec<u8> {
    put(settings.as_bytes());
    assert_eq!(
        bitnet_settings(),
        OK,
        "{}",
        String::from_utf8_lossy(&output())
    );
    put(prompt.as_bytes());
    assert_eq!(bitnet_start(), OK, "{}", String::from_utf8_lossy(&output()));
    let mut text = prompt.as_bytes().to_vec();
    loop {
        match bitnet_step() {
            TOKEN => text.extend(output()),
            OK => return text,
            _ => panic!("{}", String::from_utf8_lossy(&output())),
        }
    }
}

#[test]
fn the_c_api_writes_what_the_commands_write() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/shakespeare-mcu.bin");
    let blob = std::fs::read(path).unwrap();
    assert_eq!(bitnet_step(), ERROR, "nothing loaded yet");
    put(&blob);
    assert_eq!(bitnet_load(), OK);

    let text = generate("ROMEO:", "temperature=0.5\ntop_k=3\nseed=9\ntokens=200");
    let want = tools(&[
        "generate",
        "--prompt",
        "ROMEO:",
        "--temperature",
        "0.5",
        "--top-k",
        "3",
        "--seed",
        "9",
        "--tokens",
        "200",
    ]);
    assert_eq!(text, want);

    assert_eq!(bitnet_summary(1), OK);
    assert_eq!(output(), tools(&["inspect", "--json", path]));

    // A refused blob: the message, and the model loaded before still generates.
    put(b"BITNETv?");
    assert_eq!(bitnet_load(), ERROR);
    let why = runtime::Model::from_bytes(b"BITNETv?")
        .unwrap_err()
        .to_string();
    assert_eq!(String::from_utf8(output()).unwrap(), why);
    assert_eq!(
        generate("ROMEO:", "temperature=0.5\ntop_k=3\nseed=9\ntokens=200"),
        want
    );

    assert_eq!(bitnet_status(), OK);
    let status: serde_json::Value = serde_json::from_slice(&output()).unwrap();
    assert_eq!(status["generated"], 200);
    assert!(status["slides"].as_u64().unwrap() >= 1);
}

#[test]
fn temperatures_become_thousandths_as_in_tools_generate() {
    let mut values = vec![
        0.0, 0.0004, 0.0005, 0.0015, 0.0025, 0.8, 1.0, 1.25, 2.0005, 99.9995, 100.0,
    ];
    let mut rng = runtime::SplitMix64(0x2545_F491_4F6C_DD1D);
    for _ in 0..1000 {
        let x = rng.next_u64();
        values.push((x % 100_001) as f64 / 1000.0 + (x >> 40) as f64 * 1e-12);
    }
    for t in values {
        let ours = temperature_milli(t).unwrap();
        let theirs = tools::generate::sampler(t, 0, 0).unwrap().temperature_milli;
        assert_eq!(ours, theirs, "temperature {t}");
    }
    for t in [-0.001, 100.001, f64::NAN, f64::INFINITY] {
        let ours = temperature_milli(t).unwrap_err().to_string();
        let theirs = tools::generate::sampler(t, 0, 0).unwrap_err().to_string();
        assert_eq!(ours, theirs, "temperature {t}");
    }
}
