//! Gradients of one training step: the loss and its gradients (split over several devices when
//! there are several), the global-norm clip, and the split of the decayed parameter group.

use crate::data::Batch;
use crate::fused::FusedOps;
use crate::model::eval::batch_tensors;
use crate::model::{Model, QuantMode, Tables};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};

/// Ids of the decayed parameters: every matrix (BitLinear weights and the embedding); norm gains
/// are not decayed.
pub fn matrix_ids<B: Backend>(model: &Model<B>) -> Vec<ParamId> {
    let mut ids = MatrixIds(Vec::new());
    model.visit(&mut ids);
    ids.0
}

struct MatrixIds(Vec<ParamId>);
impl<B: Backend> ModuleVisitor<B> for MatrixIds {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        if D == 2 {
            self.0.push(p.id);
        }
    }
}

/// Moves the gradients of the parameters `ids` (all rank 2) out of `grads` into a group of their
/// own.
pub fn split_off<B: AutodiffBackend>(
    grads: &mut GradientsParams,
    ids: &[ParamId],
) -> GradientsParams {
    let mut group = GradientsParams::new();
    for id in ids {
        if let Some(g) = grads.remove::<B::InnerBackend, 2>(*id) {
            group.register(*id, g);
        }
    }
    group
}

/// Squared global gradient norm, one partial sum per parameter.
struct GradSq<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sq: Vec<Tensor<B::InnerBackend, 1>>,
}
impl<B: AutodiffBackend> ModuleVisitor<B> for GradSq<'_, B> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(p.id) {
            self.sq.push(g.square().sum());
        }
    }
}

/// Multiplies every gradient by `scale`.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    scale: f32,
}
impl<B: AutodiffBackend> ModuleVisitor<B> for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(p.id) {
            self.grads.register(p.id, g * self.scale);
        }
    }
}

/// Global L2 norm of the gradients; scales them to `max_norm` when above it (0 = no clipping).
pub fn clip_global_norm<B: AutodiffBackend>(
    model: &Model<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f32 {
    let mut v = GradSq::<B> {
        grads,
        sq: Vec::new(),
    };
    model.visit(&mut v);
    let norm: f32 = Tensor::cat(v.sq, 0).sum().sqrt().into_scalar().elem();
    if max_norm > 0.0 && f64::from(norm) > max_norm && norm.is_finite() {
        let scale = (max_norm / f64::from(norm)) as f32;
        model.visit(&mut GradScale { grads, scale });
    }
    norm
}

/// Loss and gradients of one batch, split across `devices` (data parallel) when there are several.
/// The loss is the mean NLL over the whole batch; each device's share is divided by the total
/// token count, so the summed gradients are those of the mean.
pub fn loss_and_grads<B: AutodiffBackend + FusedOps>(
    model: &Model<B>,
    batch: &Batch,
    devices: &[B::Device],
    tables: &[Tables<B>],
    mode: QuantMode,
) -> (f32, GradientsParams) {
    let n_tok = (batch.batch * batch.ctx) as f64;
    let run = |m: &Model<B>, b: &Batch, dev: &B::Device, tab: &Tables<B>| {
        let (x, y) = batch_tensors::<B>(b, dev);
        let loss = m.nll_sum(x, y, tab, mode) / n_tok;
        let value: f32 = loss.clone().into_scalar().elem();
        (value, GradientsParams::from_grads(loss.backward(), m))
    };
    if devices.len() == 1 {
        return run(model, batch, &devices[0], &tables[0]);
    }
    // Data parallel: rows dealt out to the devices, one thread each, gradients summed on device 0.
    let per = batch.batch.div_ceil(devices.len());
    let parts: Vec<(f32, GradientsParams)> = std::thread::scope(|s| {
        let handles: Vec<_> = devices
            .iter()
            .zip(tables)
            .enumerate()
            .filter_map(|(i, (dev, tab))| {
                let rows = (i * per)..((i + 1) * per).min(batch.batch);
                if rows.is_empty() {
                    return None;
                }
                let t = batch.ctx;
                let sub = Batch {
                    inputs: batch.inputs[rows.start * t..rows.end * t].to_vec(),
                    targets: batch.targets[rows.start * t..rows.end * t].to_vec(),
                    batch: rows.len(),
                    ctx: t,
                };
                let m = model.clone().fork(dev);
                let run = &run;
                Some(s.spawn(move || run(&m, &sub, dev, tab)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("device thread"))
            .collect()
    });
    let mut acc = GradientsAccumulator::<Model<B>>::new();
    let mut loss = 0f32;
    for (l, g) in parts {
        loss += l;
        acc.accumulate(model, g.to_device(&devices[0], model));
    }
    (loss, acc.grads())
}
