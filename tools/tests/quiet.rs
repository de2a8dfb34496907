//! Quiet by default: `generate`, `eval` and `bench` say nothing on stderr about how the model was
//! made to run on this host unless asked with `-v`; `bench` reports it in its output instead.

mod common;

use std::path::Path;

use runtime::kernels::{detected, Level};

/// What `-v` says the host did to the shipped (base-3) model's matrices at the detected level:
/// the x86-64 SIMD levels copy them to the row-tiled layout, other SIMD levels repack them to
/// 2-bit, the portable kernels read them as stored.
fn copy_line() -> Option<&'static str> {
    match detected() {
        Level::Portable => None,
        Level::Avx2 | Level::AvxVnni | Level::Avx512Vnni => {
            Some("copied to the row-tiled layout in memory")
        }
        _ => Some("repacked to 2-bit in memory"),
    }
}

fn shipped() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/shakespeare-mcu.bin")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_repack_line_only_with_verbose() {
    // The shipped model stores base-3 matrices: the SIMD levels run a copy of them.
    let model = shipped();
    let repacks = copy_line().is_some();
    let args = [
        "generate",
        "--model",
        &model,
        "--tokens",
        "3",
        "--temperature",
        "0",
    ];
    let quiet = common::tools(&args);
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(
        String::from_utf8_lossy(&quiet.stderr),
        "",
        "stderr without -v"
    );

    let verbose = common::tools(&[&["-v"][..], &args[..]].concat());
    assert!(verbose.status.success(), "{verbose:?}");
    let said = String::from_utf8_lossy(&verbose.stderr);
    assert_eq!(
        copy_line().is_some_and(|l| said.contains(l)),
        repacks,
        "stderr: {said}"
    );
    // The same text either way: the copy holds the same weights.
    assert_eq!(quiet.stdout, verbose.stdout);

    // `-v` after the subcommand too (a global flag).
    let after = common::tools(&[&args[..], &["--verbose"][..]].concat());
    assert!(after.status.success(), "{after:?}");
    assert_eq!(String::from_utf8_lossy(&after.stderr).is_empty(), !repacks);
}

#[test]
fn bench_names_its_ram_and_the_copy_in_its_report() {
    let model = shipped();
    let out = common::tools(&["bench", "--model", &model, "--rounds", "1", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copy = r["matrix_copy_bytes"].as_u64().unwrap();
    assert_eq!(copy > 0, detected() != Level::Portable, "{r}");
    // The timed session prefills blocks: more than the one-token session inspect also shows.
    let inspect = common::tools(&["inspect", &model, "--json"]);
    let i: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        r["prefill_session_ram_bytes"],
        i["prefill_session_ram_bytes"]
    );
    assert!(
        i["prefill_session_ram_bytes"].as_u64() > i["session_ram_bytes"].as_u64(),
        "{i}"
    );
}
