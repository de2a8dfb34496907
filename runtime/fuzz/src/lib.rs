//! Shared driver of the fuzz targets: load a blob (as given, and with its CRC and length fields
//! repaired so mutations reach the parser behind the checksum), then exercise what a caller can
//! do with an accepted model.

use runtime::{decode, encode, EncodeError, Generator, Model, SamplerConfig, Session};

/// Largest session buffer a target allocates; models needing more are only loaded.
pub const MAX_SESSION_BYTES: usize = 4 << 20;
/// Positions of the session (capped at the model's `ctx_len`): small, so generation slides.
pub const MAX_CTX: u32 = 8;
/// Tokens generated per sampler configuration (more than `MAX_CTX`: the window slides).
pub const GEN_TOKENS: usize = 12;

const PREFIX_LEN: usize = 32;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// `input` with the prefix's `data_len` set to `len − data_offset` (when that fits) and the
/// CRC-32 recomputed over bytes `32..` (FORMAT.md §1). `None` when shorter than the prefix or
/// already consistent (then the input itself is the repaired blob).
pub fn repaired(input: &[u8]) -> Option<Vec<u8>> {
    if input.len() < PREFIX_LEN {
        return None;
    }
    let mut b = input.to_vec();
    let data_offset = u32::from_le_bytes([b[16], b[17], b[18], b[19]]) as usize;
    if let Some(data_len) = b.len().checked_sub(data_offset) {
        if let Ok(data_len) = u32::try_from(data_len) {
            b[20..24].copy_from_slice(&data_len.to_le_bytes());
        }
    }
    let crc = CRC32.checksum(&b[PREFIX_LEN..]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    (b != input).then_some(b)
}

/// Calls `f` on every model `input` yields: the input as is, then its repaired copy.
pub fn for_each_model(input: &[u8], mut f: impl FnMut(&Model<'_>, &[u8])) {
    if let Ok(m) = Model::from_bytes(input) {
        f(&m, input);
    }
    if let Some(fixed) = repaired(input) {
        if let Ok(m) = Model::from_bytes(&fixed) {
            f(&m, &fixed);
        }
    }
}

/// Everything a caller does with an accepted model, each step checked against its contract.
pub fn exercise(model: &Model<'_>, blob: &[u8]) {
    let c = *model.config();
    assert!(
        c.validate().is_ok(),
        "accepted model with an invalid config"
    );
    // vocab_size <= 65535 (FORMAT.md §3), so every id and the first invalid one fit a u16.
    let v = c.vocab_size;
    assert!(v <= u16::MAX as u32);
    for id in 0..v {
        let t = model
            .token_bytes(id as u16)
            .expect("token inside the vocabulary");
        assert!(!t.is_empty(), "empty token {id}");
    }
    assert!(model.token_bytes(v as u16).is_none());
    assert!(decode(model, v as u16).is_empty());

    let ctx = c.ctx_len.min(MAX_CTX);
    let need = model.session_bytes(ctx);
    if need > MAX_SESSION_BYTES {
        return;
    }
    // Session over a misaligned buffer (the start offset comes from the blob's CRC field).
    let skew = blob[24] as usize % 8;
    let mut mem = vec![0xA5u8; need + skew];
    // One byte short is refused, not a panic.
    assert!(Session::new(*model, ctx, &mut mem[skew..need + skew - 1]).is_err());
    assert!(Session::new(*model, 0, &mut mem[skew..]).is_err());
    assert!(Session::new(*model, c.ctx_len + 1, &mut mem[skew..]).is_err());
    let mut session = Session::new(*model, ctx, &mut mem[skew..]).expect("session_bytes suffice");

    // Plain forwards until the context is full, then ContextFull.
    for i in 0..ctx {
        let tok = (blob[25] as u32 + i * 7) % v;
        session.forward(tok as u16).expect("forward in range");
        assert_eq!(session.logits().len(), v as usize);
    }
    assert!(session.forward(0).is_err(), "forward past ctx_len");
    session.reset();
    assert!(
        session.forward(v as u16).is_err(),
        "token outside the vocabulary"
    );

    // Generation: greedy, then sampled with parameters taken from the CRC bytes.
    let prompt_len = 1 + blob[26] as usize % (ctx as usize + 3); // may exceed ctx: cut
    let prompt: Vec<u16> = (0..prompt_len)
        .map(|i| ((blob[27] as usize + 13 * i) % v as usize) as u16)
        .collect();
    let crc = u32::from_le_bytes([blob[24], blob[25], blob[26], blob[27]]);
    let configs = [
        SamplerConfig::GREEDY,
        SamplerConfig {
            temperature_milli: 1 + (crc >> 8) % 3000,
            top_k: crc & 0x1F,
            seed: crc as u64,
        },
    ];
    for config in configs {
        let mut gen = Generator::new(&mut session, &prompt, config);
        for _ in 0..GEN_TOKENS {
            let tok = gen.next_token().expect("generation").expect("a token");
            assert!((tok as u32) < v, "sampled token {tok} outside vocab {v}");
            assert!(!decode(model, tok).is_empty());
        }
    }
    // Prompt errors end the generator without panicking.
    let mut gen = Generator::new(&mut session, &[], SamplerConfig::GREEDY);
    assert!(gen.next_token().is_err());
    assert!(matches!(gen.next_token(), Ok(None)));
    let bad = [0, v as u16];
    let mut gen = Generator::new(&mut session, &bad, SamplerConfig::GREEDY);
    assert!(gen.next_token().is_err());
    assert!(matches!(gen.next_token(), Ok(None)));
}

/// Encodes `text` with a model and checks the result: an `Ok` decodes back to `text`, an
/// `OutputFull` wrote a prefix, an `Unknown` points inside the text.
pub fn check_encode(model: &Model<'_>, text: &[u8], out_len: usize) {
    let mut out = vec![0u16; out_len];
    match encode(model, text, &mut out) {
        Ok(n) => {
            assert!(n <= out_len);
            let back: Vec<u8> = out[..n]
                .iter()
                .flat_map(|t| decode(model, *t).iter().copied())
                .collect();
            assert_eq!(back, text, "encode/decode round trip");
        }
        Err(EncodeError::OutputFull { written }) => {
            assert_eq!(written as usize, out_len);
            let back: Vec<u8> = out
                .iter()
                .flat_map(|t| decode(model, *t).iter().copied())
                .collect();
            assert!(text.starts_with(&back), "OutputFull wrote a non-prefix");
        }
        Err(EncodeError::Unknown { offset, byte, .. }) => {
            assert!((offset as usize) < text.len());
            assert_eq!(text[offset as usize], byte);
        }
    }
}
