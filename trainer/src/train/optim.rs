//! The optimiser groups of a training step: AdamW with weight decay on the matrices, AdamW without
//! it on the norm gains, and, with `optimizer = muon`, burn's Muon on the BitLinear matrices
//! instead (the embedding, which is also the head, stays with AdamW, as Muon's authors advise).
//! Stage 2 of the schedule changes the weight decay and keeps every moment.

use crate::config::{MatrixOptimizer, TrainConfig};
use crate::model::Model;
use crate::train::gradients::{matrix_ids, split_off};
use burn::module::ParamId;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamW, AdamWConfig, AdjustLrFn, GradientsParams, Muon, MuonConfig, Optimizer};
use burn::tensor::backend::AutodiffBackend;

type AdamWOpt<B> = OptimizerAdaptor<AdamW, Model<B>, B>;
type MuonOpt<B> = OptimizerAdaptor<Muon<<B as AutodiffBackend>::InnerBackend>, Model<B>, B>;
/// What a checkpoint keeps of an AdamW group.
pub type AdamWRecord<B> = <AdamWOpt<B> as Optimizer<Model<B>, B>>::Record;
/// What a checkpoint keeps of the Muon group.
pub type MuonRecord<B> = <MuonOpt<B> as Optimizer<Model<B>, B>>::Record;

/// The optimiser state of a run, as a checkpoint holds it.
pub struct Records<B: AutodiffBackend> {
    /// AdamW of the decayed matrices
    pub decay: AdamWRecord<B>,
    /// AdamW of the gains
    pub rest: AdamWRecord<B>,
    /// Muon of the BitLinear matrices (runs with `optimizer = muon` only)
    pub muon: Option<MuonRecord<B>>,
}

/// Every optimiser group of a run.
pub struct Optimizers<B: AutodiffBackend> {
    cfg: TrainConfig,
    /// weight decay now in force on `decay` and `muon`
    wd: f64,
    decay: AdamWOpt<B>,
    decay_ids: Vec<ParamId>,
    rest: AdamWOpt<B>,
    muon: Option<(MuonOpt<B>, Vec<ParamId>)>,
}

fn adamw<B: AutodiffBackend>(cfg: &TrainConfig, weight_decay: f64) -> AdamWOpt<B> {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.adam_eps as f32)
        .with_weight_decay(weight_decay as f32)
        .init::<B, Model<B>>()
}

fn muon<B: AutodiffBackend>(weight_decay: f64) -> MuonOpt<B> {
    // burn's Muon skips the decay step when the penalty is `None`; 0 would multiply by 1.
    let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
    MuonConfig::new()
        .with_weight_decay(decay)
        .with_adjust_lr_fn(AdjustLrFn::MatchRmsAdamW)
        .init::<B, Model<B>>()
}

impl<B: AutodiffBackend> Optimizers<B> {
    /// Fresh groups for `model` at weight decay `wd`, or the groups of a checkpoint.
    pub fn new(cfg: &TrainConfig, model: &Model<B>, wd: f64, saved: Option<Records<B>>) -> Self {
        let matrices = matrix_ids(model);
        let (decay_ids, mut muon_group) = match cfg.optimizer {
            MatrixOptimizer::Adamw => (matrices, None),
            MatrixOptimizer::Muon => {
                let (embed, blit): (Vec<_>, Vec<_>) =
                    matrices.into_iter().partition(|id| *id == model.embed.id);
                (embed, Some((muon::<B>(wd), blit)))
            }
        };
        let (mut decay, mut rest) = (adamw::<B>(cfg, wd), adamw::<B>(cfg, 0.0));
        if let Some(r) = saved {
            decay = decay.load_record(r.decay);
            rest = rest.load_record(r.rest);
            if let (Some((m, _)), Some(rec)) = (muon_group.as_mut(), r.muon) {
                *m = muon::<B>(wd).load_record(rec);
            }
        }
        Self {
            cfg: cfg.clone(),
            wd,
            decay,
            decay_ids,
            rest,
            muon: muon_group,
        }
    }

    /// The weight decay of the matrices from now on (moments kept).
    pub fn set_weight_decay(&mut self, wd: f64) {
        if wd == self.wd {
            return;
        }
        self.wd = wd;
        self.decay = adamw::<B>(&self.cfg, wd).load_record(self.decay.to_record());
        if let Some((m, _)) = self.muon.as_mut() {
            *m = muon::<B>(wd).load_record(m.to_record());
        }
    }

    /// One update of every group at learning rate `lr`.
    pub fn step(&mut self, lr: f64, mut model: Model<B>, mut grads: GradientsParams) -> Model<B> {
        if let Some((m, ids)) = self.muon.as_mut() {
            let g = split_off::<B>(&mut grads, ids);
            model = m.step(lr, model, g);
        }
        let g_decay = split_off::<B>(&mut grads, &self.decay_ids);
        model = self.decay.step(lr, model, g_decay);
        self.rest.step(lr, model, grads)
    }

    /// The state to checkpoint.
    pub fn records(&self) -> Records<B> {
        Records {
            decay: self.decay.to_record(),
            rest: self.rest.to_record(),
            muon: self.muon.as_ref().map(|(m, _)| m.to_record()),
        }
    }
}
