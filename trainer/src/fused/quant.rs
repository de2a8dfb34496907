//! The quantizers of `docs/MODEL.md` (Q1–Q5) and the straight-through estimator.
//!
//! Each quantizer returns the *effective* real value (scale × integer), so the quantized
//! evaluation mode is the float model run through these functions. In training, [`ste`] keeps the
//! forward value of the quantizer and passes the gradient through unchanged.

use burn::tensor::{backend::Backend, Tensor};

/// Smallest scale of every quantizer (`max(…, 1e-5)` in `docs/MODEL.md`).
pub const SCALE_FLOOR: f32 = 1e-5;

/// Q1: absmean ternary weights, `γ = max(mean|W|, 1e-5)`, `W_q = clamp(round(W/γ), -1, 1)`;
/// returns `γ·W_q`.
///
/// # Shapes
/// - `w`: `[d_in, d_out]` → same
pub fn ternary<B: Backend>(w: Tensor<B, 2>) -> Tensor<B, 2> {
    let gamma = w
        .clone()
        .abs()
        .mean()
        .clamp_min(SCALE_FLOOR)
        .unsqueeze::<2>(); // [1, 1]
    (w / gamma.clone()).round().clamp(-1.0, 1.0) * gamma
}

/// Q2 / Q3 / Q5: int8 absmax over the last dim, `s = max(max|x|, 1e-5) / 127`,
/// `x_q = clamp(round(x/s), -128, 127)`; returns `s·x_q`.
///
/// # Shapes
/// - `x`: `[..., n]` → same (one scale per vector along the last dim)
pub fn absmax_int8<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let s = x.clone().abs().max_dim(D - 1).clamp_min(SCALE_FLOOR) / 127.0;
    // No clamp needed: |x/s| <= 127 (up to one rounding of the division), so round() already
    // lies in -127..=127 and clamp(-128, 127) would be the identity.
    (x / s.clone()).round() * s
}

/// How a quantizer is applied in a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantApply {
    /// Return the quantized value itself (evaluation; no gradient needed).
    Exact,
    /// Straight-through estimator: forward ≈ quantized value, gradient = identity.
    Ste,
    /// Do not quantize (used for the parts that training leaves in float).
    Off,
}

/// Applies quantizer `q` to `x` the way `how` says.
///
/// With [`QuantApply::Ste`] this is `x + (q(x) − x).detach()`. The quantizer runs on a detached
/// copy, so for an activation it builds no autodiff graph at all (the whole STE costs one tracked
/// add); the final `detach` also makes it right for a leaf parameter, which keeps `require_grad`
/// through `detach`.
pub fn ste<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    how: QuantApply,
    q: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    match how {
        QuantApply::Exact => q(x),
        QuantApply::Off => x,
        QuantApply::Ste => {
            let xd = x.clone().detach();
            let delta = (q(xd.clone()) - xd).detach();
            x + delta
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData};

    type B = Flex;
    type A = Autodiff<Flex>;

    fn vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn ternary_three_levels_and_scale() {
        let dev = Default::default();
        let w = Tensor::<B, 2>::random([32, 48], Distribution::Normal(0.0, 0.3), &dev);
        let gamma = vec(w.clone().abs().mean())[0];
        let q = vec(ternary(w.clone()));
        let src = vec(w);
        for (qi, wi) in q.iter().zip(&src) {
            let level = qi / gamma;
            assert!([-1.0f32, 0.0, 1.0].iter().any(|l| (level - l).abs() < 1e-5));
            // nearest level of w/γ, clamped
            let expect = (wi / gamma).round_ties_even().clamp(-1.0, 1.0);
            assert!((level - expect).abs() < 1e-5);
        }
        // all-zero matrix: γ floors at 1e-5, no NaN
        let z = vec(ternary(Tensor::<B, 2>::zeros([4, 4], &dev)));
        assert!(z.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn int8_range_and_absmax_maps_to_127() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::random([16, 40], Distribution::Normal(0.0, 5.0), &dev);
        let src = vec(x.clone());
        let q = vec(absmax_int8(x));
        for r in 0..16 {
            let row = &src[r * 40..(r + 1) * 40];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = amax / 127.0;
            let mut hit127 = false;
            for c in 0..40 {
                let k = q[r * 40 + c] / s;
                assert!((k - k.round()).abs() < 1e-3 && (-128.0..=127.0).contains(&k.round()));
                assert!((q[r * 40 + c] - row[c]).abs() <= s * 0.5 + 1e-6);
                hit127 |= k.round().abs() == 127.0;
            }
            assert!(hit127);
        }
    }

    #[test]
    fn round_is_half_to_even() {
        let dev = Default::default();
        let x = Tensor::<B, 1>::from_data(TensorData::from([0.5f32, 1.5, 2.5, -0.5]), &dev);
        assert_eq!(vec(x.round()), vec![0.0, 2.0, 2.0, -0.0]);
    }

    /// STE identity: the gradient through the quantized BitLinear equals that of a plain matmul
    /// with the quantized weight and input treated as identity-differentiable.
    #[test]
    fn ste_gradients_are_identity() {
        let dev = Default::default();
        let x0 = Tensor::<B, 3>::random([2, 5, 24], Distribution::Normal(0.0, 1.0), &dev);
        let w0 = Tensor::<B, 2>::random([24, 16], Distribution::Normal(0.0, 0.1), &dev);
        let g0 = Tensor::<B, 3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &dev);

        let x = Tensor::<A, 3>::from_inner(x0.clone()).require_grad();
        let w = Tensor::<A, 2>::from_inner(w0.clone()).require_grad();
        let xq = ste(x.clone(), QuantApply::Ste, absmax_int8);
        let wq = ste(w.clone(), QuantApply::Ste, ternary);
        let y = burn::tensor::module::linear(xq, wq, None);
        let loss = (y * Tensor::from_inner(g0.clone())).sum();
        let grads = loss.backward();
        let gx = x.grad(&grads).unwrap();
        let gw = w.grad(&grads).unwrap();

        // expected: dL/dx = g · q(w)ᵀ, dL/dw = q(x)ᵀ · g (summed over batch)
        let qw = ternary(w0);
        let qx = absmax_int8(x0);
        let ex = g0.clone().matmul(qw.transpose().unsqueeze::<3>());
        let ew = qx.swap_dims(1, 2).matmul(g0).sum_dim(0).reshape([24, 16]);
        let dx = (gx - ex).abs().max();
        let dw = (gw - ew).abs().max();
        assert!(vec(dx)[0] < 1e-5, "dx");
        assert!(vec(dw)[0] < 1e-5, "dw");
    }

    #[test]
    fn ste_forward_equals_quantized() {
        let dev = Default::default();
        let x0 = Tensor::<B, 2>::random([8, 32], Distribution::Normal(0.0, 1.0), &dev);
        let x = Tensor::<A, 2>::from_inner(x0.clone()).require_grad();
        let y = ste(x, QuantApply::Ste, absmax_int8).inner();
        let d = vec((y - absmax_int8(x0)).abs().max())[0];
        assert!(d < 1e-6);
    }
}
