//! Blob format v2: base-3 matrices (5 weights per byte) load, give bit-identical logits to the
//! same model in 2-bit form (also through their row-tiled copy), are refused when malformed,
//! and a v1 blob cannot smuggle them in.

mod common;

use common::{random_model, MCU, TINY};
use runtime::format::{TernaryEncoding, PREFIX_LEN};
use runtime::kernels;
use runtime::schema::MatrixEncodings;
use runtime::{LoadError, Model, Section, Session, TensorKind};

const ALL_BASE3: MatrixEncodings = [TernaryEncoding::Base3; runtime::schema::MATRICES_PER_LAYER];

fn fix_crc(b: &mut [u8]) {
    let c = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&b[PREFIX_LEN..]);
    b[24..28].copy_from_slice(&c.to_le_bytes());
}

fn logits(m: Model<'_>, tokens: &[u16], block: u32) -> Vec<Vec<i32>> {
    let ctx = 16;
    let mut mem = vec![0u8; runtime::session_bytes_prefill(m.config(), ctx, block)];
    let mut s = Session::with_block(m, ctx, block, &mut mem).unwrap();
    let mut out = Vec::new();
    for chunk in tokens.chunks(block as usize) {
        let l = s.forward_block(chunk).unwrap();
        out.extend(
            l.chunks(m.config().vocab_size as usize)
                .map(<[i32]>::to_vec),
        );
    }
    out
}

#[test]
fn base3_and_mixed_blobs_match_the_2bit_blob_bit_for_bit() {
    // Plain, and gated (format v3: one token through base-3 up and gate shares their tables).
    let gated = runtime::Config {
        ffn_gated: true,
        ..TINY
    };
    for (c, major_2bit, major_base3) in [(TINY, 1, 2), (gated, 3, 3)] {
        let p = random_model(c, 21);
        let v1 = p.to_blob().unwrap();
        let tokens = [3u16, 17, 9, 60, 2, 2, 41, 0, 5];
        let m1 = Model::from_bytes(&v1).unwrap();
        assert_eq!(m1.version_major(), major_2bit);
        let want = logits(m1, &tokens, 1);
        let mut mixed = MatrixEncodings::default();
        mixed[1] = TernaryEncoding::Base3; // wk
        mixed[5] = TernaryEncoding::Base3; // w_down
        mixed[6] = TernaryEncoding::Base3; // w_gate (up stays 2-bit: no shared tables)
        let n = runtime::schema::matrices_per_layer(&c);
        for enc in [ALL_BASE3, mixed] {
            let blob = p.to_blob_with(enc).unwrap();
            let m = Model::from_bytes(&blob).unwrap();
            assert_eq!(m.version_major(), major_base3);
            // A plain FFN holds no gate: its (last) entry is not part of the layout.
            assert_eq!(m.layout().encodings()[..n], enc[..n]);
            assert!(blob.len() < v1.len());
            for block in [1, 4] {
                assert_eq!(
                    logits(m, &tokens, block),
                    want,
                    "{c:?} {enc:?} block {block}"
                );
            }
            // The row-tiled copy of base-3 and 2-bit matrices alike, at every level (the
            // x86-64 SIMD levels read it; levels are process-wide, every level the same bits).
            let mut buf = vec![0u8; m.tiled_bytes()];
            let mt = m.with_tiled(&mut buf).unwrap();
            for level in kernels::supported_levels() {
                kernels::set_level(level).unwrap();
                for block in [1, 4] {
                    assert_eq!(logits(mt, &tokens, block), want, "{level} tiled {enc:?}");
                }
            }
            kernels::set_level(kernels::detected()).unwrap();
        }
    }
}

#[test]
fn base3_rows_are_ceil_cols_over_5_bytes() {
    let p = random_model(MCU, 3);
    let blob = p.to_blob_with(ALL_BASE3).unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let wq = m.layout().layer_entry(0, TensorKind::Wq).unwrap();
    assert_eq!(wq.len, 128 * 26);
    let down = m.layout().layer_entry(0, TensorKind::WDown).unwrap();
    assert_eq!(down.len, 128 * 103);
    // 1.6 bits per weight plus the partial last byte of each row: under 1.7.
    let weights: u64 = m
        .layout()
        .entries()
        .filter(|e| TernaryEncoding::of(e.format).is_some())
        .map(|e| e.rows as u64 * e.cols as u64)
        .sum();
    let bytes: u64 = m
        .layout()
        .entries()
        .filter(|e| TernaryEncoding::of(e.format).is_some())
        .map(|e| e.len as u64)
        .sum();
    assert!((bytes * 8) as f64 / (weights as f64) < 1.63);
}

/// `blob` with byte `k` of layer 0's `kind` section set to `v`, checksum fixed.
fn patch(blob: &[u8], kind: TensorKind, k: usize, v: u8) -> Vec<u8> {
    let m = Model::from_bytes(blob).unwrap();
    let data_offset = u32::from_le_bytes(blob[16..20].try_into().unwrap()) as usize;
    let e = m.layout().layer_entry(0, kind).unwrap();
    let mut b = blob.to_vec();
    b[data_offset + e.offset as usize + k] = v;
    fix_crc(&mut b);
    b
}

#[test]
fn malformed_base3_bytes_are_refused() {
    let blob = random_model(TINY, 5).to_blob_with(ALL_BASE3).unwrap();
    // TINY: d 32, so Wq rows are 7 bytes; byte b holds columns b + 7k, k < 5.
    let bad = |b: &[u8]| Model::from_bytes(b).err();
    let wq = Model::from_bytes(&blob)
        .unwrap()
        .layout()
        .layer_entry(0, TensorKind::Wq)
        .unwrap();
    let off = |k: usize| match bad(&patch(&blob, TensorKind::Wq, k, 243)) {
        Some(LoadError::BadSection {
            section: Section::Ternary,
            kind: TensorKind::Wq,
            layer: 0,
            offset,
        }) => offset as usize,
        e => panic!("byte 243 at {k}: {e:?}"),
    };
    assert_eq!(off(0), 0);
    assert_eq!(off(8), 8);
    let _ = wq;
    // Column 32 + 7·0.. : byte 4 holds columns 4, 11, 18, 25 and 32 (past cols = 32): its
    // digit 4 must be 0, so 81 (digit 4 = 1) is refused, 80 (digits 0-3 all 2) is fine.
    assert!(matches!(
        bad(&patch(&blob, TensorKind::Wq, 4, 81)),
        Some(LoadError::BadSection {
            section: Section::Ternary,
            kind: TensorKind::Wq,
            layer: 0,
            offset: 4
        })
    ));
    assert_eq!(bad(&patch(&blob, TensorKind::Wq, 4, 80)), None);
    // Byte 3 holds columns 3, 10, 17, 24, 31: all five digits are weights.
    assert_eq!(bad(&patch(&blob, TensorKind::Wq, 3, 242)), None);
}

#[test]
fn a_v1_blob_cannot_hold_base3_matrices_and_v5_is_refused_with_advice() {
    let blob = random_model(TINY, 6).to_blob_with(ALL_BASE3).unwrap();
    let mut b = blob.clone();
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    fix_crc(&mut b);
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(matches!(e, LoadError::BadTensorTable { .. }), "{e:?}");
    let mut b = blob.clone();
    b[8..10].copy_from_slice(&5u16.to_le_bytes());
    fix_crc(&mut b);
    let e = Model::from_bytes(&b).unwrap_err();
    assert_eq!(e, LoadError::UnsupportedVersion { major: 5, minor: 0 });
    assert!(e.to_string().contains("tools pack"), "{e}");
    // A v2 blob whose matrices are all 2-bit is read too (the writer makes it v1).
    let v1 = random_model(TINY, 6).to_blob().unwrap();
    let mut b = v1.clone();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_crc(&mut b);
    assert!(Model::from_bytes(&b).is_ok());
}

/// Plain and gated FFNs (the gate is the v3 blob's seventh matrix).
#[test]
fn a_loaded_model_writes_back_byte_for_byte_in_either_encoding() {
    use runtime::writer::ModelParams;
    let gated = runtime::Config {
        ffn_gated: true,
        ffn_dim: 336,
        ..MCU
    };
    for c in [MCU, gated] {
        for enc in [MatrixEncodings::default(), ALL_BASE3] {
            let blob = random_model(c, 8).to_blob_with(enc).unwrap();
            let m = Model::from_bytes(&blob).unwrap();
            let again = ModelParams::from_model(&m)
                .unwrap()
                .to_blob_with(enc)
                .unwrap();
            assert!(again == blob, "{c:?} {enc:?}: round trip changed the blob");
        }
    }
    // v1 -> v2 -> v1 through two loads.
    let v1 = random_model(TINY, 9).to_blob().unwrap();
    let v2 = ModelParams::from_model(&Model::from_bytes(&v1).unwrap())
        .unwrap()
        .to_blob_with(ALL_BASE3)
        .unwrap();
    let back = ModelParams::from_model(&Model::from_bytes(&v2).unwrap())
        .unwrap()
        .to_blob()
        .unwrap();
    assert!(back == v1);
}
