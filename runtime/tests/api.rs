//! Tokenizer, session memory, sampler determinism and the generator.

mod common;

use common::{random_model, TINY};
use runtime::{
    decode, encode, session_bytes, session_bytes_prefill, EncodeError, Error, Generator, Model,
    SamplerConfig, Session,
};

fn blob_with_vocab(vocab: &[&[u8]]) -> Vec<u8> {
    let mut p = random_model(
        runtime::Config {
            vocab_size: vocab.len() as u32,
            ..TINY
        },
        5,
    );
    p.vocab = vocab.iter().map(|t| t.to_vec()).collect();
    p.to_blob().unwrap()
}

#[test]
fn encode_greedy_longest_match_and_decode() {
    let blob = blob_with_vocab(&[b"a", b"b", b"ab", b"abc", "é".as_bytes(), b" "]);
    let m = Model::from_bytes(&blob).unwrap();
    let mut out = [0u16; 16];
    let n = encode(&m, "abcab ba é".as_bytes(), &mut out).unwrap();
    assert_eq!(&out[..n], &[3, 2, 5, 1, 0, 5, 4]);
    let text: Vec<u8> = out[..n]
        .iter()
        .flat_map(|t| decode(&m, *t).to_vec())
        .collect();
    assert_eq!(text, "abcab ba é".as_bytes());
    assert_eq!(decode(&m, 999), b"");
}

#[test]
fn encode_errors_name_the_character() {
    let blob = random_model(TINY, 3).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut out = [0u16; 64];
    let e = encode(&m, "To be, or ñot".as_bytes(), &mut out).unwrap_err();
    assert_eq!(
        e,
        EncodeError::Unknown {
            offset: 10,
            byte: 0xC3,
            ch: Some('ñ')
        }
    );
    assert!(e.to_string().contains("'ñ'") && e.to_string().contains("offset 10"));
    let e = encode(&m, b"ok\xFF", &mut out).unwrap_err();
    assert_eq!(
        e,
        EncodeError::Unknown {
            offset: 2,
            byte: 0xFF,
            ch: None
        }
    );
    let e = encode(&m, b"#", &mut out).unwrap_err();
    assert!(matches!(e, EncodeError::Unknown { ch: Some('#'), .. }));
    let mut small = [0u16; 3];
    assert_eq!(
        encode(&m, b"hello", &mut small).unwrap_err(),
        EncodeError::OutputFull { written: 3 }
    );
}

/// `session_bytes_prefill(MCU, 128, 64)`, as FORMAT.md gives it.
const PREFILL_64: usize = 541_232;

#[test]
fn session_memory_checks_and_any_alignment() {
    let blob = random_model(TINY, 4).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let need = m.session_bytes(TINY.ctx_len);
    assert_eq!(need, session_bytes(&TINY, TINY.ctx_len));
    // A `const` size, as firmware would compute it.
    const NEED: usize = session_bytes(&common::MCU, 128);
    const { assert!(NEED > 6 * 128 * 128 * 2) };
    assert_eq!(NEED, 255_712, "FORMAT.md's example");
    // Blocks of one token are what `Session::new` runs; bigger blocks need more.
    assert_eq!(session_bytes_prefill(&common::MCU, 128, 1), NEED);
    assert_eq!(
        session_bytes_prefill(&common::MCU, 128, 0),
        NEED,
        "block clamped to 1"
    );
    assert_eq!(
        session_bytes_prefill(&common::MCU, 128, 64),
        PREFILL_64,
        "FORMAT.md's example"
    );
    assert_eq!(
        session_bytes_prefill(&common::MCU, 128, 1000),
        session_bytes_prefill(&common::MCU, 128, 128),
        "block clamped to ctx_len"
    );

    let mut mem = vec![0u8; need + 8];
    let mut reference = None;
    for skew in 0..8 {
        let mut s = Session::new(m, TINY.ctx_len, &mut mem[skew..skew + need]).unwrap();
        let logits = s.forward(7).unwrap().to_vec();
        assert_eq!(*reference.get_or_insert(logits.clone()), logits);
    }
    assert!(matches!(
        Session::new(m, TINY.ctx_len, &mut mem[..need - 1]),
        Err(Error::BufferTooSmall { .. })
    ));
    assert!(matches!(
        Session::new(m, TINY.ctx_len + 1, &mut mem),
        Err(Error::BadContextLength { .. })
    ));
    assert!(matches!(
        Session::new(m, 0, &mut mem),
        Err(Error::BadContextLength { .. })
    ));
}

#[test]
fn forward_errors_and_reset() {
    let blob = random_model(TINY, 4).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut mem = vec![0u8; m.session_bytes(3)];
    let mut s = Session::new(m, 3, &mut mem).unwrap();
    assert_eq!(s.forward(65).unwrap_err(), Error::TokenOutOfRange(65));
    let first = s.forward(1).unwrap().to_vec();
    s.forward(2).unwrap();
    s.forward(3).unwrap();
    assert_eq!(s.forward(4).unwrap_err(), Error::ContextFull);
    s.reset();
    assert_eq!(s.position(), 0);
    assert_eq!(s.forward(1).unwrap(), &first[..]);
}

/// The first `T − P + 1` tokens (before the window slides).
fn generate(blob: &[u8], prompt: &[u8], cfg: SamplerConfig, ctx: u32) -> Vec<u8> {
    let m = Model::from_bytes(blob).unwrap();
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).unwrap();
    let mut toks = [0u16; 64];
    let n = encode(&m, prompt, &mut toks).unwrap();
    Generator::new(&mut s, &toks[..n], cfg)
        .take(ctx as usize - n + 1)
        .flat_map(|t| decode(&m, t.unwrap()).to_vec())
        .collect()
}

#[test]
fn sampling_is_deterministic_and_seeded() {
    let blob = random_model(TINY, 8).to_blob().unwrap();
    let cfg = |seed| SamplerConfig {
        temperature_milli: 1000,
        top_k: 20,
        seed,
    };
    let a = generate(&blob, b"Hi", cfg(1), 32);
    assert_eq!(a.len(), 31, "ctx 32, prompt 2: 31 tokens");
    assert_eq!(a, generate(&blob, b"Hi", cfg(1), 32));
    assert_ne!(a, generate(&blob, b"Hi", cfg(2), 32));
    let g = generate(&blob, b"Hi", SamplerConfig::GREEDY, 32);
    assert_eq!(g, generate(&blob, b"Hi", SamplerConfig::GREEDY, 32));
    // top_k = 1 at any temperature is greedy.
    let top1 = SamplerConfig {
        temperature_milli: 3000,
        top_k: 1,
        seed: 77,
    };
    assert_eq!(g, generate(&blob, b"Hi", top1, 32));
}

#[test]
fn generator_errors() {
    let blob = random_model(TINY, 8).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut mem = vec![0u8; m.session_bytes(4)];
    let mut s = Session::new(m, 4, &mut mem).unwrap();
    let mut g = Generator::new(&mut s, &[], SamplerConfig::GREEDY);
    assert_eq!(g.next_token(), Err(Error::EmptyPrompt));
    assert_eq!(g.next_token(), Ok(None));
    let mut g = Generator::new(&mut s, &[1, 2, 99], SamplerConfig::GREEDY);
    assert_eq!(g.next_token(), Err(Error::TokenOutOfRange(99)));
    assert_eq!(g.next_token(), Ok(None));
    // A full context slides instead of ending (tests/window.rs checks the policy).
    let mut g = Generator::new(&mut s, &[1, 2, 3, 4], SamplerConfig::GREEDY);
    assert!(g.next_token().unwrap().is_some());
    assert!(g.next_token().unwrap().is_some());
    assert_eq!(g.slides(), 1);
    assert_eq!(s.position(), 3, "2 kept + the pending token");
}

#[test]
fn session_records_its_tokens() {
    let blob = random_model(TINY, 8).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut mem = vec![0u8; m.session_bytes(4)];
    let mut s = Session::new(m, 4, &mut mem).unwrap();
    assert_eq!(s.tokens(), &[] as &[u16]);
    s.forward(5).unwrap();
    s.forward(64).unwrap();
    assert!(s.forward(65).is_err());
    assert_eq!(s.tokens(), &[5, 64]);
    s.reset();
    assert_eq!(s.tokens(), &[] as &[u16]);
    s.forward(9).unwrap();
    assert_eq!(s.tokens(), &[9]);
}
