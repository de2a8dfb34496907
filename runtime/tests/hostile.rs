//! Hostile blobs: a vocabulary with a repeated token (also the largest unsorted vocabulary the
//! format allows, checked within its stated bound), non-zero prefix flags and a wrong tensor
//! count are refused with errors that say so.

mod common;

use common::{random_model, vocab, TINY};
use runtime::format::{HeaderInfo, PREFIX_LEN};
use runtime::{Config, LoadError, Model, Section, TensorKind};

fn crc(b: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(b)
}

fn fix_crc(b: &mut [u8]) {
    let c = crc(&b[PREFIX_LEN..]);
    b[24..28].copy_from_slice(&c.to_le_bytes());
}

/// `blob` with byte `k` of the `VocabBytes` section set to `v`, checksum fixed.
fn patch_vocab_byte(blob: &[u8], k: usize, v: u8) -> Vec<u8> {
    let m = Model::from_bytes(blob).unwrap();
    let data_offset = u32::from_le_bytes(blob[16..20].try_into().unwrap()) as usize;
    let vb = m.layout().entry(1).unwrap();
    let mut b = blob.to_vec();
    b[data_offset + vb.offset as usize + k] = v;
    fix_crc(&mut b);
    b
}

#[test]
fn a_repeated_token_is_refused() {
    // TINY's tokens are one byte each: token k is byte k of VocabBytes.
    let blob = random_model(TINY, 7).to_blob().unwrap();
    let token3 = Model::from_bytes(&blob).unwrap().token_bytes(3).unwrap()[0];
    let b = patch_vocab_byte(&blob, 9, token3);
    assert_eq!(
        Model::from_bytes(&b).err(),
        Some(LoadError::BadSection {
            section: Section::Vocab,
            kind: TensorKind::VocabOffsets,
            layer: 0,
            offset: 9 * 4
        })
    );
    // Unsorted (token 0 moved last in byte order) with a repeat far from the original.
    let b = patch_vocab_byte(&blob, 0, b'~');
    let b = patch_vocab_byte(&b, 60, b'~');
    assert_eq!(
        Model::from_bytes(&b).err(),
        Some(LoadError::BadSection {
            section: Section::Vocab,
            kind: TensorKind::VocabOffsets,
            layer: 0,
            offset: 60 * 4
        })
    );
    // The writer checks its blob by loading it: it refuses a repeated token too.
    let mut p = random_model(TINY, 7);
    p.vocab[9] = p.vocab[3].clone();
    let e = p.to_blob().unwrap_err();
    assert!(format!("{e:?}").contains("Vocab"), "{e:?}");
}

#[test]
fn distinct_tokens_load_sorted_or_not() {
    // Tokens past the 65th are not in byte order: the pairwise path.
    let c = Config {
        vocab_size: 90,
        ..TINY
    };
    let p = random_model(c, 3);
    assert_eq!(p.vocab, vocab(90));
    Model::from_bytes(&p.to_blob().unwrap()).unwrap();
    // Equal prefixes and different lengths are distinct tokens.
    let mut p = random_model(TINY, 3);
    p.vocab[5] = b"aa".to_vec();
    p.vocab[6] = b"aaa".to_vec();
    Model::from_bytes(&p.to_blob().unwrap()).unwrap();
}

/// The largest vocabulary the format allows, in decreasing byte order (nothing in the
/// duplicate check ends early): it loads, and a repeat at its very end is found. The number of
/// comparisons is bounded in `runtime/src/blob/load.rs`'s tests (FORMAT.md §6, "Cost"); this is
/// the whole loader on such a blob, through both entry points.
#[test]
fn the_largest_unsorted_vocabulary_loads_and_its_last_repeat_is_found() {
    let c = Config {
        vocab_size: runtime::format::MAX_VOCAB,
        d_model: 16,
        n_layers: 1,
        n_heads: 1,
        n_kv_heads: 1,
        ffn_dim: 16,
        ctx_len: 8,
        ..TINY
    };
    let mut p = random_model(c, 11);
    p.vocab.reverse();
    let blob = p.to_blob().unwrap();
    let mut scratch = vec![0u8; 2 * 65536];
    Model::from_bytes(&blob).unwrap();
    Model::from_bytes_in(&blob, &mut scratch).unwrap();
    // Token 65534 (one byte, sorted first) becomes a copy of token 65533: both one byte long.
    let (a, b) = (p.vocab[65533][0], p.vocab[65534][0]);
    let vb = Model::from_bytes(&blob).unwrap().layout().entry(1).unwrap();
    let k = p.vocab.iter().map(Vec::len).sum::<usize>() - 1;
    assert_eq!(vb.len as usize, k + 1);
    let repeated = patch_vocab_byte(&blob, k, a);
    assert_ne!(a, b);
    let want = Some(LoadError::BadSection {
        section: Section::Vocab,
        kind: TensorKind::VocabOffsets,
        layer: 0,
        offset: 65534 * 4,
    });
    assert_eq!(Model::from_bytes(&repeated).err(), want);
    assert_eq!(Model::from_bytes_in(&repeated, &mut scratch).err(), want);
}

#[test]
fn non_zero_flags_are_named() {
    let mut b = random_model(TINY, 1).to_blob().unwrap();
    b[28..32].copy_from_slice(&4u32.to_le_bytes());
    fix_crc(&mut b);
    let e = Model::from_bytes(&b).err().unwrap();
    assert_eq!(e, LoadError::UnknownFlags { flags: 4 });
    assert!(e.to_string().contains("flags 0x00000004"), "{e}");
}

/// `blob` with prefix field `major` and `flags` set, checksum fixed (the CRC does not cover the
/// prefix, but keep it honest anyway).
fn relabel(blob: &[u8], major: u16, flags: u32) -> Vec<u8> {
    let mut b = blob.to_vec();
    b[8..10].copy_from_slice(&major.to_le_bytes());
    b[28..32].copy_from_slice(&flags.to_le_bytes());
    fix_crc(&mut b);
    b
}

#[test]
fn the_gated_ffn_flag_is_format_v3_and_must_match_the_table() {
    let gated = Config {
        ffn_gated: true,
        ..TINY
    };
    let g = random_model(gated, 5).to_blob().unwrap();
    assert_eq!(u16::from_le_bytes([g[8], g[9]]), 3, "a gated blob is v3");
    assert_eq!(u32::from_le_bytes(g[28..32].try_into().unwrap()), 1);
    let m = Model::from_bytes(&g).unwrap();
    assert!(m.config().ffn_gated && m.version_major() == 3);
    let p = random_model(TINY, 5).to_blob().unwrap();
    assert_eq!(
        u16::from_le_bytes([p[8], p[9]]),
        1,
        "a plain 2-bit blob stays v1"
    );
    assert!(!Model::from_bytes(&p).unwrap().config().ffn_gated);
    // The flag means nothing before v3.
    for major in [1, 2] {
        assert_eq!(
            Model::from_bytes(&relabel(&p, major, 1)).err(),
            Some(LoadError::UnknownFlags { flags: 1 })
        );
    }
    // v3 defines bit 0 only.
    let e = Model::from_bytes(&relabel(&g, 3, 3)).err().unwrap();
    assert_eq!(e, LoadError::UnknownFlags { flags: 3 });
    assert!(e.to_string().contains("gated FFN"), "{e}");
    // The flag and the table must agree: a plain table with the flag, a gated one without.
    let n = |c: Config| 6 + 11 * c.n_layers as usize + c.ffn_gated as usize * c.n_layers as usize;
    assert_eq!(
        Model::from_bytes(&relabel(&p, 3, 1)).err(),
        Some(LoadError::TensorCount {
            found: n(TINY) as u32,
            expected: n(gated) as u32
        })
    );
    assert_eq!(
        Model::from_bytes(&relabel(&g, 3, 0)).err(),
        Some(LoadError::TensorCount {
            found: n(gated) as u32,
            expected: n(TINY) as u32
        })
    );
}

#[test]
fn a_wrong_tensor_count_says_both_counts() {
    let mut b = random_model(TINY, 1).to_blob().unwrap();
    let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let header = &b[PREFIX_LEN..PREFIX_LEN + header_len];
    let (info, rest) = postcard::take_from_bytes::<HeaderInfo>(header).unwrap();
    assert!(info.n_tensors < 127, "one varint byte");
    // n_tensors is the last field of HeaderInfo: its single varint byte ends the info.
    let at = PREFIX_LEN + header_len - rest.len() - 1;
    assert_eq!(b[at] as u32, info.n_tensors);
    let expected = info.n_tensors;
    b[at] += 1;
    fix_crc(&mut b);
    let e = Model::from_bytes(&b).err().unwrap();
    assert_eq!(
        e,
        LoadError::TensorCount {
            found: expected + 1,
            expected
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}", expected + 1)) && msg.contains(&expected.to_string()),
        "{msg}"
    );
}
