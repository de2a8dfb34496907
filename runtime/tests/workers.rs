//! The split pass (`Session::with_workers`): each token's work cut between two cores must give
//! exactly the one-core pass's logits and KV cache, on one core (`OneCore`: the halves one
//! after the other) and on two OS threads (`Threads`), for MHA, GQA and MQA models, plain and
//! gated FFNs, 2-bit, base-3 and mixed matrices, token by token and in prefill blocks, with and
//! without a row copy (`RowCopy`), with shared or per-core lookup tables, at every kernel level.

mod common;

use common::{random_model, Rng, MCU, TINY};
use runtime::format::TernaryEncoding;
use runtime::kernels::{self, Level};
use runtime::schema::MatrixEncodings;
use runtime::workers::{OneCore, RowCopy, Threads, Workers};
use runtime::{session_bytes_workers, Config, Generator, Model, SamplerConfig, Session};

/// Two threads, but a small stack on the other one (as on a Pico 2's core 1): matrices whose
/// kernels keep their own tables stay on this core.
struct SmallStack;

impl Workers for SmallStack {
    fn cores(&self) -> usize {
        2
    }
    fn join(&self, here: &mut dyn FnMut(), there: &mut (dyn FnMut() + Send)) {
        Threads.join(here, there)
    }
    fn other_stack_bytes(&self) -> usize {
        4096
    }
}

/// Logits of every position and the KV cache of positions `< n`.
type Trace = (Vec<i32>, Vec<i8>, Vec<i8>, Vec<u64>);

/// The one-core pass, token by token.
fn one_core(m: Model, ctx: u32, tokens: &[u16]) -> Trace {
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).unwrap();
    let mut logits = Vec::new();
    for &t in tokens {
        logits.extend_from_slice(s.forward(t).unwrap());
    }
    let (k, v, sc) = common::kv_cache(&s, tokens.len());
    (logits, k, v, sc)
}

/// How a split session is set up.
#[derive(Clone, Copy, Debug)]
struct Setup {
    block: u32,
    /// Bytes of RAM for the row copy (`None`: no copy).
    copy: Option<usize>,
    shared_tables: bool,
}

/// The split pass in blocks of random sizes up to `setup.block`.
fn split(
    m: Model,
    ctx: u32,
    tokens: &[u16],
    workers: &dyn Workers,
    setup: Setup,
    seed: u64,
) -> Trace {
    let mut mem = vec![0u8; session_bytes_workers(m.config(), ctx, setup.block)];
    let mut ram = vec![0u8; setup.copy.unwrap_or(0)];
    let mut s = Session::with_workers(m, ctx, setup.block, workers, &mut mem).unwrap();
    assert_eq!(s.cores() as usize, workers.cores());
    if setup.copy.is_some() {
        let have = ram.len();
        let (rows, used) = RowCopy::place(&m, &mut ram);
        assert!(used <= have);
        assert!(s.set_row_copy(rows));
    }
    s.set_shared_tables(setup.shared_tables);
    let mut rng = Rng(seed);
    let mut logits = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let k = (1 + rng.below(s.block() as u64) as usize).min(tokens.len() - i);
        logits.extend_from_slice(s.forward_block(&tokens[i..i + k]).unwrap());
        i += k;
    }
    let (k, v, sc) = common::kv_cache(&s, tokens.len());
    (logits, k, v, sc)
}

fn check(c: Config, enc: Option<MatrixEncodings>, seed: u64, setups: &[Setup]) {
    let p = random_model(c, seed);
    let blob = match enc {
        Some(e) => p.to_blob_with(e).unwrap(),
        None => p.to_blob().unwrap(),
    };
    let m = Model::from_bytes(&blob).unwrap();
    let mut rng = Rng(seed ^ 0xC0DE);
    let ctx = c.ctx_len;
    let n = 1 + rng.below(ctx as u64) as usize;
    let tokens: Vec<u16> = (0..n)
        .map(|_| rng.below(c.vocab_size as u64) as u16)
        .collect();
    let want = one_core(m, ctx, &tokens);
    for &setup in setups {
        for workers in [&OneCore as &dyn Workers, &Threads, &SmallStack] {
            let got = split(m, ctx, &tokens, workers, setup, seed);
            assert!(
                got.0 == want.0,
                "logits differ: {c:?} {enc:?} {setup:?} on {} cores",
                workers.cores()
            );
            assert!(
                got.1 == want.1 && got.2 == want.2 && got.3 == want.3,
                "KV cache differs: {c:?} {enc:?} {setup:?} on {} cores",
                workers.cores()
            );
        }
    }
}

const BASE3: MatrixEncodings = [TernaryEncoding::Base3; runtime::schema::MATRICES_PER_LAYER];

fn mixed() -> MatrixEncodings {
    let mut e = MatrixEncodings::default();
    e[1] = TernaryEncoding::Base3; // wk: q, k, v cannot share tables
    e[5] = TernaryEncoding::Base3; // w_down
    e[6] = TernaryEncoding::Base3; // w_gate (up stays 2-bit)
    e
}

fn setups(c: &Config, m: Option<usize>) -> Vec<Setup> {
    let whole = m.unwrap_or(1 << 20);
    let mut v = Vec::new();
    for block in [1, 5] {
        for copy in [None, Some(0), Some(whole / 3), Some(whole)] {
            v.push(Setup {
                block,
                copy,
                shared_tables: true,
            });
        }
    }
    v.push(Setup {
        block: 3,
        copy: Some(whole / 2),
        shared_tables: false,
    });
    let _ = c;
    v
}

/// Bytes of every block matrix and the embedding of `c` (for row-copy sizes).
fn weight_bytes(c: Config, enc: Option<MatrixEncodings>) -> usize {
    let p = random_model(c, 1);
    let blob = match enc {
        Some(e) => p.to_blob_with(e).unwrap(),
        None => p.to_blob().unwrap(),
    };
    let m = Model::from_bytes(&blob).unwrap();
    m.hot_range().len() + (c.vocab_size as usize) * runtime::format::int8_row_bytes(c.d_model)
}

#[test]
fn the_split_pass_equals_the_one_core_pass() {
    let mut configs = vec![TINY];
    for (heads, kv_heads) in [(4, 4), (4, 2), (4, 1), (8, 2), (3, 3)] {
        configs.push(Config {
            d_model: if heads == 3 { 72 } else { 64 },
            n_heads: heads,
            n_kv_heads: kv_heads,
            ffn_dim: 96,
            ctx_len: 24,
            ..TINY
        });
    }
    // Base-3 rows longer than one table chunk (d 256: 52 bytes, F 200: 40 bytes).
    configs.push(Config {
        d_model: 256,
        n_heads: 4,
        n_kv_heads: 2,
        ffn_dim: 200,
        ctx_len: 12,
        ..TINY
    });
    let gated: Vec<Config> = configs
        .iter()
        .map(|c| Config {
            ffn_gated: true,
            ..*c
        })
        .collect();
    configs.extend(gated);
    for (i, c) in configs.into_iter().enumerate() {
        for (j, enc) in [None, Some(BASE3), Some(mixed())].into_iter().enumerate() {
            let bytes = weight_bytes(c, enc);
            check(c, enc, 10 * i as u64 + j as u64, &setups(&c, Some(bytes)));
        }
    }
}

#[test]
fn the_split_pass_equals_the_one_core_pass_at_every_level() {
    // The shipped model's shape (base 3, gated FFN 336: rows of three table chunks), the whole
    // context, at each kernel level (levels are process-wide; every level gives the same bits).
    let gated = Config {
        ffn_dim: 336,
        ffn_gated: true,
        ..MCU
    };
    let bytes = weight_bytes(gated, Some(BASE3));
    let setups = [
        Setup {
            block: 1,
            copy: Some(bytes * 2 / 3),
            shared_tables: true,
        },
        Setup {
            block: 16,
            copy: None,
            shared_tables: true,
        },
    ];
    for level in kernels::supported_levels() {
        kernels::set_level(level).unwrap();
        check(gated, Some(BASE3), 40, &setups);
        check(MCU, None, 41, &setups[1..]);
    }
    kernels::force_portable();
    assert_eq!(kernels::level(), Level::Portable);
    check(gated, Some(BASE3), 42, &setups);
    kernels::set_level(kernels::detected()).unwrap();
}

#[test]
fn cores_can_be_switched_between_tokens() {
    let c = Config {
        ffn_gated: true,
        ..TINY
    };
    let blob = random_model(c, 7).to_blob_with(BASE3).unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let tokens: Vec<u16> = (0..c.ctx_len as u16).map(|i| i * 11 % 65).collect();
    let want = one_core(m, c.ctx_len, &tokens);
    let mut mem = vec![0u8; session_bytes_workers(&c, c.ctx_len, 1)];
    let mut s = Session::with_workers(m, c.ctx_len, 1, &Threads, &mut mem).unwrap();
    assert_eq!((s.cores(), s.max_cores()), (2, 2));
    assert_eq!(s.set_cores(3), Err(2));
    assert_eq!(s.set_cores(0), Err(2));
    let mut logits = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        s.set_cores(1 + (i % 3 == 0) as u32).unwrap();
        logits.extend_from_slice(s.forward(t).unwrap());
    }
    assert_eq!(logits, want.0);
    // A session without workers has one core, and says so.
    let mut mem = vec![0u8; m.session_bytes(c.ctx_len)];
    let mut plain = Session::new(m, c.ctx_len, &mut mem).unwrap();
    assert_eq!((plain.cores(), plain.max_cores()), (1, 1));
    assert_eq!(plain.set_cores(2), Err(1));
    assert_eq!(plain.set_cores(1), Ok(()));
}

#[test]
fn a_short_buffer_is_refused() {
    let c = TINY;
    let blob = random_model(c, 3).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let need = session_bytes_workers(&c, c.ctx_len, 2);
    assert!(need > runtime::session_bytes_prefill(&c, c.ctx_len, 2));
    let mut mem = vec![0u8; need];
    assert!(matches!(
        Session::with_workers(m, c.ctx_len, 2, &OneCore, &mut mem[..need - 1]),
        Err(runtime::Error::BufferTooSmall { .. })
    ));
    assert!(Session::with_workers(m, c.ctx_len, 2, &OneCore, &mut mem).is_ok());
    assert!(matches!(
        Session::with_workers(m, c.ctx_len + 1, 2, &OneCore, &mut mem),
        Err(runtime::Error::BadContextLength { .. })
    ));
}

#[test]
fn generation_with_slides_samples_the_same_tokens() {
    let c = Config {
        ffn_gated: true,
        ..TINY
    };
    let blob = random_model(c, 5).to_blob_with(BASE3).unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let cfg = SamplerConfig {
        temperature_milli: 900,
        top_k: 20,
        seed: 3,
    };
    let prompt: Vec<u16> = (0..20).map(|i| (i * 7 % 65) as u16).collect();
    let mut mem = vec![0u8; m.session_bytes(c.ctx_len)];
    let mut s = Session::new(m, c.ctx_len, &mut mem).unwrap();
    let want: Vec<u16> = Generator::new(&mut s, &prompt, cfg)
        .take(100)
        .map(Result::unwrap)
        .collect();
    let mut mem = vec![0u8; session_bytes_workers(&c, c.ctx_len, 4)];
    let mut ram = vec![0u8; 3000];
    let mut s = Session::with_workers(m, c.ctx_len, 4, &Threads, &mut mem).unwrap();
    let (rows, _) = RowCopy::place(&m, &mut ram);
    assert!(rows.fraction() > 0);
    s.set_row_copy(rows);
    let mut g = Generator::new(&mut s, &prompt, cfg);
    let got: Vec<u16> = g.by_ref().take(100).map(Result::unwrap).collect();
    assert!(g.slides() >= 3);
    assert_eq!(got, want);
}
