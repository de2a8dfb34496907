//! The split pass's code in RAM (two-core boards): the linker scripts gather it into `.ramtext`
//! (see `memory-pico2.x`, `memory-an521.x`), loaded in flash after the vector table; [`copy`]
//! puts it at its RAM address before anything runs it.

extern "C" {
    static mut __sramtext: u32;
    static __eramtext: u32;
    static __siramtext: u32;
}

/// Copies `.ramtext` from its load address in flash to RAM. Call once, first thing in `main`.
pub fn copy() {
    // SAFETY: the linker script defines the three symbols around `.ramtext` (word-aligned, a
    // whole number of words); its RAM range is reserved for it and nothing has run from it yet.
    unsafe {
        let mut dst = core::ptr::addr_of_mut!(__sramtext);
        let end = core::ptr::addr_of!(__eramtext);
        let mut src = core::ptr::addr_of!(__siramtext);
        while (dst as *const u32) < end {
            dst.write_volatile(src.read_volatile());
            dst = dst.add(1);
            src = src.add(1);
        }
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}
