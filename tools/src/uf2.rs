//! UF2 images for the RP2350 boot ROM: hold BOOTSEL, plug the board in, copy the file.
//!
//! The format (<https://github.com/microsoft/uf2>): 512-byte blocks, each
//!
//! | offset | field | value here |
//! |---|---|---|
//! | 0 | magic start 0 | `0x0A324655` ("UF2\n") |
//! | 4 | magic start 1 | `0x9E5D5157` |
//! | 8 | flags | `0x2000` (family ID present) |
//! | 12 | target address | where the payload goes, 256-byte aligned |
//! | 16 | payload size | 256 |
//! | 20 | block number | 0, 1, … (sequential within one family) |
//! | 24 | number of blocks | blocks of that family in the file |
//! | 28 | family ID | `0xE48BFF59`, RP2350 Arm Secure (RP2350 datasheet §5.5.3) |
//! | 32 | data | 476 bytes: the 256-byte payload, then zeros |
//! | 508 | magic end | `0x0AB16F30` |
//!
//! As `picotool uf2 convert` does for RP2350 flash images, the file opens with one extra block
//! for erratum RP2350-E10: family "absolute" (`0xE48BFF57`), address `0x10FFFF00`, payload
//! `0xEF` bytes, and the `RP2_IGNORE_BLOCK` extension (flag `0x8000`, tag `0x9957E304` after
//! the payload) so that the boot ROM never writes it. Without it, a Pico 2 whose ROM has the
//! erratum may accept the file and stay in BOOTSEL. For ELF images the 4 KiB flash sectors that
//! hold data are filled up with zero pages below the last page, as picotool does (the boot ROM
//! derives sector erases from block numbers).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// First magic word of a block ("UF2\n").
pub const MAGIC_START0: u32 = 0x0A32_4655;
/// Second magic word.
pub const MAGIC_START1: u32 = 0x9E5D_5157;
/// Last word of a block.
pub const MAGIC_END: u32 = 0x0AB1_6F30;
/// Flag: word 7 is a family ID (not a file size).
pub const FLAG_FAMILY_ID_PRESENT: u32 = 0x0000_2000;
/// Flag: extension tags follow the payload.
pub const FLAG_EXTENSION_FLAGS_PRESENT: u32 = 0x0000_8000;
/// Extension tag (RP2): the boot ROM skips this block.
pub const EXTENSION_RP2_IGNORE_BLOCK: u32 = 0x9957_E304;
/// Family ID the RP2350 boot ROM takes for Arm Secure images (picotool's `rp2350-arm-s`).
pub const FAMILY_RP2350_ARM_S: u32 = 0xE48B_FF59;
/// Family ID "absolute" (written at the given address whatever the partition table says).
pub const FAMILY_ABSOLUTE: u32 = 0xE48B_FF57;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 512;
/// Payload bytes per block (a flash page).
pub const PAGE_BYTES: u32 = 256;
/// Flash erase sector.
pub const SECTOR_BYTES: u32 = 4096;
/// Start of the RP2350's execute-in-place flash window.
pub const FLASH_BASE: u32 = 0x1000_0000;
/// Flash of a Raspberry Pi Pico 2.
pub const PICO2_FLASH_BYTES: u32 = 4 * 1024 * 1024;
/// Where the firmware looks for a model blob (`firmware/README.md`, "Models flashed as data").
pub const MODEL_PARTITION: u32 = 0x1010_0000;
/// Size of the model partition: the rest of the Pico 2's flash.
pub const MODEL_PARTITION_BYTES: u32 = FLASH_BASE + PICO2_FLASH_BYTES - MODEL_PARTITION;
/// First word of an RP2350 boot block such as the IMAGE_DEF (pico-sdk's
/// `PICOBIN_BLOCK_MARKER_START`); the boot ROM looks for one in the first 4 KiB of flash.
pub const PICOBIN_BLOCK_MARKER_START: u32 = 0xFFFF_DED3;
/// Where the boot ROM looks for the IMAGE_DEF block.
pub const BOOT_BLOCK_WINDOW: u32 = 4096;
/// Address of picotool's RP2350-E10 workaround block (never written: ignore flag).
pub const E10_BLOCK_ADDRESS: u32 = 0x10FF_FF00;

/// Pages of a flash image, by address.
#[derive(Default)]
pub struct Image {
    pages: BTreeMap<u32, [u8; PAGE_BYTES as usize]>,
    /// Byte ranges written so far, to refuse overlaps.
    ranges: Vec<(u32, u32)>,
}

impl Image {
    /// Places `bytes` at `address` (any alignment); refuses overlaps and the 4 GiB wrap.
    pub fn add(&mut self, address: u32, bytes: &[u8]) -> Result<()> {
        let end = u32::try_from(bytes.len())
            .ok()
            .and_then(|n| address.checked_add(n))
            .context("the data runs past the 32-bit address space")?;
        if let Some((s, e)) = self.ranges.iter().find(|(s, e)| address < *e && *s < end) {
            bail!("{address:#010x}..{end:#010x} overlaps data already at {s:#010x}..{e:#010x}");
        }
        self.ranges.push((address, end));
        for (i, &b) in bytes.iter().enumerate() {
            let a = address + i as u32;
            let page = self.pages.entry(a & !(PAGE_BYTES - 1)).or_insert([0; 256]);
            page[(a % PAGE_BYTES) as usize] = b;
        }
        Ok(())
    }

    /// Adds zero pages so that every 4 KiB sector that holds data is whole, up to the last page.
    pub fn fill_sectors(&mut self) {
        let Some(&last) = self.pages.keys().next_back() else {
            return;
        };
        let sectors: Vec<u32> = self.pages.keys().map(|a| a / SECTOR_BYTES).collect();
        for sector in sectors {
            let start = sector * SECTOR_BYTES;
            for page in (start..start + SECTOR_BYTES).step_by(PAGE_BYTES as usize) {
                if page < last {
                    self.pages.entry(page).or_insert([0; 256]);
                }
            }
        }
    }

    /// True when a 32-bit word equal to the start marker of an RP2350 boot block
    /// (`PICOBIN_BLOCK_MARKER_START`, word aligned) lies in `start .. start + len`.
    pub fn has_block_marker(&self, start: u32, len: u32) -> bool {
        (start..start + len).step_by(4).any(|a| {
            let page = self.pages.get(&(a & !(PAGE_BYTES - 1)));
            let at = (a % PAGE_BYTES) as usize;
            page.and_then(|p| p.get(at..at + 4))
                .is_some_and(|w| w == PICOBIN_BLOCK_MARKER_START.to_le_bytes())
        })
    }

    /// Lowest and one past the highest address with a page.
    pub fn span(&self) -> Option<(u32, u32)> {
        let first = *self.pages.keys().next()?;
        let last = *self.pages.keys().next_back()?;
        Some((first, last + PAGE_BYTES))
    }

    /// The UF2 file: the RP2350-E10 block, then one block per page in address order.
    pub fn to_uf2(&self, family: u32) -> Vec<u8> {
        let n = self.pages.len() as u32;
        let mut out = Vec::with_capacity((self.pages.len() + 1) * BLOCK_BYTES);
        out.extend_from_slice(&e10_block());
        for (i, (&address, payload)) in self.pages.iter().enumerate() {
            out.extend_from_slice(&block(
                FLAG_FAMILY_ID_PRESENT,
                address,
                i as u32,
                n,
                family,
                payload,
                None,
            ));
        }
        out
    }
}

/// One 512-byte block.
fn block(
    flags: u32,
    address: u32,
    number: u32,
    count: u32,
    family: u32,
    payload: &[u8; 256],
    extension: Option<u32>,
) -> [u8; BLOCK_BYTES] {
    let mut b = [0u8; BLOCK_BYTES];
    let words = [
        MAGIC_START0,
        MAGIC_START1,
        flags,
        address,
        PAGE_BYTES,
        number,
        count,
        family,
    ];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    b[32..32 + 256].copy_from_slice(payload);
    if let Some(tag) = extension {
        b[288..292].copy_from_slice(&tag.to_le_bytes());
    }
    b[508..512].copy_from_slice(&MAGIC_END.to_le_bytes());
    b
}

/// picotool's RP2350-E10 workaround block (`gen_abs_block`).
pub fn e10_block() -> [u8; BLOCK_BYTES] {
    block(
        FLAG_FAMILY_ID_PRESENT | FLAG_EXTENSION_FLAGS_PRESENT,
        E10_BLOCK_ADDRESS,
        0,
        2,
        FAMILY_ABSOLUTE,
        &[0xEF; 256],
        Some(EXTENSION_RP2_IGNORE_BLOCK),
    )
}

/// A UF2 that writes `blob` (a model) into the model partition of a Pico 2.
///
/// The blob must be a valid model: the firmware validates it again at boot, but a file that
/// cannot work is better refused here.
pub fn model_uf2(blob: &[u8]) -> Result<Vec<u8>> {
    crate::blob::validate(blob).map_err(|e| anyhow::anyhow!("not a valid model: {e}"))?;
    if blob.len() > MODEL_PARTITION_BYTES as usize {
        bail!(
            "the model has {} bytes; the partition at {MODEL_PARTITION:#010x} holds {MODEL_PARTITION_BYTES}",
            blob.len()
        );
    }
    let mut image = Image::default();
    image.add(MODEL_PARTITION, blob)?;
    Ok(image.to_uf2(FAMILY_RP2350_ARM_S))
}

/// A UF2 of the loadable segments of a firmware ELF (physical addresses), which must start at
/// the start of flash, hold an IMAGE_DEF block in its first 4 KiB (else the boot ROM does not
/// boot it) and end below the model partition.
pub fn firmware_uf2(elf: &[u8]) -> Result<Vec<u8>> {
    use object::read::elf::{ElfFile32, ProgramHeader};
    let file = ElfFile32::<object::Endianness>::parse(elf).context("not a 32-bit ELF file")?;
    let endian = file.endian();
    let mut image = Image::default();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != object::elf::PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let address = ph.p_paddr(endian);
        let data = ph
            .data(endian, elf)
            .map_err(|_| anyhow::anyhow!("a segment lies outside the ELF file"))?;
        let end = address as u64 + data.len() as u64;
        if address < FLASH_BASE || end > MODEL_PARTITION as u64 {
            bail!(
                "a segment at {address:#010x}..{end:#010x} is outside the firmware's flash \
                 {FLASH_BASE:#010x}..{MODEL_PARTITION:#010x} (the model partition starts there)"
            );
        }
        image.add(address, data)?;
    }
    match image.span() {
        None => bail!("the ELF file has no loadable data"),
        Some((start, _)) if start != FLASH_BASE => {
            bail!("the image starts at {start:#010x}, not at the start of flash {FLASH_BASE:#010x}")
        }
        Some(_) => {}
    }
    if !image.has_block_marker(FLASH_BASE, BOOT_BLOCK_WINDOW) {
        bail!(
            "no IMAGE_DEF block (marker {PICOBIN_BLOCK_MARKER_START:#010x}) in the first 4 KiB: \
             the RP2350 boot ROM would not boot it (is this a Pico 2 build?)"
        );
    }
    image.fill_sectors();
    Ok(image.to_uf2(FAMILY_RP2350_ARM_S))
}

/// An input for `tools uf2`: a firmware ELF or a model blob, told apart by their magic.
pub fn uf2_for(bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.starts_with(b"\x7fELF") {
        firmware_uf2(bytes)
    } else {
        model_uf2(bytes)
    }
}

/// A parsed block (for checks and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Flags word.
    pub flags: u32,
    /// Target address.
    pub address: u32,
    /// Block number.
    pub number: u32,
    /// Number of blocks.
    pub count: u32,
    /// Family ID.
    pub family: u32,
    /// The payload (`payload size` bytes).
    pub payload: Vec<u8>,
}

/// Reads a UF2 file back, checking magic numbers, sizes and alignment.
pub fn parse(uf2: &[u8]) -> Result<Vec<Block>> {
    if !uf2.len().is_multiple_of(BLOCK_BYTES) {
        bail!(
            "{} bytes is not a whole number of 512-byte blocks",
            uf2.len()
        );
    }
    uf2.chunks_exact(BLOCK_BYTES)
        .enumerate()
        .map(|(i, b)| {
            let word =
                |k: usize| u32::from_le_bytes([b[k * 4], b[k * 4 + 1], b[k * 4 + 2], b[k * 4 + 3]]);
            if word(0) != MAGIC_START0 || word(1) != MAGIC_START1 || word(127) != MAGIC_END {
                bail!("block {i}: bad magic");
            }
            let size = word(4);
            if size > 476 {
                bail!("block {i}: payload size {size} > 476");
            }
            Ok(Block {
                flags: word(2),
                address: word(3),
                number: word(5),
                count: word(6),
                family: word(7),
                payload: b[32..32 + size as usize].to_vec(),
            })
        })
        .collect()
}
