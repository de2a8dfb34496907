//! Host tools around the integer runtime: `pack` a trainer run into a blob, then `inspect`,
//! `generate`, `eval` and `bench` it. The binary (`src/main.rs`) is a thin clap front end over
//! these modules; the end-to-end tests in `tests/` call them directly.
//!
//! | module | what |
//! |---|---|
//! | [`rundir`] | read and check a trainer run directory (`trainer/EXPORT.md`) |
//! | [`tokenizer`] | a run's vocabulary as bytes: characters, or byte-level BPE with its merges |
//! | [`convert`] | trained f32 values → the runtime's fixed-point forms (`runtime/FORMAT.md`) |
//! | [`pack`] | run dir → blob |
//! | [`atomic`] | writing an output whole or not at all (unique short temp, rename, removed on a signal), never over an input |
//! | [`blob`] | reading blob files (type, size and prefix checked first), the shipped model's path |
//! | [`files`] | reading untrusted input files: regular files only, size-capped |
//! | [`term`] | paths and metadata made safe for a terminal (control characters escaped) |
//! | [`signals`] | SIGINT/SIGTERM/SIGHUP: temporary files removed, Ctrl-C stops a chat's generation |
//! | [`memory`] | the working-memory cap (`--max-memory`) and fallible allocation |
//! | [`cli`] | the command line: one function per subcommand |
//! | [`chat`] | `tools chat`: the firmware's serial protocol on stdin/stdout |
//! | [`uf2`] | UF2 files for the RP2350 boot ROM (a model for the flash partition, a firmware ELF) |
//! | [`generate`] | streaming generation (the CLI and the QEMU parity test share it) |
//! | [`eval`] | validation loss of a blob, computed by the integer runtime |
//! | [`bench`](mod@bench) | prefill/decode speed and latency of a blob |
//! | [`inspect`] | what a blob holds, for people (`Display`) and machines (JSON) |

pub mod atomic;
pub mod bench;
pub mod blob;
pub mod chat;
pub mod cli;
pub mod convert;
pub mod eval;
pub mod files;
pub mod generate;
pub use inspect;
pub mod memory;
pub mod pack;
pub mod rundir;
pub mod signals;
pub mod term;
pub mod tokenizer;
pub mod uf2;
