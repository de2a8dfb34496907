//! Batched prefill: a block of tokens through each layer at once must give exactly the logits
//! and KV cache of feeding the tokens one by one, for MHA, GQA and MQA models, any block size,
//! at every kernel level this CPU has, reading the blob's matrices or their row-tiled copy
//! (`Model::with_tiled`, which the x86-64 SIMD levels read).

mod common;

use common::{random_model, Rng, MCU, TINY};
use runtime::kernels::{self, Level};
use runtime::{session_bytes_prefill, Config, Error, Generator, Model, SamplerConfig, Session};

/// Token-by-token logits (every position) and the final KV cache, as owned vectors.
fn one_by_one(m: Model, ctx: u32, tokens: &[u16]) -> (Vec<i32>, Vec<i8>, Vec<i8>, Vec<u64>) {
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).unwrap();
    let mut logits = Vec::new();
    for &t in tokens {
        logits.extend_from_slice(s.forward(t).unwrap());
    }
    let (k, v, sc) = common::kv_cache(&s, tokens.len());
    (logits, k, v, sc)
}

fn configs() -> Vec<Config> {
    let mut v = vec![TINY];
    for (heads, kv_heads) in [(4, 4), (4, 2), (4, 1), (8, 2)] {
        v.push(Config {
            d_model: 64,
            n_heads: heads,
            n_kv_heads: kv_heads,
            ffn_dim: 96,
            ctx_len: 48,
            ..TINY
        });
    }
    v.push(Config {
        ffn_dim: 1100, // rows wider than one SIMD pass; odd padding
        d_model: 72,
        n_heads: 3,
        n_kv_heads: 1,
        ..TINY
    });
    // Gated FFNs (format v3): the gate's block product and its outputs' region.
    for c in [v[0], v[2], v[5]] {
        v.push(Config {
            ffn_gated: true,
            ..c
        });
    }
    v
}

/// `m` with its row-tiled copy in `buf`.
fn tiled<'a>(m: Model<'a>, buf: &'a mut Vec<u8>) -> Model<'a> {
    *buf = vec![0xA5; m.tiled_bytes()];
    let short = m.tiled_bytes() - 64;
    assert!(matches!(
        m.with_tiled(&mut vec![0; short]),
        Err(Error::BufferTooSmall { .. })
    ));
    let t = m.with_tiled(buf).unwrap();
    assert!(t.layer(0).wq.tiled.is_some() && m.layer(0).wq.tiled.is_none());
    t
}

fn check(c: Config, seed: u64) {
    let blob = random_model(c, seed).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut buf = Vec::new();
    let mt = tiled(m, &mut buf);
    let mut rng = Rng(seed ^ 0x5EED);
    let ctx = c.ctx_len;
    let n = 1 + rng.below(ctx as u64) as usize;
    let tokens: Vec<u16> = (0..n)
        .map(|_| rng.below(c.vocab_size as u64) as u16)
        .collect();
    let (want_logits, want_k, want_v, want_sc) = one_by_one(m, ctx, &tokens);
    let want = (
        want_logits.clone(),
        want_k.clone(),
        want_v.clone(),
        want_sc.clone(),
    );
    assert!(one_by_one(mt, ctx, &tokens) == want, "tiled {c:?}");
    let v = c.vocab_size as usize;
    for (block, m) in [(2u32, m), (3, mt), (7, m), (7, mt), (64, m), (64, mt)] {
        let mut mem = vec![0u8; session_bytes_prefill(&c, ctx, block)];
        let mut s = Session::with_block(m, ctx, block, &mut mem).unwrap();
        // `prefill`: the last logits.
        let last = s.prefill(&tokens).unwrap().to_vec();
        assert_eq!(last, want_logits[(n - 1) * v..], "{c:?} block {block}");
        let (k, vv, sc) = common::kv_cache(&s, n);
        assert!(
            k == want_k && vv == want_v && sc == want_sc,
            "KV cache {c:?} block {block}"
        );
        // `forward_block`: every position's logits, blocks of random sizes.
        s.reset();
        let mut got = Vec::new();
        let mut i = 0;
        while i < n {
            let k = (1 + rng.below(s.block() as u64) as usize).min(n - i);
            got.extend_from_slice(s.forward_block(&tokens[i..i + k]).unwrap());
            i += k;
        }
        assert_eq!(got, want_logits, "{c:?} block {block} (forward_block)");
        assert_eq!(s.tokens(), &tokens[..]);
    }
}

#[test]
fn block_passes_equal_token_by_token() {
    for (i, c) in configs().into_iter().enumerate() {
        for seed in 0..3 {
            check(c, 100 * i as u64 + seed);
        }
    }
}

#[test]
fn block_passes_equal_token_by_token_at_every_level() {
    // The shipped model's shape, at each kernel level (levels are process-wide: every level
    // returns the same bits, so concurrent tests cannot be disturbed).
    for level in kernels::supported_levels() {
        kernels::set_level(level).unwrap();
        check(MCU, 7);
    }
    kernels::force_portable();
    assert_eq!(kernels::level(), Level::Portable);
    check(MCU, 8);
    kernels::set_level(kernels::detected()).unwrap();
}

#[test]
fn every_level_gives_the_portable_logits_and_cache() {
    // The shipped model's shapes (d 128: the SIMD kernels' register-resident rows; gated FFN
    // 336: rows of three chunks), the whole context one token at a time and in one block, at
    // each kernel level against the portable kernels. (Levels are process-wide and every level
    // returns the same bits, so concurrent tests cannot make this fail, only weaker.)
    let gated = Config {
        ffn_dim: 336,
        ffn_gated: true,
        ..MCU
    };
    for (c, seed) in [(MCU, 11), (gated, 12)] {
        let blob = random_model(c, seed).to_blob().unwrap();
        let m = Model::from_bytes(&blob).unwrap();
        let mut rng = Rng(seed);
        let tokens: Vec<u16> = (0..c.ctx_len)
            .map(|_| rng.below(c.vocab_size as u64) as u16)
            .collect();
        let mut buf = Vec::new();
        let mt = tiled(m, &mut buf);
        kernels::force_portable();
        let want = one_by_one(m, c.ctx_len, &tokens);
        for level in kernels::supported_levels() {
            kernels::set_level(level).unwrap();
            for (m, name) in [(m, "blob"), (mt, "tiled")] {
                assert!(
                    one_by_one(m, c.ctx_len, &tokens) == want,
                    "{level} {name} {c:?}"
                );
                let mut mem = vec![0u8; session_bytes_prefill(&c, c.ctx_len, c.ctx_len / 2)];
                let mut s = Session::with_block(m, c.ctx_len, c.ctx_len / 2, &mut mem).unwrap();
                let last = s.prefill(&tokens).unwrap().to_vec();
                let v = c.vocab_size as usize;
                assert_eq!(
                    last,
                    want.0[want.0.len() - v..],
                    "{level} {name} {c:?} prefill"
                );
                let (k, vv, sc) = common::kv_cache(&s, tokens.len());
                assert!(
                    (k, vv, sc) == (want.1.clone(), want.2.clone(), want.3.clone()),
                    "{level} {name} {c:?} prefill KV cache"
                );
            }
        }
        kernels::set_level(kernels::detected()).unwrap();
    }
}

#[test]
fn block_errors_change_nothing() {
    let c = TINY;
    let blob = random_model(c, 3).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let mut mem = vec![0u8; session_bytes_prefill(&c, c.ctx_len, 4)];
    let mut s = Session::with_block(m, c.ctx_len, 4, &mut mem).unwrap();
    assert_eq!(s.block(), 4);
    assert!(matches!(
        s.forward_block(&[1, 2, 3, 4, 5]),
        Err(Error::BlockTooLarge {
            tokens: 5,
            block: 4
        })
    ));
    assert!(matches!(s.prefill(&[]), Err(Error::EmptyPrompt)));
    assert!(matches!(
        s.prefill(&[1, 2, c.vocab_size as u16]),
        Err(Error::TokenOutOfRange(_))
    ));
    assert!(matches!(
        s.prefill(&vec![1; c.ctx_len as usize + 1]),
        Err(Error::ContextFull)
    ));
    assert_eq!(s.position(), 0);
    s.prefill(&vec![1; c.ctx_len as usize]).unwrap();
    assert!(matches!(s.forward(1), Err(Error::ContextFull)));
    // A buffer one byte short is refused.
    let need = session_bytes_prefill(&c, c.ctx_len, 4);
    assert!(matches!(
        Session::with_block(m, c.ctx_len, 4, &mut mem[..need - 1]),
        Err(Error::BufferTooSmall { .. })
    ));
}

#[test]
fn generator_with_blocks_samples_the_same_tokens() {
    // Prompt prefill and window slides through blocks: the same tokens as one-token passes.
    let c = TINY;
    let blob = random_model(c, 5).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let cfg = SamplerConfig {
        temperature_milli: 900,
        top_k: 20,
        seed: 3,
    };
    let prompt: Vec<u16> = (0..20).map(|i| (i * 7 % 65) as u16).collect();
    let run = |block: u32| {
        let mut mem = vec![0u8; session_bytes_prefill(&c, c.ctx_len, block)];
        let mut s = Session::with_block(m, c.ctx_len, block, &mut mem).unwrap();
        let mut g = Generator::new(&mut s, &prompt, cfg);
        let toks: Vec<u16> = g.by_ref().take(100).map(Result::unwrap).collect();
        assert!(g.slides() >= 3);
        toks
    };
    let want = run(1);
    for block in [2, 5, 16, 32] {
        assert_eq!(run(block), want, "block {block}");
    }
}
