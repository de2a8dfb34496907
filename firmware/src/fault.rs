//! Faults that must stop the firmware visibly: stack overflow, HardFault, panic.
//!
//! The stack grows down from the top of RAM towards the statics (`.data`, `.bss`, the
//! model's working memory). The Cortex-M33 checks every stack push against the `MSPLIM`
//! register; [`arm_stack_guard`] sets it [`STACK_GUARD_BYTES`] above the end of the
//! statics, so an overflow raises a fault (UsageFault STKOF, escalated to HardFault)
//! before it can overwrite the working memory. The HardFault entry below lowers the limit
//! first, so that the handler has those bytes to report in, then hands over to the board's
//! [`fatal`](crate::board::fatal). This works the same on QEMU and on the Pico 2, so the
//! check runs in CI (`FIRMWARE_SELFTEST=stack-overflow`).

use core::fmt;

/// Bytes kept free below the stack limit for the fault handler itself.
pub const STACK_GUARD_BYTES: usize = 1024;

/// Why the firmware stopped.
#[derive(Clone, Copy)]
pub enum Fatal<'a> {
    /// The application returned an error (its text is in the message).
    App(&'a dyn fmt::Display),
    /// A Rust panic.
    Panic(&'a core::panic::PanicInfo<'a>),
    /// A HardFault; `stack_overflow` when the stack limit check raised it.
    HardFault {
        /// Program counter stacked at the fault (unreliable after a stack overflow).
        pc: u32,
        /// Configurable Fault Status Register.
        cfsr: u32,
        /// HardFault Status Register.
        hfsr: u32,
        /// The cause was the stack limit (UFSR.STKOF).
        stack_overflow: bool,
    },
}

impl Fatal<'_> {
    /// Process exit status under QEMU (also shown in the Pico 2 log).
    pub fn exit_code(&self) -> i32 {
        match self {
            Fatal::App(_) => 1,
            Fatal::HardFault {
                stack_overflow: false,
                ..
            } => 2,
            Fatal::HardFault {
                stack_overflow: true,
                ..
            } => 3,
            Fatal::Panic(_) => 101,
        }
    }
}

impl fmt::Display for Fatal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::App(error) => write!(f, "error: {error}"),
            Fatal::Panic(info) => write!(f, "panic: {info}"),
            Fatal::HardFault {
                stack_overflow: true,
                ..
            } => write!(
                f,
                "HardFault: stack overflow (the stack reached the statics; \
                 the working memory leaves too little RAM for the stack)"
            ),
            Fatal::HardFault { pc, cfsr, hfsr, .. } => {
                write!(
                    f,
                    "HardFault at pc={pc:#010x} (CFSR={cfsr:#010x}, HFSR={hfsr:#010x})"
                )
            }
        }
    }
}

extern "C" {
    /// Lowest address the stack may use: the end of the statics (cortex-m-rt's `link.x`).
    static _stack_end: u32;
}

/// Sets the stack limit so that an overflow faults instead of corrupting the statics.
pub fn arm_stack_guard() {
    let end = core::ptr::addr_of!(_stack_end) as usize;
    let limit = (end + STACK_GUARD_BYTES) as u32;
    // SAFETY: MSPLIM only bounds the stack; the stack pointer is far above `limit` here.
    unsafe { cortex_m::register::msplim::write(limit) };
}

extern "C" {
    /// Top of the stack (cortex-m-rt's `link.x`).
    static _stack_start: u32;
}

/// Deepest stack use so far, in bytes: the reset handler painted the stack with
/// `0xCCCC_CCCC` (cortex-m-rt's `paint-stack`); the lowest overwritten word marks the depth.
pub fn stack_high_water() -> usize {
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    // On the QEMU twin core 1's stack lies inside core 0's painted region (memory-an521.x):
    // start above it.
    #[cfg(feature = "an521")]
    let bottom = match core1_stack() {
        (c1, c1_end) if (bottom..top).contains(&c1) => c1_end,
        _ => bottom,
    };
    painted_depth(bottom, top)
}

/// Bytes used of the stack `bottom..top` painted with `0xCCCC_CCCC`.
fn painted_depth(bottom: usize, top: usize) -> usize {
    let mut addr = bottom;
    // SAFETY: reads words of a stack region, which is RAM.
    while addr < top && unsafe { (addr as *const u32).read_volatile() } == 0xCCCC_CCCC {
        addr += 4;
    }
    top - addr
}

#[cfg(two_cores)]
extern "C" {
    /// Core 1's stack (memory-pico2.x: SRAM8; memory-an521.x).
    static _core1_stack_start: u32;
    static _core1_stack_end: u32;
}

/// Core 1's stack region.
#[cfg(two_cores)]
pub fn core1_stack() -> (usize, usize) {
    (
        core::ptr::addr_of!(_core1_stack_start) as usize,
        core::ptr::addr_of!(_core1_stack_end) as usize,
    )
}

/// Core 1's deepest stack use so far in bytes (its stack is painted before core 1 starts:
/// by the reset handler on the twin, by [`paint_core1_stack`] on the Pico 2).
#[cfg(two_cores)]
pub fn core1_stack_high_water() -> usize {
    let (bottom, top) = core1_stack();
    painted_depth(bottom, top)
}

/// Fills core 1's stack with `0xCCCC_CCCC` (before core 1 starts).
#[cfg(feature = "pico2")]
pub fn paint_core1_stack() {
    let (bottom, top) = core1_stack();
    let mut addr = bottom;
    while addr < top {
        // SAFETY: core 1's stack region (SRAM8), not in use before core 1 starts.
        unsafe { (addr as *mut u32).write_volatile(0xCCCC_CCCC) };
        addr += 4;
    }
}

/// The stack limit as set by [`arm_stack_guard`], for the start-up log.
pub fn stack_limit() -> u32 {
    cortex_m::register::msplim::read()
}

// HardFault entry: clear MSPLIM before anything touches the stack (after a stack overflow
// the stack pointer sits at the limit), then pass the stacked frame to `firmware_hard_fault`.
core::arch::global_asm!(
    ".section .HardFault.entry, \"ax\"",
    ".global HardFault",
    ".type HardFault,%function",
    ".thumb_func",
    "HardFault:",
    "    movs r0, #0",
    "    msr MSPLIM, r0",
    "    mov r0, lr",
    "    movs r1, #4",
    "    tst r0, r1",
    "    bne 0f",
    "    mrs r0, MSP",
    "    b firmware_hard_fault",
    "0:",
    "    mrs r0, PSP",
    "    b firmware_hard_fault",
    ".size HardFault, . - HardFault",
);

/// System Control Block fault registers.
const CFSR: *const u32 = 0xE000_ED28 as *const u32;
const HFSR: *const u32 = 0xE000_ED2C as *const u32;
/// UFSR.STKOF: a stack limit violation (CFSR bit 16 + 4).
const CFSR_STKOF: u32 = 1 << 20;

#[no_mangle]
unsafe extern "C" fn firmware_hard_fault(frame: *const u32) -> ! {
    // SAFETY: architectural registers, always readable in privileged mode.
    let (cfsr, hfsr) = unsafe { (CFSR.read_volatile(), HFSR.read_volatile()) };
    // The stacked PC is word 6 of the exception frame; it lies in RAM in any case.
    let pc = unsafe { frame.add(6).read_volatile() };
    crate::board::fatal(Fatal::HardFault {
        pc,
        cfsr,
        hfsr,
        stack_overflow: cfsr & CFSR_STKOF != 0,
    })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::board::fatal(Fatal::Panic(info))
}

/// Recursion that defeats inlining and tail calls: the `stack-overflow` self-test.
#[inline(never)]
#[allow(unconditional_recursion)]
pub fn recurse(depth: u32) -> u32 {
    let mut frame = [depth; 64];
    // Keep the frame alive through the call so the compiler cannot shrink it.
    let inner = recurse(core::hint::black_box(depth + 1));
    frame[(inner as usize) % 64] ^= inner;
    core::hint::black_box(&frame).iter().sum()
}
