//! DDIM (Song et al. 2020): the deterministic (eta = 0) non-Markovian sampler.
//!
//! `x_{t'} = sqrt(ac_{t'}) * x0 + sqrt(1 - ac_{t'} - sigma^2) * eps + sigma * z` with
//! `sigma = eta * sqrt((1 - ac_{t'}) / (1 - ac_t) * (1 - ac_t / ac_{t'}))`, where the
//! previous timestep is always `t' = t - T // N` (diffusers' rule, whatever the spacing),
//! and `ac_{t'}` for t' < 0 is 1 (`set_alpha_to_one`) or ac[0].
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_ddim.py`. Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{DDIMScheduler, Scheduler, SchedulerConfig};
//! let cfg = SchedulerConfig { steps_offset: 1, ..Default::default() };
//! let mut s = DDIMScheduler::new(&cfg).unwrap();
//! s.set_timesteps(5).unwrap();
//! assert_eq!(s.timesteps(), &[801.0, 601.0, 401.0, 201.0, 1.0]);
//! assert_eq!(s.prev_timestep(801), 601);
//! // diffusers' test_variance: _get_variance(420, 400) = 0.14771
//! assert!((s.variance(420, 400).unwrap() - 0.14771).abs() < 1e-5);
//! ```

use tensor::random::TorchGenerator;

use super::betas::NoiseSchedule;
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::ddpm::{add_noise_alpha_prod, predict_x0};
use super::elementwise::zip2;
use super::spacing::int_timesteps;
use super::{at, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// diffusers' `DDIMScheduler`.
#[derive(Clone, Debug)]
pub struct DDIMScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
    eta: f64,
    use_clipped_model_output: bool,
}

impl DDIMScheduler {
    /// Build from a config (defaults: leading spacing, set_alpha_to_one true, clip_sample).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("DDIMScheduler")?;
        let mut config = config.clone();
        config.class_name = Some("DDIMScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Leading));
        let set_alpha_to_one = config.set_alpha_to_one.unwrap_or(true);
        config.set_alpha_to_one = Some(set_alpha_to_one);
        let schedule = NoiseSchedule::new(&config)?;
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        let timesteps: Vec<i64> = (0..config.num_train_timesteps as i64).rev().collect();
        let timesteps_f64 = timesteps.iter().map(|&t| t as f64).collect();
        Ok(DDIMScheduler {
            config,
            schedule,
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps,
            timesteps_f64,
            eta: 0.0,
            use_clipped_model_output: false,
        })
    }

    /// DDIM's eta (0 = deterministic, 1 = DDPM-like); noise comes from `step`'s generator.
    pub fn set_eta(&mut self, eta: f64) {
        self.eta = eta;
    }

    /// Recompute eps from the clipped x0 (diffusers' `use_clipped_model_output`).
    pub fn set_use_clipped_model_output(&mut self, on: bool) {
        self.use_clipped_model_output = on;
    }

    /// The noise schedule (betas, alphas_cumprod).
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// `t - T // N`: DDIM's previous timestep (before `set_timesteps`, N = T).
    pub fn prev_timestep(&self, t: i64) -> i64 {
        let n = self
            .num_inference_steps
            .unwrap_or(self.config.num_train_timesteps)
            .max(1);
        t - (self.config.num_train_timesteps / n) as i64
    }

    fn alpha_prev(&self, prev_t: i64) -> Result<f32> {
        if prev_t >= 0 {
            self.schedule.alpha_prod(prev_t)
        } else {
            Ok(self.final_alpha_cumprod)
        }
    }

    /// `_get_variance(t, prev_t)`: `(1 - ac_prev) / (1 - ac_t) * (1 - ac_t / ac_prev)`.
    pub fn variance(&self, t: i64, prev_t: i64) -> Result<f32> {
        let a = self.schedule.alpha_prod(t)?;
        let ap = self.alpha_prev(prev_t)?;
        Ok((1.0 - ap) / (1.0 - a) * (1.0 - a / ap))
    }
}

impl Scheduler for DDIMScheduler {
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let c = &self.config;
        self.timesteps = int_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Leading),
            c.num_train_timesteps,
            num_inference_steps,
            c.steps_offset,
        )?;
        self.timesteps_f64 = self.timesteps.iter().map(|&t| t as f64).collect();
        self.num_inference_steps = Some(num_inference_steps);
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
        if self.num_inference_steps.is_none() {
            return Err(DiffusionError::invalid(
                "DDIMScheduler::step",
                "call set_timesteps first",
            ));
        }
        let t = at(&self.timesteps, step_index, "timesteps")?;
        let prev_t = self.prev_timestep(t);
        let a = self.schedule.alpha_prod(t)?;
        let ap = self.alpha_prev(prev_t)?;
        let b = 1.0 - a;
        let (sa, sb) = (a.sqrt(), b.sqrt());
        let clip = self
            .config
            .clip_sample
            .then_some(self.config.clip_sample_range as f32);
        let x0 = predict_x0(self.config.prediction_type, model_output, sample, a, clip)?;
        let mut eps = match self.config.prediction_type {
            PredictionType::Epsilon => model_output.clone(),
            // from the unclipped x0, which for `sample` is the model output itself
            PredictionType::Sample => zip2(sample, model_output, |s, m| (s - sa * m) / sb)?,
            PredictionType::VPrediction => zip2(model_output, sample, |m, s| sa * m + sb * s)?,
        };
        let variance = self.variance(t, prev_t)?;
        let std = self.eta as f32 * variance.sqrt();
        if self.use_clipped_model_output {
            eps = zip2(sample, &x0, |s, x| (s - sa * x) / sb)?;
        }
        let dir_coeff = (1.0 - ap - std * std).sqrt();
        let sap = ap.sqrt();
        let mut prev = zip2(&x0, &eps, |x, e| sap * x + dir_coeff * e)?;
        if self.eta > 0.0 {
            let noise = generator.randn(model_output.dims().to_vec())?;
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
        "DDIMScheduler"
    }
}
