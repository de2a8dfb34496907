//! The blob: what `tools pack` writes and [`Model::from_bytes`](crate::Model::from_bytes) reads
//! (`runtime/FORMAT.md`).
//!
//! | module | what |
//! |---|---|
//! | [`format`](crate::format) | constants, limits, [`Config`](crate::Config), header types |
//! | [`schema`](crate::schema) | every tensor of the model, declared once |
//! | [`layout`](crate::layout) | where each section lies, computed from the config and the schema |
//! | [`model`](crate::model) | the validated model: borrowed views of its sections |
//! | `sections` | the sections a pass reads, resolved once at load |
//! | `load` | [`Model::from_bytes`](crate::Model::from_bytes): the loader and its validation |
//! | `writer` | (feature `writer`) the blob writer |

pub mod format;
pub mod layout;
mod load;
pub mod model;
pub mod schema;
mod sections;
#[cfg(feature = "writer")]
pub mod writer;
