//! The chat's terminal on a board: the board's serial ports ([`SerialPort`], the only part that
//! differs) and its cost counter. Serial terminals do not echo and expect CRLF line ends; the
//! stack high-water mark comes from the stack guard (`fault.rs`).

use core::convert::Infallible;

use runtime::chat::{Clock, Terminal};

use crate::cost::CostCounter;
use crate::fault;

/// A board's text ports: what [`Console`] writes to and reads from.
pub trait SerialPort {
    /// Writes all of `bytes` (a port may drop them when nobody listens).
    fn write(&mut self, bytes: &[u8]);
    /// Pushes written bytes out.
    fn flush(&mut self) {}
    /// A received byte if one is waiting; never blocks.
    fn read(&mut self) -> Option<u8>;
}

/// A board's ports and cost counter as a chat terminal.
pub struct Console<P, C> {
    /// Text in and out.
    pub port: P,
    /// The `/stats` counter.
    pub cost: C,
}

impl<P: SerialPort, C: CostCounter> Terminal for Console<P, C> {
    type Error = Infallible;

    fn write(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.port.write(bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        self.port.flush();
        Ok(())
    }

    fn read(&mut self) -> Option<u8> {
        self.port.read()
    }

    fn now(&mut self) -> u64 {
        self.cost.now()
    }

    fn clock(&self) -> Clock {
        Clock {
            per_second: C::PER_SECOND,
            unit: C::UNIT,
            note: C::CLOCK_NOTE,
        }
    }

    fn echo(&self) -> bool {
        true
    }

    fn crlf(&self) -> bool {
        true
    }

    fn stack_used(&mut self) -> Option<usize> {
        Some(fault::stack_high_water())
    }
}
