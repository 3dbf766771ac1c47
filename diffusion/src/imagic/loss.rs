//! The diffusion loss of one image, the quantity both Imagic stages minimise:
//!
//! ```text
//! z0 (1, C, h, w)  the input image's scaled latents, fixed
//! t_k ~ U{0..T-1}, n_k ~ N(0, I)               k = 1..B  (B draws per step)
//! z_k = sqrt(ac_t) z0 + sqrt(1 - ac_t) n_k     (B, C, h, w)
//! loss = mean_k |unet(z_k, t_k, e) - target_k|^2,   target = n_k (epsilon models)
//!                                                    or sqrt(ac) n_k - sqrt(1 - ac) z0 (v)
//! ```
//!
//! [`LossDraws::random`] makes the draws of one optimisation step from a generator;
//! [`LossDraws::stratified`] makes a fixed set with timesteps spread evenly over the
//! schedule, so [`reconstruction_loss`] is a deterministic measure of how well a UNet
//! and an embedding explain the image (it is what the claims of
//! `lessons/10-stable-diffusion` compare before and after each stage).
//!
//! ```
//! use diffusion::imagic::loss::LossDraws;
//! use diffusion::schedulers::betas::NoiseSchedule;
//! use diffusion::schedulers::SchedulerConfig;
//! use diffusion::Tensor;
//! let schedule = NoiseSchedule::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
//! let z0 = Tensor::zeros([1, 4, 2, 2]);
//! let d = LossDraws::stratified(&z0, 4, 0, &schedule).unwrap();
//! assert_eq!(d.timesteps, vec![125.0, 375.0, 625.0, 875.0]);
//! assert_eq!(d.noisy.dims(), &[4, 4, 2, 2]);
//! ```

use autodiff::Var;
use tensor::random::TorchGenerator;
use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::models::UNet2DConditionModel;
use crate::schedulers::betas::NoiseSchedule;
use crate::schedulers::PredictionType;

/// B noised copies of one image's latents and what the UNet should predict for them.
#[derive(Clone, Debug)]
pub struct LossDraws {
    /// (B, C, h, w).
    pub noisy: Tensor,
    /// (B, C, h, w): the noise, or v for v-prediction models.
    pub target: Tensor,
    /// B timesteps.
    pub timesteps: Vec<f64>,
}

impl LossDraws {
    /// `b` draws of (t uniform in 0..T-1, noise) from `gen` (t first, then the noise).
    pub fn random(
        z0: &Tensor,
        b: usize,
        gen: &mut TorchGenerator,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<LossDraws> {
        let n_t = schedule.alphas_cumprod.len();
        let ts: Vec<usize> = (0..b)
            .map(|_| ((gen.uniform_f64() * n_t as f64) as usize).min(n_t.saturating_sub(1)))
            .collect();
        Self::at(z0, &ts, gen, schedule, prediction)
    }

    /// `b` draws at the timesteps `(k + 1/2) T / b` with noise from `seed`: a fixed
    /// set for measuring (epsilon target).
    pub fn stratified(
        z0: &Tensor,
        b: usize,
        seed: u64,
        schedule: &NoiseSchedule,
    ) -> Result<LossDraws> {
        Self::stratified_for(z0, b, seed, schedule, PredictionType::Epsilon)
    }

    /// [`LossDraws::stratified`] for a model predicting `prediction`.
    pub fn stratified_for(
        z0: &Tensor,
        b: usize,
        seed: u64,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<LossDraws> {
        let n_t = schedule.alphas_cumprod.len();
        let ts: Vec<usize> = (0..b).map(|k| (2 * k + 1) * n_t / (2 * b)).collect();
        Self::at(
            z0,
            &ts,
            &mut TorchGenerator::manual_seed(seed),
            schedule,
            prediction,
        )
    }

    fn at(
        z0: &Tensor,
        ts: &[usize],
        gen: &mut TorchGenerator,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<LossDraws> {
        let dims = z0.dims().to_vec();
        if dims.len() != 4 || dims[0] != 1 || ts.is_empty() {
            return Err(DiffusionError::invalid(
                "imagic loss",
                format!(
                    "expected latents (1, C, h, w) and at least one draw, got {dims:?} and {}",
                    ts.len()
                ),
            ));
        }
        let per: usize = dims[1..].iter().product();
        let b = ts.len();
        let mut noise = vec![0.0f32; b * per];
        gen.normal_fill(&mut noise);
        let z = z0.to_vec()?;
        let mut noisy = vec![0.0f32; b * per];
        let mut target = vec![0.0f32; b * per];
        for (k, &t) in ts.iter().enumerate() {
            let ac = *schedule.alphas_cumprod.get(t).ok_or_else(|| {
                DiffusionError::invalid("imagic loss", format!("timestep {t} outside the schedule"))
            })?;
            let (sa, sb) = (ac.sqrt(), (1.0 - ac).sqrt());
            for j in 0..per {
                let (n, x0) = (noise[k * per + j], z[j]);
                noisy[k * per + j] = sa * x0 + sb * n;
                target[k * per + j] = match prediction {
                    PredictionType::Epsilon => n,
                    PredictionType::VPrediction => sa * n - sb * x0,
                    PredictionType::Sample => x0,
                };
            }
        }
        let mut shape = dims.clone();
        shape[0] = b;
        Ok(LossDraws {
            noisy: Tensor::from_vec(noisy, shape.clone())?,
            target: Tensor::from_vec(target, shape)?,
            timesteps: ts.iter().map(|&t| t as f64).collect(),
        })
    }

    /// Number of draws.
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }
}

/// The loss of `draws` for `unet` with the text embedding `embedding` (1, 77, D),
/// recorded for backward (gradients reach `embedding` and any trainable UNet weight).
pub fn diffusion_loss(
    unet: &UNet2DConditionModel,
    draws: &LossDraws,
    embedding: &Var,
) -> Result<Var> {
    let d = embedding.dims().to_vec();
    if d.len() != 3 || d[0] != 1 {
        return Err(DiffusionError::invalid(
            "imagic loss",
            format!("the embedding must be (1, S, D), got {d:?}"),
        ));
    }
    let ctx = embedding.broadcast_as([draws.len(), d[1], d[2]])?;
    let pred = unet.forward(
        &Var::constant(draws.noisy.clone()),
        draws.timesteps.as_slice(),
        &ctx,
    )?;
    Ok(nn::mse_loss(&pred, &Var::constant(draws.target.clone()))?)
}

/// [`diffusion_loss`] without a graph, as a number: how well `unet` with
/// `embedding` reconstructs the image the draws were made from (lower is better).
pub fn reconstruction_loss(
    unet: &UNet2DConditionModel,
    draws: &LossDraws,
    embedding: &Tensor,
) -> Result<f64> {
    let loss =
        autodiff::no_grad(|| diffusion_loss(unet, draws, &Var::constant(embedding.clone())))?;
    Ok(f64::from(
        loss.value().to_vec()?.first().copied().unwrap_or(f32::NAN),
    ))
}
