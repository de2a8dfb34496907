//! Loss evaluation without autodiff: the periodic validation on fixed batches and the quantized
//! validation loss over the whole validation split (the number a run reports).

use crate::data::Batch;
use crate::fused::FusedOps;
use crate::model::{Model, QuantMode, Tables};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

/// Input and target tensors of a batch.
pub fn batch_tensors<B: Backend>(
    b: &Batch,
    dev: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let shape = [b.batch, b.ctx];
    (
        Tensor::from_data(TensorData::new(b.inputs.clone(), shape), dev),
        Tensor::from_data(TensorData::new(b.targets.clone(), shape), dev),
    )
}

/// Mean negative log-likelihood (nats) over every predicted position of `batches`.
pub fn mean_nll<B: FusedOps>(
    model: &Model<B>,
    batches: &[Batch],
    tab: &Tables<B>,
    mode: QuantMode,
    dev: &B::Device,
) -> f64 {
    let mut sum = 0f64;
    let mut count = 0usize;
    for b in batches {
        let (x, y) = batch_tensors::<B>(b, dev);
        let s: f32 = model.nll_sum(x, y, tab, mode).into_scalar().elem();
        sum += f64::from(s);
        count += b.batch * b.ctx;
    }
    sum / count.max(1) as f64
}
