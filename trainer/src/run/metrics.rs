//! `metrics.csv` rows and the loss curve (`loss.svg`, plotters).

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One row of `metrics.csv` (one optimiser step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// steps done (1-based)
    pub step: usize,
    /// training tokens seen so far
    pub tokens: u64,
    /// learning rate used by this step
    pub lr: f64,
    /// weight decay used by this step
    pub weight_decay: f64,
    /// mean train NLL of this step's batch (training-mode forward)
    pub train_loss: f32,
    /// global gradient L2 norm before clipping
    pub grad_norm: f32,
    /// quantized-mode mean NLL on the fixed validation batches (only on eval steps)
    pub val_loss_fixed: Option<f64>,
    /// training tokens per second of this session so far
    pub tokens_per_s: f64,
    /// wall time of the run so far (all sessions)
    pub wall_s: f64,
}

/// The CSV header (documented in `trainer/EXPORT.md`).
pub const CSV_HEADER: &str =
    "step,tokens,lr,weight_decay,train_loss,grad_norm,val_loss_q_fixed_batches,tokens_per_s,wall_s";

/// `metrics.csv` text.
pub fn to_csv(rows: &[MetricRow]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for r in rows {
        let v = r
            .val_loss_fixed
            .map(|v| format!("{v:.6}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{},{},{:.6e},{},{:.6},{:.4},{},{:.1},{:.2}",
            r.step,
            r.tokens,
            r.lr,
            r.weight_decay,
            r.train_loss,
            r.grad_norm,
            v,
            r.tokens_per_s,
            r.wall_s
        );
    }
    s
}

/// Draws train loss (thin) and fixed-batch quantized validation loss (dots + line) against step.
pub fn plot_svg(rows: &[MetricRow], path: &Path, title: &str) -> Result<(), String> {
    if rows.is_empty() {
        return Ok(());
    }
    let train: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.step as f64, f64::from(r.train_loss)))
        .collect();
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_loss_fixed.map(|v| (r.step as f64, v)))
        .collect();
    let finite = train
        .iter()
        .chain(&val)
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let y_max = finite.clone().fold(0f64, f64::max).min(6.0) * 1.05;
    let y_min = finite.fold(f64::INFINITY, f64::min).max(0.0) * 0.95;
    let x_max = rows.last().map_or(1.0, |r| r.step as f64).max(1.0);

    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let e = |e: &dyn std::fmt::Debug| format!("{e:?}");
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, y_min..y_max.max(y_min + 0.1))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss (nats/char)")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(train, BLUE.mix(0.5)))
        .map_err(|x| e(&x))?
        .label("train (batch)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label("val, quantized (fixed batches)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled())))
        .map_err(|x| e(&x))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
