//! The training loop, in the spirit of the course's `Learner`: a model's loss, an
//! optimizer, a schedule and data, with callbacks at every stage.
//!
//! [`Learner::fit`] runs, for each epoch: `before_epoch`; for each batch, set the
//! schedule's lr (and momentum) for this step, `before_batch`, compute the loss with
//! the user's closure, backward, optionally clip the gradient norm, `optimizer.step`,
//! update the EMA, `after_batch`; then an optional validation pass (eval mode, no
//! grad) and `after_epoch`. Any callback may ask to stop ([`Ctx::request_stop`]);
//! `fit` then returns after the current batch, with [`FitReport::stopped`] set.
//!
//! The data is a factory `epoch -> iterator of batches`, so each epoch can be
//! shuffled by a seed derived from its number; together with [`TrainState`] this is
//! what makes resuming exact: [`Learner::resume`] restores weights, optimizer, EMA
//! and position from a checkpoint, and `fit` skips the batches already done in the
//! interrupted epoch. The built-in callbacks ([`callbacks`]) show a progress bar,
//! record losses, write checkpoints every N steps, and stop early or on request.
//!
//! ```
//! use autodiff::Var;
//! use nn::{BatchOutput, Learner, Linear, Module, ParamStore, Sgd, SgdConfig, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! // Learn y = 2x from one batch of four points.
//! let store = ParamStore::new();
//! let model = Linear::new(VarBuilder::from_init(&store, WichmannHill::seed(0)), 1, 1, false).unwrap();
//! let x = Tensor::from_vec(vec![-1.0, -0.5, 0.5, 1.0], [4, 1]).unwrap();
//! let y = x.mul_scalar(2.0).unwrap();
//! let opt = Sgd::new(&store, SgdConfig { lr: 0.5, ..Default::default() });
//! let mut learner = Learner::new(&store, opt, |(x, y): &(Tensor, Tensor)| {
//!     let pred = model.forward(&Var::constant(x.clone()))?;
//!     Ok(BatchOutput::new(nn::mse_loss(&pred, &Var::constant(y.clone()))?, 4))
//! }, move |_epoch| Ok(vec![Ok::<_, nn::NnError>((x.clone(), y.clone()))]));
//! let report = learner.fit(30).unwrap();
//! assert!(report.epochs.last().unwrap().train_loss < 1e-6);
//! ```

pub mod callbacks;

use std::time::Instant;

use autodiff::{no_grad, Var};
use tensor::Tensor;

pub use self::callbacks::{Callback, Ctx};
use crate::checkpoint::{load_checkpoint, save_checkpoint, TrainState};
use crate::clip::clip_grad_norm;
use crate::ema::Ema;
use crate::error::{NnError, Result};
use crate::loss::correct;
use crate::optim::Optimizer;
use crate::param::ParamStore;
use crate::schedule::LrSchedule;

/// What the loss closure returns for one batch.
pub struct BatchOutput {
    /// The scalar loss to differentiate.
    pub loss: Var,
    /// Samples in the batch (for means and throughput).
    pub samples: usize,
    /// For classification metrics: logits `(N, C)` and the targets.
    pub classes: Option<(Tensor, Vec<usize>)>,
}

impl BatchOutput {
    pub fn new(loss: Var, samples: usize) -> BatchOutput {
        BatchOutput {
            loss,
            samples,
            classes: None,
        }
    }
    /// Also report accuracy from `logits: (N, C)` and `targets`.
    pub fn with_classes(mut self, logits: Tensor, targets: Vec<usize>) -> BatchOutput {
        self.classes = Some((logits, targets));
        self
    }
}

/// One training batch, as callbacks see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchStats {
    pub loss: f32,
    pub samples: usize,
    /// The learning rate this step used.
    pub lr: f64,
    /// The gradient norm before clipping, when clipping.
    pub grad_norm: Option<f32>,
    /// Wall time of this batch (data excluded).
    pub seconds: f64,
}

/// One finished epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's samples.
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    pub valid_loss: Option<f64>,
    pub valid_accuracy: Option<f64>,
    /// Samples trained on in this run of the epoch (a resumed epoch counts its rest).
    pub samples: usize,
    pub seconds: f64,
    pub samples_per_sec: f64,
}

/// What [`Learner::fit`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitReport {
    pub epochs: Vec<EpochStats>,
    /// A callback asked to stop before the last epoch ended.
    pub stopped: bool,
    /// Optimizer steps taken in this call.
    pub steps: usize,
}

type BatchIter<'a, B> = Box<dyn Iterator<Item = Result<B>> + 'a>;
type DataFn<'a, B> = Box<dyn FnMut(usize) -> Result<BatchIter<'a, B>> + 'a>;
type LossFn<'a, B> = Box<dyn FnMut(&B) -> Result<BatchOutput> + 'a>;

fn data_fn<'a, B, F, I, E>(mut f: F) -> DataFn<'a, B>
where
    F: FnMut(usize) -> Result<I> + 'a,
    I: IntoIterator<Item = std::result::Result<B, E>>,
    I::IntoIter: 'a,
    E: Into<NnError>,
{
    Box::new(move |epoch| {
        let it = f(epoch)?.into_iter().map(|r| r.map_err(Into::into));
        Ok(Box::new(it) as BatchIter<'a, B>)
    })
}

/// The training loop over batches of type `B`.
pub struct Learner<'a, B> {
    store: ParamStore,
    optimizer: Box<dyn Optimizer + 'a>,
    loss_fn: LossFn<'a, B>,
    train: DataFn<'a, B>,
    valid: Option<DataFn<'a, B>>,
    schedule: Option<Box<dyn LrSchedule + 'a>>,
    callbacks: Vec<Box<dyn Callback + 'a>>,
    ema: Option<Ema>,
    clip: Option<f32>,
    /// Where the run is; restored by [`Learner::resume`].
    pub state: TrainState,
    /// Every finished epoch of this learner.
    pub history: Vec<EpochStats>,
    epoch_has_classes: bool,
}

impl<'a, B> Learner<'a, B> {
    /// A learner updating `store`'s parameters with `optimizer`, minimising what
    /// `loss_fn` returns for each batch of `train(epoch)`.
    pub fn new<F, I, E>(
        store: &ParamStore,
        optimizer: impl Optimizer + 'a,
        loss_fn: impl FnMut(&B) -> Result<BatchOutput> + 'a,
        train: F,
    ) -> Learner<'a, B>
    where
        F: FnMut(usize) -> Result<I> + 'a,
        I: IntoIterator<Item = std::result::Result<B, E>>,
        I::IntoIter: 'a,
        E: Into<NnError>,
    {
        Learner {
            store: store.clone(),
            optimizer: Box::new(optimizer),
            loss_fn: Box::new(loss_fn),
            train: data_fn(train),
            valid: None,
            schedule: None,
            callbacks: Vec::new(),
            ema: None,
            clip: None,
            state: TrainState::default(),
            history: Vec::new(),
            epoch_has_classes: false,
        }
    }

    /// Validation batches, evaluated after each epoch in eval mode without grad.
    pub fn valid<F, I, E>(mut self, valid: F) -> Self
    where
        F: FnMut(usize) -> Result<I> + 'a,
        I: IntoIterator<Item = std::result::Result<B, E>>,
        I::IntoIter: 'a,
        E: Into<NnError>,
    {
        self.valid = Some(data_fn(valid));
        self
    }

    /// Set the lr (and momentum) from `schedule` before every step.
    pub fn schedule(mut self, schedule: impl LrSchedule + 'a) -> Self {
        self.schedule = Some(Box::new(schedule));
        self
    }

    pub fn callback(mut self, callback: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Keep an exponential moving average of the weights.
    pub fn ema(mut self, ema: Ema) -> Self {
        self.ema = Some(ema);
        self
    }

    /// Clip the global gradient norm to `max_norm` before each step.
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Self {
        self.clip = Some(max_norm);
        self
    }

    pub fn store(&self) -> &ParamStore {
        &self.store
    }
    pub fn optimizer(&self) -> &dyn Optimizer {
        &*self.optimizer
    }
    pub fn ema_ref(&self) -> Option<&Ema> {
        self.ema.as_ref()
    }

    /// Write a checkpoint of the whole run to `path` (atomically).
    pub fn save_checkpoint(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        save_checkpoint(
            path,
            &self.store,
            &*self.optimizer,
            self.ema.as_ref(),
            &self.state,
        )
    }

    /// Restore weights, optimizer, EMA and position from a checkpoint; the next
    /// `fit` continues where it was written.
    pub fn resume(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        self.state = load_checkpoint(path, &self.store, &mut *self.optimizer, self.ema.as_mut())?;
        Ok(())
    }

    /// Train until `epochs` epochs are done in total (a resumed run continues from
    /// its epoch), or until a callback asks to stop.
    pub fn fit(&mut self, epochs: usize) -> Result<FitReport> {
        let mut callbacks = std::mem::take(&mut self.callbacks);
        let result = self.fit_with(epochs, &mut callbacks);
        self.callbacks = callbacks;
        result
    }

    fn ctx(&self, epochs: usize, batches: Option<usize>) -> Ctx<'_> {
        Ctx {
            state: &self.state,
            store: &self.store,
            optimizer: &*self.optimizer,
            ema: self.ema.as_ref(),
            epochs,
            batches_in_epoch: batches,
            batch: None,
            epoch: None,
            stop: false,
        }
    }

    fn fit_with(&mut self, epochs: usize, cbs: &mut [Box<dyn Callback + 'a>]) -> Result<FitReport> {
        let mut report = FitReport::default();
        let mut stop = hook(cbs, &mut self.ctx(epochs, None), |c, x| c.before_fit(x))?;
        let mut last_total = None;
        while !stop && self.state.epoch < epochs {
            let started = Instant::now();
            self.store.train();
            let mut batches = (self.train)(self.state.epoch)?;
            let total = match batches.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo + self.state.batch),
                _ => None,
            };
            last_total = total;
            for _ in 0..self.state.batch {
                if batches.next().transpose()?.is_none() {
                    break;
                }
            }
            stop = hook(cbs, &mut self.ctx(epochs, total), |c, x| c.before_epoch(x))?;
            let (mut run_samples, mut exhausted) = (0, false);
            self.epoch_has_classes = false;
            while !stop {
                let Some(batch) = batches.next().transpose()? else {
                    exhausted = true;
                    break;
                };
                stop = hook(cbs, &mut self.ctx(epochs, total), |c, x| c.before_batch(x))?;
                let stats = self.train_batch(&batch)?;
                run_samples += stats.samples;
                report.steps += 1;
                let mut ctx = self.ctx(epochs, total);
                ctx.batch = Some(stats);
                stop |= hook(cbs, &mut ctx, |c, x| c.after_batch(x))?;
            }
            if !exhausted && Some(self.state.batch) != total {
                // Stopped inside the epoch: leave the position for a resume.
                report.stopped = true;
                break;
            }
            let stats = self.end_epoch(started, run_samples)?;
            report.epochs.push(stats);
            let mut ctx = self.ctx(epochs, total);
            ctx.epoch = Some(stats);
            stop |= hook(cbs, &mut ctx, |c, x| c.after_epoch(x))?;
            report.stopped = stop && self.state.epoch < epochs;
        }
        hook(cbs, &mut self.ctx(epochs, last_total), |c, x| {
            c.after_fit(x)
        })?;
        Ok(report)
    }

    fn train_batch(&mut self, batch: &B) -> Result<BatchStats> {
        let started = Instant::now();
        if let Some(s) = &self.schedule {
            self.optimizer.set_lr(s.lr(self.state.step));
            if let Some(m) = s.momentum(self.state.step) {
                self.optimizer.set_momentum(m);
            }
        }
        let lr = self.optimizer.lr();
        let out = (self.loss_fn)(batch)?;
        let loss = out.loss.to_scalar()?;
        if !loss.is_finite() {
            return Err(NnError::NonFiniteLoss {
                step: self.state.step,
                value: loss,
            });
        }
        let mut grads = out.loss.backward()?;
        drop(out.loss);
        let grad_norm = match self.clip {
            Some(max) => Some(clip_grad_norm(&mut grads, &self.store.trainable(), max)?),
            None => None,
        };
        self.optimizer.step(&grads)?;
        drop(grads);
        if let Some(ema) = &mut self.ema {
            ema.update()?;
        }
        let st = &mut self.state;
        st.step += 1;
        st.batch += 1;
        st.epoch_loss_sum += f64::from(loss) * out.samples as f64;
        st.epoch_samples += out.samples;
        if let Some((logits, targets)) = &out.classes {
            st.epoch_correct += correct(logits, targets)?;
            self.epoch_has_classes = true;
        }
        Ok(BatchStats {
            loss,
            samples: out.samples,
            lr,
            grad_norm,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Close the epoch: validation, stats, and reset the position to the next epoch.
    fn end_epoch(&mut self, started: Instant, run_samples: usize) -> Result<EpochStats> {
        let st = self.state;
        let train_seconds = started.elapsed().as_secs_f64();
        let (valid_loss, valid_accuracy) = match self.valid.as_mut() {
            Some(valid) => {
                self.store.eval();
                let result = evaluate(valid, &mut self.loss_fn, st.epoch);
                self.store.train();
                let (loss, acc) = result?;
                (Some(loss), acc)
            }
            None => (None, None),
        };
        let mean = |x: f64| {
            if st.epoch_samples > 0 {
                x / st.epoch_samples as f64
            } else {
                f64::NAN
            }
        };
        let stats = EpochStats {
            epoch: st.epoch,
            train_loss: mean(st.epoch_loss_sum),
            train_accuracy: None,
            valid_loss,
            valid_accuracy,
            samples: run_samples,
            seconds: train_seconds,
            samples_per_sec: run_samples as f64 / train_seconds.max(1e-9),
        };
        let stats = EpochStats {
            train_accuracy: self
                .epoch_has_classes
                .then(|| mean(st.epoch_correct as f64)),
            ..stats
        };
        self.history.push(stats);
        self.state = TrainState {
            epoch: st.epoch + 1,
            step: st.step,
            ..TrainState::default()
        };
        Ok(stats)
    }
}

/// Mean loss (and accuracy, when batches report classes) over the validation data.
fn evaluate<B>(
    valid: &mut DataFn<'_, B>,
    loss_fn: &mut LossFn<'_, B>,
    epoch: usize,
) -> Result<(f64, Option<f64>)> {
    no_grad(|| {
        let (mut sum, mut n, mut right, mut classes) = (0f64, 0usize, 0usize, false);
        for batch in valid(epoch)? {
            let out = loss_fn(&batch?)?;
            sum += f64::from(out.loss.to_scalar()?) * out.samples as f64;
            n += out.samples;
            if let Some((logits, targets)) = &out.classes {
                right += correct(logits, targets)?;
                classes = true;
            }
        }
        let n_f = n.max(1) as f64;
        Ok((sum / n_f, classes.then(|| right as f64 / n_f)))
    })
}

/// Run one hook on every callback; whether any asked to stop.
fn hook<'c, 'a>(
    cbs: &mut [Box<dyn Callback + 'a>],
    ctx: &mut Ctx<'c>,
    f: impl Fn(&mut dyn Callback, &mut Ctx<'c>) -> Result<()>,
) -> Result<bool> {
    for cb in cbs.iter_mut() {
        f(&mut **cb, ctx)?;
    }
    Ok(ctx.stop)
}
