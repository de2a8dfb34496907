//! Exponential moving averages of the weights (`--ema`, `TrainConfig::ema_decays`): Polyak
//! averaging over stage 2 of the schedule. Each average starts as a copy of the weights after
//! step `steps / 2` and follows them after every later step, `avg += (1 − β)·(w − avg)`; it
//! never feeds back into training, so a run with averages trains exactly the weights of the same
//! run without them. The averages are latent (float) weights like the live ones: the
//! quantizers apply to them as to any weights when they are evaluated or packed.

use crate::model::Model;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use std::collections::HashMap;

/// One moving average of the weights.
#[derive(Debug, Clone)]
pub struct Ema<B: Backend> {
    /// β: the share of the average kept at each step
    pub decay: f64,
    /// the averaged weights (the same parameter ids as the live model)
    pub model: Model<B>,
}

impl<B: Backend> Ema<B> {
    /// An average that starts at `weights`.
    pub fn start(decay: f64, weights: &Model<B>) -> Self {
        Self {
            decay,
            model: weights.clone(),
        }
    }

    /// Moves the average towards `weights` (the live model, the same parameter ids) by
    /// `1 − β`.
    pub fn update(&mut self, weights: &Model<B>) {
        Self::update_all(std::slice::from_mut(self), weights);
    }

    /// [`Ema::update`] for several averages of the same live weights, which are read once.
    pub fn update_all(averages: &mut [Self], weights: &Model<B>) {
        let mut live = Collect(HashMap::new());
        weights.visit(&mut live);
        for avg in averages {
            let mut blend = Blend {
                live: live.0.clone(),
                rate: (1.0 - avg.decay) as f32,
            };
            avg.model = avg.model.clone().map(&mut blend);
            assert!(
                blend.live.is_empty(),
                "the average and the live weights have different parameters"
            );
        }
    }
}

/// Every float parameter of a model, flattened, by id.
struct Collect<B: Backend>(HashMap<ParamId, Tensor<B, 1>>);
impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        self.0.insert(p.id, p.val().flatten(0, D - 1));
    }
}

/// `avg + rate·(w − avg)` for every parameter of the average, `w` the live tensor of its id.
struct Blend<B: Backend> {
    live: HashMap<ParamId, Tensor<B, 1>>,
    rate: f32,
}
impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let w = self
            .live
            .remove(&p.id)
            .expect("the live weights have every parameter of the average");
        let rate = self.rate;
        p.map(|avg| {
            let w = w.reshape(avg.dims());
            avg.clone() + (w - avg) * rate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use burn::backend::Flex;

    type B = Flex;

    fn values(m: &Model<B>) -> Vec<f32> {
        let mut c = Collect(HashMap::new());
        m.visit(&mut c);
        let mut ids: Vec<_> = c.0.keys().copied().collect();
        ids.sort_by_key(|id| id.val());
        ids.iter()
            .flat_map(|id| c.0[id].clone().into_data().to_vec::<f32>().unwrap())
            .collect()
    }

    /// The average moves by `1 − β` of the distance to the live weights, parameter by
    /// parameter, and equals them when they have not moved.
    #[test]
    fn update_moves_the_average_by_one_minus_beta() {
        let mut cfg = Preset::Tiny.model();
        cfg.vocab_size = 11;
        let dev = Default::default();
        let a = Model::<B>::new(&cfg, &dev, 1);
        // Other values, the same parameter ids: `a` mapped by a constant shift of each value.
        let b = a.clone().map(&mut Shift(0.5));
        let mut ema = Ema::start(0.75, &a);
        ema.update(&a);
        assert_eq!(values(&ema.model), values(&a));
        ema.update(&b);
        let (va, vb, ve) = (values(&a), values(&b), values(&ema.model));
        assert_eq!(va.len(), cfg.n_params());
        for ((x, y), e) in va.iter().zip(&vb).zip(&ve) {
            assert!((e - (x + 0.25 * (y - x))).abs() < 1e-6, "{e} {x} {y}");
        }
        // The live weights are not touched.
        assert_eq!(values(&b), vb);
    }

    struct Shift(f32);
    impl ModuleMapper<B> for Shift {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let s = self.0;
            p.map(|t| t + s)
        }
    }
}
