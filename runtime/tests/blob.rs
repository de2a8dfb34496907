//! Blob validation: every corruption is an `Err`, never a panic; a blob that still loads after
//! a corruption with a recomputed checksum runs without panicking.

mod common;

use common::{random_model, TINY};
use proptest::prelude::*;
use runtime::format::{MAGIC, PREFIX_LEN};
use runtime::{Config, LoadError, Model, Session};
use std::sync::OnceLock;

fn tiny_blob() -> &'static [u8] {
    static BLOB: OnceLock<Vec<u8>> = OnceLock::new();
    BLOB.get_or_init(|| random_model(TINY, 42).to_blob().unwrap())
}

fn crc(b: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(b)
}

/// Recomputes the checksum so corruption reaches the checks behind it.
fn fix_crc(b: &mut [u8]) {
    if b.len() >= PREFIX_LEN {
        let c = crc(&b[PREFIX_LEN..]);
        b[24..28].copy_from_slice(&c.to_le_bytes());
    }
}

/// Loads and, if that succeeds, runs a few tokens: must never panic.
fn load_and_run(b: &[u8]) -> Result<(), LoadError> {
    let m = Model::from_bytes(b)?;
    let ctx = m.config().ctx_len.min(4);
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).unwrap();
    for t in 0..ctx {
        s.forward((t % m.config().vocab_size) as u16).unwrap();
    }
    for id in 0..=m.config().vocab_size as u16 {
        let _ = m.token_bytes(id);
    }
    Ok(())
}

#[test]
fn valid_blob_loads_with_metadata() {
    let m = Model::from_bytes(tiny_blob()).unwrap();
    assert_eq!(*m.config(), TINY);
    assert_eq!(m.val_loss_micro_nats(), Some(1_234_567));
    assert_eq!(m.metadata(), "random model, seed 42");
    assert_eq!(m.token_bytes(0), Some(&b"\n"[..]));
    assert_eq!(m.token_bytes(64), Some(&b"z"[..]));
    assert_eq!(m.token_bytes(65), None);
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let b = tiny_blob();
    for n in 0..b.len() {
        assert!(Model::from_bytes(&b[..n]).is_err(), "truncated to {n}");
    }
    let mut longer = b.to_vec();
    longer.push(0);
    assert_eq!(
        Model::from_bytes(&longer).unwrap_err(),
        LoadError::BadLength
    );
}

#[test]
fn magic_version_checksum() {
    let b = tiny_blob();
    let mut x = b.to_vec();
    x[0] ^= 1;
    assert_eq!(Model::from_bytes(&x).unwrap_err(), LoadError::BadMagic);
    assert_eq!(&b[..8], &MAGIC);

    let mut x = b.to_vec();
    x[8..10].copy_from_slice(&5u16.to_le_bytes());
    assert_eq!(
        Model::from_bytes(&x).unwrap_err(),
        LoadError::UnsupportedVersion { major: 5, minor: 0 }
    );
    assert!(Model::from_bytes(&x)
        .unwrap_err()
        .to_string()
        .contains("5.0"));
    x[8..10].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(
        Model::from_bytes(&x).unwrap_err(),
        LoadError::UnsupportedVersion { major: 0, minor: 0 }
    );

    let mut x = b.to_vec();
    let last = x.len() - 1;
    x[last] ^= 0x40;
    assert!(matches!(
        Model::from_bytes(&x).unwrap_err(),
        LoadError::Checksum { .. }
    ));
    let mut x = b.to_vec();
    x[24] ^= 1;
    assert!(matches!(
        Model::from_bytes(&x).unwrap_err(),
        LoadError::Checksum { .. }
    ));
}

#[test]
fn inflated_lengths() {
    let b = tiny_blob();
    for field in [12usize, 16, 20] {
        for delta in [1u32, 16, 64, 0x1000_0000, u32::MAX] {
            let mut x = b.to_vec();
            let v = u32::from_le_bytes(x[field..field + 4].try_into().unwrap());
            x[field..field + 4].copy_from_slice(&v.wrapping_add(delta).to_le_bytes());
            fix_crc(&mut x);
            assert!(Model::from_bytes(&x).is_err(), "field {field} + {delta}");
        }
    }
}

#[test]
fn bad_ternary_code_and_config_are_refused() {
    // A model whose first wq byte gets the invalid code 0b10.
    let b = tiny_blob();
    let m = Model::from_bytes(b).unwrap();
    let data_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let e = (0..)
        .map_while(|i| m.layout().entry(i))
        .find(|e| e.kind == runtime::format::TensorKind::Wq)
        .unwrap();
    let mut x = b.to_vec();
    x[data_offset + e.offset as usize] = 0b10;
    fix_crc(&mut x);
    assert!(matches!(
        Model::from_bytes(&x).unwrap_err(),
        LoadError::BadSection {
            section: runtime::Section::Ternary,
            ..
        }
    ));

    // The writer refuses invalid dimensions.
    let mut p = random_model(TINY, 1);
    p.config = Config {
        n_kv_heads: 3,
        ..TINY
    };
    assert!(p.to_blob().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn flipped_bytes_never_panic(pos in any::<prop::sample::Index>(), bits in 1u8..=255, fix in any::<bool>()) {
        let mut x = tiny_blob().to_vec();
        let i = pos.index(x.len());
        x[i] ^= bits;
        if fix {
            fix_crc(&mut x);
        } else if i >= PREFIX_LEN || (24..28).contains(&i) {
            prop_assert!(Model::from_bytes(&x).is_err());
        }
        let _ = load_and_run(&x);
    }

    #[test]
    fn header_corruption_never_panics(pos in 0usize..256, byte in any::<u8>()) {
        let mut x = tiny_blob().to_vec();
        let i = PREFIX_LEN + pos;
        x[i] = byte;
        fix_crc(&mut x);
        let _ = load_and_run(&x);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), keep in 0usize..64) {
        let mut x = tiny_blob()[..keep.min(PREFIX_LEN)].to_vec();
        x.extend(bytes);
        fix_crc(&mut x);
        prop_assert!(load_and_run(&x).is_err());
    }
}
