//! `tools uf2` against the UF2 specification (github.com/microsoft/uf2, README "File format")
//! and the RP2350 boot ROM's rules (datasheet §5.5; picotool's RP2350-E10 block), byte by byte.

use tools::uf2::{self, Image};

/// Little-endian words → bytes, written out independently of the writer.
fn le(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn one_block_is_exactly_what_the_specification_says() {
    let mut image = Image::default();
    image.add(0x1010_0010, b"abc").unwrap();
    let file = image.to_uf2(0xE48B_FF59);
    assert_eq!(file.len(), 2 * 512);
    let block = &file[512..];
    // Header: magic 0, magic 1, flags (familyID present), address (page-aligned), payload
    // size, block number, number of blocks, family ID.
    assert_eq!(
        block[..32],
        le(&[
            0x0A32_4655,
            0x9E5D_5157,
            0x0000_2000,
            0x1010_0000,
            256,
            0,
            1,
            0xE48B_FF59
        ])[..]
    );
    // Payload: zeros around the three bytes at offset 0x10 of the page; data area padded
    // with zeros to 476 bytes; final magic.
    let mut payload = vec![0u8; 476];
    payload[0x10..0x13].copy_from_slice(b"abc");
    assert_eq!(block[32..508], payload[..]);
    assert_eq!(block[508..], le(&[0x0AB1_6F30])[..]);
}

#[test]
fn the_e10_block_is_picotools() {
    let file = Image::default().to_uf2(uf2::FAMILY_RP2350_ARM_S);
    let block = &file[..512];
    assert_eq!(
        block[..32],
        le(&[
            0x0A32_4655,
            0x9E5D_5157,
            0x0000_2000 | 0x0000_8000,
            0x10FF_FF00,
            256,
            0,
            2,
            0xE48B_FF57
        ])[..]
    );
    assert!(block[32..288].iter().all(|&b| b == 0xEF));
    assert_eq!(block[288..292], le(&[0x9957_E304])[..]);
    assert!(block[292..508].iter().all(|&b| b == 0));
    assert_eq!(block[508..], le(&[0x0AB1_6F30])[..]);
}

#[test]
fn a_model_lands_in_the_partition_page_by_page() {
    let blob = std::fs::read(tools::blob::shipped_model()).unwrap();
    let file = uf2::model_uf2(&blob).unwrap();
    let blocks = uf2::parse(&file).unwrap();
    let pages = blob.len().div_ceil(256);
    assert_eq!(blocks.len(), pages + 1);
    assert_eq!(blocks[0].family, uf2::FAMILY_ABSOLUTE);
    let mut back = Vec::new();
    for (i, b) in blocks[1..].iter().enumerate() {
        assert_eq!(b.flags, 0x2000);
        assert_eq!(b.family, 0xE48B_FF59);
        assert_eq!(b.number, i as u32);
        assert_eq!(b.count, pages as u32);
        assert_eq!(b.address, 0x1010_0000 + 256 * i as u32);
        assert_eq!(b.payload.len(), 256);
        back.extend_from_slice(&b.payload);
    }
    // The last page is padded with zeros.
    assert!(back[blob.len()..].iter().all(|&b| b == 0));
    back.truncate(blob.len());
    assert_eq!(back, blob);
    // The partition holds everything from 0x10100000 to the end of the 4 MiB flash.
    assert_eq!(
        uf2::MODEL_PARTITION + uf2::MODEL_PARTITION_BYTES,
        0x1040_0000
    );
}

#[test]
fn a_broken_model_is_refused() {
    let mut blob = std::fs::read(tools::blob::shipped_model()).unwrap();
    blob.pop();
    let e = uf2::model_uf2(&blob).unwrap_err().to_string();
    assert!(e.starts_with("not a valid model"), "{e}");
}

#[test]
fn sectors_are_filled_below_the_last_page_and_overlaps_refused() {
    let mut image = Image::default();
    image.add(0x1000_0000, &[1; 10]).unwrap();
    image.add(0x1000_1100, &[2; 10]).unwrap();
    assert!(image.add(0x1000_0009, &[3; 2]).is_err());
    assert!(image.add(0xFFFF_FFFF, &[3; 2]).is_err());
    image.fill_sectors();
    let blocks = uf2::parse(&image.to_uf2(uf2::FAMILY_RP2350_ARM_S)).unwrap();
    let addresses: Vec<u32> = blocks[1..].iter().map(|b| b.address).collect();
    let mut want: Vec<u32> = (0..16).map(|i| 0x1000_0000 + 256 * i).collect();
    want.extend([0x1000_1000, 0x1000_1100]);
    assert_eq!(addresses, want);
    assert!(blocks.iter().skip(1).all(|b| b.count == 18));
}

/// A minimal little-endian ELF32 file with the given (p_type, vaddr, paddr, data, memsz).
fn elf(segments: &[(u32, u32, u32, &[u8], u32)]) -> Vec<u8> {
    let phoff = 52u32;
    let mut data_off = phoff + 32 * segments.len() as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0");
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&40u16.to_le_bytes()); // EM_ARM
    out.extend(le(&[1, 0x1000_0101, phoff, 0, 0x0500_0400]));
    for h in [52u16, 32, segments.len() as u16, 40, 0, 0] {
        out.extend_from_slice(&h.to_le_bytes());
    }
    for &(ty, vaddr, paddr, data, memsz) in segments {
        out.extend(le(&[
            ty,
            data_off,
            vaddr,
            paddr,
            data.len() as u32,
            memsz,
            5,
            4,
        ]));
        data_off += data.len() as u32;
    }
    for s in segments {
        out.extend_from_slice(s.3);
    }
    out
}

#[test]
fn a_firmware_elf_is_written_at_its_load_addresses() {
    let mut text = vec![0xAB; 300];
    // An IMAGE_DEF block starts with this word, somewhere in the first 4 KiB.
    text[0x110..0x114].copy_from_slice(&0xFFFF_DED3u32.to_le_bytes());
    let file = elf(&[
        (1, 0x1000_0000, 0x1000_0000, &text, 300),
        // .data: runs from RAM, loaded from flash (its physical address).
        (1, 0x2000_0000, 0x1000_012C, b"DATA", 4),
        // .bss: nothing to write.
        (1, 0x2000_0004, 0x2000_0004, b"", 64),
        // Not PT_LOAD.
        (4, 0, 0, b"note", 4),
    ]);
    let blocks = uf2::parse(&uf2::uf2_for(&file).unwrap()).unwrap();
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[1].address, 0x1000_0000);
    assert_eq!(blocks[2].address, 0x1000_0100);
    assert_eq!(&blocks[2].payload[..0x2C], &text[256..]);
    assert_eq!(&blocks[2].payload[0x2C..0x30], b"DATA");
    assert!(blocks[2].payload[0x30..].iter().all(|&b| b == 0));

    // Without the boot block the boot ROM would not boot the image: refused.
    let no_block = elf(&[(1, 0x1000_0000, 0x1000_0000, &[0xAB; 300], 300)]);
    let e = uf2::uf2_for(&no_block).unwrap_err().to_string();
    assert!(e.contains("no IMAGE_DEF block"), "{e}");

    // Firmware reaching into the model partition is refused.
    let big = elf(&[
        (1, 0x1000_0000, 0x1000_0000, &text, 300),
        (1, 0x100F_FF00, 0x100F_FF00, &text, 300),
    ]);
    let e = uf2::uf2_for(&big).unwrap_err().to_string();
    assert!(e.contains("model partition"), "{e}");
}

#[test]
fn the_firmware_reads_the_partition_where_the_uf2_writes_it() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/src/partition.rs"),
    )
    .unwrap();
    assert!(
        source.contains("pub const ADDRESS: usize = 0x1010_0000;"),
        "firmware/src/partition.rs must use the address of tools::uf2::MODEL_PARTITION"
    );
    assert_eq!(uf2::MODEL_PARTITION, 0x1010_0000);
}
