//! Euler (Karras et al. 2022, Algorithm 2 without churn): the probability-flow ODE
//! `dx/dsigma = (x - x0) / sigma` in k-diffusion's sigma parametrisation, one Euler step
//! per UNet call: `x_{i+1} = x_i + (x_i - x0) / sigma_i * (sigma_{i+1} - sigma_i)`.
//!
//! The latents live at scale sigma (`x = x0 + sigma * eps`), so the UNet (trained on
//! `sqrt(ac) x0 + sqrt(1 - ac) eps`) is fed `x / sqrt(sigma^2 + 1)` and the initial noise
//! is `sigma_max` (linspace/trailing spacing) or `sqrt(sigma_max^2 + 1)` (leading).
//! sigma_i is the training sigma `sqrt((1 - ac) / ac)` read at the (fractional) timestep
//! with `np.interp`, or Karras' rho = 7 ramp between its ends.
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_euler_discrete.py`. Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{EulerDiscreteScheduler, Scheduler, SchedulerConfig, TimestepSpacing};
//! let mut cfg = SchedulerConfig::stable_diffusion_v1(); // no timestep_spacing key: linspace
//! let mut s = EulerDiscreteScheduler::new(&cfg).unwrap();
//! s.set_timesteps(15).unwrap();
//! assert!((s.sigmas()[1] - 9.6826).abs() < 1e-4);
//! assert!((s.init_noise_sigma() - 14.6146).abs() < 1e-4);
//! cfg.timestep_spacing = Some(TimestepSpacing::Leading); // a re-saved SD 1.5 config
//! let mut s = EulerDiscreteScheduler::new(&cfg).unwrap();
//! s.set_timesteps(15).unwrap();
//! assert_eq!(s.timesteps()[0], 925.0);
//! ```

use tensor::random::TorchGenerator;

use super::betas::{torch_linspace_f32, NoiseSchedule};
use super::config::{
    FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig, TimestepSpacing,
    TimestepType,
};
use super::elementwise::{map1, zip2};
use super::spacing::{
    float_timesteps, karras_sigmas, log_sigmas_f32, np_interp_arange, sigma_to_t,
};
use super::{at, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// `sample / (sigma ** 2 + 1) ** 0.5` in float32.
pub(crate) fn scale_by_sigma(sample: &Tensor, sigma: f32) -> Result<Tensor> {
    let d = (sigma * sigma + 1.0).sqrt();
    map1(sample, |x| x / d)
}

/// `sigmas.max()` (linspace, trailing) or `(max ** 2 + 1) ** 0.5` (leading), float32.
pub(crate) fn k_init_noise_sigma(sigmas: &[f32], spacing: TimestepSpacing) -> f64 {
    let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        _ => max as f64,
    }
}

/// x0 in the sigma parametrisation: `x - sigma_hat * eps`, the v formula with sigma,
/// or the sample itself.
pub(crate) fn k_x0(
    prediction: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    sigma: f32,
) -> Result<Tensor> {
    match prediction {
        PredictionType::Epsilon => zip2(sample, model_output, |s, m| s - sigma * m),
        PredictionType::VPrediction => {
            let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
            let c_skip = sigma * sigma + 1.0;
            zip2(model_output, sample, |m, s| m * c_out + s / c_skip)
        }
        PredictionType::Sample => Ok(model_output.clone()),
    }
}

/// The training-sigma table, with diffusers' zero-SNR fix (`ac[-1] = 2**-24`) applied.
pub(crate) fn k_schedule(config: &SchedulerConfig, rescale: bool) -> Result<NoiseSchedule> {
    let mut schedule = NoiseSchedule::build(config, rescale)?;
    if rescale {
        if let Some(last) = schedule.alphas_cumprod.last_mut() {
            *last = 2f32.powi(-24);
        }
    }
    Ok(schedule)
}

/// diffusers' `EulerDiscreteScheduler` (s_churn = 0).
#[derive(Clone, Debug)]
pub struct EulerDiscreteScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    sigmas: Vec<f32>,
    timesteps_f64: Vec<f64>,
}

impl EulerDiscreteScheduler {
    /// Build from a config (default spacing linspace).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("EulerDiscreteScheduler")?;
        let mut config = config.clone();
        config.class_name = Some("EulerDiscreteScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Linspace));
        let schedule = k_schedule(&config, config.rescale_betas_zero_snr)?;
        let mut s = EulerDiscreteScheduler {
            config,
            schedule,
            sigmas: Vec::new(),
            timesteps_f64: Vec::new(),
        };
        // diffusers' constructor state: all T training sigmas (descending) then 0
        let mut sig = s.schedule.sigmas();
        sig.reverse();
        sig.push(0.0);
        s.sigmas = sig;
        s.timesteps_f64 = (0..s.config.num_train_timesteps)
            .rev()
            .map(|t| t as f64)
            .collect();
        Ok(s)
    }

    /// The sigmas of the current schedule (N + 1 values, float32, the last one final).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The noise schedule (betas, alphas_cumprod).
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.config;
        let mut timesteps = float_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Linspace),
            c.num_train_timesteps,
            n,
            c.steps_offset,
        )?;
        let train: Vec<f32> = self.schedule.sigmas();
        let log_sigmas = log_sigmas_f32(&train);
        let train64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
        let mut sigmas: Vec<f64> = match c.interpolation_type {
            InterpolationType::Linear => {
                let t64: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
                np_interp_arange(&t64, &train64)
            }
            InterpolationType::LogLinear => {
                let (first, last) = (train[0].ln(), train[train.len() - 1].ln());
                torch_linspace_f32(last, first, n + 1)
                    .into_iter()
                    .map(|v| v.exp() as f64)
                    .collect()
            }
        };
        if c.use_karras_sigmas {
            let lo = c.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let hi = c.sigma_max.unwrap_or(sigmas[0]);
            sigmas = karras_sigmas(lo, hi, n);
            timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &log_sigmas) as f32)
                .collect();
        }
        let last = match c.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => {
                let a0 = self.schedule.alphas_cumprod[0];
                ((1.0 - a0) / a0).sqrt()
            }
        };
        self.sigmas = sigmas.into_iter().map(|s| s as f32).chain([last]).collect();
        check_sigmas("EulerDiscreteScheduler::set_timesteps", &self.sigmas)?;
        self.timesteps_f64 = if c.timestep_type == TimestepType::Continuous
            && c.prediction_type == PredictionType::VPrediction
        {
            self.sigmas[..self.sigmas.len() - 1]
                .iter()
                .map(|s| (0.25 * s.ln()) as f64)
                .collect()
        } else {
            timesteps.iter().map(|&t| t as f64).collect()
        };
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f64
    }

    fn init_noise_sigma(&self) -> f64 {
        k_init_noise_sigma(
            &self.sigmas,
            self.config.timestep_spacing_or(TimestepSpacing::Linspace),
        )
    }

    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> Result<Tensor> {
        scale_by_sigma(sample, at(&self.sigmas, step_index, "sigmas")?)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        _generator: &mut TorchGenerator,
    ) -> Result<SchedulerOutput> {
        let sigma = at(&self.sigmas, step_index, "sigmas")?;
        let sigma_next = at(&self.sigmas, step_index + 1, "sigmas")?;
        let sigma_hat = sigma * (0.0 + 1.0); // gamma = 0 (no churn)
        let x0 = match self.config.prediction_type {
            PredictionType::Epsilon => {
                k_x0(PredictionType::Epsilon, model_output, sample, sigma_hat)?
            }
            p => k_x0(p, model_output, sample, sigma)?,
        };
        let dt = sigma_next - sigma_hat;
        let prev = zip2(sample, &x0, |s, x| s + (s - x) / sigma_hat * dt)?;
        Ok(SchedulerOutput {
            prev_sample: prev,
            pred_original_sample: Some(x0),
        })
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step_index: usize) -> Result<Tensor> {
        let sigma = at(&self.sigmas, step_index, "sigmas")?;
        zip2(original, noise, |x, n| x + n * sigma)
    }

    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn name(&self) -> &'static str {
        "EulerDiscreteScheduler"
    }
}

/// Refuse a sigma schedule that cannot be stepped (NaN from a bad config).
pub(crate) fn check_sigmas(op: &'static str, sigmas: &[f32]) -> Result<()> {
    if let Some(i) = sigmas.iter().position(|s| !s.is_finite()) {
        return Err(DiffusionError::invalid(
            op,
            format!("sigma {i} is not finite ({})", sigmas[i]),
        ));
    }
    Ok(())
}
