//! End-to-end checks that cross crates live in `tests/tests/`:
//!
//! - `pipeline.rs`: train the `tiny` preset on a generated corpus → `tools pack` → `tools eval`
//!   (the integer runtime within 0.02 nats of the trainer's quantized validation loss) →
//!   seeded generation, byte-identical between runs and against a golden file.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite golden files after an intended change.
