//! The BitNet b1.58 transformer of `docs/MODEL.md` as burn modules.
//!
//! One forward function serves training and evaluation: [`QuantMode`] says whether each
//! quantization point (Q1–Q5) is applied exactly (quantized evaluation), through the
//! straight-through estimator (training) or not at all.

pub mod eval;

use crate::config::ModelConfig;
use crate::data::rng::SplitMix64;
use crate::fused::attention::{AttnShape, Rope};
use crate::fused::quant::{ste, ternary, QuantApply};
use crate::fused::{act_quant, FusedOps};
use burn::module::{Module, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use runtime::format::TensorKind;
use std::marker::PhantomData;

/// How each quantization point of `docs/MODEL.md` is applied in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantMode {
    /// Q1: ternary BitLinear weights
    pub weights: QuantApply,
    /// Q2: int8 BitLinear inputs (and the head's input, Q4)
    pub acts: QuantApply,
    /// Q3: int8 embedding rows (lookup and tied head, Q4)
    pub embed: QuantApply,
    /// Q5: int8 q, k, v per token and head
    pub qkv: QuantApply,
    /// residual-branch dropout probability (training only; not a quantization point, but part of
    /// how the forward pass runs)
    pub dropout: f64,
}

impl QuantMode {
    /// The quantized evaluation mode: Q1–Q5 exactly, the function the integer runtime computes.
    pub const EVAL: Self = Self {
        weights: QuantApply::Exact,
        acts: QuantApply::Exact,
        embed: QuantApply::Exact,
        qkv: QuantApply::Exact,
        dropout: 0.0,
    };

    /// No quantizer at all: the float model (the warm-start steps of `float_steps`).
    pub const FLOAT: Self = Self {
        weights: QuantApply::Off,
        acts: QuantApply::Off,
        embed: QuantApply::Off,
        qkv: QuantApply::Off,
        dropout: 0.0,
    };

    /// The training mode: Q1 + Q2 through the STE, and Q3–Q5 too when `all`; no dropout.
    pub fn train(all: bool) -> Self {
        let extra = if all {
            QuantApply::Ste
        } else {
            QuantApply::Off
        };
        Self {
            weights: QuantApply::Ste,
            acts: QuantApply::Ste,
            embed: extra,
            qkv: extra,
            dropout: 0.0,
        }
    }

    /// The same with residual dropout `p` (applied only under autodiff).
    pub fn with_dropout(self, p: f64) -> Self {
        Self { dropout: p, ..self }
    }
}

/// Parameter initialisation from a SplitMix64 stream (Box–Muller normals).
pub struct InitRng(SplitMix64);

impl InitRng {
    fn normal<B: Backend>(
        &mut self,
        shape: [usize; 2],
        std: f64,
        dev: &B::Device,
    ) -> Param<Tensor<B, 2>> {
        let n = shape[0] * shape[1];
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            // two uniforms in (0, 1] from the top 53 bits
            let u1 = ((self.0.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let u2 = ((self.0.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = 2.0 * std::f64::consts::PI * u2;
            v.push((r * a.cos()) as f32);
            v.push((r * a.sin()) as f32);
        }
        v.truncate(n);
        Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), dev))
    }
}

/// `RMSNorm(x; g) = x / sqrt(mean(x²) + eps) · g`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// gain `g` `[n]`, init 1
    pub gain: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: FusedOps> RmsNorm<B> {
    fn new(n: usize, eps: f64, dev: &B::Device) -> Self {
        Self {
            gain: Param::from_tensor(Tensor::ones([n], dev)),
            eps,
        }
    }

    /// # Shapes
    /// - `x`: `[b, t, n]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        B::rms_norm(x, self.gain.val(), self.eps)
    }
}

/// Ternary linear layer without bias: `y = Q2(x) · Q1(W)`.
#[derive(Module, Debug)]
pub struct BitLinear<B: Backend> {
    /// latent weight `[d_in, d_out]` (burn's `Linear` orientation: `y = x @ W`)
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: FusedOps> BitLinear<B> {
    fn new(d_in: usize, d_out: usize, std: f64, init: &mut InitRng, dev: &B::Device) -> Self {
        Self {
            weight: init.normal([d_in, d_out], std, dev),
        }
    }

    /// The effective (quantized) weight.
    pub fn effective_weight(&self, how: QuantApply) -> Tensor<B, 2> {
        ste(self.weight.val(), how, ternary)
    }

    /// `x` must already carry Q2 (see [`quantize_input`]).
    ///
    /// # Shapes
    /// - `xq`: `[b, t, d_in]` → `[b, t, d_out]`
    pub fn forward_quantized_input(&self, xq: Tensor<B, 3>, mode: QuantMode) -> Tensor<B, 3> {
        linear_rows(xq, self.effective_weight(mode.weights))
    }

    /// # Shapes
    /// - `x`: `[b, t, d_in]` → `[b, t, d_out]`
    pub fn forward(&self, x: Tensor<B, 3>, mode: QuantMode) -> Tensor<B, 3> {
        self.forward_quantized_input(quantize_input(x, mode), mode)
    }
}

/// `x @ w` on `[b, t, d_in]` as one `[b·t, d_in] @ [d_in, d_out]` product.
///
/// burn's `linear` on a rank-3 input is a batched matmul against the broadcast weight: `b` small
/// products (each below flex's threshold for a threaded gemm) and, in the backward pass, a
/// `[b, d_in, d_out]` weight gradient summed over the batch afterwards. On the flattened rows the
/// forward and both gradients are single large gemms (threaded inside gemm) and `dW = xᵀ·dy` is
/// accumulated by the gemm itself. On flex the product and its backward are
/// [`FusedOps::linear_2d`]: gemm straight into fresh buffers (flex's matmul zero-fills and then
/// copies each output).
///
/// # Shapes
/// - `x`: `[b, t, d_in]`, `w`: `[d_in, d_out]` → `[b, t, d_out]`
pub fn linear_rows<B: FusedOps>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, t, d_in] = x.dims();
    let n = w.dims()[1];
    B::linear_2d(x.reshape([b * t, d_in]), w).reshape([b, t, n])
}

/// Inverted dropout with probability `p`, only where autodiff is on (training); the mask
/// ([`FusedOps::dropout_keep`]) comes from the backend's RNG, which the training loop seeds per step
/// (reproducible, also on resume).
fn dropout<B: FusedOps>(x: Tensor<B, 3>, p: f64) -> Tensor<B, 3> {
    if p == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let keep = B::dropout_keep(x.dims(), p, &x.device());
    x * keep
}

/// Q2 on a BitLinear input (per token).
pub fn quantize_input<B: FusedOps>(x: Tensor<B, 3>, mode: QuantMode) -> Tensor<B, 3> {
    act_quant(x, mode.acts)
}

/// Constant tables of a model: the RoPE cos/sin table (host memory; the tensor-op attention
/// uploads the rows it needs).
#[derive(Debug, Clone)]
pub struct Tables<B: Backend> {
    rope: Rope,
    _backend: PhantomData<B>,
}

impl<B: Backend> Tables<B> {
    /// Tables for `cfg` (see [`Rope::new`]); `_dev` is kept for symmetry with device tensors.
    pub fn new(cfg: &ModelConfig, _dev: &B::Device) -> Self {
        Self {
            rope: Rope::new(cfg.head_dim(), cfg.ctx_len, cfg.rope_theta),
            _backend: PhantomData,
        }
    }
}

/// Attention sub-layer: q, k, v, o BitLinears and the attention sub-norm.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[d, H·hd]`
    pub wq: BitLinear<B>,
    /// `[d, Hkv·hd]`
    pub wk: BitLinear<B>,
    /// `[d, Hkv·hd]`
    pub wv: BitLinear<B>,
    /// `[d, d]`
    pub wo: BitLinear<B>,
    /// sub-norm before `wo`, `[d]`
    pub sub_norm: RmsNorm<B>,
    n_heads: usize,
    n_kv_heads: usize,
}

impl<B: FusedOps> Attention<B> {
    /// # Shapes
    /// - `h`: `[b, t, d]` (already attention-normed) → `[b, t, d]`
    fn forward(&self, h: Tensor<B, 3>, tab: &Tables<B>, mode: QuantMode) -> Tensor<B, 3> {
        let d = h.dims()[2];
        let shape = AttnShape {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: d / self.n_heads,
        };
        // Q2 once, then q, k and v as one product against the side-by-side (each separately
        // ternary) weights.
        let hq = quantize_input(h, mode);
        let w = Tensor::cat(
            vec![
                self.wq.effective_weight(mode.weights),
                self.wk.effective_weight(mode.weights),
                self.wv.effective_weight(mode.weights),
            ],
            1,
        );
        let a = B::rope_attention(linear_rows(hq, w), &tab.rope, shape, mode.qkv);
        self.wo.forward(self.sub_norm.forward(a), mode)
    }
}

/// Feed-forward sub-layer: up, ReLU², FFN sub-norm, down; gated (`ModelConfig::ffn_gated`):
/// `relu²(gate·h) ⊙ up·h` in place of `relu²(up·h)`.
#[derive(Module, Debug)]
pub struct Ffn<B: Backend> {
    /// `[d, F]`
    pub up: BitLinear<B>,
    /// `[d, F]`, only in a gated block
    pub gate: Option<BitLinear<B>>,
    /// `[F, d]`
    pub down: BitLinear<B>,
    /// sub-norm before `down`, `[F]`
    pub sub_norm: RmsNorm<B>,
}

impl<B: FusedOps> Ffn<B> {
    fn forward(&self, h: Tensor<B, 3>, mode: QuantMode) -> Tensor<B, 3> {
        // One Q2 of `h` feeds up and, in a gated block, the gate.
        let hq = quantize_input(h, mode);
        let u = self.up.forward_quantized_input(hq.clone(), mode);
        let u = match &self.gate {
            None => B::relu_sq(u),
            Some(gate) => B::relu_sq(gate.forward_quantized_input(hq, mode)) * u,
        };
        self.down.forward(self.sub_norm.forward(u), mode)
    }
}

/// One pre-norm block: `x += Attn(RMSNorm(x))`, `x += FFN(RMSNorm(x))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// `[d]`
    pub attn_norm: RmsNorm<B>,
    /// attention sub-layer
    pub attn: Attention<B>,
    /// `[d]`
    pub ffn_norm: RmsNorm<B>,
    /// feed-forward sub-layer
    pub ffn: Ffn<B>,
}

/// The whole model: tied int8 embedding / head, `n_layers` blocks, final norm.
#[derive(Module, Debug)]
pub struct Model<B: Backend> {
    /// token embedding `[V, d]`, also the LM head (tied)
    pub embed: Param<Tensor<B, 2>>,
    /// the blocks
    pub layers: Vec<Block<B>>,
    /// final RMSNorm `[d]`
    pub final_norm: RmsNorm<B>,
}

/// A parameter of the model by rank: what `runtime::schema` calls a trainer tensor.
#[derive(Debug)]
pub enum ParamRef<'a, B: Backend> {
    /// a gain vector `[n]`
    Vector(&'a Param<Tensor<B, 1>>),
    /// a matrix (`[d_in, d_out]` BitLinear weight, `[V, d]` embedding)
    Matrix(&'a Param<Tensor<B, 2>>),
}

impl<B: Backend> ParamRef<'_, B> {
    /// Dims and row-major `f32` values.
    pub fn to_vec(&self) -> (Vec<usize>, Vec<f32>) {
        fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
            let dims = t.dims().to_vec();
            let data = t.into_data().convert::<f32>();
            (dims, data.to_vec::<f32>().expect("f32 tensor"))
        }
        match self {
            ParamRef::Vector(p) => values(p.val()),
            ParamRef::Matrix(p) => values(p.val()),
        }
    }
}

impl<B: Backend> Model<B> {
    /// The parameter behind the schema's global tensor `kind` (`runtime::schema::GLOBAL`);
    /// `None` for sections that are not trainer tensors.
    pub fn global_param(&self, kind: TensorKind) -> Option<ParamRef<'_, B>> {
        match kind {
            TensorKind::Embedding => Some(ParamRef::Matrix(&self.embed)),
            TensorKind::FinalNorm => Some(ParamRef::Vector(&self.final_norm.gain)),
            _ => None,
        }
    }
}

impl<B: Backend> Block<B> {
    /// The parameter behind the schema's layer tensor `kind` (`runtime::schema::LAYER`); `None`
    /// for sections that are not trainer tensors.
    pub fn param(&self, kind: TensorKind) -> Option<ParamRef<'_, B>> {
        use ParamRef::{Matrix, Vector};
        let p = match kind {
            TensorKind::AttnNorm => Vector(&self.attn_norm.gain),
            TensorKind::Wq => Matrix(&self.attn.wq.weight),
            TensorKind::Wk => Matrix(&self.attn.wk.weight),
            TensorKind::Wv => Matrix(&self.attn.wv.weight),
            TensorKind::AttnSubNorm => Vector(&self.attn.sub_norm.gain),
            TensorKind::Wo => Matrix(&self.attn.wo.weight),
            TensorKind::FfnNorm => Vector(&self.ffn_norm.gain),
            TensorKind::WUp => Matrix(&self.ffn.up.weight),
            TensorKind::FfnSubNorm => Vector(&self.ffn.sub_norm.gain),
            TensorKind::WDown => Matrix(&self.ffn.down.weight),
            TensorKind::WGate => Matrix(&self.ffn.gate.as_ref()?.weight),
            _ => return None,
        };
        Some(p)
    }
}

impl<B: FusedOps> Model<B> {
    /// A freshly initialised model, drawn from `seed` by our own generator (so it does not depend
    /// on the backend's global RNG, which other threads may use).
    ///
    /// Init: embedding and matrices N(0, 0.02), output projections (`wo`, `down`) N(0, 0.02/√(2L));
    /// norm gains 1. Draw order: embedding, then per layer wq, wk, wv, wo, up, (gate,) down.
    pub fn new(cfg: &ModelConfig, dev: &B::Device, seed: u64) -> Self {
        let mut init = InitRng(SplitMix64::new(seed ^ 0x696e_6974_5f77_6569));
        let embed = init.normal([cfg.vocab_size, cfg.d_model], 0.02, dev);
        let (d, f, hd) = (cfg.d_model, cfg.ffn_dim, cfg.head_dim());
        let std = 0.02;
        let std_out = std / (2.0 * cfg.n_layers as f64).sqrt();
        let eps = cfg.norm_eps;
        let layers = (0..cfg.n_layers)
            .map(|_| Block {
                attn_norm: RmsNorm::new(d, eps, dev),
                attn: Attention {
                    wq: BitLinear::new(d, cfg.n_heads * hd, std, &mut init, dev),
                    wk: BitLinear::new(d, cfg.n_kv_heads * hd, std, &mut init, dev),
                    wv: BitLinear::new(d, cfg.n_kv_heads * hd, std, &mut init, dev),
                    wo: BitLinear::new(d, d, std_out, &mut init, dev),
                    sub_norm: RmsNorm::new(d, eps, dev),
                    n_heads: cfg.n_heads,
                    n_kv_heads: cfg.n_kv_heads,
                },
                ffn_norm: RmsNorm::new(d, eps, dev),
                ffn: Ffn {
                    up: BitLinear::new(d, f, std, &mut init, dev),
                    gate: cfg
                        .ffn_gated
                        .then(|| BitLinear::new(d, f, std, &mut init, dev)),
                    down: BitLinear::new(f, d, std_out, &mut init, dev),
                    sub_norm: RmsNorm::new(f, eps, dev),
                },
            })
            .collect();
        Self {
            embed,
            layers,
            final_norm: RmsNorm::new(d, eps, dev),
        }
    }
}

impl<B: FusedOps> Model<B> {
    /// Logits of every position.
    ///
    /// # Shapes
    /// - `tokens`: `[b, t]` (t ≤ ctx_len) → `[b, t, V]`
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        tab: &Tables<B>,
        mode: QuantMode,
    ) -> Tensor<B, 3> {
        // Q3 once: the same int8 table feeds the lookup and the tied head (Q4).
        let emb = act_quant(self.embed.val(), mode.embed);
        let mut x = burn::tensor::module::embedding(emb.clone(), tokens);
        let drop = |y: Tensor<B, 3>| dropout(y, mode.dropout);
        for layer in &self.layers {
            x = x.clone() + drop(layer.attn.forward(layer.attn_norm.forward(x), tab, mode));
            x = x.clone() + drop(layer.ffn.forward(layer.ffn_norm.forward(x), mode));
        }
        let h = quantize_input(self.final_norm.forward(x), mode);
        linear_rows(h, emb.transpose())
    }

    /// Sum of the negative log-likelihoods (nats) of `targets` and their count.
    ///
    /// # Shapes
    /// - `tokens`, `targets`: `[b, t]`
    pub fn nll_sum(
        &self,
        tokens: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        tab: &Tables<B>,
        mode: QuantMode,
    ) -> Tensor<B, 1> {
        let [b, t] = tokens.dims();
        let logits = self.forward(tokens, tab, mode);
        let v = logits.dims()[2];
        let logp = log_softmax(logits.reshape([b * t, v]), 1);
        logp.gather(1, targets.reshape([b * t, 1])).sum().neg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    #[test]
    fn linear_rows_matches_batched_linear() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x0 = Tensor::<Flex, 3>::random([3, 5, 24], Distribution::Normal(0.0, 1.0), &dev);
        let w0 = Tensor::<Flex, 2>::random([24, 10], Distribution::Normal(0.0, 1.0), &dev);
        let up = Tensor::<Flex, 3>::random([3, 5, 10], Distribution::Normal(0.0, 1.0), &dev);
        let run = |rows: bool| {
            let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
            let w = Tensor::<A, 2>::from_inner(w0.clone()).require_grad();
            let y = if rows {
                linear_rows(x.clone(), w.clone())
            } else {
                burn::tensor::module::linear(x.clone(), w.clone(), None)
            };
            let grads = (y.clone() * Tensor::from_inner(up.clone()))
                .sum()
                .backward();
            (y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap())
        };
        let ((y1, dx1, dw1), (y2, dx2, dw2)) = (run(true), run(false));
        let d3 =
            |a: Tensor<Flex, 3>, b: Tensor<Flex, 3>| -> f32 { (a - b).abs().max().into_scalar() };
        assert!(d3(y1, y2) < 1e-5);
        assert!(d3(dx1, dx2) < 1e-5);
        let dw: f32 = (dw1 - dw2).abs().max().into_scalar();
        assert!(dw < 1e-4, "{dw}");
    }
}
