//! Training a miniature Stable Diffusion on Fashion-MNIST with the same model code
//! that runs SD 1.5 (issue 7; lesson `lessons/10-stable-diffusion`): first an
//! [`crate::models::AutoencoderKL`] that maps 32x32 images to 4x8x8 latents
//! ([`vae`]), then a [`crate::models::UNet2DConditionModel`] with cross-attention
//! trained jointly with a small CLIP text encoder on the VAE's scaled latents
//! ([`unet`]), with captions drawn from templates ([`captions`]). Both stages use
//! `nn`'s [`nn::Learner`] (AdamW, warm-up + cosine lr, EMA, progress bar, atomic
//! resumable checkpoints) and write a diffusers model folder ([`folder`]) that
//! [`crate::pipelines::StableDiffusion::load`] reads like SD 1.5's.
//!
//! This reproduces, in miniature, diffusers' `examples/text_to_image/train_text_to_image.py`
//! (noise, timestep and `add_noise` per batch, MSE on epsilon, EMA of the UNet).
//!
//! ```
//! use diffusion::train::warmup_cosine;
//! let lr = warmup_cosine(1e-3, 10, 110, 0.1);
//! assert!((lr(0) - 1e-4).abs() < 1e-12);          // step 1 of 10 warm-up steps
//! assert!((lr(10) - 1e-3).abs() < 1e-12);         // the peak
//! assert!((lr(110) - 1e-4).abs() < 1e-12);        // the floor: 10% of the peak
//! ```

pub mod captions;
pub mod data;
pub mod folder;
pub mod latents;
pub mod unet;
pub mod vae;

use std::path::{Path, PathBuf};
use std::time::Instant;

use nn::{Callback, Checkpointer, Ctx, Learner, ProgressBar};

use crate::error::Result;

/// Settings shared by both stages.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Optimizer steps in total (a resumed run continues up to this count).
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: usize,
    pub seed: u64,
    /// Where the checkpoint goes (replaced atomically); resumed from when it exists.
    pub checkpoint: PathBuf,
    /// Write the checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Stop this invocation at this step (an interruption: the schedule still runs
    /// to `steps`, and a later run resumes from the checkpoint).
    pub stop_at: Option<usize>,
    /// Print a log line every this many steps (0: never).
    pub log_every: usize,
    /// Show the indicatif progress bar.
    pub progress: bool,
    /// Where the model trains (`tensor::Device::wgpu()` for the GPU): its parameters
    /// move there before the optimizer and EMA are made, and stay there.
    pub device: tensor::Device,
}

/// Learning rate at step `s`: linear warm-up from `peak / warmup` to `peak` over
/// `warmup` steps, then a cosine from `peak` down to `floor * peak` at `total`.
pub fn warmup_cosine(peak: f64, warmup: usize, total: usize, floor: f64) -> impl Fn(usize) -> f64 {
    move |s| {
        if s < warmup {
            return peak * (s + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup).max(1) as f64;
        let p = ((s - warmup) as f64 / span).min(1.0);
        let c = 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        peak * (floor + (1.0 - floor) * c)
    }
}

/// Stops the run when the step count reaches `total`, and prints a line every
/// `every` steps (mean loss since the last line, samples/s, lr, elapsed): what a log
/// file shows when the progress bar is hidden.
pub struct StepLog {
    pub total: usize,
    pub every: usize,
    started: Instant,
    last: Instant,
    loss_sum: f64,
    samples: usize,
    batches: usize,
    /// Every logged (step, mean loss).
    pub history: Vec<(usize, f64)>,
}

impl StepLog {
    pub fn new(total: usize, every: usize) -> StepLog {
        StepLog {
            total,
            every,
            started: Instant::now(),
            last: Instant::now(),
            loss_sum: 0.0,
            samples: 0,
            batches: 0,
            history: Vec::new(),
        }
    }
}

impl Callback for StepLog {
    fn after_batch(&mut self, ctx: &mut Ctx) -> nn::Result<()> {
        if let Some(b) = ctx.batch {
            self.loss_sum += f64::from(b.loss);
            self.samples += b.samples;
            self.batches += 1;
        }
        let step = ctx.state.step;
        if self.every > 0
            && (step.is_multiple_of(self.every) || step >= self.total)
            && self.batches > 0
        {
            let mean = self.loss_sum / self.batches as f64;
            let rate = self.samples as f64 / self.last.elapsed().as_secs_f64().max(1e-9);
            println!(
                "step {step}/{}: loss {mean:.5}, {rate:.1} samples/s, lr {:.2e}, {:.0} s",
                self.total,
                ctx.batch.map_or(0.0, |b| b.lr),
                self.started.elapsed().as_secs_f64()
            );
            self.history.push((step, mean));
            self.loss_sum = 0.0;
            self.samples = 0;
            self.batches = 0;
            self.last = Instant::now();
        }
        if step >= self.total {
            ctx.request_stop();
        }
        Ok(())
    }
}

/// Resume from `opts.checkpoint` if it exists, train until `opts.steps` steps, write
/// the checkpoint. When the learner keeps an EMA, its shadows are then copied into
/// the model's parameters (the weights to ship; the checkpoint keeps both).
pub fn run<B>(
    mut learner: Learner<'_, B>,
    opts: &RunOptions,
    batches_per_epoch: usize,
) -> Result<TrainSummary> {
    if opts.checkpoint.exists() {
        learner.resume(&opts.checkpoint)?;
        println!(
            "resumed from {} at step {}",
            opts.checkpoint.display(),
            learner.state.step
        );
    }
    let started = Instant::now();
    let first_step = learner.state.step;
    let mut last_epoch_loss = None;
    if learner.state.step < opts.stop_at.map_or(opts.steps, |s| s.min(opts.steps)) {
        let epochs = opts.steps.div_ceil(batches_per_epoch.max(1));
        let stop = opts.stop_at.map_or(opts.steps, |s| s.min(opts.steps));
        learner = learner.callback(StepLog::new(stop, opts.log_every));
        if opts.progress {
            learner = learner.callback(ProgressBar::new());
        }
        learner = learner.callback(Checkpointer::new(&opts.checkpoint, opts.checkpoint_every));
        let report = learner.fit(epochs)?;
        learner.save_checkpoint(&opts.checkpoint)?;
        last_epoch_loss = report.epochs.last().map(|e| e.train_loss);
    }
    if let Some(ema) = learner.ema_ref() {
        ema.copy_to(learner.store())?;
    }
    Ok(TrainSummary {
        step: learner.state.step,
        steps_run: learner.state.step - first_step,
        seconds: started.elapsed().as_secs_f64(),
        last_epoch_loss,
    })
}

/// What [`run`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainSummary {
    pub step: usize,
    pub steps_run: usize,
    pub seconds: f64,
    pub last_epoch_loss: Option<f64>,
}

/// Create `dir` (and parents), with an error naming it.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::DiffusionError::io(dir, e))
}
