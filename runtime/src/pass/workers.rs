//! Other cores for the forward pass: "run this on the other core, this here, then wait".
//!
//! A [`Session`](crate::Session) made with [`Session::with_workers`](crate::Session::with_workers)
//! runs each token's pass split in two (the split pass, `pass/split/`): matrix rows, attention
//! heads and the lookup tables' groups are cut in halves, one half runs on this core and the
//! other on a second core through [`Workers::join`], and every join returns only when both halves
//! are done (a barrier per step). A session made with [`Session::new`](crate::Session::new) never
//! calls this module: the one-core pass is unchanged.
//!
//! Implementations:
//! - [`OneCore`]: both halves on this core, one after the other (every target; the split pass's
//!   arithmetic without a second core, for tests and for boards with one core);
//! - `Threads` (feature `threads`, std): the other half on a scoped thread, so the host's tests
//!   run the split pass on two OS threads;
//! - the firmware's RP2350 workers: core 1 started with rp235x-hal's multicore launch, jobs and
//!   completions through the SIO FIFO (and, on the QEMU twin `mps2-an521`, the same code over a
//!   mailbox in shared RAM).
//!
//! # Why the halves cannot race
//!
//! A join takes two closures. The split pass builds them from disjoint `&mut` borrows
//! (`split_at_mut` of the output rows, of the attention heads' accumulators and scales, of the
//! table groups; separate scratch for each core) and shared `&` borrows of what both read (the
//! model, the input activations, tables already built by an earlier join). The borrow checker
//! proves that the two closures write disjoint memory and that nothing either reads is written
//! by the other; `there` must be `Send` to cross to the other core. An implementation must run
//! `there` at most once, on one core, and must not return before `there` has finished: then the
//! borrows end after both halves are done, as with `std::thread::scope`, and the results the
//! other core wrote are visible to this one (the implementation's release/acquire handshake).
//! Which core computes a value never changes it: every output element is computed whole by one
//! core with the same integer code, so the split pass gives the one-core pass's bits.

pub use super::split::RowCopy;

/// The second core's scratch and the split's settings, held by a session made with
/// [`Session::with_workers`](crate::Session::with_workers).
pub(crate) struct Split<'b> {
    pub(crate) workers: &'b dyn Workers,
    /// Cores in use: 1 or 2 ([`Session::set_cores`](crate::Session::set_cores)).
    pub(crate) cores: usize,
    pub(crate) rows: Option<RowCopy<'b>>,
    pub(crate) shared_tables: bool,
    /// The other core's attention scores `[T]` and coefficients `[T]`.
    pub(crate) scores: &'b mut [i64],
    pub(crate) coef: &'b mut [i32],
}

/// Cores that share a forward pass (see the module docs).
pub trait Workers: Sync {
    /// Cores taking part: 1 (this one only) or 2.
    fn cores(&self) -> usize;

    /// Runs `there` on the other core and `here` on this one, and returns when both are done.
    /// With one core, runs `here` then `there`.
    fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send));

    /// Counts the other core has spent running jobs since it started, in the caller's clock
    /// unit (the chat's `/stats`), when the implementation measures them.
    fn busy_counts(&self) -> Option<u64> {
        None
    }

    /// Bytes of stack the other core's jobs may use. Below [`KERNEL_STACK`] the split pass
    /// keeps the matrices whose kernels build lookup tables on their own stack (16 KiB: 2-bit
    /// and mixed-encoding blobs) on this core; the shared-table base-3 path, attention and the
    /// LM head need only a few hundred bytes there.
    fn other_stack_bytes(&self) -> usize {
        usize::MAX
    }
}

/// The other core's stack below which the split pass does not give it a kernel that keeps
/// its own lookup tables on the stack (see [`Workers::other_stack_bytes`]).
pub const KERNEL_STACK: usize = 20 * 1024;

/// Both halves on this core, one after the other.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneCore;

impl Workers for OneCore {
    fn cores(&self) -> usize {
        1
    }

    fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
        here();
        there();
    }
}

/// The second half on a scoped OS thread (`std::thread::scope`): the host's two-core twin.
/// Each join starts a thread, so it is slower than one core for small models; it exists to
/// prove the split bit-identical with real concurrency.
#[cfg(feature = "threads")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Threads;

#[cfg(feature = "threads")]
impl Workers for Threads {
    fn cores(&self) -> usize {
        2
    }

    fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
        std::thread::scope(|s| {
            let other = s.spawn(there);
            here();
            if let Err(panic) = other.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }
}
