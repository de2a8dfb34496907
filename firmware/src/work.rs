//! The session's working memory: one static arena of [`ARENA_BYTES`] (RAM less the stack and
//! statics reserves, `build.rs`), so that any model whose session fits can be flashed.

use core::sync::atomic::{AtomicBool, Ordering};

pub use crate::settings::ARENA_BYTES;

static mut WORK: [u8; ARENA_BYTES] = [0; ARENA_BYTES];
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The working memory, once; `None` on later calls.
pub fn take() -> Option<&'static mut [u8]> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: TAKEN guarantees that this is the only reference ever handed out.
    Some(unsafe { &mut *core::ptr::addr_of_mut!(WORK) })
}
