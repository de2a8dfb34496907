//! The training loop: batches, forward/backward, global-norm clipping, two AdamW groups,
//! schedule, periodic validation, checkpoints, Ctrl-C and `--resume`.

use crate::checkpoint::{self, TrainState};
use crate::config::{ModelConfig, TrainConfig};
use crate::data::{random_batch, val_windows, Batch, Corpus};
use crate::error::{Result, TrainError};
use crate::eval::{batch_tensors, mean_nll};
use crate::fused::FusedOps;
use crate::metrics::MetricRow;
use crate::model::{Model, QuantMode, Tables};
use crate::rng::SplitMix64;
use crate::runinfo::{self, Summary};
use crate::schedule;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Everything a run needs besides the data and the backend.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// model shape (vocab_size filled in)
    pub model: ModelConfig,
    /// schedule and run settings
    pub train: TrainConfig,
    /// preset name the run started from
    pub preset: String,
    /// the corpus file
    pub data_path: PathBuf,
    /// the run directory
    pub out: PathBuf,
    /// the command line, recorded in the run dir
    pub command: Vec<String>,
    /// stop (with a checkpoint, as on Ctrl-C) once this many steps are done
    pub stop_after: Option<usize>,
    /// show a progress bar / progress lines on stderr
    pub progress: bool,
    /// name of the backend, for the summary ("flex-cpu", "cuda:0", ...)
    pub backend_name: String,
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// All steps done and the run dir exported.
    Finished(Summary),
    /// Stopped early (Ctrl-C or `--stop-after`) after a checkpoint at this step.
    Stopped(usize),
}

type Opt<B> = OptimizerAdaptor<AdamW, Model<B>, B>;

fn adamw<B: AutodiffBackend>(cfg: &TrainConfig, weight_decay: f64) -> Opt<B> {
    AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.adam_eps as f32)
        .with_weight_decay(weight_decay as f32)
        .init::<B, Model<B>>()
}

/// Ids of the decayed parameters: every matrix (BitLinear weights and the embedding); norm gains
/// are not decayed.
struct MatrixIds(Vec<ParamId>);
impl<B: Backend> ModuleVisitor<B> for MatrixIds {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        if D == 2 {
            self.0.push(p.id);
        }
    }
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
fn clip_global_norm<B: AutodiffBackend>(
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
fn loss_and_grads<B: AutodiffBackend + FusedOps>(
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
    let dev = &devices[0];
    let (mcfg, tcfg) = (&spec.model, &spec.train);
    let out = &spec.out;
    B::seed(dev, tcfg.seed);
    let mut model = Model::<B>::new(mcfg, dev, tcfg.seed);
    let mut opt_rest = adamw::<B>(tcfg, 0.0);
    let mut state = TrainState::new(tcfg.seed);
    if resume && !checkpoint::exists(out) && !out.join("weights.safetensors").exists() {
        // Killed after the run dir was set up but before the first checkpoint: the state at
        // step 0 is a function of the seed, so start over (config.json is the run's).
        runinfo::log_line("no checkpoint yet: starting the run from step 0");
    } else if resume {
        let (m, o_decay, o_rest, st) = checkpoint::load::<B>(out, mcfg, dev)?;
        model = m;
        opt_rest = opt_rest.load_record(o_rest);
        state = st;
        if state.step > tcfg.steps {
            return Err(TrainError::Resume(format!(
                "the checkpoint is at step {}, past --steps {}",
                state.step, tcfg.steps
            )));
        }
        runinfo::log_line(&format!("resuming at step {}", state.step));
        let wd = schedule::weight_decay(tcfg, state.step);
        let opt = adamw::<B>(tcfg, wd).load_record(o_decay);
        return run_loop(devices, spec, corpus, model, opt, wd, opt_rest, state, stop);
    }
    if !resume {
        runinfo::write_start(spec, corpus)?;
    }
    let wd = schedule::weight_decay(tcfg, 0);
    let opt = adamw::<B>(tcfg, wd);
    run_loop(devices, spec, corpus, model, opt, wd, opt_rest, state, stop)
}

#[allow(clippy::too_many_arguments)]
fn run_loop<B: AutodiffBackend + FusedOps>(
    devices: &[B::Device],
    spec: &RunSpec,
    corpus: &Corpus,
    mut model: Model<B>,
    mut opt_decay: Opt<B>,
    mut opt_decay_wd: f64,
    mut opt_rest: Opt<B>,
    mut state: TrainState,
    stop: &AtomicBool,
) -> Result<Outcome>
where
    B::InnerBackend: FusedOps,
{
    let dev = &devices[0];
    let (mcfg, tcfg) = (&spec.model, &spec.train);
    let tables: Vec<Tables<B>> = devices.iter().map(|d| Tables::new(mcfg, d)).collect();
    let inner_tab = Tables::<B::InnerBackend>::new(mcfg, dev);
    let mode = QuantMode::train(tcfg.qat_all).with_dropout(tcfg.dropout);
    let mut ids = MatrixIds(Vec::new());
    model.visit(&mut ids);
    let decay_ids = ids.0;

    // Fixed validation batches: same RNG stream in every run and after every resume.
    let mut val_rng = SplitMix64::new(tcfg.seed ^ 0x7661_6c5f_6261_7463);
    let val_fixed: Vec<Batch> = (0..tcfg.val_batches)
        .map(|_| random_batch(&corpus.val, tcfg.batch_size, mcfg.ctx_len, &mut val_rng))
        .collect();

    let tokens_per_step = (tcfg.batch_size * mcfg.ctx_len) as u64;
    let start_step = state.step;
    let session_start = Instant::now();
    let wall_before = state.wall_s;
    let mut train_s_session = 0f64;
    let bar = runinfo::progress_bar(spec.progress, tcfg.steps, start_step);
    let plain_lines = spec.progress && !std::io::stderr().is_terminal();

    while state.step < tcfg.steps {
        if stop.load(Ordering::SeqCst) || spec.stop_after.is_some_and(|n| state.step >= n) {
            state.wall_s = wall_before + session_start.elapsed().as_secs_f64();
            checkpoint::save(&spec.out, &model, &opt_decay, &opt_rest, &state)?;
            bar.abandon_with_message(format!(
                "stopped at step {}; checkpoint written",
                state.step
            ));
            return Ok(Outcome::Stopped(state.step));
        }
        let step = state.step;
        let lr = schedule::lr(tcfg, step);
        let wd = schedule::weight_decay(tcfg, step);
        if wd != opt_decay_wd {
            // Stage 2: same moments, new weight decay.
            opt_decay = adamw::<B>(tcfg, wd).load_record(opt_decay.to_record());
            opt_decay_wd = wd;
        }
        let t0 = Instant::now();
        let batch = random_batch(&corpus.train, tcfg.batch_size, mcfg.ctx_len, &mut state.rng);
        if tcfg.dropout > 0.0 {
            // Dropout masks from the backend RNG, seeded from (seed, step, device): the same
            // masks after a resume.
            for (i, d) in devices.iter().enumerate() {
                let mut mix = SplitMix64::new(tcfg.seed ^ ((step as u64) << 16) ^ i as u64);
                B::seed(d, mix.next_u64());
            }
        }
        let (loss, mut grads) = loss_and_grads(&model, &batch, devices, &tables, mode);
        if !loss.is_finite() {
            bar.abandon();
            return Err(TrainError::NonFinite {
                step: step + 1,
                loss,
            });
        }
        let grad_norm = clip_global_norm(&model, &mut grads, tcfg.grad_clip);
        // Split off the decayed group (all rank-2 parameters).
        let mut g_decay = GradientsParams::new();
        for id in &decay_ids {
            if let Some(g) = grads.remove::<B::InnerBackend, 2>(*id) {
                g_decay.register(*id, g);
            }
        }
        model = opt_decay.step(lr, model, g_decay);
        model = opt_rest.step(lr, model, grads);
        train_s_session += t0.elapsed().as_secs_f64();
        state.step += 1;
        state.tokens_seen += tokens_per_step;

        let tok_s = ((state.step - start_step) as u64 * tokens_per_step) as f64 / train_s_session;
        let mut row = MetricRow {
            step: state.step,
            tokens: state.tokens_seen,
            lr,
            weight_decay: wd,
            train_loss: loss,
            grad_norm,
            val_loss_fixed: None,
            tokens_per_s: tok_s,
            wall_s: wall_before + session_start.elapsed().as_secs_f64(),
        };
        let eval_now = state.step.is_multiple_of(tcfg.eval_every) || state.step == tcfg.steps;
        if eval_now {
            let v = mean_nll(&model.valid(), &val_fixed, &inner_tab, QuantMode::EVAL, dev);
            row.val_loss_fixed = Some(v);
        }
        // Without a terminal (nohup, CI): a plain line four times per eval period.
        if plain_lines && (eval_now || state.step.is_multiple_of((tcfg.eval_every / 4).max(1))) {
            let eta = (tcfg.steps - state.step) as f64 * tokens_per_step as f64 / tok_s;
            let val = row
                .val_loss_fixed
                .map(|v| format!(" val(q) {v:.4}"))
                .unwrap_or_default();
            runinfo::log_line(&format!(
                "step {}/{} loss {loss:.4}{val} lr {lr:.2e} {tok_s:.0} tok/s eta {eta:.0}s",
                state.step, tcfg.steps
            ));
        }
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {loss:.4} | {:.1}k tok/s", tok_s / 1000.0));
        state.metrics.push(row);
        if state.step.is_multiple_of(tcfg.checkpoint_every) && state.step < tcfg.steps {
            state.wall_s = wall_before + session_start.elapsed().as_secs_f64();
            checkpoint::save(&spec.out, &model, &opt_decay, &opt_rest, &state)?;
        }
    }
    bar.finish_and_clear();
    state.wall_s = wall_before + session_start.elapsed().as_secs_f64();
    checkpoint::save(&spec.out, &model, &opt_decay, &opt_rest, &state)?;

    // Final evaluation and export.
    let valid = model.valid();
    let t_eval = Instant::now();
    let val_train_mode = mean_nll(
        &valid,
        &val_fixed,
        &inner_tab,
        QuantMode::train(tcfg.qat_all),
        dev,
    );
    let windows = val_windows(&corpus.val, mcfg.ctx_len, tcfg.batch_size);
    let q_val = mean_nll(&valid, &windows, &inner_tab, QuantMode::EVAL, dev);
    let tail: Vec<f32> = state
        .metrics
        .iter()
        .rev()
        .take(50)
        .map(|r| r.train_loss)
        .collect();
    let summary = Summary {
        export_version: crate::config::EXPORT_VERSION,
        steps: state.step,
        tokens_seen: state.tokens_seen,
        wall_time_s: state.wall_s,
        backend: spec.backend_name.clone(),
        devices: devices.len(),
        tokens_per_s: if train_s_session > 0.0 {
            ((state.step - start_step) as u64 * tokens_per_step) as f64 / train_s_session
        } else {
            0.0
        },
        final_train_loss: state.metrics.last().map_or(f32::NAN, |r| r.train_loss),
        final_train_loss_avg50: tail.iter().sum::<f32>() / tail.len().max(1) as f32,
        val_loss_train_forward: val_train_mode,
        quantized_val_loss: q_val,
        quantized_val_positions: windows.iter().map(|b| b.batch * b.ctx).sum(),
        quantized_eval_s: t_eval.elapsed().as_secs_f64(),
        n_params: mcfg.n_params(),
    };
    runinfo::write_end(spec, &valid, &state, &summary)?;
    Ok(Outcome::Finished(summary))
}
