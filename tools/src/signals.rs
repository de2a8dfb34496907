//! SIGINT, SIGTERM and SIGHUP: one handler for every command, installed by `main` before the
//! command runs.
//!
//! On any of the three, the temporary file of every output being written ([`crate::atomic`]:
//! `pack`, `repack`, `uf2`) is removed and the process exits with status 128 + the signal
//! number: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP). The one exception: SIGINT (Ctrl-C) while
//! a chat line runs (between [`interruptible`] and its guard's drop) only asks the generation to
//! stop ([`take_interrupt`]), as byte `0x03` does on the board's serial port; SIGTERM and SIGHUP
//! end even a chat at once.
//!
//! The handler runs on a thread of its own (signal-hook's self-pipe), so it may take locks and
//! remove files; `std::process::exit` flushes stdout without waiting for its lock.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A chat line is running: SIGINT stops it instead of ending the process.
static INTERRUPTIBLE: AtomicBool = AtomicBool::new(false);
/// SIGINT arrived while a chat line ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once per process).
pub fn install() -> Result<()> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGINT && INTERRUPTIBLE.load(Ordering::Acquire) {
                    INTERRUPTED.store(true, Ordering::Release);
                    continue;
                }
                crate::atomic::remove_temporaries();
                std::process::exit(128 + sig);
            }
        })
        .context("cannot start the signal handler")?;
    Ok(())
}

/// While the returned guard lives, SIGINT sets the flag [`take_interrupt`] reads instead of
/// ending the process.
pub fn interruptible() -> Interruptible {
    INTERRUPTIBLE.store(true, Ordering::Release);
    Interruptible(())
}

/// Ends the interruptible span of [`interruptible`] and forgets a SIGINT that came during it.
pub struct Interruptible(());

impl Drop for Interruptible {
    fn drop(&mut self) {
        INTERRUPTIBLE.store(false, Ordering::Release);
        INTERRUPTED.store(false, Ordering::Release);
    }
}

/// True once after a SIGINT arrived in an interruptible span.
pub fn take_interrupt() -> bool {
    INTERRUPTED.swap(false, Ordering::AcqRel)
}
