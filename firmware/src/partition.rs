//! The model partition: a blob flashed as data (`tools uf2 MODEL.bin`), read in place.
//!
//! | board | flash | partition |
//! |---|---|---|
//! | `pico2` | QSPI flash, XIP at `0x1000_0000`, 4 MiB | `0x1010_0000 .. 0x1040_0000` (3 MiB) |
//! | `qemu` | SSRAM1 Secure alias at `0x1000_0000`, 4 MiB | same; `run-qemu.sh --serial` loads the blob there |
//!
//! The firmware itself is linked into the first 1 MiB (`memory-*.x`), so reflashing the
//! firmware leaves the model alone and the other way round.

/// Start of the partition; `tools::uf2::MODEL_PARTITION` must agree (a test checks).
pub const ADDRESS: usize = 0x1010_0000;
/// Size of the partition: the rest of the 4 MiB flash.
pub const BYTES: usize = 0x1040_0000 - ADDRESS;

/// The whole partition as bytes (erased flash reads `0xFF`).
pub fn contents() -> &'static [u8] {
    // SAFETY: the partition is memory-mapped flash (XIP on the RP2350, SSRAM1 on QEMU),
    // always readable, never written while the firmware runs, and outside every section the
    // linker places (FLASH ends at ADDRESS in memory-*.x).
    unsafe { core::slice::from_raw_parts(ADDRESS as *const u8, BYTES) }
}
