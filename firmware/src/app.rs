//! The application: generic over the text sink, the LED and the cost counter, so the
//! same code runs on every board.

use embedded_hal::digital::OutputPin;
use embedded_io::Write;

use crate::cost::CostCounter;
use crate::settings::{self, SelfTest};

/// Why the application stopped early.
#[derive(Clone, Copy, Debug)]
pub enum AppError {
    /// Writing to the text sink failed.
    Output,
}

impl core::fmt::Display for AppError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AppError::Output => f.write_str("writing the text output failed"),
        }
    }
}

/// Runs the configured generation, streaming text to `out`.
pub fn run<W: Write, L: OutputPin, C: CostCounter>(
    out: &mut W,
    led: &mut L,
    cost: &mut C,
) -> Result<(), AppError> {
    run_selftest();
    let start = cost.now();
    out.write_all(settings::PROMPT.as_bytes())
        .map_err(|_| AppError::Output)?;
    let _ = led.set_high();
    out.flush().map_err(|_| AppError::Output)?;
    defmt::info!("wrote prompt in {} {}", cost.now() - start, C::UNIT);
    Ok(())
}

/// Triggers the failure asked for by `FIRMWARE_SELFTEST`, to check that it is reported.
fn run_selftest() {
    match settings::SELFTEST {
        None => {}
        Some(SelfTest::Panic) => panic!("self-test panic"),
        Some(SelfTest::HardFault) => {
            // A load from an address with nothing behind it: a BusFault, escalated.
            // SAFETY: deliberately faulting.
            let value = unsafe { (0xF000_0000 as *const u32).read_volatile() };
            defmt::error!("read {} from an unmapped address", value);
        }
        Some(SelfTest::StackOverflow) => {
            let sum = crate::fault::recurse(0);
            defmt::error!("recursion returned {}", sum);
        }
        Some(SelfTest::BadBlob) => {}
    }
}
