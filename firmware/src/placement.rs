//! Start-up placement of the weights: the blob stays in XIP flash (a cache miss there costs
//! ~50-110 cycles per 8 bytes on a Pico 2), and as many bytes of the blocks' weights as the
//! RAM budget leaves after the session, the stack and the statics are copied into one
//! static SRAM buffer, sized by build.rs ([`COPY_BYTES`]). The copy is byte for byte, so the
//! output does not change; the forward pass then reads those weights from SRAM.

use core::sync::atomic::{AtomicBool, Ordering};

use runtime::Model;

use crate::settings::{COPY_BYTES, COPY_START};

#[repr(C, align(16))]
struct Aligned([u8; COPY_BYTES]);

static mut COPY: Aligned = Aligned([0; COPY_BYTES]);
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Copies the hot weights of `model` into SRAM (once; later calls return `model` unchanged).
pub fn place(model: Model<'static>) -> Model<'static> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return model;
    }
    // SAFETY: TAKEN guarantees that this is the only reference ever handed out.
    let ram = unsafe { &mut (*core::ptr::addr_of_mut!(COPY)).0 };
    let hot = model.hot_range();
    let (model, copied) = model.with_copy(COPY_START, ram);
    defmt::info!(
        "placement: {} of the {} bytes of block weights copied to SRAM",
        copied,
        hot.len()
    );
    model
}
