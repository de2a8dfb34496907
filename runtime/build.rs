//! Sets `cfg(runtime_dsp)` when the target is a 32-bit Arm core with the DSP extension
//! (SMLAD, SXTB16, ...), so that `kernels::dsp` can use it through `asm!`.
//!
//! Stable Rust does not expose Arm's `dsp` target feature to `cfg(target_feature = ...)`
//! (it is an unstable feature; `rustc --print cfg --target thumbv8m.main-none-eabihf
//! -C target-cpu=cortex-m33` lists no target features), so this reads what cargo passes to
//! rustc: the target triple and the `-C target-cpu` / `-C target-feature` flags.
//!
//! - `thumbv7em-*` (Armv7E-M: Cortex-M4/M7) always has DSP.
//! - `thumbv8m.main-*` (Armv8-M Mainline) has it only as an option: on for `target-cpu`
//!   `cortex-m33`, `cortex-m35p`, `cortex-m55`, `cortex-m85` or `target-feature=+dsp`.
//! - `-dsp` in `target-feature` turns it off.
//!
//! Anything else (host builds, thumbv6m, thumbv8m.main without a DSP cpu) gets the portable
//! kernels.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(runtime_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");

    let target = std::env::var("TARGET").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "arm" {
        return;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // Flags come separated by 0x1f; `-C target-cpu=X` may be one or two of them.
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let mut settings = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        let f = flags[i];
        if f == "-C" || f == "--codegen" {
            if let Some(next) = flags.get(i + 1) {
                settings.push(next.to_string());
            }
            i += 2;
            continue;
        }
        if let Some(rest) = f.strip_prefix("-C") {
            settings.push(rest.to_string());
        }
        i += 1;
    }
    let mut dsp = target.starts_with("thumbv7em");
    for s in &settings {
        if let Some(cpu) = s.strip_prefix("target-cpu=") {
            if ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"].contains(&cpu)
                && target.starts_with("thumbv8m.main")
            {
                dsp = true;
            }
        }
    }
    for s in &settings {
        if let Some(features) = s.strip_prefix("target-feature=") {
            for feature in features.split(',') {
                match feature {
                    "+dsp" if target.starts_with("thumbv8m.main") => dsp = true,
                    "-dsp" => dsp = false,
                    _ => {}
                }
            }
        }
    }
    if dsp {
        println!("cargo::rustc-cfg=runtime_dsp");
    }
}
