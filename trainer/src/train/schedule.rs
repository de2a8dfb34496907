//! Learning-rate and weight-decay schedule of the b1.58 training notes: linear warmup, then two
//! stages split at mid-run. Stage 1 decays by cosine from `lr` to `lr/2`; at `steps/2` the rate
//! drops to `lr·lr_stage2` and decays by cosine to `lr_stage2_end` of that (a tenth in the
//! b1.58 recipe; 0 = to zero). Weight decay is
//! `weight_decay` in stage 1 and `weight_decay_stage2` (by default 0) in stage 2.

use crate::config::TrainConfig;
use std::f64::consts::PI;

/// The step at which stage 2 begins.
pub fn mid(cfg: &TrainConfig) -> usize {
    cfg.steps / 2
}

/// Learning rate of 0-based `step`.
pub fn lr(cfg: &TrainConfig, step: usize) -> f64 {
    let cosine = |from: f64, to: f64, frac: f64| to + (from - to) * 0.5 * (1.0 + (PI * frac).cos());
    let m = mid(cfg);
    let warm = cfg.warmup_steps.min(m);
    if step < warm {
        cfg.lr * (step + 1) as f64 / warm as f64
    } else if step < m {
        let frac = (step - warm) as f64 / (m - warm).max(1) as f64;
        cosine(cfg.lr, 0.5 * cfg.lr, frac)
    } else {
        let lr2 = cfg.lr * cfg.lr_stage2;
        let frac = (step - m) as f64 / (cfg.steps - m).max(1) as f64;
        cosine(lr2, cfg.lr_stage2_end * lr2, frac)
    }
}

/// Weight decay of 0-based `step` (stage 1: `weight_decay`, stage 2: `weight_decay_stage2`).
pub fn weight_decay(cfg: &TrainConfig, step: usize) -> f64 {
    if step < mid(cfg) {
        cfg.weight_decay
    } else {
        cfg.weight_decay_stage2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn two_stages() {
        let mut c = Preset::Mcu.train();
        c.steps = 1000;
        c.warmup_steps = 100;
        assert!(lr(&c, 0) < lr(&c, 50) && lr(&c, 50) < lr(&c, 99));
        assert!((lr(&c, 99) - c.lr).abs() < 1e-12);
        assert!(lr(&c, 499) > 0.5 * c.lr - 1e-9);
        assert!((lr(&c, 500) - c.lr * c.lr_stage2).abs() < 1e-12);
        assert!(lr(&c, 999) >= 0.1 * c.lr * c.lr_stage2);
        assert_eq!(weight_decay(&c, 499), c.weight_decay);
        assert_eq!(weight_decay(&c, 500), c.weight_decay_stage2);
        c.weight_decay_stage2 = 0.05;
        assert_eq!(weight_decay(&c, 499), c.weight_decay);
        assert_eq!(weight_decay(&c, 500), 0.05);
        assert_eq!(weight_decay(&c, 999), 0.05);
        // The stage-2 cosine ends at `lr_stage2_end` of its start: one step short of it.
        let end = |c: &TrainConfig| lr(c, c.steps);
        assert!((end(&c) - 0.1 * c.lr * c.lr_stage2).abs() < 1e-12);
        c.lr_stage2_end = 0.0;
        assert!(end(&c).abs() < 1e-12 && lr(&c, 999) > 0.0 && lr(&c, 999) < 1e-4 * c.lr);
        assert!((lr(&c, 500) - c.lr * c.lr_stage2).abs() < 1e-12);
    }
}
