//! The session's working memory: one static buffer, sized by build.rs from the model's
//! header (`runtime::session_bytes` for [`CTX_LEN`](crate::settings::CTX_LEN) positions).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::settings::WORK_BYTES;

static mut WORK: [u8; WORK_BYTES] = [0; WORK_BYTES];
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The working memory, once; `None` on later calls.
pub fn take() -> Option<&'static mut [u8]> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: TAKEN guarantees that this is the only reference ever handed out.
    Some(unsafe { &mut *core::ptr::addr_of_mut!(WORK) })
}
