//! Cost counters: how much work a token took, in the unit the board can measure.

/// A free-running counter of work done by the core.
pub trait CostCounter {
    /// What one count is, for the log ("cycles", "instructions").
    const UNIT: &'static str;

    /// Counts per second of a 150 MHz Cortex-M33 (exact for cycles, an estimate otherwise).
    const PER_SECOND: u64 = 150_000_000;

    /// How a rate computed from [`PER_SECOND`](Self::PER_SECOND) is to be read.
    const RATE_NOTE: &'static str;

    /// What the counter is, for the chat's `/stats`.
    const CLOCK_NOTE: &'static str;

    /// Counts since start-up. Never wraps in practice (64 bits).
    fn now(&mut self) -> u64;
}

/// Work spent in the two phases of a generation.
#[derive(Clone, Copy, Default, defmt::Format)]
pub struct PhaseCost {
    /// Tokens processed in the phase.
    pub tokens: u32,
    /// Counts (board unit) spent in the phase.
    pub total: u64,
}

impl PhaseCost {
    /// Adds one token that cost `count`.
    pub fn add(&mut self, count: u64) {
        self.tokens += 1;
        self.total += count;
    }

    /// Mean count per token (0 when no token ran).
    pub fn per_token(&self) -> u64 {
        if self.tokens == 0 {
            0
        } else {
            self.total / u64::from(self.tokens)
        }
    }
}

/// A call the RP2350 cost model recognises by its address (`firmware/cost.sh` passes it to the
/// QEMU plugin `firmware/cost-model/rp2350.c`, which snapshots its counters each time it runs):
/// the firmware calls it right before and right after each generator step. It does nothing,
/// costs a call and a return, and stays out of line so that it keeps one address.
#[inline(never)]
#[no_mangle]
pub extern "C" fn cost_checkpoint() {
    // An empty `asm!` is an opaque side effect: the call cannot be optimised away.
    // SAFETY: no instructions, touches no memory, registers or flags.
    unsafe { core::arch::asm!("", options(nomem, nostack, preserves_flags)) };
}

// Marks for the cost model's two-core rules (`cost-model/rp2350.c`, src/cores.rs): a core calls
// `cost_sent` right after it sent a message to the other core, `cost_wait` right before it waits
// for one and `cost_woken` right after it got it. They do nothing; each has its own body (so that
// no two are merged into one address), stays out of line and runs from RAM (no flash fetch).

/// See the marks above: a message was just sent.
#[inline(never)]
#[no_mangle]
#[link_section = ".data.firmware.cost"]
pub extern "C" fn cost_sent() {
    // SAFETY: one `nop`: touches no memory, registers or flags.
    unsafe { core::arch::asm!("nop", options(nomem, nostack, preserves_flags)) };
}

/// See the marks above: this core starts waiting for a message.
#[inline(never)]
#[no_mangle]
#[link_section = ".data.firmware.cost"]
pub extern "C" fn cost_wait() {
    // SAFETY: as above.
    unsafe { core::arch::asm!("nop", "nop", options(nomem, nostack, preserves_flags)) };
}

/// See the marks above: the awaited message arrived.
#[inline(never)]
#[no_mangle]
#[link_section = ".data.firmware.cost"]
pub extern "C" fn cost_woken() {
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "nop",
            "nop",
            "nop",
            options(nomem, nostack, preserves_flags)
        )
    };
}
