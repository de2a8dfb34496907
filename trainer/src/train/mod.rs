//! The training loop: a `Trainer` holds the loop state and takes one optimiser step at a time
//! (batch, forward/backward, global-norm clipping, the optimiser groups, schedule); periodic
//! validation and checkpoints, Ctrl-C, `--stop-after` and `--resume` around it.

pub mod checkpoint;
pub mod ema;
pub mod gradients;
pub mod optim;
pub mod schedule;

use crate::data::rng::SplitMix64;
use crate::data::{noise_inputs, random_batch, val_windows, Batch, Corpus};
use crate::error::{Result, TrainError};
use crate::fused::FusedOps;
use crate::model::eval::mean_nll;
use crate::model::{Model, QuantMode, Tables};
use crate::run::metrics::MetricRow;
use crate::run::runinfo::{self, AverageLoss, Summary};
use crate::train::checkpoint::TrainState;
use crate::train::ema::Ema;
use crate::train::gradients::{clip_global_norm, loss_and_grads};
use crate::train::optim::Optimizers;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use crate::run::spec::RunSpec;

/// How a call to [`train`] ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// All steps done and the run dir exported.
    Finished(Summary),
    /// Stopped early (Ctrl-C or `--stop-after`) after a checkpoint at this step.
    Stopped(usize),
}

/// Trains (or resumes) the run described by `spec` on `devices` (the first one holds the
/// model; more than one means data parallel). `stop` is raised by Ctrl-C.
pub fn train<B: AutodiffBackend + FusedOps>(
    devices: &[B::Device],
    spec: &RunSpec,
    corpus: &Corpus,
    resume: bool,
    stop: &AtomicBool,
) -> Result<Outcome>
where
    B::InnerBackend: FusedOps,
{
    let mut run = Trainer::<B>::start(devices, spec, corpus, resume)?;
    while run.state.step < spec.train.steps {
        if stop.load(Ordering::SeqCst) || spec.stop_after.is_some_and(|n| run.state.step >= n) {
            return run.stop();
        }
        run = run.step()?;
    }
    run.finish().map(Outcome::Finished)
}

/// Wall time of a session on top of the sessions before it, and time spent in training steps.
struct Clock {
    session_start: Instant,
    /// wall seconds of the earlier sessions (from the checkpoint)
    wall_before: f64,
    /// seconds spent in the steps of this session (no evaluation, no checkpoints)
    train_s: f64,
}

impl Clock {
    /// Wall seconds of the whole run so far.
    fn wall_s(&self) -> f64 {
        self.wall_before + self.session_start.elapsed().as_secs_f64()
    }
}

/// The state of a training session between two steps: the model, its optimiser groups and the
/// checkpointed [`TrainState`], plus what the session computes once.
struct Trainer<'a, B: AutodiffBackend> {
    devices: &'a [B::Device],
    spec: &'a RunSpec,
    corpus: &'a Corpus,
    model: Model<B>,
    /// the optimiser groups
    opts: Optimizers<B>,
    /// the weight averages of `--ema` (empty until stage 2 starts)
    averages: Vec<Ema<B::InnerBackend>>,
    state: TrainState,
    /// RoPE tables per device (training) and for the evaluation backend
    tables: Vec<Tables<B>>,
    eval_tables: Tables<B::InnerBackend>,
    /// how the training forward runs (quantizers, dropout)
    mode: QuantMode,
    /// fixed validation batches: the same in every run and after every resume
    val_fixed: Vec<Batch>,
    tokens_per_step: u64,
    /// `state.step` when this session started
    start_step: usize,
    clock: Clock,
    bar: ProgressBar,
    /// progress as plain lines (progress wanted, stderr not a terminal)
    plain_lines: bool,
}

impl<'a, B: AutodiffBackend + FusedOps> Trainer<'a, B>
where
    B::InnerBackend: FusedOps,
{
    /// A fresh run (its run dir set up) or, with `resume`, the run in `spec.out` at its last
    /// checkpoint.
    fn start(
        devices: &'a [B::Device],
        spec: &'a RunSpec,
        corpus: &'a Corpus,
        resume: bool,
    ) -> Result<Self> {
        let dev = &devices[0];
        let (mcfg, tcfg, out) = (&spec.model, &spec.train, &spec.out);
        B::seed(dev, tcfg.seed);
        let resumed = if !resume {
            runinfo::write_start(spec, corpus)?;
            None
        } else if !checkpoint::exists(out) && !out.join("weights.safetensors").exists() {
            // Killed after the run dir was set up but before the first checkpoint: the state at
            // step 0 is a function of the seed, so start over (config.json is the run's).
            runinfo::log_line("no checkpoint yet: starting the run from step 0");
            None
        } else {
            let n_averages = tcfg.ema_decays.len();
            Some(checkpoint::load::<B>(
                out,
                mcfg,
                tcfg.optimizer,
                n_averages,
                dev,
            )?)
        };
        let (model, state, opts, averages) = match resumed {
            None => {
                let wd = schedule::weight_decay(tcfg, 0);
                let model = Model::<B>::new(mcfg, dev, tcfg.seed);
                let opts = Optimizers::new(tcfg, &model, wd, None);
                (model, TrainState::new(tcfg.seed), opts, Vec::new())
            }
            Some(checkpoint::Loaded {
                model,
                records,
                averages,
                state,
            }) => {
                if state.step > tcfg.steps {
                    return Err(TrainError::Resume(format!(
                        "the checkpoint is at step {}, past --steps {}",
                        state.step, tcfg.steps
                    )));
                }
                runinfo::log_line(&format!("resuming at step {}", state.step));
                let wd = schedule::weight_decay(tcfg, state.step);
                let opts = Optimizers::new(tcfg, &model, wd, Some(records));
                let averages = (tcfg.ema_decays.iter().zip(averages))
                    .map(|(&decay, model)| Ema { decay, model })
                    .collect();
                (model, state, opts, averages)
            }
        };
        // Fixed validation batches: the same RNG stream in every run and after every resume.
        let mut val_rng = SplitMix64::new(tcfg.seed ^ 0x7661_6c5f_6261_7463);
        let val_fixed = (0..tcfg.val_batches)
            .map(|_| random_batch(&corpus.val, tcfg.batch_size, mcfg.ctx_len, &mut val_rng))
            .collect();
        let clock = Clock {
            session_start: Instant::now(),
            wall_before: state.wall_s,
            train_s: 0.0,
        };
        Ok(Self {
            devices,
            spec,
            corpus,
            model,
            opts,
            averages,
            tables: devices.iter().map(|d| Tables::new(mcfg, d)).collect(),
            eval_tables: Tables::new(mcfg, dev),
            mode: QuantMode::train(tcfg.qat_all).with_dropout(tcfg.dropout),
            val_fixed,
            tokens_per_step: (tcfg.batch_size * mcfg.ctx_len) as u64,
            start_step: state.step,
            bar: runinfo::progress_bar(spec.progress, tcfg.steps, state.step),
            plain_lines: spec.progress && !std::io::stderr().is_terminal(),
            state,
            clock,
        })
    }

    /// One optimiser step: draw the batch, loss and gradients, clip, update both groups, record
    /// the metrics row (validating on eval steps), checkpoint on checkpoint steps.
    fn step(mut self) -> Result<Self> {
        let tcfg = &self.spec.train;
        let step = self.state.step;
        let lr = schedule::lr(tcfg, step);
        let wd = schedule::weight_decay(tcfg, step);
        // Stage 2: same moments, new weight decay.
        self.opts.set_weight_decay(wd);
        let t0 = Instant::now();
        let mut batch = random_batch(
            &self.corpus.train,
            tcfg.batch_size,
            self.spec.model.ctx_len,
            &mut self.state.rng,
        );
        // Its own stream per step (the sampler's stays as without noise; the same after a resume).
        let mut noise_rng = SplitMix64::new(tcfg.seed ^ 0x6e6f_6973_6500_0000 ^ step as u64);
        noise_inputs(
            &mut batch,
            &self.corpus.train,
            tcfg.input_noise,
            &mut noise_rng,
        );
        self.seed_dropout(step);
        let (loss, mut grads) = loss_and_grads(
            &self.model,
            &batch,
            self.devices,
            &self.tables,
            self.mode_at(step),
        );
        if !loss.is_finite() {
            self.bar.abandon();
            return Err(TrainError::NonFinite {
                step: step + 1,
                loss,
            });
        }
        let grad_norm = clip_global_norm(&self.model, &mut grads, tcfg.grad_clip);
        self.model = self.opts.step(lr, self.model, grads);
        self.state.step += 1;
        self.state.tokens_seen += self.tokens_per_step;
        self.average();
        self.clock.train_s += t0.elapsed().as_secs_f64();

        let (tokens_per_s, wall_s) = (self.tokens_per_s(), self.clock.wall_s());
        let eval_now =
            self.state.step.is_multiple_of(tcfg.eval_every) || self.state.step == tcfg.steps;
        let row = MetricRow {
            step: self.state.step,
            tokens: self.state.tokens_seen,
            lr,
            weight_decay: wd,
            train_loss: loss,
            grad_norm,
            val_loss_fixed: eval_now.then(|| self.validate()),
            tokens_per_s,
            wall_s,
        };
        self.show_progress(&row);
        self.state.metrics.push(row);
        if self.state.step.is_multiple_of(tcfg.checkpoint_every) && self.state.step < tcfg.steps {
            self.checkpoint()?;
        }
        Ok(self)
    }

    /// The weight averages after a step: started from the weights once stage 2 has begun (after
    /// step `steps / 2`), moved towards them after every later step.
    fn average(&mut self) {
        let decays = &self.spec.train.ema_decays;
        if decays.is_empty() || self.state.step < schedule::mid(&self.spec.train) {
            return;
        }
        let live = self.model.valid();
        if self.averages.is_empty() {
            self.averages = decays.iter().map(|&b| Ema::start(b, &live)).collect();
            self.state.ema_start = Some(self.state.step);
        } else {
            Ema::update_all(&mut self.averages, &live);
        }
    }

    /// The training forward of 0-based `step`: float during the warm start, then `mode`; no
    /// dropout before `dropout_from`.
    fn mode_at(&self, step: usize) -> QuantMode {
        let tcfg = &self.spec.train;
        let mode = if step < tcfg.float_steps {
            QuantMode::FLOAT.with_dropout(self.mode.dropout)
        } else {
            self.mode
        };
        if step < tcfg.dropout_from {
            mode.with_dropout(0.0)
        } else {
            mode
        }
    }

    /// Dropout masks come from the backend RNG, seeded from (seed, step, device): the same masks
    /// after a resume.
    fn seed_dropout(&self, step: usize) {
        let tcfg = &self.spec.train;
        if tcfg.dropout > 0.0 {
            for (i, d) in self.devices.iter().enumerate() {
                let mut mix = SplitMix64::new(tcfg.seed ^ ((step as u64) << 16) ^ i as u64);
                B::seed(d, mix.next_u64());
            }
        }
    }

    /// Training tokens per second of this session's steps.
    fn tokens_per_s(&self) -> f64 {
        let tokens = (self.state.step - self.start_step) as u64 * self.tokens_per_step;
        tokens as f64 / self.clock.train_s
    }

    /// Quantized-mode loss on the fixed validation batches.
    fn validate(&self) -> f64 {
        let dev = &self.devices[0];
        let valid = self.model.valid();
        mean_nll(
            &valid,
            &self.val_fixed,
            &self.eval_tables,
            QuantMode::EVAL,
            dev,
        )
    }

    /// The progress bar; without a terminal (nohup, CI), a plain line four times per eval period.
    fn show_progress(&self, row: &MetricRow) {
        let tcfg = &self.spec.train;
        let (step, loss, tok_s) = (row.step, row.train_loss, row.tokens_per_s);
        let quarter = step.is_multiple_of((tcfg.eval_every / 4).max(1));
        if self.plain_lines && (row.val_loss_fixed.is_some() || quarter) {
            let eta = (tcfg.steps - step) as f64 * self.tokens_per_step as f64 / tok_s;
            let val = row
                .val_loss_fixed
                .map(|v| format!(" val(q) {v:.4}"))
                .unwrap_or_default();
            let lr = row.lr;
            runinfo::log_line(&format!(
                "step {step}/{} loss {loss:.4}{val} lr {lr:.2e} {tok_s:.0} tok/s eta {eta:.0}s",
                tcfg.steps
            ));
        }
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("loss {loss:.4} | {:.1}k tok/s", tok_s / 1000.0));
    }

    /// Writes a checkpoint of the current state.
    fn checkpoint(&mut self) -> Result<()> {
        self.state.wall_s = self.clock.wall_s();
        let (model, state) = (&self.model, &self.state);
        let averages: Vec<_> = self.averages.iter().map(|a| &a.model).collect();
        let (cfg, optimizer) = (&self.spec.model, self.spec.train.optimizer);
        let records = self.opts.records();
        checkpoint::save(
            &self.spec.out,
            cfg,
            optimizer,
            model,
            records,
            &averages,
            state,
        )
    }

    /// Stops early (Ctrl-C, `--stop-after`) with a checkpoint.
    fn stop(mut self) -> Result<Outcome> {
        self.checkpoint()?;
        let step = self.state.step;
        self.bar
            .abandon_with_message(format!("stopped at step {step}; checkpoint written"));
        Ok(Outcome::Stopped(step))
    }

    /// After the last step: the final checkpoint, the final evaluations, the exported run dir.
    fn finish(mut self) -> Result<Summary> {
        self.bar.finish_and_clear();
        self.checkpoint()?;
        let (mcfg, tcfg) = (&self.spec.model, &self.spec.train);
        let (dev, tab) = (&self.devices[0], &self.eval_tables);
        let last = self.model.valid();
        let windows = val_windows(&self.corpus.val, mcfg.ctx_len, tcfg.batch_size);
        let t_eval = Instant::now();
        let last_q_val = mean_nll(&last, &windows, tab, QuantMode::EVAL, dev);
        let quantized_eval_s = t_eval.elapsed().as_secs_f64();
        let averages: Vec<AverageLoss> = (self.averages.iter())
            .map(|a| AverageLoss {
                decay: a.decay,
                quantized_val_loss: mean_nll(&a.model, &windows, tab, QuantMode::EVAL, dev),
            })
            .collect();
        for a in &averages {
            runinfo::log_line(&format!(
                "EMA {}: quantized val loss {:.4} (last weights {last_q_val:.4})",
                a.decay, a.quantized_val_loss
            ));
        }
        // The first average, when there is one, is the run's model (its loss is computed above).
        let (valid, q_val) = match (self.averages.first(), averages.first()) {
            (Some(a), Some(l)) => (a.model.clone(), l.quantized_val_loss),
            _ => (last, last_q_val),
        };
        let train_mode = QuantMode::train(tcfg.qat_all);
        let val_train_mode = mean_nll(&valid, &self.val_fixed, tab, train_mode, dev);
        let float_val = mean_nll(&valid, &windows, tab, QuantMode::FLOAT, dev);
        let metrics = &self.state.metrics;
        let tail: Vec<f32> = metrics
            .iter()
            .rev()
            .take(50)
            .map(|r| r.train_loss)
            .collect();
        let scored = self.corpus.val_scored(mcfg.ctx_len);
        let nll_sum = q_val * scored.tokens as f64;
        let summary = Summary {
            export_version: crate::config::export_version(tcfg.tokenizer),
            steps: self.state.step,
            tokens_seen: self.state.tokens_seen,
            wall_time_s: self.state.wall_s,
            backend: self.spec.backend_name.clone(),
            devices: self.devices.len(),
            tokens_per_s: if self.clock.train_s > 0.0 {
                self.tokens_per_s()
            } else {
                0.0
            },
            final_train_loss: metrics.last().map_or(f32::NAN, |r| r.train_loss),
            final_train_loss_avg50: tail.iter().sum::<f32>() / tail.len().max(1) as f32,
            val_loss_train_forward: val_train_mode,
            quantized_val_loss: q_val,
            quantized_val_positions: windows.iter().map(|b| b.batch * b.ctx).sum(),
            quantized_val_nats_per_char: nll_sum / scored.chars.max(1) as f64,
            quantized_val_bits_per_byte: nll_sum
                / std::f64::consts::LN_2
                / scored.bytes.max(1) as f64,
            quantized_val_chars: scored.chars,
            quantized_val_bytes: scored.bytes,
            val_chars_per_token: self.corpus.val_chars as f64 / self.corpus.val.len().max(1) as f64,
            quantized_eval_s,
            float_val_loss: float_val,
            last_weights_quantized_val_loss: last_q_val,
            averages,
            n_params: mcfg.n_params(),
        };
        runinfo::write_end(self.spec, &valid, metrics, &summary)?;
        Ok(summary)
    }
}
