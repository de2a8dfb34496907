//! The second core: `runtime::workers::Workers` on core 1 of a two-core board (the Pico 2's
//! RP2350; its QEMU twin `mps2-an521`, board `an521`).
//!
//! Core 1 runs [`serve_core1`] forever: it waits for a job on its [`Link`] (the RP2350's SIO
//! FIFO, rp235x-hal's `SioFifo`; on the twin a mailbox in shared RAM), runs it, and answers
//! [`DONE`]. Core 0's [`Dual::join`] sends a job, runs its own half, then waits for that answer:
//! a barrier per step of the split pass (`runtime/src/pass/split/`).
//!
//! A job is the address of a `&mut (dyn FnMut() + Send)` that lives in `join`'s stack frame on
//! core 0. Core 0 does not leave `join` before core 1 answered, so the closure and everything
//! it borrows outlive its run on core 1 (the contract of `Workers::join`, as in
//! `std::thread::scope`); the memory barriers around each message make core 0's writes visible
//! to core 1 before the job runs and core 1's visible to core 0 after it answered.
//!
//! The calls to `cost_sent`, `cost_wait` and `cost_woken` (src/cost.rs) let the RP2350 cost
//! model (`cost-model/rp2350.c`) order the two cores in modelled time: a core that waits is
//! charged nothing until the message it waits for could have arrived.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use runtime::workers::Workers;

use crate::cost::{cost_sent, cost_wait, cost_woken};

/// Core 1's answer to a job.
pub const DONE: u32 = 0xD0E;

/// One core's end of the channel between the cores: blocking word send and receive.
pub trait Link {
    /// Sends `word` to the other core (waits while the channel is full).
    fn send(&mut self, word: u32);
    /// The next word from the other core (waits for one).
    fn recv(&mut self) -> u32;
}

/// Core 1's busy cycles (jobs only), 64 bits as two words; written by core 1 after each job,
/// read by core 0 between joins (when core 1 is idle).
static BUSY_LO: AtomicU32 = AtomicU32::new(0);
static BUSY_HI: AtomicU32 = AtomicU32::new(0);
/// Whether core 1 measures its jobs (the board gave [`serve_core1`] a cycle counter).
static MEASURED: AtomicBool = AtomicBool::new(false);

/// The workers of a two-core board: core 0's end of the link to core 1, which runs
/// [`serve_core1`].
pub struct Dual<L: Link> {
    link: UnsafeCell<L>,
    /// Set while a join runs: a second, nested or concurrent join is refused (panics), so the
    /// link is only ever used by one caller.
    busy: AtomicBool,
}

// SAFETY: `join` is the only user of `link`, and `busy` lets only one caller in at a time
// (a swap of an atomic flag; a second caller panics), so the `UnsafeCell` is never accessed by
// two contexts at once. `L: Send`: the link may be used from whichever core calls `join`.
unsafe impl<L: Link + Send> Sync for Dual<L> {}

impl<L: Link> Dual<L> {
    /// Workers over core 0's end of a link whose other end runs [`serve_core1`].
    pub const fn new(link: L) -> Self {
        Dual {
            link: UnsafeCell::new(link),
            busy: AtomicBool::new(false),
        }
    }
}

impl<L: Link + Send> Workers for Dual<L> {
    fn cores(&self) -> usize {
        2
    }

    #[inline(never)]
    #[link_section = ".data.firmware.cores"]
    fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
        if self.busy.swap(true, Ordering::Acquire) {
            panic!("nested or concurrent join on the two-core workers");
        }
        // SAFETY: `busy` makes this the only access to the link (see the `Sync` impl).
        let link = unsafe { &mut *self.link.get() };
        let mut job: &mut (dyn FnMut() + Send) = there;
        let address = core::ptr::addr_of_mut!(job) as u32;
        cortex_m::asm::dmb();
        link.send(address);
        cost_sent();
        here();
        cost_wait();
        let answer = link.recv();
        cost_woken();
        cortex_m::asm::dmb();
        // `job` (and what it borrows) is not touched again after core 1's answer.
        let _ = &mut job;
        self.busy.store(false, Ordering::Release);
        if answer != DONE {
            panic!("core 1 answered {:#x} instead of DONE", answer);
        }
    }

    fn busy_counts(&self) -> Option<u64> {
        if !MEASURED.load(Ordering::Acquire) {
            return None;
        }
        let hi = BUSY_HI.load(Ordering::Acquire);
        let lo = BUSY_LO.load(Ordering::Acquire);
        Some(u64::from(hi) << 32 | u64::from(lo))
    }
}

/// Core 1's loop: receive a job, run it, answer [`DONE`], forever. `cycles` reads core 1's
/// own cycle counter (`None` on a board without one: `/stats` then shows no busy time).
#[inline(never)]
#[link_section = ".data.firmware.cores"]
pub fn serve_core1(link: &mut impl Link, cycles: Option<fn() -> u32>) -> ! {
    MEASURED.store(cycles.is_some(), Ordering::Release);
    loop {
        cost_wait();
        let address = link.recv();
        cost_woken();
        cortex_m::asm::dmb();
        // SAFETY: `address` is that of a `&mut (dyn FnMut() + Send)` in the frame of core 0's
        // `Dual::join`, which waits for this core's answer before it returns (module docs):
        // the reference and its closure are valid and used by this core alone until then.
        let job = unsafe { &mut *(address as *mut &mut (dyn FnMut() + Send)) };
        let start = cycles.map(|c| c());
        job();
        if let (Some(c), Some(start)) = (cycles, start) {
            let spent = c().wrapping_sub(start);
            let (lo, carry) = BUSY_LO.load(Ordering::Relaxed).overflowing_add(spent);
            if carry {
                BUSY_HI.fetch_add(1, Ordering::Relaxed);
            }
            BUSY_LO.store(lo, Ordering::Release);
        }
        cortex_m::asm::dmb();
        link.send(DONE);
        cost_sent();
    }
}

/// A one-word mailbox each way in shared RAM, with `SEV`/`WFE` to wait cheaply: the link of the
/// QEMU twin, whose SSE-200 has no inter-core FIFO that QEMU models.
#[cfg(feature = "an521")]
pub struct Mailbox {
    out: &'static AtomicU32,
    inbox: &'static AtomicU32,
}

#[cfg(feature = "an521")]
static TO_CORE1: AtomicU32 = AtomicU32::new(0);
#[cfg(feature = "an521")]
static TO_CORE0: AtomicU32 = AtomicU32::new(0);

#[cfg(feature = "an521")]
impl Mailbox {
    /// Core 0's end.
    pub const fn core0() -> Mailbox {
        Mailbox {
            out: &TO_CORE1,
            inbox: &TO_CORE0,
        }
    }

    /// Core 1's end.
    pub fn core1() -> Mailbox {
        Mailbox {
            out: &TO_CORE0,
            inbox: &TO_CORE1,
        }
    }
}

#[cfg(feature = "an521")]
impl Link for Mailbox {
    #[inline(always)]
    fn send(&mut self, word: u32) {
        // Words are never 0 (addresses and DONE): 0 marks an empty slot.
        while self.out.load(Ordering::Acquire) != 0 {
            cortex_m::asm::wfe();
        }
        self.out.store(word, Ordering::Release);
        cortex_m::asm::sev();
    }

    #[inline(always)]
    fn recv(&mut self) -> u32 {
        loop {
            let word = self.inbox.swap(0, Ordering::AcqRel);
            if word != 0 {
                cortex_m::asm::sev();
                return word;
            }
            cortex_m::asm::wfe();
        }
    }
}
