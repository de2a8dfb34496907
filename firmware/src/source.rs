//! Where the model comes from: the blob embedded at build time (`FIRMWARE_MODEL`) or the one
//! flashed into the model partition; validated, and checked against the working-memory arena.

use runtime::chat::{flashed_model, ModelProblem};
use runtime::{Model, Session};

use crate::{partition, settings};

/// A model that passed every check, with the context its session runs with.
pub struct Loaded {
    /// The validated model, borrowed in place from flash.
    pub model: Model<'static>,
    /// Session positions: `FIRMWARE_CTX` for an embedded model, else the model's `ctx_len`.
    pub ctx_len: u32,
    /// Blob length in bytes.
    pub blob_len: usize,
    /// "embedded" or "partition", for the log.
    pub origin: &'static str,
}

/// The blob: embedded, else the partition's.
pub fn blob() -> Result<(&'static [u8], &'static str), ModelProblem> {
    match settings::MODEL {
        Some(blob) => Ok((blob, "embedded")),
        None => flashed_model(partition::contents(), partition::ADDRESS as u32)
            .map(|blob| (blob, "partition")),
    }
}

/// Validates `blob` (the arena is the loader's scratch, so that a hostile vocabulary is checked
/// in `O(V log V)`; `Model::from_bytes_in`) and checks that its session fits the arena.
pub fn load(
    blob: &'static [u8],
    origin: &'static str,
    arena: &mut [u8],
) -> Result<Loaded, ModelProblem> {
    let arena_bytes = arena.len();
    let model = Model::from_bytes_in(blob, arena).map_err(ModelProblem::Invalid)?;
    let ctx_len = settings::CTX_LEN.unwrap_or(model.config().ctx_len);
    let needed = model.session_bytes(ctx_len);
    if needed > arena_bytes {
        return Err(ModelProblem::TooBig {
            needed: u32::try_from(needed).unwrap_or(u32::MAX),
            available: u32::try_from(arena_bytes).unwrap_or(u32::MAX),
        });
    }
    Ok(Loaded {
        model,
        ctx_len,
        blob_len: blob.len(),
        origin,
    })
}

/// The session of `loaded` over `arena`: the session's working memory first, then (16-byte
/// aligned) a byte-for-byte copy of as much of the blocks' weights as fits, which the model
/// reads from SRAM instead of XIP flash from then on. Results do not change
/// (runtime/tests/copy.rs); only where the bytes come from.
pub fn place(
    loaded: Loaded,
    arena: &'static mut [u8],
) -> Result<Session<'static, 'static>, runtime::Error> {
    let needed = loaded.model.session_bytes(loaded.ctx_len);
    let (session_memory, spare) = arena.split_at_mut(needed.next_multiple_of(16).min(arena.len()));
    let hot = loaded.model.hot_range();
    let (model, copied) = loaded.model.with_copy(hot.start, spare);
    defmt::info!(
        "placement: {} of the {} bytes of block weights copied to SRAM",
        copied,
        hot.len()
    );
    Session::new(model, loaded.ctx_len, session_memory)
}
