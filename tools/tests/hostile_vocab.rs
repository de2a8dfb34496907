//! The largest unsorted vocabulary the format allows, through the built binary: `inspect`
//! loads it (the duplicate check is `O(V log V)` with the scratch `tools` gives the loader,
//! FORMAT.md §6), and a repeat at its very end is refused with a message that names the
//! vocabulary.

mod common;

use common::{blob_with_vocab, fails_with, tmp, tools, TINY};
use runtime::format::{MAX_VOCAB, PREFIX_LEN};
use runtime::{Config, Model};

#[test]
fn the_largest_unsorted_vocabulary_loads_and_a_repeat_is_refused() {
    let c = Config {
        vocab_size: MAX_VOCAB,
        d_model: 16,
        ffn_dim: 16,
        n_heads: 1,
        n_kv_heads: 1,
        ctx_len: 8,
        ..TINY
    };
    // Distinct two-byte tokens in decreasing byte order: no early exit for the check.
    let vocab: Vec<Vec<u8>> = (0..MAX_VOCAB as u16)
        .rev()
        .map(|k| k.to_be_bytes().to_vec())
        .collect();
    let good = blob_with_vocab(c, "", vocab);
    let dir = tmp("vocab");
    let path = dir.join("big-vocab.bin");
    std::fs::write(&path, &good).unwrap();
    let out = tools(&["inspect", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("65535 tokens"));

    // The last token (bytes 00 00) becomes a copy of the one before it (00 01).
    let data_offset = u32::from_le_bytes(good[16..20].try_into().unwrap()) as usize;
    let vb = Model::from_bytes(&good).unwrap().layout().entry(1).unwrap();
    let mut bad = good.clone();
    bad[data_offset + (vb.offset + vb.len) as usize - 1] = 1;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bad[PREFIX_LEN..]);
    bad[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    let err = fails_with(&tools(&["inspect", path.to_str().unwrap()]), 1);
    assert!(err.contains("vocab"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
