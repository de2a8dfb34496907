//! Test support (floats allowed here): random integer models, the f64 reference forward pass,
//! real -> fixed-point conversions (the ones `tools pack` must do, see FORMAT.md).
#![allow(dead_code)]

use runtime::format::TensorKind as K;
use runtime::schema::{self, Source};
use runtime::writer::{BpeParams, LayerParams, LayerTensor, ModelParams, TernaryParams};
use runtime::{Config, Dyadic};

/// The tests' random stream ([`runtime::SplitMix64`]), with real-valued draws ([`Real`]).
pub use runtime::SplitMix64 as Rng;

/// Real-valued draws from the tests' random stream (floats are test-only).
pub trait Real {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64;
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64;
}

impl Real for Rng {
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Real -> Dyadic: the one conversion `tools pack` uses ([`Dyadic::from_ieee754`]).
pub fn to_dyadic(x: f64) -> Dyadic {
    Dyadic::from_ieee754(x.to_bits()).unwrap_or_else(|| panic!("{x} is not a storable scale"))
}

pub fn dyadic_value(d: Dyadic) -> f64 {
    d.mant as f64 * 2f64.powi(d.exp)
}

/// Real gain -> Q15.16.
pub fn gain_q16(g: f64) -> i32 {
    (g * 65536.0).round() as i32
}

/// The RoPE table `[T][hd/2][(cos, sin)]` in Q1.30 for rope_theta.
pub fn rope_table(ctx: u32, hd: u32, theta: f64) -> Vec<i32> {
    let mut t = Vec::new();
    for pos in 0..ctx {
        for i in 0..hd / 2 {
            let freq = theta.powf(-2.0 * i as f64 / hd as f64);
            let a = pos as f64 * freq;
            t.push((a.cos() * 1073741824.0).round() as i32);
            t.push((a.sin() * 1073741824.0).round() as i32);
        }
    }
    t
}

/// The character set of tiny-Shakespeare (65 tokens, sorted), then more printable ASCII, then
/// two-byte tokens `k` (big-endian `u16`, up to the format's 65535 tokens in all).
pub fn vocab(n: u32) -> Vec<Vec<u8>> {
    let mut chars: Vec<u8> = b"\n !$&',-.3:;?".to_vec();
    chars.extend(b'A'..=b'Z');
    chars.extend(b'a'..=b'z');
    for c in 0x21u8..0x7F {
        if !chars.contains(&c) {
            chars.push(c);
        }
    }
    let mut tokens: Vec<Vec<u8>> = chars.iter().map(|c| vec![*c]).collect();
    let two = (0..=u16::MAX).map(|k| k.to_be_bytes().to_vec());
    tokens.extend(two.take((n as usize).saturating_sub(tokens.len())));
    tokens.truncate(n as usize);
    tokens
}

/// A byte-level BPE tokenizer with `n` merges: the merges a BPE trainer would find first on
/// English text (` t`, `he`, ` the`, …), then random pairs of earlier tokens (each new string
/// distinct), drawn from `seed`. Returns the canonical vocabulary and the merges.
pub fn bpe_vocab(n: usize, seed: u64) -> (Vec<Vec<u8>>, BpeParams) {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut merges: Vec<(u16, u16)> = Vec::new();
    let push = |tokens: &mut Vec<Vec<u8>>, merges: &mut Vec<(u16, u16)>, l: u16, r: u16| {
        let mut t = tokens[l as usize].clone();
        t.extend_from_slice(&tokens[r as usize]);
        if t.len() <= runtime::bpe::CHUNK_MAX && !tokens.contains(&t) {
            tokens.push(t);
            merges.push((l, r));
        }
    };
    let id = |tokens: &Vec<Vec<u8>>, s: &[u8]| tokens.iter().position(|t| t == s).unwrap() as u16;
    for (a, b) in [
        (&b" "[..], &b"t"[..]),
        (b"h", b"e"),
        (b" t", b"he"),
        (b"o", b"u"),
        (b" ", b"a"),
        (b"\xc3", b"\xa9"),
        (b"e", b"r"),
        (b"\n", b"\n"),
    ] {
        if merges.len() < n {
            let (l, r) = (id(&tokens, a), id(&tokens, b));
            push(&mut tokens, &mut merges, l, r);
        }
    }
    let mut rng = Rng(seed);
    while merges.len() < n {
        // Letters, space, newline and the earlier merges: strings a text can contain.
        let pick = |rng: &mut Rng, tokens: &Vec<Vec<u8>>| -> u16 {
            let k = rng.below(3 + (tokens.len() - 256) as u64);
            match k {
                0 => b' ' as u16,
                1 => b'\n' as u16,
                2 => (b'a' + rng.below(26) as u8) as u16,
                m => 256 + (m - 3) as u16,
            }
        };
        let (l, r) = (pick(&mut rng, &tokens), pick(&mut rng, &tokens));
        push(&mut tokens, &mut merges, l, r);
    }
    (
        tokens,
        BpeParams {
            merges,
            chars_per_kilotoken: Some(2_500),
        },
    )
}

/// A random model with a byte-level BPE vocabulary of `256 + merges` tokens ([`bpe_vocab`]).
pub fn random_bpe_model(c: Config, merges: usize, seed: u64) -> ModelParams {
    let c = Config {
        vocab_size: 256 + merges as u32,
        ..c
    };
    let (vocab, bpe) = bpe_vocab(merges, seed);
    ModelParams {
        vocab,
        bpe: Some(bpe),
        ..random_model(c, seed)
    }
}

pub const TINY: Config = Config {
    vocab_size: 65,
    d_model: 32,
    n_layers: 2,
    n_heads: 2,
    n_kv_heads: 2,
    ffn_dim: 64,
    ctx_len: 32,
    rope_theta: 10000,
    ffn_gated: false,
};

pub const MCU: Config = Config {
    vocab_size: 65,
    d_model: 128,
    n_layers: 6,
    n_heads: 4,
    n_kv_heads: 4,
    ffn_dim: 512,
    ctx_len: 128,
    rope_theta: 10000,
    ffn_gated: false,
};

fn ternary(rng: &mut Rng, rows: u32, cols: u32) -> TernaryParams {
    let weights: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
    // Output of order one for inputs of rms one: γ ≈ 1/sqrt(2K/3), times a random factor.
    let gamma = (1.5 / cols as f64).sqrt() * (0.6 + 0.8 * rng.unit());
    TernaryParams {
        weights,
        gamma: to_dyadic(gamma),
    }
}

fn gains(rng: &mut Rng, n: u32) -> Vec<i32> {
    (0..n).map(|_| gain_q16(1.0 + 0.3 * rng.normal())).collect()
}

/// A random model with every parameter already quantized as MODEL.md says.
pub fn random_model(c: Config, seed: u64) -> ModelParams {
    let mut rng = Rng(seed);
    let d = c.d_model;
    let mut embedding = Vec::new();
    let mut embedding_scales = Vec::new();
    for _ in 0..c.vocab_size {
        let row: Vec<f64> = (0..d).map(|_| rng.normal() * 0.7).collect();
        let e = row.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-5) / 127.0;
        let ed = to_dyadic(e);
        let e = dyadic_value(ed);
        embedding.extend(
            row.iter()
                .map(|v| (v / e).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        embedding_scales.push(ed);
    }
    // Parameters drawn in schema order.
    let layers = (0..c.n_layers)
        .map(|_| LayerParams {
            tensors: schema::layer_specs(&c)
                .iter()
                .filter_map(|s| {
                    let (rows, cols) = (s.rows.eval(&c, 0), s.cols.eval(&c, 0));
                    let values = match s.source {
                        Source::Gain { .. } => LayerTensor::Gains(gains(&mut rng, cols)),
                        Source::Ternary { .. } => {
                            LayerTensor::Ternary(ternary(&mut rng, rows, cols))
                        }
                        _ => return None,
                    };
                    Some((s.kind, values))
                })
                .collect(),
        })
        .collect();
    ModelParams {
        config: c,
        norm_eps: to_dyadic(1e-5),
        val_loss_micro_nats: Some(1_234_567),
        metadata: format!("random model, seed {seed}"),
        vocab: vocab(c.vocab_size),
        bpe: None,
        embedding,
        embedding_scales,
        rope: rope_table(c.ctx_len, c.head_dim(), c.rope_theta as f64),
        final_norm: gains(&mut rng, d),
        layers,
    }
}

// ---------------------------------------------------------------------------------------------
// f64 reference forward pass (docs/MODEL.md) on the same quantized parameters, with exact
// RoPE angles, real rsqrt / exp and unrounded attention probabilities.

/// Gains `k` of a layer.
fn g(lp: &LayerParams, k: K) -> &[i32] {
    lp.gains(k).expect("gains in the model")
}

/// Ternary matrix `k` of a layer.
fn m(lp: &LayerParams, k: K) -> &TernaryParams {
    lp.ternary(k).expect("matrix in the model")
}

/// Q2 / Q5: absmax int8 with the 1e-5 floor and round-half-even; returns the effective vector.
fn quant(h: &[f64]) -> (Vec<f64>, f64) {
    let s = h.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-5) / 127.0;
    let q = h
        .iter()
        .map(|v| (v / s).round_ties_even().clamp(-128.0, 127.0))
        .collect();
    (q, s)
}

fn rmsnorm(x: &[f64], g: &[i32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(g)
        .map(|(v, g)| v * r * (*g as f64 / 65536.0))
        .collect()
}

fn bitlinear(m: &TernaryParams, h: &[f64]) -> Vec<f64> {
    let (hq, s) = quant(h);
    let k = h.len();
    let gamma = dyadic_value(m.gamma);
    m.weights
        .chunks(k)
        .map(|row| {
            let dot: f64 = row.iter().zip(&hq).map(|(w, x)| *w as f64 * x).sum();
            dot * s * gamma
        })
        .collect()
}

/// BitLinear output as exact integer dot products and the common real factor `s·γ`.
fn bitlinear_int(m: &TernaryParams, h: &[f64]) -> (Vec<f64>, f64) {
    let (hq, s) = quant(h);
    let k = h.len();
    let dots = m
        .weights
        .chunks(k)
        .map(|row| row.iter().zip(&hq).map(|(w, x)| *w as f64 * x).sum())
        .collect();
    (dots, s * dyadic_value(m.gamma))
}

/// Q5 of `v = c · dots` per head, computed on the integers so exact ties (k + 1/2) stay exact.
fn quant_heads_int((dots, c): &(Vec<f64>, f64), hd: usize) -> Vec<f64> {
    dots.chunks(hd)
        .flat_map(|h| {
            let m = h.iter().fold(0f64, |m, v| m.max(v.abs()));
            let s = (m * c).max(1e-5) / 127.0;
            h.iter().map(move |v| {
                let q = if m == 0.0 {
                    0.0
                } else {
                    (127.0 * v / m).round_ties_even()
                };
                q * s
            })
        })
        .collect()
}

fn rope(v: &mut [f64], pos: usize, hd: usize, theta: f64) {
    for head in v.chunks_mut(hd) {
        for i in 0..hd / 2 {
            let a = pos as f64 * theta.powf(-2.0 * i as f64 / hd as f64);
            let (s, c) = a.sin_cos();
            let (x0, x1) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = x0 * c - x1 * s;
            head[2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

fn quant_heads(v: &[f64], hd: usize) -> Vec<f64> {
    v.chunks(hd)
        .flat_map(|h| {
            let (q, s) = quant(h);
            q.into_iter().map(move |x| x * s)
        })
        .collect()
}

/// Logits (nats) after each token of `tokens`.
pub fn reference_logits(p: &ModelParams, tokens: &[u16]) -> Vec<Vec<f64>> {
    let c = p.config;
    let (d, hd) = (c.d_model as usize, c.head_dim() as usize);
    let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
    let eps = dyadic_value(p.norm_eps);
    let theta = c.rope_theta as f64;
    let mut kcache: Vec<Vec<Vec<f64>>> = vec![Vec::new(); c.n_layers as usize];
    let mut vcache: Vec<Vec<Vec<f64>>> = vec![Vec::new(); c.n_layers as usize];
    let mut out = Vec::new();
    for (t, &tok) in tokens.iter().enumerate() {
        let tok = tok as usize;
        let e = dyadic_value(p.embedding_scales[tok]);
        let mut x: Vec<f64> = p.embedding[tok * d..(tok + 1) * d]
            .iter()
            .map(|q| *q as f64 * e)
            .collect();
        for (l, lp) in p.layers.iter().enumerate() {
            let h = rmsnorm(&x, g(lp, K::AttnNorm), eps);
            // Position 0 rotates by angle 0: quantize the integer dot products directly so
            // exact ties stay exact (f64 noise would break them at random).
            let qk = |m: &TernaryParams| {
                if t == 0 {
                    quant_heads_int(&bitlinear_int(m, &h), hd)
                } else {
                    let mut v = bitlinear(m, &h);
                    rope(&mut v, t, hd, theta);
                    quant_heads(&v, hd)
                }
            };
            let q = qk(m(lp, K::Wq));
            kcache[l].push(qk(m(lp, K::Wk)));
            let v = bitlinear_int(m(lp, K::Wv), &h);
            vcache[l].push(quant_heads_int(&v, hd));
            let mut a = vec![0f64; d];
            for h in 0..nh {
                let g = h / (nh / nkv);
                let qh = &q[h * hd..(h + 1) * hd];
                let scores: Vec<f64> = kcache[l]
                    .iter()
                    .map(|k| {
                        let kh = &k[g * hd..(g + 1) * hd];
                        qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = w.iter().sum();
                for (ws, vs) in w.iter().zip(&vcache[l]) {
                    for i in 0..hd {
                        a[h * hd + i] += ws / sum * vs[g * hd + i];
                    }
                }
            }
            let o = bitlinear(m(lp, K::Wo), &rmsnorm(&a, g(lp, K::AttnSubNorm), eps));
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let hn = rmsnorm(&x, g(lp, K::FfnNorm), eps);
            let up = bitlinear(m(lp, K::WUp), &hn);
            let u: Vec<f64> = match lp.ternary(K::WGate) {
                // gated: relu(gate)² ⊙ up
                Some(gate) => bitlinear(gate, &hn)
                    .into_iter()
                    .zip(up)
                    .map(|(g, u)| g.max(0.0).powi(2) * u)
                    .collect(),
                None => up.into_iter().map(|u| u.max(0.0).powi(2)).collect(),
            };
            let y = bitlinear(m(lp, K::WDown), &rmsnorm(&u, g(lp, K::FfnSubNorm), eps));
            x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
        }
        let (hq, s) = quant(&rmsnorm(&x, &p.final_norm, eps));
        let logits = (0..c.vocab_size as usize)
            .map(|v| {
                let ev = dyadic_value(p.embedding_scales[v]);
                let dot: f64 = p.embedding[v * d..(v + 1) * d]
                    .iter()
                    .zip(&hq)
                    .map(|(e, h)| *e as f64 * h)
                    .sum();
                s * ev * dot
            })
            .collect();
        out.push(logits);
    }
    out
}

/// Index of the largest value (first on ties).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// The cache entries of positions `< n` (later ones are stale), scales as `mant | exp << 32`.
pub fn kv_cache(s: &runtime::Session, n: usize) -> (Vec<i8>, Vec<i8>, Vec<u64>) {
    let c = *s.model().config();
    let (t, nkv, hd) = (
        s.ctx_len() as usize,
        c.n_kv_heads as usize,
        c.head_dim() as usize,
    );
    let kv = s.kv_cache();
    let (mut k, mut v, mut sc) = (Vec::new(), Vec::new(), Vec::new());
    for l in 0..c.n_layers as usize {
        let e = l * t * nkv;
        k.extend_from_slice(&kv.keys[e * hd..(e + n * nkv) * hd]);
        v.extend_from_slice(&kv.values[e * hd..(e + n * nkv) * hd]);
        for d in kv.key_scales[e..e + n * nkv]
            .iter()
            .chain(&kv.value_scales[e..e + n * nkv])
        {
            sc.push(d.mant as u64 | (d.exp as u32 as u64) << 32);
        }
    }
    (k, v, sc)
}
