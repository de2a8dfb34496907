//! Byte-level BPE models (format v4): written and read back, any text encodes and decodes,
//! generation takes characters no training text held, and hostile merge tables and
//! vocabularies are refused with errors that say what is wrong.

mod common;

use common::{bpe_vocab, random_bpe_model, random_model, Rng, TINY};
use runtime::bpe::{Merges, CHUNK_MAX};
use runtime::format::{HeaderInfo, TensorEntry, TokenizerInfo, FLAG_BPE, PREFIX_LEN};
use runtime::writer::{BpeParams, ModelParams, WriteError};
use runtime::{
    decode, encode, Config, Generator, LoadError, Model, SamplerConfig, Section, Session,
    TensorKind, TernaryEncoding, TokenizerError,
};

fn fix_crc(b: &mut [u8]) {
    let c = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&b[PREFIX_LEN..]);
    b[24..28].copy_from_slice(&c.to_le_bytes());
}

fn major_and_flags(b: &[u8]) -> (u16, u32) {
    (
        u16::from_le_bytes([b[8], b[9]]),
        u32::from_le_bytes(b[28..32].try_into().unwrap()),
    )
}

/// The header of `blob` cut into its postcard items: info and table bytes, then the rest.
fn header_parts(blob: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let header_len = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let header = &blob[PREFIX_LEN..PREFIX_LEN + header_len];
    let (info, mut rest) = postcard::take_from_bytes::<HeaderInfo>(header).unwrap();
    for _ in 0..info.n_tensors {
        rest = postcard::take_from_bytes::<TensorEntry>(rest).unwrap().1;
    }
    let head = header[..header.len() - rest.len()].to_vec();
    (head, rest.to_vec())
}

/// `blob` with the header items after the tensor table replaced by `tail`: the prefix's
/// lengths, the padding and the checksum rebuilt, so only the tail is wrong (if anything).
fn with_header_tail(blob: &[u8], tail: &[u8]) -> Vec<u8> {
    let (head, _) = header_parts(blob);
    let data_offset = u32::from_le_bytes(blob[16..20].try_into().unwrap()) as usize;
    let data = &blob[data_offset..];
    let header_len = head.len() + tail.len();
    let new_offset = (PREFIX_LEN + header_len).div_ceil(64) * 64;
    let mut b = blob[..PREFIX_LEN].to_vec();
    b.extend_from_slice(&head);
    b.extend_from_slice(tail);
    b.resize(new_offset, 0);
    b.extend_from_slice(data);
    b[12..16].copy_from_slice(&(header_len as u32).to_le_bytes());
    b[16..20].copy_from_slice(&(new_offset as u32).to_le_bytes());
    fix_crc(&mut b);
    b
}

fn tokenizer_item(merges: &[u8], cpk: Option<u32>) -> Vec<u8> {
    postcard::to_allocvec(&TokenizerInfo {
        merges,
        chars_per_kilotoken: cpk,
    })
    .unwrap()
}

/// The tokens of `text` decoded back to bytes.
fn round_trip(m: &Model<'_>, text: &[u8]) -> Vec<u8> {
    let mut ids = vec![0u16; text.len()];
    let n = encode(m, text, &mut ids).unwrap();
    assert!(n <= text.len());
    ids[..n]
        .iter()
        .inspect(|&&t| assert!((t as u32) < m.config().vocab_size))
        .flat_map(|&t| decode(m, t).to_vec())
        .collect()
}

#[test]
fn a_bpe_model_is_format_v4_and_reads_back_exactly() {
    let gated = Config {
        ffn_gated: true,
        ..TINY
    };
    for (c, enc) in [
        (TINY, TernaryEncoding::Packed2),
        (gated, TernaryEncoding::Base3),
    ] {
        let p = random_bpe_model(c, 40, 3);
        let blob = p.to_blob_with([enc; 7]).unwrap();
        let (major, flags) = major_and_flags(&blob);
        assert_eq!(major, 4);
        assert_eq!(flags, FLAG_BPE | u32::from(c.ffn_gated));
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(m.version_major(), 4);
        assert_eq!(m.config().vocab_size, 296);
        let merges = m.merges().expect("a BPE model has merges");
        assert_eq!(merges.len(), 40);
        assert_eq!(
            merges.iter().collect::<Vec<_>>(),
            p.bpe.as_ref().unwrap().merges
        );
        assert_eq!(m.chars_per_kilotoken(), Some(2_500));
        // Written again from the loaded model: the same bytes.
        let again = ModelParams::from_model(&m)
            .unwrap()
            .to_blob_with(*m.layout().encodings())
            .unwrap();
        assert_eq!(again, blob);
    }
    // Without the tokenizer the same model is a character blob, as before (v1 or v3).
    let p = ModelParams {
        bpe: None,
        ..random_bpe_model(TINY, 40, 3)
    };
    let blob = p.to_blob().unwrap();
    assert_eq!(major_and_flags(&blob), (1, 0));
    assert!(Model::from_bytes(&blob).unwrap().merges().is_none());
}

#[test]
fn any_text_encodes_and_decodes_to_itself() {
    let blob = random_bpe_model(TINY, 60, 9).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut texts: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        "the theater: caf\u{e9} na\u{ef}ve \u{2014} \u{65e5}\u{672c}\u{8a9e} \u{1f600}\n\n"
            .as_bytes()
            .to_vec(),
        b"\xff\xfe\xc3 \xc3\xa9\xe2\x82 \x00".to_vec(),
    ];
    let mut rng = Rng(17);
    for len in [1, 63, 64, 65, 500] {
        texts.push((0..len).map(|_| rng.below(256) as u8).collect());
        // Random UTF-8 text from characters of every length.
        let s: String = (0..len)
            .map(|_| match rng.below(5) {
                0 => ' ',
                1 => char::from(b'a' + rng.below(26) as u8),
                2 => char::from_u32(0xe0 + rng.below(32) as u32).unwrap(),
                3 => char::from_u32(0x4e00 + rng.below(1000) as u32).unwrap(),
                _ => char::from_u32(0x1f600 + rng.below(64) as u32).unwrap(),
            })
            .collect();
        texts.push(s.into_bytes());
    }
    for text in &texts {
        assert_eq!(&round_trip(&m, text), text);
    }
    // The merges apply: " the" is one token (merges 0 to 2), "é" one (merge 5).
    let mut ids = [0u16; 8];
    let n = encode(&m, " the\u{e9}".as_bytes(), &mut ids).unwrap();
    assert_eq!(&ids[..n], &[258, 261]);
    // The model's encoding is the merge table's.
    let merges = m.merges().unwrap();
    let mut direct = [0u16; 64];
    let k = merges.encode(&texts[1], &mut direct).unwrap();
    let mut via = [0u16; 64];
    assert_eq!(encode(&m, &texts[1], &mut via).unwrap(), k);
    assert_eq!(via[..k], direct[..k]);
}

#[test]
fn a_prompt_with_unseen_characters_generates() {
    let blob = random_bpe_model(TINY, 30, 4).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let text = "\u{dc}n\u{ef}c\u{f6}d\u{e9} \u{2603} \u{1f600}".as_bytes();
    let mut ids = vec![0u16; text.len()];
    let n = encode(&m, text, &mut ids).unwrap();
    let mut mem = vec![0u8; m.session_bytes(TINY.ctx_len)];
    let mut s = Session::new(m, TINY.ctx_len, &mut mem).unwrap();
    let config = SamplerConfig {
        temperature_milli: 900,
        top_k: 0,
        seed: 3,
    };
    let out: Vec<u16> = Generator::new(&mut s, &ids[..n], config)
        .take(40)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out.len(), 40);
    assert!(out.iter().all(|&t| t < 286));
}

/// A BPE model whose merges (and so vocabulary) are `merges`: the vocabulary is built from
/// them (the byte tokens, then each merge's concatenation).
fn model_with_merges(merges: &[(u16, u16)]) -> ModelParams {
    let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for &(l, r) in merges {
        let t = [
            vocab.get(l as usize).cloned().unwrap_or_default(),
            vocab.get(r as usize).cloned().unwrap_or_default(),
        ]
        .concat();
        vocab.push(t);
    }
    let c = Config {
        vocab_size: vocab.len() as u32,
        ..TINY
    };
    ModelParams {
        vocab,
        bpe: Some(BpeParams {
            merges: merges.to_vec(),
            chars_per_kilotoken: None,
        }),
        ..random_model(c, 2)
    }
}

fn load_error(p: &ModelParams) -> LoadError {
    match p.to_blob() {
        Err(WriteError::Reload(e)) => e,
        other => panic!("expected the reload to fail, got {other:?}"),
    }
}

#[test]
fn hostile_merge_tables_are_refused() {
    let (a, b) = (u16::from(b'a'), u16::from(b'b'));
    // A merge naming itself, a later merge, an id outside the vocabulary: the vocabulary
    // strings are made up (they cannot be built), the references are refused first.
    for (merges, index, token) in [
        (vec![(a, b), (257, a)], 1, 257),
        (vec![(a, b), (a, 258), (a, a)], 1, 258),
        (vec![(a, b), (60_000, a)], 1, 60_000),
        // A cycle: token 257 is made of 258, which is made of 257.
        (vec![(a, b), (258, a), (257, b)], 1, 258),
    ] {
        let mut p = model_with_merges(&[(a, b), (a, a), (b, b)][..merges.len()]);
        p.bpe.as_mut().unwrap().merges = merges;
        let e = load_error(&p);
        assert_eq!(
            e,
            LoadError::BadTokenizer(TokenizerError::Reference { index, token })
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("merge {index} names token {token}")),
            "{msg}"
        );
    }
    // vocab_size must be 256 + merges.
    let mut p = model_with_merges(&[(a, b), (b, a)]);
    p.bpe.as_mut().unwrap().merges.pop();
    assert_eq!(
        load_error(&p),
        LoadError::BadTokenizer(TokenizerError::Count {
            vocab_size: 258,
            merges: 1
        })
    );
    // A token that is not its merge's concatenation, a byte token that is not its byte.
    let mut p = model_with_merges(&[(a, b), (b, a)]);
    p.vocab[257] = b"zzq".to_vec();
    assert_eq!(
        load_error(&p),
        LoadError::BadTokenizer(TokenizerError::Concat { index: 1 })
    );
    let mut p = model_with_merges(&[(a, b)]);
    p.vocab[65] = b"AAAA".to_vec();
    assert_eq!(
        load_error(&p),
        LoadError::BadTokenizer(TokenizerError::ByteToken { token: 65 })
    );
    // Overlong: doubling "a" six times gives 64 bytes (allowed), once more 65.
    let mut chain = vec![(a, a)];
    for k in 0..5 {
        chain.push((256 + k, 256 + k));
    }
    let p = model_with_merges(&chain);
    assert_eq!(
        Model::from_bytes(&p.to_blob().unwrap())
            .unwrap()
            .token_bytes(261)
            .map(<[u8]>::len),
        Some(CHUNK_MAX)
    );
    chain.push((261, a));
    assert_eq!(
        load_error(&model_with_merges(&chain)),
        LoadError::BadTokenizer(TokenizerError::TooLong { token: 262 })
    );
    // Two merges that make the same string: a repeated token.
    let p = model_with_merges(&[(a, b), (a, b)]);
    assert_eq!(
        load_error(&p),
        LoadError::BadSection {
            section: Section::Vocab,
            kind: TensorKind::VocabOffsets,
            layer: 0,
            offset: 257 * 4
        }
    );
}

#[test]
fn hostile_tokenizer_bytes_in_a_blob_are_refused() {
    let p = random_bpe_model(TINY, 20, 6);
    let blob = p.to_blob().unwrap();
    let table = p.bpe.as_ref().unwrap().table().unwrap();
    // The blob as written is its header with the tokenizer item at the end.
    assert_eq!(
        with_header_tail(&blob, &tokenizer_item(&table, Some(2500))),
        blob
    );
    // A merge rewritten to name itself, in place.
    let mut bad = table.clone();
    bad[4 * 7..4 * 7 + 2].copy_from_slice(&(256u16 + 7).to_le_bytes());
    assert_eq!(
        Model::from_bytes(&with_header_tail(&blob, &tokenizer_item(&bad, Some(2500)))).err(),
        Some(LoadError::BadTokenizer(TokenizerError::Reference {
            index: 7,
            token: 263
        }))
    );
    // A table that is not whole merges, an empty one, one cut short.
    for (cut, want) in [
        (
            table.len() - 1,
            TokenizerError::TableLength {
                bytes: table.len() as u32 - 1,
            },
        ),
        (
            0,
            TokenizerError::Count {
                vocab_size: 276,
                merges: 0,
            },
        ),
        (
            table.len() - 4,
            TokenizerError::Count {
                vocab_size: 276,
                merges: 19,
            },
        ),
    ] {
        let b = with_header_tail(&blob, &tokenizer_item(&table[..cut], None));
        assert_eq!(
            Model::from_bytes(&b).err(),
            Some(LoadError::BadTokenizer(want))
        );
    }
    // A truncated item, a missing item, trailing bytes after it.
    let item = tokenizer_item(&table, Some(2500));
    for tail in [
        &item[..item.len() - 1],
        &[][..],
        &[&item[..], &[0]].concat()[..],
    ] {
        assert_eq!(
            Model::from_bytes(&with_header_tail(&blob, tail)).err(),
            Some(LoadError::BadHeader)
        );
    }
    // The flag means nothing before v4; without it the item is trailing garbage.
    let relabel = |major: u16, flags: u32| {
        let mut b = blob.clone();
        b[8..10].copy_from_slice(&major.to_le_bytes());
        b[28..32].copy_from_slice(&flags.to_le_bytes());
        b
    };
    for major in 1..=3 {
        assert_eq!(
            Model::from_bytes(&relabel(major, FLAG_BPE)).err(),
            Some(LoadError::UnknownFlags { flags: FLAG_BPE })
        );
    }
    assert_eq!(
        Model::from_bytes(&relabel(4, 0)).err(),
        Some(LoadError::BadHeader)
    );
    let e = Model::from_bytes(&relabel(4, 4)).err().unwrap();
    assert_eq!(e, LoadError::UnknownFlags { flags: 4 });
    assert!(e.to_string().contains("BPE"), "{e}");
}

#[test]
fn every_table_the_writer_accepts_is_the_encoder_s() {
    // Larger random tables: the canonical vocabulary loads, its merges are the table's and
    // every merge names earlier tokens.
    for (n, seed) in [(0, 1), (1, 2), (200, 3), (1000, 4)] {
        let (vocab, bpe) = bpe_vocab(n, seed);
        assert_eq!(vocab.len(), 256 + n);
        let table = bpe.table().unwrap();
        let merges = Merges::from_bytes(&table).unwrap();
        merges.check_references().unwrap();
        let c = Config {
            vocab_size: 256 + n as u32,
            ..TINY
        };
        let p = ModelParams {
            vocab,
            bpe: Some(bpe),
            ..random_model(c, seed)
        };
        let blob = p.to_blob().unwrap();
        let m = Model::from_bytes(&blob).unwrap();
        assert_eq!(m.merges().unwrap().as_bytes(), &table[..]);
    }
}
