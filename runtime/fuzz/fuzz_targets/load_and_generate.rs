//! Arbitrary bytes -> `Model::from_bytes` (as given, and with the CRC/length fields repaired);
//! every accepted blob gets a session over a small buffer, forwards up to `ContextFull`, and
//! greedy + sampled generation past the context (so the window slides).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    runtime_fuzz::for_each_model(data, runtime_fuzz::exercise);
});
