//! Host tools around the integer runtime: `pack` a trainer run into a blob, then `inspect`,
//! `generate`, `eval` and `bench` it. The binary (`src/main.rs`) is a thin clap front end over
//! these modules; the end-to-end tests in `tests/` call them directly.
//!
//! | module | what |
//! |---|---|
//! | [`rundir`] | read and check a trainer run directory (`trainer/EXPORT.md`) |
//! | [`convert`] | trained f32 values → the runtime's fixed-point forms (`runtime/FORMAT.md`) |
//! | [`pack`] | run dir → blob, written atomically |
//! | [`blob`] | reading blob files, the shipped model's path |
//! | [`chat`] | `tools chat`: the firmware's serial protocol on stdin/stdout |
//! | [`uf2`] | UF2 files for the RP2350 boot ROM (a model for the flash partition, a firmware ELF) |
//! | [`generate`] | streaming generation (the CLI and the QEMU parity test share it) |
//! | [`eval`] | validation loss of a blob, computed by the integer runtime |
//! | [`bench`] | prefill/decode speed and latency of a blob |
//! | [`inspect`] | what a blob holds, for people (`Display`) and machines (JSON) |

pub mod bench;
pub mod blob;
pub mod chat;
pub mod convert;
pub mod eval;
pub mod generate;
pub mod inspect;
pub mod pack;
pub mod rundir;
pub mod uf2;
