//! Callbacks: code the [`super::Learner`] runs at each stage of training, and the
//! built-in ones.
//!
//! A [`Callback`] implements any of `before_fit`, `before_epoch`, `before_batch`,
//! `after_batch`, `after_epoch`, `after_fit`. Each gets a [`Ctx`]: the run's
//! position ([`TrainState`]), the store, the optimizer, the EMA, the last batch's or
//! epoch's stats, and [`Ctx::request_stop`].
//!
//! - [`ProgressBar`]: an `indicatif` bar per epoch with the loss and samples/s
//!   (hidden when stderr is not a terminal), and one summary line per epoch on stdout.
//! - [`Recorder`]: every step's lr and loss, behind a cloneable handle.
//! - [`Checkpointer`]: a checkpoint every N steps and at the end of each epoch.
//! - [`StopAfter`]: stop after k batches (an interrupted run, for tests and demos).
//! - [`StopFlag`]: stop when a shared flag is raised (Ctrl-C handlers, other threads).
//! - [`EarlyStopping`]: stop when the validation (or training) loss stops improving.
//!
//! ```
//! use nn::{Callback, Ctx, Result};
//! /// Print the lr every 100 steps.
//! struct LrLogger;
//! impl Callback for LrLogger {
//!     fn after_batch(&mut self, ctx: &mut Ctx) -> Result<()> {
//!         if ctx.state.step % 100 == 0 {
//!             println!("step {}: lr {}", ctx.state.step, ctx.optimizer.lr());
//!         }
//!         Ok(())
//!     }
//! }
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use indicatif::{ProgressDrawTarget, ProgressStyle};

use super::{BatchStats, EpochStats};
use crate::checkpoint::{save_checkpoint, TrainState};
use crate::ema::Ema;
use crate::error::Result;
use crate::optim::Optimizer;
use crate::param::ParamStore;

/// What a callback sees.
pub struct Ctx<'c> {
    /// The run's position; after a batch, `step` and `batch` already count it.
    pub state: &'c TrainState,
    pub store: &'c ParamStore,
    pub optimizer: &'c dyn Optimizer,
    pub ema: Option<&'c Ema>,
    /// The epoch count `fit` was asked for.
    pub epochs: usize,
    /// Batches in this epoch, when the data iterator knows its length.
    pub batches_in_epoch: Option<usize>,
    /// In `after_batch`: the batch just trained.
    pub batch: Option<BatchStats>,
    /// In `after_epoch`: the epoch just finished.
    pub epoch: Option<EpochStats>,
    pub(crate) stop: bool,
}

impl Ctx<'_> {
    /// Ask the learner to stop after this hook (the position stays resumable).
    pub fn request_stop(&mut self) {
        self.stop = true;
    }
    pub fn stop_requested(&self) -> bool {
        self.stop
    }
}

/// Hooks into [`super::Learner::fit`]; every method defaults to doing nothing.
pub trait Callback {
    fn before_fit(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn before_epoch(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn before_batch(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn after_batch(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn after_epoch(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn after_fit(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
}

/// A progress bar per epoch showing the loss and throughput, and a summary line per
/// epoch on stdout (printed also when the bar is hidden: tests, CI, logs).
pub struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    samples: usize,
    loss_avg: Option<f64>,
    /// Print the per-epoch line (default true).
    pub print_epochs: bool,
}

impl Default for ProgressBar {
    fn default() -> Self {
        ProgressBar {
            bar: None,
            started: Instant::now(),
            samples: 0,
            loss_avg: None,
            print_epochs: true,
        }
    }
}

impl ProgressBar {
    pub fn new() -> ProgressBar {
        ProgressBar::default()
    }
}

/// The summary line of an epoch: `epoch 2/5: train loss 0.1234, acc 0.9512 | valid ...`.
pub fn epoch_line(e: &EpochStats, epochs: usize) -> String {
    let mut s = format!(
        "epoch {}/{}: train loss {:.4}",
        e.epoch + 1,
        epochs,
        e.train_loss
    );
    if let Some(a) = e.train_accuracy {
        s += &format!(", acc {a:.4}");
    }
    if let Some(l) = e.valid_loss {
        s += &format!(" | valid loss {l:.4}");
    }
    if let Some(a) = e.valid_accuracy {
        s += &format!(", acc {a:.4}");
    }
    s + &format!(" | {:.0} samples/s, {:.1} s", e.samples_per_sec, e.seconds)
}

impl Callback for ProgressBar {
    fn before_epoch(&mut self, ctx: &mut Ctx) -> Result<()> {
        let target = ProgressDrawTarget::stderr();
        let bar = match ctx.batches_in_epoch {
            Some(n) => indicatif::ProgressBar::with_draw_target(Some(n as u64), target),
            None => indicatif::ProgressBar::with_draw_target(None, target),
        };
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{wide_bar}] {pos}/{len} {msg} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {}/{}", ctx.state.epoch + 1, ctx.epochs));
        bar.set_position(ctx.state.batch as u64);
        self.bar = Some(bar);
        self.started = Instant::now();
        self.samples = 0;
        self.loss_avg = None;
        Ok(())
    }

    fn after_batch(&mut self, ctx: &mut Ctx) -> Result<()> {
        let Some(b) = ctx.batch else { return Ok(()) };
        self.samples += b.samples;
        // A smoothed loss reads better than the jumpy per-batch one.
        let l = f64::from(b.loss);
        self.loss_avg = Some(self.loss_avg.map_or(l, |a| 0.9 * a + 0.1 * l));
        if let Some(bar) = &self.bar {
            let rate = self.samples as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4}, {rate:.0} samples/s, lr {:.1e}",
                self.loss_avg.unwrap_or(l),
                b.lr
            ));
            bar.inc(1);
        }
        Ok(())
    }

    fn after_epoch(&mut self, ctx: &mut Ctx) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let (Some(e), true) = (ctx.epoch, self.print_epochs) {
            println!("{}", epoch_line(&e, ctx.epochs));
        }
        Ok(())
    }

    fn after_fit(&mut self, ctx: &mut Ctx) -> Result<()> {
        // A bar still open means the run stopped inside an epoch.
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if self.print_epochs {
                let total = ctx
                    .batches_in_epoch
                    .map_or("?".to_string(), |n| n.to_string());
                let s = ctx.state;
                let loss = self
                    .loss_avg
                    .map_or(String::new(), |l| format!(", loss {l:.4}"));
                println!(
                    "epoch {}/{}: stopped after batch {}/{total} (step {}){loss}",
                    s.epoch + 1,
                    ctx.epochs,
                    s.batch,
                    s.step
                );
            }
        }
        Ok(())
    }
}

/// One recorded step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record {
    pub step: usize,
    pub lr: f64,
    pub loss: f32,
}

/// Records every step's lr and loss; clone it before handing it to the learner and
/// read [`Recorder::records`] afterwards.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Record>>>);

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }
    pub fn records(&self) -> Vec<Record> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Callback for Recorder {
    fn after_batch(&mut self, ctx: &mut Ctx) -> Result<()> {
        if let Some(b) = ctx.batch {
            let r = Record {
                step: ctx.state.step - 1,
                lr: b.lr,
                loss: b.loss,
            };
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(r);
        }
        Ok(())
    }
}

/// Writes a checkpoint to one path (replaced atomically each time) every
/// `every_steps` optimizer steps (0: never mid-epoch) and after every epoch.
pub struct Checkpointer {
    pub path: PathBuf,
    pub every_steps: usize,
    /// How many checkpoints it has written.
    pub written: usize,
}

impl Checkpointer {
    pub fn new(path: impl Into<PathBuf>, every_steps: usize) -> Checkpointer {
        Checkpointer {
            path: path.into(),
            every_steps,
            written: 0,
        }
    }
    fn save(&mut self, ctx: &Ctx) -> Result<()> {
        save_checkpoint(&self.path, ctx.store, ctx.optimizer, ctx.ema, ctx.state)?;
        self.written += 1;
        Ok(())
    }
}

impl Callback for Checkpointer {
    fn after_batch(&mut self, ctx: &mut Ctx) -> Result<()> {
        if self.every_steps > 0 && ctx.state.step.is_multiple_of(self.every_steps) {
            self.save(ctx)?;
        }
        Ok(())
    }
    fn after_epoch(&mut self, ctx: &mut Ctx) -> Result<()> {
        self.save(ctx)
    }
}

/// Stops the run after `batches` batches (counted from when `fit` starts).
pub struct StopAfter {
    pub batches: usize,
    seen: usize,
}

impl StopAfter {
    pub fn new(batches: usize) -> StopAfter {
        StopAfter { batches, seen: 0 }
    }
}

impl Callback for StopAfter {
    fn before_fit(&mut self, ctx: &mut Ctx) -> Result<()> {
        if self.batches == 0 {
            ctx.request_stop();
        }
        Ok(())
    }
    fn after_batch(&mut self, ctx: &mut Ctx) -> Result<()> {
        self.seen += 1;
        if self.seen >= self.batches {
            ctx.request_stop();
        }
        Ok(())
    }
}

/// Stops the run after the current batch once the shared flag is set.
#[derive(Clone, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag::default()
    }
    /// Raise the flag (from anywhere holding a clone).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Callback for StopFlag {
    fn after_batch(&mut self, ctx: &mut Ctx) -> Result<()> {
        if self.0.load(Ordering::Relaxed) {
            ctx.request_stop();
        }
        Ok(())
    }
}

/// Stops when the epoch loss (validation if there is one, else training) has not
/// improved by more than `min_delta` for `patience` epochs.
pub struct EarlyStopping {
    pub patience: usize,
    pub min_delta: f64,
    best: f64,
    bad_epochs: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize, min_delta: f64) -> EarlyStopping {
        EarlyStopping {
            patience,
            min_delta,
            best: f64::INFINITY,
            bad_epochs: 0,
        }
    }
    /// The best loss seen.
    pub fn best(&self) -> f64 {
        self.best
    }
}

impl Callback for EarlyStopping {
    fn after_epoch(&mut self, ctx: &mut Ctx) -> Result<()> {
        let Some(e) = ctx.epoch else { return Ok(()) };
        let loss = e.valid_loss.unwrap_or(e.train_loss);
        if loss < self.best - self.min_delta {
            self.best = loss;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
            if self.bad_epochs >= self.patience {
                ctx.request_stop();
            }
        }
        Ok(())
    }
}
