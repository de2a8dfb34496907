//! Real-valued trained parameters → the runtime's integer forms (`runtime/FORMAT.md`,
//! "Fixed-point formats"). Every rule here mirrors one quantization point of `docs/MODEL.md`.

use anyhow::{bail, ensure, Context, Result};
use runtime::fixed::{DYADIC_EXP_MAX, DYADIC_EXP_MIN};
use runtime::format::{GAIN_FRAC_BITS, ROPE_FRAC_BITS};
use runtime::writer::TernaryParams;
use runtime::Dyadic;

/// The smallest scale any quantizer uses (`max(…, 1e-5)` in `docs/MODEL.md`).
pub const SCALE_FLOOR: f32 = 1e-5;

/// `x` (finite, > 0) as a normalized [`Dyadic`] ([`Dyadic::from_ieee754`], the project's one
/// real → fixed-point conversion): `mant ∈ [2^31, 2^32)`, relative error at most `2^-32`.
pub fn dyadic(x: f64) -> Result<Dyadic> {
    ensure!(
        x.is_finite() && x > 0.0,
        "scale {x:e} is not a positive finite number"
    );
    Dyadic::from_ieee754(x.to_bits()).with_context(|| {
        format!(
            "scale {x:e} is outside the range a blob can store (2^{}..2^{})",
            DYADIC_EXP_MIN + 31,
            DYADIC_EXP_MAX + 32
        )
    })
}

/// The real value of a [`Dyadic`] (host side, for reports and tests).
pub fn dyadic_value(d: Dyadic) -> f64 {
    d.mant as f64 * 2f64.powi(d.exp)
}

/// Q1: ternarize a BitLinear weight stored `[d_in, d_out]` (burn's orientation, row-major).
///
/// `γ = max(mean|W|, 1e-5)` (mean accumulated in f64, then rounded to f32 as the trainer
/// holds it), `W_q = clamp(round_half_even(W/γ), −1, 1)` in f32, written `[d_out][d_in]` as
/// the runtime's writer wants.
pub fn ternarize(name: &str, w: &[f32], d_in: usize, d_out: usize) -> Result<TernaryParams> {
    ensure!(
        w.len() == d_in * d_out,
        "{name}: {} values, expected {d_in}×{d_out}",
        w.len()
    );
    finite(name, w)?;
    let mean = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64;
    let gamma = (mean as f32).max(SCALE_FLOOR);
    let mut weights = vec![0i8; w.len()];
    for i in 0..d_in {
        for o in 0..d_out {
            let q = (w[i * d_out + o] / gamma)
                .round_ties_even()
                .clamp(-1.0, 1.0);
            weights[o * d_in + i] = q as i8;
        }
    }
    Ok(TernaryParams {
        weights,
        gamma: dyadic(gamma as f64)?,
    })
}

/// Q3: the embedding `[V, d]` as int8 rows with one scale per row:
/// `e_v = max(max|E_v|, 1e-5) / 127`, `E_q = round_half_even(E / e_v)`.
pub fn embedding(e: &[f32], vocab: usize, d: usize) -> Result<(Vec<i8>, Vec<Dyadic>)> {
    ensure!(
        e.len() == vocab * d,
        "embed: {} values, expected {vocab}×{d}",
        e.len()
    );
    finite("embed", e)?;
    let mut q = Vec::with_capacity(e.len());
    let mut scales = Vec::with_capacity(vocab);
    for row in e.chunks_exact(d) {
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = absmax.max(SCALE_FLOOR) / 127.0;
        q.extend(
            row.iter()
                .map(|v| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scales.push(dyadic(s as f64)?);
    }
    Ok((q, scales))
}

/// An RMSNorm gain vector in Q15.16: `round(g · 2^16)`.
pub fn gains(name: &str, g: &[f32]) -> Result<Vec<i32>> {
    finite(name, g)?;
    let one = (1u64 << GAIN_FRAC_BITS) as f64;
    g.iter()
        .map(|&v| {
            let q = (v as f64 * one).round();
            if q.abs() >= i32::MAX as f64 {
                bail!("{name}: gain {v} does not fit Q15.16");
            }
            Ok(q as i32)
        })
        .collect()
}

/// The RoPE table `[T][hd/2][2]`: `(round(cos(t·θ_i)·2^30), round(sin(t·θ_i)·2^30))` with
/// `θ_i = theta^(−2i/hd)`, in f64.
pub fn rope_table(ctx_len: usize, head_dim: usize, theta: f64) -> Vec<i32> {
    let one = (1u64 << ROPE_FRAC_BITS) as f64;
    let mut out = Vec::with_capacity(ctx_len * head_dim);
    for t in 0..ctx_len {
        for i in 0..head_dim / 2 {
            let inv_freq = theta.powf(-((2 * i) as f64) / head_dim as f64);
            let angle = t as f64 * inv_freq;
            out.push((angle.cos() * one).round() as i32);
            out.push((angle.sin() * one).round() as i32);
        }
    }
    out
}

fn finite(name: &str, v: &[f32]) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!("{name}: element {i} is {} (not finite)", v[i]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dyadic_is_normalized_and_close() {
        for x in [
            1e-5,
            0.0078125,
            0.1,
            1.0,
            1.5,
            3.0,
            127.0,
            1e6,
            0.999_999_999_9,
        ] {
            let d = dyadic(x).unwrap();
            assert!(d.mant >= 1 << 31, "{x}: {d:?}");
            let rel = (dyadic_value(d) - x).abs() / x;
            assert!(rel <= 2f64.powi(-32), "{x}: rel error {rel}");
        }
        assert!(dyadic(0.0).is_err());
        assert!(dyadic(-1.0).is_err());
        assert!(dyadic(f64::NAN).is_err());
        assert!(dyadic(1e300).is_err());
    }

    #[test]
    fn ternarize_transposes_and_uses_absmean() {
        // [d_in = 2, d_out = 3]; mean|W| = 1.0
        let w = [2.0, -0.4, 0.6, -1.0, 0.5, -1.5];
        let t = ternarize("w", &w, 2, 3).unwrap();
        assert_eq!(dyadic_value(t.gamma), 1.0);
        // out-major: out 0 = (2.0, -1.0), out 1 = (-0.4, 0.5), out 2 = (0.6, -1.5)
        // round half to even: 0.5 -> 0
        assert_eq!(t.weights, vec![1, -1, 0, 0, 1, -1]);
    }

    #[test]
    fn embedding_rows_hit_127() {
        let e = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0];
        let (q, s) = embedding(&e, 2, 3).unwrap();
        assert_eq!(&q[..3], &[64, -127, 32]);
        assert_eq!(&q[3..], &[0, 0, 0]);
        assert!((dyadic_value(s[0]) - 1.0 / 127.0).abs() < 1e-9);
        assert!((dyadic_value(s[1]) - 1e-5 / 127.0).abs() < 1e-12);
    }

    #[test]
    fn non_finite_weights_are_named() {
        let err = ternarize("layers.0.wq", &[1.0, f32::NAN], 1, 2).unwrap_err();
        assert!(err.to_string().contains("layers.0.wq"), "{err}");
    }

    #[test]
    fn rope_table_starts_at_identity() {
        let r = rope_table(2, 4, 10000.0);
        assert_eq!(&r[..4], &[1 << 30, 0, 1 << 30, 0]);
        assert_eq!(r.len(), 2 * 4);
    }
}
