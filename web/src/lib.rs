//! The integer runtime in a web page: a WebAssembly binding with a plain C API.
//!
//! The runtime (`no_std`, allocation-free, integer-only) compiles unchanged for
//! `wasm32-unknown-unknown` and runs its portable kernels there. This crate adds what a page
//! needs around it, using `std` and `alloc` (it is not the runtime):
//!
//! | module | what |
//! |---|---|
//! | [`engine`] | [`Engine`]: owns a blob, its session and the generation in progress |
//! | [`settings`] | [`Settings`]: `tools generate`'s `--tokens`, `--temperature`, `--top-k`, `--seed`, read from text |
//! | [`ffi`] | the exported C API (`bitnet_input`, `bitnet_load`, `bitnet_settings`, `bitnet_start`, `bitnet_step`, …) |
//! | `summary` | `tools inspect`'s report, from `tools`' own source file |
//!
//! The page itself (`web/www/`: one HTML file, a script, a Web Worker) and how to build and
//! serve it are described in `web/README.md`. The bytes it writes are the bytes
//! `tools generate` writes for the same blob, prompt and settings (`web/tests/browser.rs`
//! checks it in headless Chromium).

#![warn(missing_docs)]

pub mod engine;
pub mod ffi;
pub mod settings;
mod summary;

pub use engine::Engine;
pub use settings::Settings;
