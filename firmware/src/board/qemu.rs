//! Board `qemu`: QEMU `mps2-an505` (one Cortex-M33, Secure state); board `an521`: QEMU
//! `mps2-an521` (ARM SSE-200, two Cortex-M33), the two-core twin of the Pico 2, with the same
//! peripherals and memory map.
//!
//! - two cores (`an521`): core 1 starts held (the SSE-200's CPUWAIT); [`init`] gives it a
//!   vector table (stack in the 4 KiB above the Pico 2's 512 KiB, where the Pico 2 has SRAM8;
//!   entry `core1_entry`) through INITSVTOR1 and releases it by clearing CPUWAIT bit 1; it then
//!   serves the split pass's jobs over a mailbox in shared RAM (`src/cores.rs`). QEMU needs
//!   `-global sse-200.CPU0_DSP=on -global sse-200.CPU0_FPU=on` (`run-qemu.sh` passes them): the
//!   AN521's CPU0 has neither, the RP2350's cores both;
//! - text: CMSDK UART0 (`0x5020_0000`) → QEMU's stdout with `-nographic`; its receiver reads
//!   QEMU's stdin in interactive mode (`run-qemu.sh --serial`), where Ctrl-D ends the run;
//! - LED: FPGAIO LED0 (`0x5030_2000`, bit 0);
//! - defmt frames: a host file `defmt.bin` in QEMU's working directory, written through
//!   semihosting (decode with `defmt-print -e ELF < defmt.bin`);
//! - failures: one text line on the UART (as on the Pico 2), a defmt error, and the exit
//!   status ([`Fatal::exit_code`]);
//! - cost: SysTick, which counts instructions when QEMU runs with `-icount shift=7`.

use core::convert::Infallible;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

use crate::console::SerialPort;
use crate::cost::CostCounter;
use crate::fault::Fatal;

/// Name of the board in logs.
#[cfg(not(feature = "an521"))]
pub const NAME: &str = "qemu mps2-an505";
/// Name of the board in logs.
#[cfg(feature = "an521")]
pub const NAME: &str = "qemu mps2-an521 (two cores)";

/// Everything the application needs from the board.
pub struct Board {
    /// Text output.
    pub uart: CmsdkUart,
    /// The LED toggled per token.
    pub led: FpgaLed,
    /// Work counter.
    pub cost: IcountSysTick,
    /// The second core's workers (`an521`); nothing on the one-core `mps2-an505`.
    pub cores: crate::source::Cores,
}

/// Brings the board up (on `an521`, starts core 1).
pub fn init() -> Board {
    let core = cortex_m::Peripherals::take().unwrap_or_else(|| unreachable_twice());
    Board {
        uart: CmsdkUart::new(),
        led: FpgaLed,
        cost: IcountSysTick::start(core.SYST),
        cores: start_core1(),
    }
}

#[cfg(not(feature = "an521"))]
fn start_core1() -> crate::source::Cores {
    crate::source::NoSecondCore
}

/// Core 1's vector table (initial stack pointer, reset entry), read when CPUWAIT releases it.
#[cfg(feature = "an521")]
#[repr(C, align(128))]
struct Core1Vectors([u32; 2]);

#[cfg(feature = "an521")]
static mut CORE1_VECTORS: Core1Vectors = Core1Vectors([0; 2]);

#[cfg(feature = "an521")]
extern "C" {
    /// Core 1's 4 KiB stack (memory-an521.x).
    static _core1_stack_start: u32;
    static _core1_stack_end: u32;
}

/// Core 0's end of the mailbox to core 1, as the runtime's workers.
#[cfg(feature = "an521")]
static DUAL: crate::cores::Dual<crate::cores::Mailbox> =
    crate::cores::Dual::new(crate::cores::Mailbox::core0());

/// Points core 1 at its vector table and releases it (SSE-200 system control element:
/// INITSVTOR1 at 0x5002_1114, CPUWAIT at 0x5002_1118, bit 1 holds core 1).
#[cfg(feature = "an521")]
fn start_core1() -> crate::source::Cores {
    const INITSVTOR1: *mut u32 = 0x5002_1114 as *mut u32;
    const CPUWAIT: *mut u32 = 0x5002_1118 as *mut u32;
    // SAFETY: core 1 is still held (CPUWAIT bit 1 set at reset), so nothing else reads the
    // vector table; the registers are the SSE-200's, written once here.
    unsafe {
        let vectors = &mut *core::ptr::addr_of_mut!(CORE1_VECTORS);
        vectors.0[0] = core::ptr::addr_of!(_core1_stack_end) as u32;
        vectors.0[1] = core1_entry as *const () as usize as u32;
        cortex_m::asm::dsb();
        INITSVTOR1.write_volatile(vectors as *const Core1Vectors as u32);
        CPUWAIT.write_volatile(CPUWAIT.read_volatile() & !2);
    }
    &DUAL
}

/// Core 1's reset entry: stack guard, floating-point unit on (as cortex-m-rt does for core 0),
/// then the job loop.
#[cfg(feature = "an521")]
extern "C" fn core1_entry() -> ! {
    // SAFETY: core 1's own MSPLIM and CPACR; the stack is the 4 KiB of memory-an521.x.
    unsafe {
        cortex_m::register::msplim::write(core::ptr::addr_of!(_core1_stack_start) as u32);
        (*cortex_m::peripheral::SCB::PTR)
            .cpacr
            .modify(|v| v | 0xF << 20);
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
    crate::cores::serve_core1(&mut crate::cores::Mailbox::core1(), None)
}

/// Interactive mode exits QEMU when the input ends (Ctrl-D, sent by `run-qemu.sh --serial`
/// when its stdin ends).
pub const EXIT_ON_END: bool = true;

/// The chat's terminal: the UART and the instruction counter.
pub type Console = crate::console::Console<CmsdkUart, IcountSysTick>;

/// The board's text port as a chat terminal.
pub fn console(board: Board) -> Console {
    Console {
        port: board.uart,
        cost: board.cost,
    }
}

impl SerialPort for CmsdkUart {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_byte(b));
    }

    fn read(&mut self) -> Option<u8> {
        self.read_byte()
    }
}

fn unreachable_twice() -> ! {
    exit(1)
}

/// Normal end of the program: QEMU exits with status 0.
pub fn finish() -> ! {
    exit(0)
}

/// Reports a failure on the UART and through defmt, then exits QEMU non-zero.
pub fn fatal(fatal: Fatal) -> ! {
    defmt::error!("{}", defmt::Display2Format(&fatal));
    // Re-initialising the UART is harmless and makes this usable before `init`.
    let _ = write!(CmsdkUart::new(), "\nfirmware: {fatal}\n");
    exit(fatal.exit_code())
}

fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

// ----------------------------------------------------------------------------- UART

/// CMSDK APB UART0 of the AN505 (no FIFOs: one byte each way).
pub struct CmsdkUart {
    base: *mut u32,
}

impl CmsdkUart {
    const BASE: usize = 0x5020_0000;
    const DATA: usize = 0;
    const STATE: usize = 1;
    const CTRL: usize = 2;
    const BAUDDIV: usize = 4;
    const STATE_TX_FULL: u32 = 1;
    const STATE_RX_FULL: u32 = 2;
    const CTRL_TX_ENABLE: u32 = 1;
    const CTRL_RX_ENABLE: u32 = 2;

    fn new() -> Self {
        let uart = CmsdkUart {
            base: Self::BASE as *mut u32,
        };
        // SAFETY: memory-mapped registers of the UART, owned by this driver only.
        unsafe {
            uart.reg(Self::BAUDDIV).write_volatile(16);
            uart.reg(Self::CTRL)
                .write_volatile(Self::CTRL_TX_ENABLE | Self::CTRL_RX_ENABLE);
        }
        uart
    }

    fn reg(&self, word: usize) -> *mut u32 {
        // SAFETY: stays inside the UART's register block.
        unsafe { self.base.add(word) }
    }

    fn write_byte(&mut self, byte: u8) {
        // SAFETY: see `new`.
        unsafe {
            while self.reg(Self::STATE).read_volatile() & Self::STATE_TX_FULL != 0 {}
            self.reg(Self::DATA).write_volatile(u32::from(byte));
        }
    }
}

impl CmsdkUart {
    /// The received byte, if one is waiting. (QEMU holds further input back until it is
    /// read: nothing is lost.)
    fn read_byte(&mut self) -> Option<u8> {
        // SAFETY: see `new`.
        unsafe {
            if self.reg(Self::STATE).read_volatile() & Self::STATE_RX_FULL == 0 {
                return None;
            }
            Some(self.reg(Self::DATA).read_volatile() as u8)
        }
    }
}

impl core::fmt::Write for CmsdkUart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        s.bytes().for_each(|b| self.write_byte(b));
        Ok(())
    }
}

impl embedded_io::ErrorType for CmsdkUart {
    type Error = Infallible;
}

impl embedded_io::Write for CmsdkUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        buf.iter().for_each(|&b| self.write_byte(b));
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

// ------------------------------------------------------------------------------ LED

/// FPGAIO LED0 of the AN505 (QEMU keeps its state; it is not displayed).
pub struct FpgaLed;

impl FpgaLed {
    const LED: *mut u32 = 0x5030_2000 as *mut u32;

    fn set(&mut self, on: bool) {
        // SAFETY: the FPGAIO LED register; only this driver writes it.
        unsafe {
            let v = Self::LED.read_volatile();
            Self::LED.write_volatile(if on { v | 1 } else { v & !1 });
        }
    }
}

impl embedded_hal::digital::ErrorType for FpgaLed {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FpgaLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.set(true);
        Ok(())
    }
}

// ----------------------------------------------------------------------------- cost

/// SysTick extended to 64 bits by counting wraps in its exception.
///
/// With `-icount shift=7` QEMU advances virtual time by 128 ns per instruction and the
/// AN505 clocks SysTick at 20 MHz: 2.56 ticks per instruction, so ticks · 25 / 64 are
/// instructions. Without `-icount` the count follows host time and means little.
pub struct IcountSysTick {
    _syst: SYST,
    /// Last value returned: without `-icount` QEMU can show a wrapped counter before it
    /// pends the exception, so a value below this one is corrected by one period.
    last: u64,
}

/// SysTick reload: the full 24 bits.
const RELOAD: u32 = 0x00FF_FFFF;
static WRAPS: AtomicU32 = AtomicU32::new(0);

impl IcountSysTick {
    fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        IcountSysTick {
            _syst: syst,
            last: 0,
        }
    }

    fn ticks() -> u64 {
        loop {
            let wraps = WRAPS.load(Ordering::Acquire);
            let current = SYST::get_current();
            let pending = cortex_m::peripheral::SCB::is_pendst_pending();
            if WRAPS.load(Ordering::Acquire) != wraps {
                continue;
            }
            // A wrap whose exception has not run yet: count it here.
            let wraps = u64::from(wraps) + u64::from(pending && current > RELOAD / 2);
            return wraps * (u64::from(RELOAD) + 1) + u64::from(RELOAD - current);
        }
    }
}

impl CostCounter for IcountSysTick {
    const UNIT: &'static str = "instructions";
    const RATE_NOTE: &'static str =
        "estimate: instructions are not cycles; assumes one instruction per cycle";
    const CLOCK_NOTE: &'static str = "QEMU instructions taken as 150 MHz cycles: an estimate";

    fn now(&mut self) -> u64 {
        let mut ticks = Self::ticks();
        if ticks < self.last {
            ticks += u64::from(RELOAD) + 1;
        }
        self.last = ticks;
        ticks * 25 / 64
    }
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::AcqRel);
}

// ---------------------------------------------------------------------------- defmt

/// defmt frames go to the host file `defmt.bin` (semihosting), so that QEMU's stdout
/// carries only the UART text and stderr only failure messages.
#[defmt::global_logger]
struct SemihostingFileLogger;

/// Nesting depth of acquire/release: 1 = one frame open; more = a panic while logging,
/// whose frames are dropped rather than interleaved with the open one.
static DEPTH: AtomicU32 = AtomicU32::new(0);
static mut RESTORE_PRIMASK: bool = false;
static mut ENCODER: defmt::Encoder = defmt::Encoder::new();
static mut FILE: Option<semihosting::fs::File> = None;
static OPENED: AtomicBool = AtomicBool::new(false);

fn write_frame_bytes(bytes: &[u8]) {
    // SAFETY: only called between acquire and release, with interrupts off.
    let file = unsafe { &mut *core::ptr::addr_of_mut!(FILE) };
    if let Some(file) = file {
        use semihosting::io::Write as _;
        let _ = file.write_all(bytes);
    }
}

// SAFETY: acquire/release disable interrupts and track nesting, so the encoder and the
// file are used by one frame at a time.
unsafe impl defmt::Logger for SemihostingFileLogger {
    fn acquire() {
        let primask_active = cortex_m::register::primask::read().is_active();
        cortex_m::interrupt::disable();
        if DEPTH.fetch_add(1, Ordering::Acquire) > 0 {
            return;
        }
        // SAFETY: interrupts are off and no frame is open: exclusive access.
        unsafe {
            RESTORE_PRIMASK = primask_active;
            if !OPENED.swap(true, Ordering::Relaxed) {
                *core::ptr::addr_of_mut!(FILE) = semihosting::fs::File::create(c"defmt.bin").ok();
            }
            (*core::ptr::addr_of_mut!(ENCODER)).start_frame(write_frame_bytes);
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        if DEPTH.fetch_sub(1, Ordering::Release) > 1 {
            return;
        }
        // SAFETY: the outermost frame, paired with acquire (defmt's contract).
        unsafe {
            (*core::ptr::addr_of_mut!(ENCODER)).end_frame(write_frame_bytes);
            if RESTORE_PRIMASK {
                cortex_m::interrupt::enable();
            }
        }
    }

    unsafe fn write(bytes: &[u8]) {
        if DEPTH.load(Ordering::Relaxed) > 1 {
            return;
        }
        // SAFETY: inside the outermost frame (defmt's contract).
        unsafe { (*core::ptr::addr_of_mut!(ENCODER)).write(bytes, write_frame_bytes) };
    }
}
