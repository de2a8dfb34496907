//! Where the model comes from: the blob embedded at build time (`FIRMWARE_MODEL`) or the one
//! flashed into the model partition; validated, and checked against the working-memory arena.

use runtime::chat::{flashed_model, ModelProblem};
use runtime::{Model, Session};

use crate::{partition, settings};

/// The second core's workers on a two-core board (`src/cores.rs`); nothing on a one-core board.
#[cfg(two_cores)]
pub type Cores = &'static dyn runtime::workers::Workers;
/// The second core's workers on a two-core board (`src/cores.rs`); nothing on a one-core board.
#[cfg(not(two_cores))]
pub type Cores = NoSecondCore;

/// A one-core board's [`Cores`].
#[cfg(not(two_cores))]
#[derive(Clone, Copy)]
pub struct NoSecondCore;

/// Working memory of a session over `model` with `ctx_len` positions on this board (with the
/// second core's attention scratch on a two-core board).
pub fn session_bytes(model: &Model<'_>, ctx_len: u32) -> usize {
    #[cfg(two_cores)]
    return runtime::session_bytes_workers(model.config(), ctx_len, 1);
    #[cfg(not(two_cores))]
    model.session_bytes(ctx_len)
}

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
    let needed = session_bytes(&model, ctx_len);
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
#[cfg(not(two_cores))]
pub fn place(
    loaded: Loaded,
    arena: &'static mut [u8],
    _cores: Cores,
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

/// The two-core session of `loaded` over `arena`: the session's working memory first (with
/// core 1's attention scratch), then a row copy (`runtime::workers::RowCopy`: the LM head's
/// embedding and the first rows of every block matrix, the same fraction of each, as much as
/// fits): core 0's half of every matrix comes from SRAM, and only core 1 streams the rest from
/// XIP flash (prefetching it while core 0 runs the serial steps), so the two cores never
/// stream at once (firmware/COST.md, "Two cores"). Starts on `settings::CORES` cores.
#[cfg(two_cores)]
pub fn place(
    loaded: Loaded,
    arena: &'static mut [u8],
    cores: Cores,
) -> Result<Session<'static, 'static>, runtime::Error> {
    let needed = session_bytes(&loaded.model, loaded.ctx_len);
    let (session_memory, spare) = arena.split_at_mut(needed.next_multiple_of(16).min(arena.len()));
    let (rows, copied) = runtime::workers::RowCopy::place(&loaded.model, spare);
    defmt::info!(
        "placement: {} bytes copied to SRAM: {} the LM head's embedding, {}/1024 of every block matrix's rows (of {} bytes of block weights)",
        copied,
        if rows.has_embedding() { "with" } else { "without" },
        rows.fraction(),
        loaded.model.hot_range().len()
    );
    let mut session =
        Session::with_workers(loaded.model, loaded.ctx_len, 1, cores, session_memory)?;
    session.set_row_copy(rows);
    let _ = session.set_cores(settings::CORES);
    Ok(session)
}
