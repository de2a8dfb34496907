//! Board `pico2`: Raspberry Pi Pico 2 (RP2350, Cortex-M33 at 150 MHz).
//!
//! - text: USB CDC serial (the chat port, VID:PID 16c0:27dd) and UART0, TX on GP0 (pin 1),
//!   RX on GP1 (pin 2), 115200 baud 8N1: the chat reads both and writes both;
//! - LED: GP25 (the green LED on the board);
//! - defmt: RTT, read by `probe-rs run` (the runner of `cargo run`);
//! - failures: one text line on UART0 and a defmt error, then the LED blinks the
//!   failure's exit code forever (or, with a debugger attached, the core stops on a
//!   breakpoint so that `probe-rs run` prints a backtrace and exits);
//! - cost: DWT CYCCNT, core clock cycles;
//! - two cores: core 1 is started with rp235x-hal's multicore launch (`Multicore::spawn`,
//!   stack in SRAM8) and serves the split pass's jobs through the SIO FIFO (`src/cores.rs`),
//!   measuring its busy cycles with its own DWT cycle counter.

use core::cell::RefCell;
use core::fmt::Write as _;

use embedded_hal::digital::OutputPin as _;

use critical_section::Mutex;
use defmt_rtt as _;
use rp235x_hal as hal;
use usb_device::class_prelude::UsbBusAllocator;
use usb_device::prelude::{
    StringDescriptors, UsbDevice, UsbDeviceBuilder, UsbDeviceState, UsbVidPid,
};
use usb_device::LangID;
use usbd_serial::SerialPort;

use hal::pac::interrupt;

use hal::clocks::Clock as _;
use hal::fugit::RateExtU32 as _;
use hal::gpio::bank0::{Gpio0, Gpio1, Gpio25};
use hal::gpio::{FunctionSioOutput, FunctionUart, Pin, PullDown};
use hal::uart::{DataBits, StopBits, UartConfig, UartPeripheral};

use crate::cost::CostCounter;
use crate::fault::Fatal;

/// Name of the board in logs.
pub const NAME: &str = "pico2 rp2350";

/// Tells the boot ROM that this is a Secure Arm executable.
#[link_section = ".start_block"]
#[used]
pub static IMAGE_DEF: hal::block::ImageDef = hal::block::ImageDef::secure_exe();

/// Program metadata for `picotool info`.
#[link_section = ".bi_entries"]
#[used]
pub static PICOTOOL_ENTRIES: [hal::binary_info::EntryAddr; 3] = [
    hal::binary_info::rp_cargo_bin_name!(),
    hal::binary_info::rp_cargo_version!(),
    hal::binary_info::rp_program_description!(c"BitNet b1.58 text generation"),
];

/// The crystal of the Pico 2.
const XTAL_FREQ_HZ: u32 = 12_000_000;
const BAUD: u32 = 115_200;

type UartPins = (
    Pin<Gpio0, FunctionUart, PullDown>,
    Pin<Gpio1, FunctionUart, PullDown>,
);
/// UART0 on GP0/GP1.
pub type Uart = UartPeripheral<hal::uart::Enabled, hal::pac::UART0, UartPins>;
/// The on-board LED.
pub type Led = Pin<Gpio25, FunctionSioOutput, PullDown>;

/// Everything the application needs from the board.
pub struct Board {
    /// Text output.
    pub uart: Uart,
    /// The LED toggled per token.
    pub led: Led,
    /// Work counter.
    pub cost: DwtCycles,
    /// The second core's workers.
    pub cores: crate::source::Cores,
}

/// One core's end of the SIO FIFO (rp235x-hal), as the link between the cores.
pub struct Fifo(hal::sio::SioFifo);

impl crate::cores::Link for Fifo {
    #[inline(always)]
    fn send(&mut self, word: u32) {
        self.0.write_blocking(word);
    }

    #[inline(always)]
    fn recv(&mut self) -> u32 {
        self.0.read_blocking()
    }
}

/// Core 1: its own end of the SIO FIFO and its own DWT cycle counter, then the job loop.
fn core1_main() {
    // SAFETY: each core sees its own SIO FIFO end and its own DWT at the same addresses;
    // core 0 keeps its own `Sio` and never uses these.
    let (pac, mut core) = unsafe {
        (
            hal::pac::Peripherals::steal(),
            cortex_m::Peripherals::steal(),
        )
    };
    let sio = hal::Sio::new(pac.SIO);
    core.DCB.enable_trace();
    core.DWT.enable_cycle_counter();
    crate::cores::serve_core1(
        &mut Fifo(sio.fifo),
        Some(cortex_m::peripheral::DWT::cycle_count as fn() -> u32),
    )
}

/// Brings the board up: clocks at 150 MHz, UART0, LED, cycle counter.
pub fn init() -> Board {
    let Some(mut pac) = hal::pac::Peripherals::take() else {
        halt_blinking(1)
    };
    let Some(mut core) = cortex_m::Peripherals::take() else {
        halt_blinking(1)
    };
    let mut watchdog = hal::Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = hal::clocks::init_clocks_and_plls(
        XTAL_FREQ_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        halt_blinking(1)
    };
    let mut sio = hal::Sio::new(pac.SIO);
    let pins = hal::gpio::Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let uart_pins: UartPins = (pins.gpio0.into_function(), pins.gpio1.into_function());
    let Ok(uart) = UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS).enable(
        UartConfig::new(BAUD.Hz(), DataBits::Eight, None, StopBits::One),
        clocks.peripheral_clock.freq(),
    ) else {
        halt_blinking(1)
    };
    let led = pins.gpio25.into_push_pull_output();

    // USB CDC serial, polled from its interrupt so that enumeration and control requests get
    // answers while a token is being computed.
    let usb_bus = hal::usb::UsbBus::new(
        pac.USB,
        pac.USB_DPRAM,
        clocks.usb_clock,
        true,
        &mut pac.RESETS,
    );
    let Some(bus) =
        cortex_m::singleton!(: UsbBusAllocator<hal::usb::UsbBus> = UsbBusAllocator::new(usb_bus))
    else {
        halt_blinking(1)
    };
    let bus: &'static UsbBusAllocator<hal::usb::UsbBus> = bus;
    let serial = SerialPort::new(bus);
    let Ok(builder) =
        UsbDeviceBuilder::new(bus, USB_VID_PID).strings(&[StringDescriptors::new(LangID::EN_US)
            .manufacturer("bitnet-mcu")
            .product("BitNet b1.58 chat")
            .serial_number("PICO2")])
    else {
        halt_blinking(1)
    };
    let Ok(builder) = builder.max_packet_size_0(64) else {
        halt_blinking(1)
    };
    let device = builder.device_class(usbd_serial::USB_CLASS_CDC).build();
    critical_section::with(|cs| {
        USB.borrow_ref_mut(cs).replace(Usb { device, serial });
    });
    // SAFETY: the handler only touches USB, which is shared through a critical section.
    unsafe { cortex_m::peripheral::NVIC::unmask(hal::pac::Interrupt::USBCTRL_IRQ) };

    core.DCB.enable_trace();
    core.DWT.enable_cycle_counter();
    defmt::info!("system clock {} Hz", clocks.system_clock.freq().to_Hz());

    // Core 1, with its stack in SRAM8 (memory-pico2.x).
    crate::fault::paint_core1_stack();
    let (start, end) = crate::fault::core1_stack();
    // SAFETY: SRAM8 is reserved for core 1's stack by the linker script; nothing else uses it.
    let stack = unsafe {
        hal::multicore::StackAllocation::from_raw_parts(start as *mut usize, end as *mut usize)
    };
    let mut multicore = hal::multicore::Multicore::new(&mut pac.PSM, &mut pac.PPB, &mut sio.fifo);
    let Some(core1) = multicore.cores().get_mut(1) else {
        halt_blinking(1)
    };
    if core1.spawn(stack, core1_main).is_err() {
        halt_blinking(1)
    }
    let Some(dual) = cortex_m::singleton!(
        : crate::cores::Dual<Fifo> = crate::cores::Dual::new(Fifo(sio.fifo))
    ) else {
        halt_blinking(1)
    };
    Board {
        uart,
        led,
        cost: DwtCycles { high: 0, last: 0 },
        cores: dual,
    }
}

/// A board keeps serving after Ctrl-D.
pub const EXIT_ON_END: bool = false;

/// pid.codes' shared VID:PID for CDC-ACM serial devices (the rp-hal examples use it too).
const USB_VID_PID: UsbVidPid = UsbVidPid(0x16c0, 0x27dd);

/// The USB device and its CDC-ACM class, shared with `USBCTRL_IRQ`.
struct Usb {
    device: UsbDevice<'static, hal::usb::UsbBus>,
    serial: SerialPort<'static, hal::usb::UsbBus>,
}

static USB: Mutex<RefCell<Option<Usb>>> = Mutex::new(RefCell::new(None));

#[interrupt]
fn USBCTRL_IRQ() {
    critical_section::with(|cs| {
        if let Some(usb) = USB.borrow_ref_mut(cs).as_mut() {
            usb.device.poll(&mut [&mut usb.serial]);
        }
    });
}

/// The chat's terminal: UART0 and USB serial, and the cycle counter.
pub type Console = crate::console::Console<Ports, DwtCycles>;

/// The text ports: UART0 always, USB CDC serial when a terminal has it open.
pub struct Ports {
    uart: Uart,
    /// Times how long a USB write may wait ([`USB_WRITE_PATIENCE_CYCLES`]).
    clock: DwtCycles,
}

/// The board's text ports as a chat terminal; the LED lights and stays on: the chat is served.
pub fn console(board: Board) -> Console {
    let mut led = board.led;
    let _ = led.set_high();
    Console {
        port: Ports {
            uart: board.uart,
            clock: DwtCycles { high: 0, last: 0 },
        },
        cost: board.cost,
    }
}

/// How long a write to USB may wait for the host to take data (then the rest is dropped, so
/// that a host that opened the port but stopped reading cannot stall the board): 100 ms.
const USB_WRITE_PATIENCE_CYCLES: u64 = 15_000_000;

impl Ports {
    /// Writes `bytes` to USB when a terminal has the port open (DTR set), waiting at most
    /// [`USB_WRITE_PATIENCE_CYCLES`] for room.
    fn write_usb(&mut self, mut bytes: &[u8]) {
        let start = self.clock.now();
        while !bytes.is_empty() {
            let written = critical_section::with(|cs| {
                let mut usb = USB.borrow_ref_mut(cs);
                let usb = usb.as_mut()?;
                if usb.device.state() != UsbDeviceState::Configured || !usb.serial.dtr() {
                    return None;
                }
                Some(usb.serial.write(bytes).unwrap_or(0))
            });
            match written {
                None => return,
                Some(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            }
            if self.clock.now().wrapping_sub(start) > USB_WRITE_PATIENCE_CYCLES {
                return;
            }
        }
    }
}

impl crate::console::SerialPort for Ports {
    fn write(&mut self, bytes: &[u8]) {
        self.uart.write_full_blocking(bytes);
        self.write_usb(bytes);
    }

    fn flush(&mut self) {
        let start = self.clock.now();
        loop {
            let done = critical_section::with(|cs| {
                USB.borrow_ref_mut(cs)
                    .as_mut()
                    .is_none_or(|usb| !usb.serial.dtr() || usb.serial.flush().is_ok())
            });
            if done || self.clock.now().wrapping_sub(start) > USB_WRITE_PATIENCE_CYCLES {
                return;
            }
        }
    }

    fn read(&mut self) -> Option<u8> {
        let mut byte = [0u8; 1];
        let usb = critical_section::with(|cs| {
            let mut usb = USB.borrow_ref_mut(cs);
            match usb.as_mut()?.serial.read(&mut byte) {
                Ok(1) => Some(byte[0]),
                _ => None,
            }
        });
        if usb.is_some() {
            return usb;
        }
        if self.uart.uart_is_readable() {
            if let Ok(1) = self.uart.read_raw(&mut byte) {
                return Some(byte[0]);
            }
        }
        None
    }
}

/// Normal end of the program: the LED stays on, the core sleeps.
pub fn finish() -> ! {
    led_raw(true);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Reports a failure on UART0 and through defmt, then stops visibly.
pub fn fatal(fatal: Fatal) -> ! {
    defmt::error!("{}", defmt::Display2Format(&fatal));
    let _ = write!(RawUart0, "\nfirmware: {fatal}\n");
    if debugger_attached() && !matches!(fatal, Fatal::HardFault { .. }) {
        // `probe-rs run` stops here, prints a backtrace and exits non-zero.
        cortex_m::asm::bkpt();
    }
    halt_blinking(fatal.exit_code())
}

/// Blinks the exit code (`code` short flashes, a pause) forever.
fn halt_blinking(code: i32) -> ! {
    // At most 150 MHz; the loops below are a few cycles per iteration.
    const SHORT: u32 = 15_000_000;
    let flashes = code.clamp(1, 5);
    loop {
        for _ in 0..flashes {
            led_raw(true);
            cortex_m::asm::delay(SHORT);
            led_raw(false);
            cortex_m::asm::delay(SHORT);
        }
        cortex_m::asm::delay(6 * SHORT);
    }
}

fn debugger_attached() -> bool {
    // DHCSR.C_DEBUGEN
    // SAFETY: architectural register, always readable.
    unsafe { (0xE000_EDF0 as *const u32).read_volatile() & 1 != 0 }
}

/// Drives GP25 through the SIO registers, usable from a fault handler (the pin is
/// configured as an output by `init`; before that this does nothing visible).
fn led_raw(on: bool) {
    // SAFETY: write-only set/clear registers; the write affects GP25 only.
    let sio = unsafe { &*hal::pac::SIO::ptr() };
    if on {
        sio.gpio_out_set().write(|w| unsafe { w.bits(1 << 25) });
    } else {
        sio.gpio_out_clr().write(|w| unsafe { w.bits(1 << 25) });
    }
}

/// UART0 through its registers (PL011, configured by `init`), for fault reports.
struct RawUart0;

impl core::fmt::Write for RawUart0 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // SAFETY: only the data register is written; nothing happens before `init`
        // enabled the UART.
        let uart = unsafe { &*hal::pac::UART0::ptr() };
        if !uart.uartcr().read().uarten().bit_is_set() {
            return Ok(());
        }
        for &b in s.as_bytes() {
            while uart.uartfr().read().txff().bit_is_set() {}
            uart.uartdr().write(|w| unsafe { w.data().bits(b) });
        }
        Ok(())
    }
}

/// DWT CYCCNT extended to 64 bits (call [`CostCounter::now`] at least every 28 s).
pub struct DwtCycles {
    high: u64,
    last: u32,
}

impl CostCounter for DwtCycles {
    const UNIT: &'static str = "cycles";
    const RATE_NOTE: &'static str = "measured with DWT CYCCNT";
    const CLOCK_NOTE: &'static str = "DWT cycle counter at 150 MHz";

    fn now(&mut self) -> u64 {
        let now = cortex_m::peripheral::DWT::cycle_count();
        if now < self.last {
            self.high += 1 << 32;
        }
        self.last = now;
        self.high | u64::from(now)
    }
}
