//! End-to-end checks that cross crates live in `tests/tests/`.
