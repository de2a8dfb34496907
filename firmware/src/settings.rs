//! Build-time settings (see `build.rs` for the environment variables).

/// A failure triggered on purpose, to check the fault paths (`FIRMWARE_SELFTEST`).
// Only the variant chosen at build time is constructed.
#[allow(dead_code)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// `panic!` at start-up.
    Panic,
    /// A load from an unmapped address.
    HardFault,
    /// Unbounded recursion.
    StackOverflow,
    /// Load a corrupted copy of the model.
    BadBlob,
}

include!(concat!(env!("OUT_DIR"), "/settings.rs"));
