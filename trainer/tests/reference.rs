//! The quantized evaluation mode against a plain scalar implementation of `docs/MODEL.md`
//! (the function the integer runtime approximates), written from the exported tensors
//! `weights.safetensors` holds. This pins the export names and orientations, the RoPE pairing,
//! the GQA head mapping, the tied int8 head and every quantization point.

use burn::backend::Flex;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use std::collections::HashMap;
use trainer::model::{Model, QuantMode, Tables};
use trainer::weights::export_tensors;
use trainer::ModelConfig;

type B = Flex;

/// Adds N(0, 0.3) noise to every parameter, so gains differ from 1 and matrices are not tiny.
struct Noise;
impl ModuleMapper<B> for Noise {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        p.map(|t| {
            let n = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.3), &t.device());
            t + n
        })
    }
}

fn absmax_q(v: &[f32]) -> Vec<f32> {
    let s = v.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-5) / 127.0;
    v.iter()
        .map(|x| (x / s).round_ties_even().clamp(-128.0, 127.0) * s)
        .collect()
}

fn ternary_q(w: &[f32]) -> Vec<f32> {
    let g = (w.iter().map(|x| x.abs()).sum::<f32>() / w.len() as f32).max(1e-5);
    w.iter()
        .map(|x| (x / g).round_ties_even().clamp(-1.0, 1.0) * g)
        .collect()
}

fn rmsnorm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = (ms + eps).sqrt();
    x.iter().zip(g).map(|(v, g)| v / r * g).collect()
}

/// `y = x @ W` with `W` row-major `[d_in, d_out]`.
fn matvec(x: &[f32], w: &[f32], d_out: usize) -> Vec<f32> {
    let mut y = vec![0f32; d_out];
    for (i, xi) in x.iter().enumerate() {
        for j in 0..d_out {
            y[j] += xi * w[i * d_out + j];
        }
    }
    y
}

fn rope(x: &mut [f32], heads: usize, hd: usize, pos: usize, theta: f64) {
    for h in 0..heads {
        for i in 0..hd / 2 {
            let a = pos as f64 * theta.powf(-2.0 * i as f64 / hd as f64);
            let (c, s) = (a.cos() as f32, a.sin() as f32);
            let (x0, x1) = (x[h * hd + 2 * i], x[h * hd + 2 * i + 1]);
            x[h * hd + 2 * i] = x0 * c - x1 * s;
            x[h * hd + 2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

/// Logits `[T][V]` of `tokens` by the letter of docs/MODEL.md.
fn reference(cfg: &ModelConfig, w: &HashMap<String, Vec<f32>>, tokens: &[usize]) -> Vec<Vec<f32>> {
    let (d, hn, kvn, f) = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim);
    let hd = d / hn;
    let eps = cfg.norm_eps as f32;
    let e = &w["embed"];
    let eq: Vec<f32> = e.chunks(d).flat_map(absmax_q).collect();
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| eq[t * d..(t + 1) * d].to_vec())
        .collect();
    for l in 0..cfg.n_layers {
        let g = |n: &str| &w[&format!("layers.{l}.{n}")];
        let (wq, wk, wv) = (ternary_q(g("wq")), ternary_q(g("wk")), ternary_q(g("wv")));
        let (wo, wu, wd) = (
            ternary_q(g("wo")),
            ternary_q(g("w_up")),
            ternary_q(g("w_down")),
        );
        let per_head_q = |v: Vec<f32>, n: usize| -> Vec<f32> {
            v.chunks(hd).take(n).flat_map(absmax_q).collect()
        };
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (t, x) in xs.iter().enumerate() {
            let hq = absmax_q(&rmsnorm(x, g("attn_norm"), eps));
            let mut q = matvec(&hq, &wq, hn * hd);
            let mut k = matvec(&hq, &wk, kvn * hd);
            let v = matvec(&hq, &wv, kvn * hd);
            rope(&mut q, hn, hd, t, cfg.rope_theta);
            rope(&mut k, kvn, hd, t, cfg.rope_theta);
            qs.push(per_head_q(q, hn));
            ks.push(per_head_q(k, kvn));
            vs.push(per_head_q(v, kvn));
        }
        for t in 0..xs.len() {
            let mut a = vec![0f32; d];
            for h in 0..hn {
                let kv = h / (hn / kvn);
                let q = &qs[t][h * hd..(h + 1) * hd];
                let sc: Vec<f32> = (0..=t)
                    .map(|s| {
                        let k = &ks[s][kv * hd..(kv + 1) * hd];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() / (hd as f32).sqrt()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let ex: Vec<f32> = sc.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = ex.iter().sum();
                for (s, p) in ex.iter().enumerate() {
                    for c in 0..hd {
                        a[h * hd + c] += p / z * vs[s][kv * hd + c];
                    }
                }
            }
            let o = matvec(&absmax_q(&rmsnorm(&a, g("attn_sub_norm"), eps)), &wo, d);
            for (x, o) in xs[t].iter_mut().zip(o) {
                *x += o;
            }
            let hq = absmax_q(&rmsnorm(&xs[t], g("ffn_norm"), eps));
            let u: Vec<f32> = matvec(&hq, &wu, f)
                .iter()
                .map(|v| v.max(0.0) * v.max(0.0))
                .collect();
            let o = matvec(&absmax_q(&rmsnorm(&u, g("ffn_sub_norm"), eps)), &wd, d);
            for (x, o) in xs[t].iter_mut().zip(o) {
                *x += o;
            }
        }
    }
    xs.iter()
        .map(|x| {
            let hq = absmax_q(&rmsnorm(x, &w["final_norm"], eps));
            eq.chunks(d)
                .map(|row| hq.iter().zip(row).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect()
}

#[test]
fn eval_mode_matches_scalar_reference() {
    let cfg = ModelConfig {
        vocab_size: 11,
        d_model: 16,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        ffn_dim: 24,
        ffn_gated: false,
        ctx_len: 12,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
    };
    let dev = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&dev, 5);
    let model = Model::<B>::new(&cfg, &dev, 5).map(&mut Noise);
    let tensors: HashMap<String, Vec<f32>> = export_tensors(&model)
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect();
    assert_eq!(tensors.len(), 2 + 10 * cfg.n_layers);

    let tokens: Vec<usize> = (0..cfg.ctx_len)
        .map(|i| (i * 7 + 3) % cfg.vocab_size)
        .collect();
    let expect = reference(&cfg, &tensors, &tokens);
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let x = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, cfg.ctx_len]), &dev);
    let got = model
        .forward(x, &Tables::new(&cfg, &dev), QuantMode::EVAL)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let mut max_diff = 0f32;
    let mut scale = 0f32;
    for t in 0..cfg.ctx_len {
        for v in 0..cfg.vocab_size {
            let (a, b) = (got[t * cfg.vocab_size + v], expect[t][v]);
            max_diff = max_diff.max((a - b).abs());
            scale = scale.max(b.abs());
        }
    }
    // Summation order differs (gemm vs loops), which can flip a rare int8 rounding; anything
    // structural (pairing, head mapping, orientation) would give differences of order `scale`.
    assert!(
        max_diff < 0.02 * scale.max(1.0),
        "max |Δlogit| {max_diff} (logit scale {scale})"
    );
}
