//! Euler ancestral (k-diffusion's `sample_euler_ancestral`): an Euler step down to
//! `sigma_down`, then fresh noise of std `sigma_up`, with
//! `sigma_up = sqrt(s_to^2 (s_from^2 - s_to^2) / s_from^2)` and
//! `sigma_down = sqrt(s_to^2 - sigma_up^2)`, so the marginal noise level is s_to.
//! The noise is `torch.randn(shape, generator=g)` from the caller's [`TorchGenerator`],
//! drawn at every step (also the last, where sigma_up = 0), as diffusers does.
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_euler_ancestral_discrete.py`.
//! Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{EulerAncestralDiscreteScheduler, Scheduler, SchedulerConfig};
//! use tensor::random::TorchGenerator;
//! let mut s = EulerAncestralDiscreteScheduler::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
//! s.set_timesteps(2).unwrap();
//! assert_eq!(s.timesteps(), &[999.0, 0.0]);
//! let x = diffusion::Tensor::zeros(vec![1, 1, 2, 2]);
//! let mut g = TorchGenerator::manual_seed(0);
//! // x0 = x - sigma * 0 = 0; the last step lands on x0 exactly (sigma_up = 0)
//! let out = s.step(&x, 1, &x, &mut g).unwrap();
//! assert_eq!(out.prev_sample.to_vec().unwrap(), vec![0.0; 4]);
//! ```

use tensor::random::TorchGenerator;

use super::betas::NoiseSchedule;
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::elementwise::{zip2, zip3};
use super::euler::{check_sigmas, k_init_noise_sigma, k_schedule, k_x0, scale_by_sigma};
use super::spacing::{float_timesteps, np_interp_arange};
use super::{at, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// diffusers' `EulerAncestralDiscreteScheduler`.
#[derive(Clone, Debug)]
pub struct EulerAncestralDiscreteScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    sigmas: Vec<f32>,
    timesteps_f64: Vec<f64>,
}

impl EulerAncestralDiscreteScheduler {
    /// Build from a config (default spacing linspace; no Karras sigmas in diffusers'
    /// class, so `use_karras_sigmas` is ignored).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("EulerAncestralDiscreteScheduler")?;
        if config.prediction_type == PredictionType::Sample {
            return Err(DiffusionError::invalid(
                "EulerAncestralDiscreteScheduler",
                "prediction_type `sample` is not implemented (as in diffusers)",
            ));
        }
        let mut config = config.clone();
        config.class_name = Some("EulerAncestralDiscreteScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Linspace));
        let schedule = k_schedule(&config, config.rescale_betas_zero_snr)?;
        let mut sigmas = schedule.sigmas();
        sigmas.reverse();
        sigmas.push(0.0);
        let timesteps_f64 = (0..config.num_train_timesteps)
            .rev()
            .map(|t| t as f64)
            .collect();
        Ok(EulerAncestralDiscreteScheduler {
            config,
            schedule,
            sigmas,
            timesteps_f64,
        })
    }

    /// The sigmas of the current schedule (N + 1 values, float32, the last 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.config;
        let timesteps = float_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Linspace),
            c.num_train_timesteps,
            n,
            c.steps_offset,
        )?;
        let train64: Vec<f64> = self.schedule.sigmas().iter().map(|&s| s as f64).collect();
        let t64: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
        let sigmas = np_interp_arange(&t64, &train64);
        self.sigmas = sigmas.into_iter().map(|s| s as f32).chain([0.0]).collect();
        check_sigmas(
            "EulerAncestralDiscreteScheduler::set_timesteps",
            &self.sigmas,
        )?;
        self.timesteps_f64 = t64;
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
        generator: &mut TorchGenerator,
    ) -> Result<SchedulerOutput> {
        let sigma = at(&self.sigmas, step_index, "sigmas")?;
        let sigma_to = at(&self.sigmas, step_index + 1, "sigmas")?;
        let x0 = k_x0(self.config.prediction_type, model_output, sample, sigma)?;
        let (from2, to2) = (sigma * sigma, sigma_to * sigma_to);
        let sigma_up = (to2 * (from2 - to2) / from2).sqrt();
        let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma;
        let noise = generator.randn(model_output.dims().to_vec())?;
        let prev = zip3(sample, &x0, &noise, |s, x, n| {
            (s + (s - x) / sigma * dt) + n * sigma_up
        })?;
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
        "EulerAncestralDiscreteScheduler"
    }
}
