//! The generator's sliding window, against a straightforward re-implementation.

mod common;

use common::{random_model, TINY};
use runtime::{Generator, Model, Sampler, SamplerConfig, Session};

const SAMPLED: SamplerConfig = SamplerConfig {
    temperature_milli: 1500,
    top_k: 30,
    seed: 11,
};

/// `n` tokens from the generator over a session of `ctx` positions, the slide count, and the
/// tokens the session holds afterwards.
fn generate(m: Model, ctx: u32, prompt: &[u16], cfg: SamplerConfig, n: usize) -> Run {
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).unwrap();
    let mut g = Generator::new(&mut s, prompt, cfg);
    let tokens: Vec<u16> = g.by_ref().take(n).map(Result::unwrap).collect();
    let slides = g.slides() as usize;
    Run {
        tokens,
        slides,
        window: s.tokens().to_vec(),
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    tokens: Vec<u16>,
    slides: usize,
    window: Vec<u16>,
}

/// Logits after feeding `window` to a fresh session from position 0.
fn fresh_logits(m: Model, ctx: u32, window: &[u16]) -> Vec<i32> {
    let mut mem = vec![0u8; m.session_bytes(ctx)];
    let mut s = Session::new(m, ctx, &mut mem).unwrap();
    let mut logits = Vec::new();
    for &t in window {
        logits = s.forward(t).unwrap().to_vec();
    }
    logits
}

/// The policy spelled out: the context is a window of at most `ctx` tokens; a too-long prompt
/// keeps its last `keep = max(ctx/2, 1)`; when the window is full and a token must be added, it
/// keeps its last `keep` (at most `ctx - 1`) first. Every sample comes from a fresh session fed
/// the whole window; one sampler carries on throughout.
fn reference(m: Model, ctx: u32, prompt: &[u16], cfg: SamplerConfig, n: usize) -> Run {
    let t = ctx as usize;
    let keep = (t / 2).max(1);
    let mut window = if prompt.len() > t {
        prompt[prompt.len() - keep..].to_vec()
    } else {
        prompt.to_vec()
    };
    let mut sampler = Sampler::new(cfg);
    let mut tokens = Vec::new();
    let mut slides = 0;
    loop {
        let tok = sampler.sample(&fresh_logits(m, ctx, &window));
        tokens.push(tok);
        if tokens.len() == n {
            return Run {
                tokens,
                slides,
                window,
            };
        }
        if window.len() == t {
            window.drain(..t - keep.min(t - 1));
            slides += 1;
        }
        window.push(tok);
    }
}

fn prompt(len: usize) -> Vec<u16> {
    (0..len).map(|i| (i * 7 % 65) as u16).collect()
}

#[test]
fn long_generation_is_deterministic() {
    let blob = random_model(TINY, 8).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let ctx = TINY.ctx_len;
    let n = 3 * ctx as usize;
    let a = generate(m, ctx, &prompt(2), SAMPLED, n);
    assert_eq!(a.tokens.len(), n);
    // 31 tokens fill the first window, then a slide every 16.
    assert_eq!(a.slides, (n - 31).div_ceil(16));
    assert_eq!(a, generate(m, ctx, &prompt(2), SAMPLED, n));
    let other = SamplerConfig {
        seed: 12,
        ..SAMPLED
    };
    assert_ne!(a.tokens, generate(m, ctx, &prompt(2), other, n).tokens);
    // The prefix before the first slide is what a non-sliding run gives.
    assert_eq!(generate(m, ctx, &prompt(2), SAMPLED, 31).slides, 0);
}

#[test]
fn slides_match_the_reference() {
    let blob = random_model(TINY, 9).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    for ctx in [1, 2, 3, 7, 16] {
        for cfg in [SAMPLED, SamplerConfig::GREEDY] {
            for p in [1, 3] {
                let n = 3 * ctx as usize + 5;
                let want = reference(m, ctx, &prompt(p), cfg, n);
                assert!(want.slides >= 2, "ctx {ctx}: {} slides", want.slides);
                assert_eq!(
                    generate(m, ctx, &prompt(p), cfg, n),
                    want,
                    "ctx {ctx}, prompt {p}"
                );
            }
        }
    }
}

#[test]
fn prompt_longer_than_the_context() {
    let blob = random_model(TINY, 10).to_blob().unwrap();
    let m = Model::from_bytes(&blob).unwrap();
    let ctx = 16;
    let long = prompt(40);
    for n in [1, 20, 50] {
        let got = generate(m, ctx, &long, SAMPLED, n);
        assert_eq!(got, reference(m, ctx, &long, SAMPLED, n));
        // Exactly as if the prompt were its last ctx/2 tokens.
        assert_eq!(got, generate(m, ctx, &long[32..], SAMPLED, n));
    }
    // A prompt of exactly ctx tokens is fed whole; the first decode step slides.
    let exact = generate(m, ctx, &long[..16], SAMPLED, 2);
    assert_eq!(exact, reference(m, ctx, &long[..16], SAMPLED, 2));
    assert_eq!(exact.slides, 1);
    assert_eq!(exact.window.len(), 9);
}
