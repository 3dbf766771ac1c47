//! Training the denoiser: pick a random timestep per image, noise the image to it in
//! closed form, and regress the noise (Ho et al. 2020, Algorithm 1):
//!
//! ```text
//! t ~ U{0..T-1},  eps ~ N(0, I),  x_t = sqrt(ac_t) x0 + sqrt(1 - ac_t) eps
//! loss = mean (model(x_t, t) - eps)^2
//! ```
//!
//! Sampling runs the library's schedulers through the `Scheduler` trait, exactly the
//! loop `diffusion/src/pipelines/generate.rs` runs for Stable Diffusion (without text).

use autodiff::{no_grad, Var};
use diffusion::schedulers::betas::NoiseSchedule;
use diffusion::schedulers::{Scheduler, SchedulerConfig};
use diffusion::Result;
use nn::{AdamW, AdamWConfig, BatchOutput, FitReport, Learner, OneCycle, ParamStore, ProgressBar};
use tensor::data::{Batch, Batches, ImageDataset};
use tensor::random::{TorchGenerator, WichmannHill};
use tensor::Tensor;

use crate::model::Denoiser;
use crate::schedule::q_sample;

/// The schedule of this lesson: DDPM's linear betas 1e-4..0.02 over T = 1000, with
/// diffusers' defaults (`clip_sample` true: predicted x0 clamped to [-1, 1]).
pub fn ddpm_config() -> SchedulerConfig {
    SchedulerConfig::default()
}

/// Fashion-MNIST images `(B, 1, 28, 28)` scaled from [0, 1] to [-1, 1], as diffusion
/// models see images.
pub fn images_pm1(data: &ImageDataset, indices: &[usize]) -> Result<Tensor> {
    Ok(to_pm1(&data.batch_tensor(indices, 0)?)?)
}

fn to_pm1(x: &Tensor) -> tensor::Result<Tensor> {
    x.mul_scalar(2.0)?.add_scalar(-1.0)
}

/// The eps-prediction loss of a batch `x0` (in [-1, 1]) at the given timesteps and noise.
pub fn loss_at(
    model: &Denoiser,
    schedule: &NoiseSchedule,
    x0: &Tensor,
    t: &[usize],
    eps: &Tensor,
) -> Result<Var> {
    let ac: Vec<f64> = t
        .iter()
        .map(|&i| schedule.alpha_prod(i as i64).map(f64::from))
        .collect::<Result<_>>()?;
    let xt = q_sample(x0, eps, &ac)?;
    let tf: Vec<f64> = t.iter().map(|&i| i as f64).collect();
    let pred = model.forward(&Var::constant(xt), &tf)?;
    Ok(nn::mse_loss(&pred, &Var::constant(eps.clone()))?)
}

/// Draw `b` timesteps uniformly from `0..T` and noise `(b, 1, 28, 28)` from `gen`.
pub fn draw_t_eps(
    gen: &mut TorchGenerator,
    b: usize,
    big_t: usize,
) -> Result<(Vec<usize>, Tensor)> {
    let t = (0..b)
        .map(|_| (gen.random_u64() % big_t as u64) as usize)
        .collect();
    Ok((t, gen.randn([b, 1, 28, 28])?))
}

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak lr of the one-cycle schedule (AdamW).
    pub max_lr: f64,
    pub seed: u64,
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1500,
            batch_size: 64,
            max_lr: 4e-3,
            seed: 0,
            progress: true,
        }
    }
}

/// Train with AdamW and one-cycle on `data`; returns the Learner's report and each
/// step's loss.
pub fn train(
    model: &Denoiser,
    store: &ParamStore,
    data: &ImageDataset,
    cfg: TrainConfig,
) -> Result<(FitReport, Vec<f32>)> {
    let schedule = NoiseSchedule::new(&ddpm_config())?;
    let big_t = schedule.alphas_cumprod.len();
    let mut gen = TorchGenerator::manual_seed(cfg.seed);
    let mut losses = Vec::new();
    let per_epoch = data.len() / cfg.batch_size.max(1);
    let epochs = cfg.steps.div_ceil(per_epoch.max(1)).max(1);
    let fit = {
        let step = |b: &Batch| -> nn::Result<BatchOutput> {
            let mut go = || -> Result<BatchOutput> {
                let x0 = to_pm1(&b.images)?;
                let (t, eps) = draw_t_eps(&mut gen, b.labels.len(), big_t)?;
                let loss = loss_at(model, &schedule, &x0, &t, &eps)?;
                losses.push(loss.to_scalar()?);
                Ok(BatchOutput::new(loss, b.labels.len()))
            };
            go().map_err(|e| nn::NnError::invalid("ddpm step", e.to_string()))
        };
        let mut remaining = cfg.steps;
        let data_fn = move |epoch: usize| {
            let mut order = WichmannHill::seed(cfg.seed.wrapping_add(epoch as u64 + 1));
            let take = remaining.min(per_epoch);
            remaining -= take;
            Ok(Batches::new(data, cfg.batch_size)?
                .drop_last(true)
                .shuffled(&mut order)
                .take(take))
        };
        let opt = AdamW::new(
            store,
            AdamWConfig {
                lr: cfg.max_lr,
                ..Default::default()
            },
        );
        let mut learner =
            Learner::new(store, opt, step, data_fn).schedule(OneCycle::new(cfg.max_lr, cfg.steps));
        if cfg.progress {
            learner = learner.callback(ProgressBar::new());
        }
        learner.fit(epochs)?
    };
    Ok((fit, losses))
}

/// The loss on held-out images with fixed timesteps and noise (seeded): comparable
/// across models. Predicting eps = 0 scores about 1.
pub fn eval_loss(model: &Denoiser, data: &ImageDataset, n: usize, seed: u64) -> Result<f64> {
    let schedule = NoiseSchedule::new(&ddpm_config())?;
    let mut gen = TorchGenerator::manual_seed(seed);
    let idx: Vec<usize> = (0..n.min(data.len())).collect();
    let mut total = 0.0;
    no_grad(|| -> Result<()> {
        for chunk in idx.chunks(128) {
            let x0 = images_pm1(data, chunk)?;
            let (t, eps) = draw_t_eps(&mut gen, chunk.len(), schedule.alphas_cumprod.len())?;
            let l = loss_at(model, &schedule, &x0, &t, &eps)?.to_scalar()?;
            total += f64::from(l) * chunk.len() as f64;
        }
        Ok(())
    })?;
    Ok(total / idx.len().max(1) as f64)
}

/// Run `scheduler` for `steps` steps from `x_t` (B, 1, 28, 28), drawing any step noise
/// from `gen`; `on_step(i, t, x)` sees each new sample. Returns the final sample.
pub fn sample(
    model: &Denoiser,
    scheduler: &mut dyn Scheduler,
    steps: usize,
    x_t: &Tensor,
    gen: &mut TorchGenerator,
    mut on_step: impl FnMut(usize, f64, &Tensor),
) -> Result<Tensor> {
    scheduler.set_timesteps(steps)?;
    let b = x_t.dims()[0];
    let mut x = x_t.mul_scalar(scheduler.init_noise_sigma() as f32)?;
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate() {
        let input = scheduler.scale_model_input(&x, i)?;
        let eps = no_grad(|| model.forward(&Var::constant(input), &vec![t; b]))?;
        x = scheduler.step(eps.value(), i, &x, gen)?.prev_sample;
        on_step(i, t, &x);
    }
    Ok(x)
}
