//! Each fused op against its tensor-op formulation: values, and gradients under autodiff for a
//! random upstream gradient.

use super::{attention_ops, FusedOps};
use crate::fused::attention::{AttnShape, Rope};
use crate::fused::quant::{self, QuantApply};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};

#[test]
fn absmax_int8_flex_matches_tensor_ops() {
    let dev = Default::default();
    let x = Tensor::<Flex, 3>::random([3, 7, 40], Distribution::Normal(0.0, 2.0), &dev);
    let a = <Flex as FusedOps>::absmax_int8(x.clone());
    let b = quant::absmax_int8(x.clone());
    let d: f32 = (a - b).abs().max().into_scalar();
    assert_eq!(d, 0.0);
    // non-contiguous input
    let xt = x.swap_dims(1, 2);
    let d: f32 = (<Flex as FusedOps>::absmax_int8(xt.clone()) - quant::absmax_int8(xt))
        .abs()
        .max()
        .into_scalar();
    assert_eq!(d, 0.0);
}

#[test]
fn rms_norm_fused_matches_tensor_ops() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let x0 = Tensor::<Flex, 3>::random([3, 5, 24], Distribution::Normal(0.0, 2.0), &dev);
    let g0 = Tensor::<Flex, 1>::random([24], Distribution::Normal(1.0, 0.3), &dev);
    let up = Tensor::<Flex, 3>::random([3, 5, 24], Distribution::Normal(0.0, 1.0), &dev);
    // reference: the tensor-op formulation, differentiated by burn
    let reference = |x: Tensor<A, 3>, g: Tensor<A, 1>| {
        let inv = (x.clone().square().mean_dim(2) + 1e-5).sqrt().recip();
        x * inv * g.unsqueeze::<3>()
    };
    let run = |fused: bool| {
        let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
        let g = Tensor::<A, 1>::from_inner(g0.clone()).require_grad();
        let y = if fused {
            <A as FusedOps>::rms_norm(x.clone(), g.clone(), 1e-5)
        } else {
            reference(x.clone(), g.clone())
        };
        let grads = (y.clone() * Tensor::from_inner(up.clone()))
            .sum()
            .backward();
        (y.inner(), x.grad(&grads).unwrap(), g.grad(&grads).unwrap())
    };
    let (y1, dx1, dg1) = run(true);
    let (y2, dx2, dg2) = run(false);
    let close =
        |a: Tensor<Flex, 3>, b: Tensor<Flex, 3>| -> f32 { (a - b).abs().max().into_scalar() };
    assert!(close(y1, y2) < 1e-5);
    assert!(close(dx1, dx2) < 1e-4);
    let dg: f32 = (dg1 - dg2).abs().max().into_scalar();
    assert!(dg < 1e-3, "{dg}");
}

/// The causal softmax as one autodiff op (what CUDA's tensor-op attention runs under autodiff)
/// against burn differentiating the masked softmax itself.
#[test]
fn causal_softmax_op_matches_tensor_ops() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let x0 = Tensor::<Flex, 4>::random([2, 3, 7, 7], Distribution::Normal(0.0, 2.0), &dev);
    let up = Tensor::<Flex, 4>::random([2, 3, 7, 7], Distribution::Normal(0.0, 1.0), &dev);
    let run = |fused: bool| {
        let x = Tensor::<A, 4>::from_inner(x0.clone()).require_grad();
        let p = if fused {
            <A as FusedOps>::causal_softmax(x.clone())
        } else {
            // the masked softmax, differentiated by burn
            let mask = Tensor::<A, 2, burn::tensor::Bool>::tril_mask([7, 7], 0, &dev);
            let bias = Tensor::<A, 2>::zeros([7, 7], &dev).mask_fill(mask, f32::NEG_INFINITY);
            burn::tensor::activation::softmax(x.clone() + bias.unsqueeze::<4>(), 3)
        };
        let grads = (p.clone() * Tensor::from_inner(up.clone()))
            .sum()
            .backward();
        (p.inner(), x.grad(&grads).unwrap())
    };
    let (p1, g1) = run(true);
    let (p2, g2) = run(false);
    let dp: f32 = (p1.clone() - p2).abs().max().into_scalar();
    let dg: f32 = (g1 - g2).abs().max().into_scalar();
    assert!(dp < 1e-6 && dg < 1e-5, "{dp} {dg}");
    // the future gets exactly zero
    let v = p1.into_data().to_vec::<f32>().unwrap();
    assert_eq!(v[1], 0.0);
    assert_eq!(v[6], 0.0);
}

#[test]
fn relu_sq_fused_matches_tensor_ops() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let x0 = Tensor::<Flex, 3>::random([2, 5, 33], Distribution::Normal(0.0, 1.0), &dev);
    let up = Tensor::<Flex, 3>::random([2, 5, 33], Distribution::Normal(0.0, 1.0), &dev);
    let run = |fused: bool| {
        let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
        let y = if fused {
            <A as FusedOps>::relu_sq(x.clone())
        } else {
            burn::tensor::activation::relu(x.clone()).square()
        };
        let grads = (y.clone() * Tensor::from_inner(up.clone()))
            .sum()
            .backward();
        (y.inner(), x.grad(&grads).unwrap())
    };
    let ((y1, g1), (y2, g2)) = (run(true), run(false));
    let dy: f32 = (y1 - y2).abs().max().into_scalar();
    let dg: f32 = (g1 - g2).abs().max().into_scalar();
    assert!(dy == 0.0 && dg < 1e-6, "{dy} {dg}");
}

#[test]
fn ste_op_value_and_identity_gradient() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let x0 = Tensor::<Flex, 2>::random([5, 24], Distribution::Normal(0.0, 1.0), &dev);
    let g0 = Tensor::<Flex, 2>::random([5, 24], Distribution::Normal(0.0, 1.0), &dev);
    let x = Tensor::<A, 2>::from_inner(x0.clone()).require_grad();
    let y = <A as FusedOps>::absmax_int8_ste(x.clone());
    let dv: f32 = (y.clone().inner() - quant::absmax_int8(x0))
        .abs()
        .max()
        .into_scalar();
    assert_eq!(dv, 0.0);
    let grads = (y * Tensor::from_inner(g0.clone())).sum().backward();
    let dg: f32 = (x.grad(&grads).unwrap() - g0).abs().max().into_scalar();
    assert_eq!(dg, 0.0);
}

/// The flex kernels against the tensor-op formulation under autodiff: output and input
/// gradient for a random upstream gradient.
fn fused_matches_ops(s: AttnShape, t: usize, quant: QuantApply) {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let b = 3;
    let rope = Rope::new(s.head_dim, t + 5, 10000.0);
    let normal = Distribution::Normal(0.0, 1.0);
    let x0 = Tensor::<Flex, 3>::random([b, t, s.qkv_width()], normal, &dev);
    let up = Tensor::<Flex, 3>::random([b, t, s.out_width()], normal, &dev);
    let run = |fused: bool| {
        let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
        let y = if fused {
            A::rope_attention(x.clone(), &rope, s, quant)
        } else {
            attention_ops::<A>(x.clone(), &rope, s, quant)
        };
        let grads = (y.clone() * Tensor::from_inner(up.clone()))
            .sum()
            .backward();
        (y.inner(), x.grad(&grads).expect("x has a gradient"))
    };
    let ((y1, dx1), (y2, dx2)) = (run(true), run(false));
    let diff = |a: Tensor<Flex, 3>, b: Tensor<Flex, 3>| -> (f32, f32) {
        let scale: f32 = b.clone().abs().max().into_scalar();
        ((a - b).abs().max().into_scalar(), scale)
    };
    let (dy, sy) = diff(y1, y2);
    let (dg, sg) = diff(dx1, dx2);
    assert!(
        dy <= 1e-5 * sy.max(1.0),
        "{s:?} {quant:?}: output differs by {dy}"
    );
    assert!(
        dg <= 1e-4 * sg.max(1.0),
        "{s:?} {quant:?}: gradient differs by {dg} (max {sg})"
    );
    assert!(sg > 0.0);
}

#[test]
fn mha_matches_tensor_ops() {
    let s = AttnShape {
        n_heads: 4,
        n_kv_heads: 4,
        head_dim: 8,
    };
    fused_matches_ops(s, 11, QuantApply::Ste);
    fused_matches_ops(s, 11, QuantApply::Off);
}

#[test]
fn gqa_and_mqa_match_tensor_ops() {
    for n_kv_heads in [2, 1] {
        let s = AttnShape {
            n_heads: 4,
            n_kv_heads,
            head_dim: 6,
        };
        fused_matches_ops(s, 9, QuantApply::Ste);
        fused_matches_ops(s, 1, QuantApply::Off);
    }
}

/// Without a gradient to track, every autodiff op takes `custom_op`'s untracked path: its output
/// equals the inner backend's.
#[test]
fn untracked_ops_equal_the_inner_backend() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<Flex, 3>::random([2, 5, 24], normal, &dev);
    let g = Tensor::<Flex, 1>::random([24], normal, &dev);
    let w = Tensor::<Flex, 2>::random([24, 12], normal, &dev);
    let outer = |t: &Tensor<Flex, 3>| Tensor::<A, 3>::from_inner(t.clone());
    let same = |a: Tensor<A, 3>, b: Tensor<Flex, 3>| {
        assert_eq!(a.inner().into_data(), b.into_data());
    };
    same(A::absmax_int8_ste(outer(&x)), Flex::absmax_int8(x.clone()));
    same(A::relu_sq(outer(&x)), Flex::relu_sq(x.clone()));
    let g_a = Tensor::<A, 1>::from_inner(g.clone());
    same(
        A::rms_norm(outer(&x), g_a, 1e-5),
        Flex::rms_norm(x.clone(), g, 1e-5),
    );
    let rows = |t: Tensor<Flex, 3>| t.reshape([10, 24]);
    let y_a = A::linear_2d(
        Tensor::from_inner(rows(x.clone())),
        Tensor::from_inner(w.clone()),
    );
    same(
        y_a.reshape([2, 5, 12]),
        Flex::linear_2d(rows(x.clone()), w).reshape([2, 5, 12]),
    );
    let s = AttnShape {
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 6,
    };
    let rope = Rope::new(s.head_dim, 5, 10000.0);
    let qkv = x.narrow(2, 0, s.qkv_width());
    same(
        A::rope_attention(outer(&qkv), &rope, s, QuantApply::Ste),
        Flex::rope_attention(qkv, &rope, s, QuantApply::Ste),
    );
}

/// The dropout multiplier: only 0 and 1/(1−p), the dropped share near p, no correlation between
/// neighbours, the same mask for the same seed and another for another; `dropout_keep` on flex and
/// under autodiff gives such masks, untracked.
#[test]
fn dropout_keep_is_a_seeded_bernoulli_mask() {
    let (n, p) = (4 * 128 * 512, 0.1);
    let a = super::flex::keep_mask(7, n, p);
    assert!(
        a == super::flex::keep_mask(7, n, p),
        "the same seed drew another mask"
    );
    assert!(
        a != super::flex::keep_mask(8, n, p),
        "another seed drew the same mask"
    );
    let keep = (1.0 / (1.0 - p)) as f32;
    assert!(a.iter().all(|&v| v == 0.0 || v == keep));
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    // 262,144 draws: the share's standard deviation is 0.0006
    assert!((dropped - p).abs() < 0.003, "dropped share {dropped}");
    // neighbours independent (the two halves of each u64, chunk borders)
    let both = a.windows(2).filter(|w| w[0] == 0.0 && w[1] == 0.0).count() as f64 / n as f64;
    assert!((both - p * p).abs() < 0.002, "adjacent drops {both}");
    assert!(super::flex::keep_mask(1, 5, 0.0).iter().all(|&v| v == 1.0));

    let dev = Default::default();
    // two calls draw two seeds: two masks (the RNG is process-global; other tests only advance it)
    let m1 = <Flex as FusedOps>::dropout_keep([1, 64, 64], 0.5, &dev).into_data();
    let m2 = <Flex as FusedOps>::dropout_keep([1, 64, 64], 0.5, &dev).into_data();
    assert!(m1.to_vec::<f32>().unwrap() != m2.to_vec::<f32>().unwrap());
    let t = <Autodiff<Flex> as FusedOps>::dropout_keep([2, 3, 40], p, &dev);
    assert!(!t.is_require_grad());
    let v = t.into_data().to_vec::<f32>().unwrap();
    assert!(v.len() == 240 && v.iter().all(|&x| x == 0.0 || x == keep));
}
