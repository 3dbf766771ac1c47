//! LMS (linear multistep, k-diffusion's `sample_lms`): Adams-Bashforth on the ODE
//! `dx/dsigma = d(x, sigma) = (x - x0) / sigma`, over the last (up to 4) derivatives:
//! `x_{i+1} = x_i + sum_j c_j d_{i-j}`, where `c_j` integrates, from sigma_i to
//! sigma_{i+1}, the Lagrange polynomial through sigma_i, .., sigma_{i-order+1} that is 1
//! at sigma_{i-j} and 0 at the others.
//!
//! diffusers integrates with `scipy.integrate.quad`; the integrand is a polynomial of
//! degree <= 3, so 4-point Gauss-Legendre (exact up to degree 7) gives the same number
//! without an adaptive quadrature.
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_lms_discrete.py`. Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{LMSDiscreteScheduler, Scheduler, SchedulerConfig};
//! let mut s = LMSDiscreteScheduler::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
//! s.set_timesteps(15).unwrap();
//! let want = [14.6146, 9.6826, 6.6780, 4.7746, 3.5221, 2.6666, 2.0606, 1.6156,
//!             1.2768, 1.0097, 0.7913, 0.6056, 0.4397, 0.2780, 0.0292, 0.0];
//! for (s, w) in s.sigmas().iter().zip(want) { assert!((*s as f64 - w).abs() < 1e-4); }
//! // the first coefficient is the plain Euler step: sigma_1 - sigma_0
//! let c = s.lms_coefficient(1, 0, 0).unwrap();
//! assert!((c - (s.sigmas()[1] - s.sigmas()[0]) as f64).abs() < 1e-12);
//! ```

use std::collections::VecDeque;

use tensor::random::TorchGenerator;

use super::betas::NoiseSchedule;
use super::config::{SchedulerConfig, TimestepSpacing};
use super::elementwise::{linear_combination, zip2};
use super::euler::{check_sigmas, k_init_noise_sigma, k_x0, scale_by_sigma};
use super::spacing::{
    float_timesteps, karras_sigmas, log_sigmas_f32, np_interp_arange, sigma_to_t,
};
use super::{at, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// 4-point Gauss-Legendre nodes and weights on [-1, 1].
const GL4: [(f64, f64); 4] = [
    (-0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
    (-0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
    (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
    (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
];

/// Integrate a polynomial of degree <= 7 exactly over [a, b].
pub fn gauss_legendre_4(a: f64, b: f64, f: impl Fn(f64) -> f64) -> f64 {
    let half = 0.5 * (b - a);
    let mid = 0.5 * (a + b);
    GL4.iter().map(|&(x, w)| w * f(mid + half * x)).sum::<f64>() * half
}

/// diffusers' `LMSDiscreteScheduler` (order 4).
#[derive(Clone, Debug)]
pub struct LMSDiscreteScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    sigmas: Vec<f32>,
    timesteps_f64: Vec<f64>,
    derivatives: VecDeque<Tensor>,
    order: usize,
}

impl LMSDiscreteScheduler {
    /// Build from a config (default spacing linspace; `rescale_betas_zero_snr` is not
    /// an LMS key in diffusers and is ignored).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("LMSDiscreteScheduler")?;
        let mut config = config.clone();
        config.class_name = Some("LMSDiscreteScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Linspace));
        let schedule = NoiseSchedule::build(&config, false)?;
        let mut s = LMSDiscreteScheduler {
            config,
            schedule,
            sigmas: Vec::new(),
            timesteps_f64: Vec::new(),
            derivatives: VecDeque::new(),
            order: 4,
        };
        let t = s.config.num_train_timesteps;
        s.set_timesteps(t)?;
        Ok(s)
    }

    /// The sigmas of the current schedule (N + 1 values, float32, the last 0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The noise schedule (betas, alphas_cumprod).
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// `get_lms_coefficient(order, t, current_order)`: the integral over
    /// [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial for sigma_{t-current_order}.
    pub fn lms_coefficient(&self, order: usize, t: usize, current_order: usize) -> Result<f64> {
        if current_order >= order || order > t + 1 || t + 1 >= self.sigmas.len() {
            return Err(DiffusionError::invalid(
                "LMSDiscreteScheduler::lms_coefficient",
                format!("need current_order < order <= t + 1 and t + 1 < {}, got order {order}, t {t}, current_order {current_order}", self.sigmas.len()),
            ));
        }
        let s = |i: usize| self.sigmas[i] as f64;
        let basis = |tau: f64| {
            let mut prod = 1.0;
            for k in 0..order {
                if k == current_order {
                    continue;
                }
                prod *= (tau - s(t - k)) / (s(t - current_order) - s(t - k));
            }
            prod
        };
        Ok(gauss_legendre_4(s(t), s(t + 1), basis))
    }
}

impl Scheduler for LMSDiscreteScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.config;
        let mut timesteps = float_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Linspace),
            c.num_train_timesteps,
            n,
            c.steps_offset,
        )?;
        let train = self.schedule.sigmas();
        let train64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
        let t64: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
        let mut sigmas = np_interp_arange(&t64, &train64);
        if c.use_karras_sigmas {
            let log_sigmas = log_sigmas_f32(&train);
            sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], n);
            timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &log_sigmas) as f32)
                .collect();
        }
        self.sigmas = sigmas.into_iter().map(|s| s as f32).chain([0.0]).collect();
        check_sigmas("LMSDiscreteScheduler::set_timesteps", &self.sigmas)?;
        self.timesteps_f64 = timesteps.iter().map(|&t| t as f64).collect();
        self.derivatives.clear();
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
        at(&self.sigmas, step_index + 1, "sigmas")?;
        let x0 = k_x0(self.config.prediction_type, model_output, sample, sigma)?;
        let derivative = zip2(sample, &x0, |s, x| (s - x) / sigma)?;
        self.derivatives.push_back(derivative);
        if self.derivatives.len() > self.order {
            self.derivatives.pop_front();
        }
        let order = (step_index + 1).min(self.order);
        // zip(coeffs, reversed(derivatives)): the newest derivative gets c_0
        let coeffs: Vec<f32> = (0..order)
            .map(|j| Ok(self.lms_coefficient(order, step_index, j)? as f32))
            .collect::<Result<_>>()?;
        let terms: Vec<(f32, &Tensor)> = coeffs
            .iter()
            .copied()
            .zip(self.derivatives.iter().rev())
            .collect();
        let sum = linear_combination(&terms)?;
        let prev = zip2(sample, &sum, |s, d| s + d)?;
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
        "LMSDiscreteScheduler"
    }
}
