//! DDPM (Ho et al. 2020): ancestral sampling of the learned reverse process.
//!
//! From the predicted x0, the posterior mean of q(x_{t-1} | x_t, x0) is
//! `sqrt(ac_prev) * beta_t / (1 - ac_t) * x0 + sqrt(alpha_t) * (1 - ac_prev) / (1 - ac_t) * x_t`,
//! here with alpha_t = ac_t / ac_prev so that it works for any subsequence of
//! timesteps, plus `sigma_t * z` (z ~ N(0, I) from the generator) while t > 0.
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_ddpm.py`. Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{DDPMScheduler, Scheduler, SchedulerConfig};
//! let mut s = DDPMScheduler::new(&SchedulerConfig::default()).unwrap();
//! s.set_timesteps(10).unwrap();
//! assert_eq!(s.timesteps(), &[900.0, 800.0, 700.0, 600.0, 500.0, 400.0, 300.0, 200.0, 100.0, 0.0]);
//! // diffusers' test_variance: fixed_small variance at t = 487 is 0.00979 (all 1000 steps)
//! let mut s = DDPMScheduler::new(&SchedulerConfig::default()).unwrap();
//! s.set_timesteps(1000).unwrap();
//! assert!((s.variance(999 - 487).unwrap() - 0.00979).abs() < 1e-5);
//! ```

use tensor::random::TorchGenerator;

use super::betas::NoiseSchedule;
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing, VarianceType};
use super::elementwise::{map1, zip2};
use super::spacing::int_timesteps;
use super::{at, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// diffusers' `DDPMScheduler`.
#[derive(Clone, Debug)]
pub struct DDPMScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    variance_type: VarianceType,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
}

/// `sqrt(ac) * original + sqrt(1 - ac) * noise`, float32 (DDPM/DDIM/PNDM `add_noise`).
pub(crate) fn add_noise_alpha_prod(
    original: &Tensor,
    noise: &Tensor,
    alpha_prod: f32,
) -> Result<Tensor> {
    let sa = alpha_prod.sqrt();
    let sb = (1.0 - alpha_prod).sqrt();
    zip2(original, noise, |x, n| sa * x + sb * n)
}

/// x0 from the model output (epsilon, v or sample), clipped when `clip` is given.
pub(crate) fn predict_x0(
    prediction: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    alpha_prod: f32,
    clip: Option<f32>,
) -> Result<Tensor> {
    let (sa, sb) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    let x0 = match prediction {
        PredictionType::Epsilon => zip2(sample, model_output, |s, m| (s - sb * m) / sa)?,
        PredictionType::Sample => model_output.clone(),
        PredictionType::VPrediction => zip2(sample, model_output, |s, m| sa * s - sb * m)?,
    };
    match clip {
        Some(r) => map1(&x0, |v| v.max(-r).min(r)),
        None => Ok(x0),
    }
}

impl DDPMScheduler {
    /// Build from a config (defaults: leading spacing, fixed_small variance, clip_sample).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("DDPMScheduler")?;
        let mut config = config.clone();
        config.class_name = Some("DDPMScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Leading));
        let variance_type = config.variance_type.unwrap_or(VarianceType::FixedSmall);
        config.variance_type = Some(variance_type);
        if !matches!(
            variance_type,
            VarianceType::FixedSmall | VarianceType::FixedSmallLog | VarianceType::FixedLarge
        ) {
            return Err(DiffusionError::invalid(
                "DDPMScheduler",
                format!("variance_type {variance_type:?} is not supported (fixed_small, fixed_small_log, fixed_large are)"),
            ));
        }
        let schedule = NoiseSchedule::new(&config)?;
        let timesteps: Vec<i64> = (0..config.num_train_timesteps as i64).rev().collect();
        let timesteps_f64 = timesteps.iter().map(|&t| t as f64).collect();
        Ok(DDPMScheduler {
            config,
            schedule,
            variance_type,
            timesteps,
            timesteps_f64,
        })
    }

    /// The noise schedule (betas, alphas_cumprod).
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn prev_timestep(&self, step_index: usize) -> i64 {
        self.timesteps.get(step_index + 1).copied().unwrap_or(-1)
    }

    /// `_get_variance(t)` for the timestep at `step_index` (before the square root).
    pub fn variance(&self, step_index: usize) -> Result<f32> {
        let t = at(&self.timesteps, step_index, "timesteps")?;
        let prev_t = self.prev_timestep(step_index);
        let a = self.schedule.alpha_prod(t)?;
        let ap = if prev_t >= 0 {
            self.schedule.alpha_prod(prev_t)?
        } else {
            1.0
        };
        let current_beta = 1.0 - a / ap;
        let variance = ((1.0 - ap) / (1.0 - a) * current_beta).max(1e-20);
        Ok(match self.variance_type {
            VarianceType::FixedSmallLog => (0.5 * variance.ln()).exp(),
            VarianceType::FixedLarge => current_beta,
            _ => variance,
        })
    }
}

impl Scheduler for DDPMScheduler {
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let c = &self.config;
        self.timesteps = int_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Leading),
            c.num_train_timesteps,
            num_inference_steps,
            c.steps_offset,
        )?;
        self.timesteps_f64 = self.timesteps.iter().map(|&t| t as f64).collect();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f64
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        generator: &mut TorchGenerator,
    ) -> Result<SchedulerOutput> {
        let t = at(&self.timesteps, step_index, "timesteps")?;
        let prev_t = self.prev_timestep(step_index);
        let a = self.schedule.alpha_prod(t)?;
        let ap = if prev_t >= 0 {
            self.schedule.alpha_prod(prev_t)?
        } else {
            1.0
        };
        let (b, bp) = (1.0 - a, 1.0 - ap);
        let current_alpha = a / ap;
        let current_beta = 1.0 - current_alpha;
        let clip = self
            .config
            .clip_sample
            .then_some(self.config.clip_sample_range as f32);
        let x0 = predict_x0(self.config.prediction_type, model_output, sample, a, clip)?;
        let x0_coeff = ap.sqrt() * current_beta / b;
        let sample_coeff = current_alpha.sqrt() * bp / b;
        let mut prev = zip2(&x0, sample, |x, s| x0_coeff * x + sample_coeff * s)?;
        if t > 0 {
            let noise = generator.randn(model_output.dims().to_vec())?;
            let v = self.variance(step_index)?;
            let std = match self.variance_type {
                VarianceType::FixedSmallLog => v,
                _ => v.sqrt(),
            };
            prev = zip2(&prev, &noise, |p, n| p + std * n)?;
        }
        Ok(SchedulerOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step_index: usize) -> Result<Tensor> {
        let t = at(&self.timesteps, step_index, "timesteps")?;
        add_noise_alpha_prod(original, noise, self.schedule.alpha_prod(t)?)
    }

    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn name(&self) -> &'static str {
        "DDPMScheduler"
    }
}
