//! DPM-Solver++ (Lu et al. 2022), multistep: an exponential integrator in
//! `lambda = log(alpha_t / sigma_t)` on the data prediction x0. With h = lambda_t - lambda_s:
//! - first order (DDIM): `x_t = sigma_t / sigma_s * x_s - alpha_t (e^-h - 1) x0_s`;
//! - 2M (midpoint): adds `-0.5 alpha_t (e^-h - 1) D1`, `D1 = (x0_s - x0_prev) / r0`,
//!   `r0 = h_prev / h`, from the previous step's x0 (kept inside the scheduler).
//!
//! With `lower_order_final` and fewer than 15 steps the last steps drop to lower order;
//! with `final_sigmas_type: zero` the last step is first order and lands on x0.
//! Timesteps (N = 20, linspace): 999, 949, 899, ..., 99, 50 (N + 1 points, last dropped).
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_dpmsolver_multistep.py`.
//! Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{DPMSolverMultistepScheduler, Scheduler, SchedulerConfig};
//! let mut s = DPMSolverMultistepScheduler::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
//! s.set_timesteps(20).unwrap();
//! let t = s.timesteps();
//! assert_eq!((t[0], t[1], t[9], t[10], t[19]), (999.0, 949.0, 549.0, 500.0, 50.0));
//! ```

use tensor::random::TorchGenerator;

use super::betas::NoiseSchedule;
use super::config::{
    AlgorithmType, FinalSigmasType, PredictionType, SchedulerConfig, SolverType, TimestepSpacing,
};
use super::elementwise::{linear_combination, zip2};
use super::euler::k_schedule;
use super::spacing::{dpm_timesteps, karras_sigmas, log_sigmas_f32, np_interp_arange, sigma_to_t};
use super::{at, BetaSchedule, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// `_sigma_to_alpha_sigma_t`: `alpha_t = 1 / sqrt(sigma^2 + 1)`, `sigma_t = sigma * alpha_t`.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// diffusers' `DPMSolverMultistepScheduler`.
#[derive(Clone, Debug)]
pub struct DPMSolverMultistepScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    sigmas: Vec<f32>,
    timesteps_f64: Vec<f64>,
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
}

impl DPMSolverMultistepScheduler {
    /// Build from a config (defaults: dpmsolver++, order 2, midpoint, lower_order_final,
    /// final_sigmas_type zero, linspace spacing).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("DPMSolverMultistepScheduler")?;
        let mut config = config.clone();
        config.class_name = Some("DPMSolverMultistepScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Linspace));
        if config.algorithm_type == AlgorithmType::Deis {
            config.algorithm_type = AlgorithmType::DpmSolverPlusPlus;
        }
        if config.solver_type == SolverType::Other {
            config.solver_type = SolverType::Midpoint;
        }
        let plus_plus = matches!(
            config.algorithm_type,
            AlgorithmType::DpmSolverPlusPlus | AlgorithmType::SdeDpmSolverPlusPlus
        );
        if !plus_plus && config.final_sigmas_type == FinalSigmasType::Zero {
            return Err(DiffusionError::invalid(
                "DPMSolverMultistepScheduler",
                format!(
                    "final_sigmas_type zero needs dpmsolver++ or sde-dpmsolver++, not {:?}",
                    config.algorithm_type
                ),
            ));
        }
        let sde = matches!(
            config.algorithm_type,
            AlgorithmType::SdeDpmSolverPlusPlus | AlgorithmType::SdeDpmSolver
        );
        if !(1..=3).contains(&config.solver_order) || (sde && config.solver_order == 3) {
            return Err(DiffusionError::invalid(
                "DPMSolverMultistepScheduler",
                format!(
                    "solver_order {} not supported (1..=3; 1..=2 for SDE variants)",
                    config.solver_order
                ),
            ));
        }
        let schedule = k_schedule(&config, config.rescale_betas_zero_snr)?;
        let order = config.solver_order;
        Ok(DPMSolverMultistepScheduler {
            config,
            schedule,
            sigmas: Vec::new(),
            timesteps_f64: Vec::new(),
            model_outputs: vec![None; order],
            lower_order_nums: 0,
        })
    }

    /// The sigmas of the current schedule (N + 1 values, float32).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// `T - searchsorted(flip(lambda_t), lambda_min_clipped)`.
    fn last_timestep(&self) -> usize {
        let t = self.config.num_train_timesteps;
        let Some(clip) = self.config.lambda_min_clipped else {
            return t;
        };
        let lambdas: Vec<f32> = self
            .schedule
            .alphas_cumprod
            .iter()
            .rev()
            .map(|&a| a.sqrt().ln() - (1.0 - a).sqrt().ln())
            .collect();
        let clipped = lambdas.iter().filter(|&&l| (l as f64) < clip).count();
        t - clipped
    }

    /// `convert_model_output`: x0 (dpmsolver++ variants) or eps (dpmsolver variants).
    fn convert_model_output(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        sigma: f32,
    ) -> Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(sigma);
        let pred = self.config.prediction_type;
        match self.config.algorithm_type {
            AlgorithmType::DpmSolverPlusPlus
            | AlgorithmType::SdeDpmSolverPlusPlus
            | AlgorithmType::Deis => match pred {
                PredictionType::Epsilon => {
                    zip2(sample, model_output, |s, m| (s - sigma_t * m) / alpha_t)
                }
                PredictionType::Sample => Ok(model_output.clone()),
                PredictionType::VPrediction => {
                    zip2(sample, model_output, |s, m| alpha_t * s - sigma_t * m)
                }
            },
            AlgorithmType::DpmSolver | AlgorithmType::SdeDpmSolver => match pred {
                PredictionType::Epsilon => Ok(model_output.clone()),
                PredictionType::Sample => {
                    zip2(sample, model_output, |s, m| (s - alpha_t * m) / sigma_t)
                }
                PredictionType::VPrediction => {
                    zip2(model_output, sample, |m, s| alpha_t * m + sigma_t * s)
                }
            },
        }
    }

    fn history(&self, back: usize) -> Result<&Tensor> {
        let n = self.model_outputs.len();
        n.checked_sub(back)
            .and_then(|i| self.model_outputs.get(i))
            .and_then(|m| m.as_ref())
            .ok_or_else(|| {
                DiffusionError::invalid(
                    "DPMSolverMultistepScheduler::step",
                    "model output history is short",
                )
            })
    }

    /// One update of `order` from sigma_s0 = sigmas[i] to sigma_t = sigmas[i + 1].
    fn update(
        &self,
        order: usize,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let sig = |k: usize| at(&self.sigmas, k, "sigmas");
        let (alpha_t, sigma_t) = alpha_sigma(sig(i + 1)?);
        let (alpha_s0, sigma_s0) = alpha_sigma(sig(i)?);
        let lambda = |a: f32, s: f32| a.ln() - s.ln();
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let m0 = self.history(1)?;
        let algo = self.config.algorithm_type;
        let heun = self.config.solver_type == SolverType::Heun;
        let (em, ep) = ((-h).exp(), h.exp());
        let em2 = (-2.0 * h).exp();
        let ep2 = (2.0 * h).exp();
        // x_t = sum of coefficient * tensor, accumulated left to right as diffusers writes it
        let mut terms: Vec<(f32, Tensor)> = Vec::new();
        let mut noise_coeff = None;
        match algo {
            AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => {
                terms.push((sigma_t / sigma_s0, sample.clone()))
            }
            AlgorithmType::DpmSolver | AlgorithmType::SdeDpmSolver => {
                terms.push((alpha_t / alpha_s0, sample.clone()))
            }
            AlgorithmType::SdeDpmSolverPlusPlus => {
                terms.push((sigma_t / sigma_s0 * em, sample.clone()))
            }
        }
        let (d0, d1, d2) = match order {
            1 => (m0.clone(), None, None),
            2 => {
                let m1 = self.history(2)?;
                let lambda_s1 = {
                    let (a, s) = alpha_sigma(sig(i.checked_sub(1).unwrap_or(usize::MAX))?);
                    lambda(a, s)
                };
                let r0 = (lambda_s0 - lambda_s1) / h;
                let c = 1.0 / r0;
                (m0.clone(), Some(zip2(m0, m1, |a, b| c * (a - b))?), None)
            }
            _ => {
                let (m1, m2) = (self.history(2)?, self.history(3)?);
                let ls = |k: usize| -> Result<f32> {
                    let (a, s) = alpha_sigma(sig(i.checked_sub(k).unwrap_or(usize::MAX))?);
                    Ok(lambda(a, s))
                };
                let (lambda_s1, lambda_s2) = (ls(1)?, ls(2)?);
                let (r0, r1) = ((lambda_s0 - lambda_s1) / h, (lambda_s1 - lambda_s2) / h);
                let (c0, c1) = (1.0 / r0, 1.0 / r1);
                let d1_0 = zip2(m0, m1, |a, b| c0 * (a - b))?;
                let d1_1 = zip2(m1, m2, |a, b| c1 * (a - b))?;
                let w = r0 / (r0 + r1);
                let c2 = 1.0 / (r0 + r1);
                let d1 = zip2(&d1_0, &d1_1, |a, b| a + w * (a - b))?;
                let d2 = zip2(&d1_0, &d1_1, |a, b| c2 * (a - b))?;
                (m0.clone(), Some(d1), Some(d2))
            }
        };
        match algo {
            AlgorithmType::DpmSolverPlusPlus | AlgorithmType::Deis => {
                terms.push((-(alpha_t * (em - 1.0)), d0));
                if let Some(d1) = d1 {
                    let c = match (order, heun) {
                        (2, false) => -(0.5 * (alpha_t * (em - 1.0))),
                        _ => alpha_t * ((em - 1.0) / h + 1.0),
                    };
                    terms.push((c, d1));
                }
                if let Some(d2) = d2 {
                    terms.push((-(alpha_t * ((em - 1.0 + h) / (h * h) - 0.5)), d2));
                }
            }
            AlgorithmType::DpmSolver => {
                terms.push((-(sigma_t * (ep - 1.0)), d0));
                if let Some(d1) = d1 {
                    let c = match (order, heun) {
                        (2, false) => -(0.5 * (sigma_t * (ep - 1.0))),
                        _ => -(sigma_t * ((ep - 1.0) / h - 1.0)),
                    };
                    terms.push((c, d1));
                }
                if let Some(d2) = d2 {
                    terms.push((-(sigma_t * ((ep - 1.0 - h) / (h * h) - 0.5)), d2));
                }
            }
            AlgorithmType::SdeDpmSolverPlusPlus => {
                terms.push((alpha_t * (1.0 - em2), d0));
                if let Some(d1) = d1 {
                    let c = if heun {
                        alpha_t * ((1.0 - em2) / (-2.0 * h) + 1.0)
                    } else {
                        0.5 * (alpha_t * (1.0 - em2))
                    };
                    terms.push((c, d1));
                }
                noise_coeff = Some(sigma_t * (1.0 - em2).sqrt());
            }
            AlgorithmType::SdeDpmSolver => {
                terms.push((-(2.0 * (sigma_t * (ep - 1.0))), d0));
                if let Some(d1) = d1 {
                    let c = if heun {
                        -(2.0 * (sigma_t * ((ep - 1.0) / h - 1.0)))
                    } else {
                        -(sigma_t * (ep - 1.0))
                    };
                    terms.push((c, d1));
                }
                noise_coeff = Some(sigma_t * (ep2 - 1.0).sqrt());
            }
        }
        if let (Some(c), Some(n)) = (noise_coeff, noise) {
            terms.push((c, n.clone()));
        }
        let refs: Vec<(f32, &Tensor)> = terms.iter().map(|(c, t)| (*c, t)).collect();
        linear_combination(&refs)
    }
}

impl Scheduler for DPMSolverMultistepScheduler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.config;
        let last_timestep = self.last_timestep();
        let mut timesteps = dpm_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Linspace),
            c.num_train_timesteps,
            last_timestep,
            n,
            c.steps_offset,
        )?;
        let train = self.schedule.sigmas();
        let sigmas: Vec<f64> = if c.use_karras_sigmas {
            let log_sigmas = log_sigmas_f32(&train);
            let (lo, hi) = (train[0] as f64, train[train.len() - 1] as f64);
            let s = karras_sigmas(lo, hi, n);
            timesteps = s
                .iter()
                .map(|&x| {
                    let t = sigma_to_t(x, &log_sigmas);
                    if c.beta_schedule == BetaSchedule::SquaredcosCapV2 {
                        t as i64 // astype(int64) truncates
                    } else {
                        t.round_ties_even() as i64
                    }
                })
                .collect();
            s
        } else {
            let train64: Vec<f64> = train.iter().map(|&s| s as f64).collect();
            let t64: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
            np_interp_arange(&t64, &train64)
        };
        let last = match c.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => {
                let a0 = self.schedule.alphas_cumprod[0];
                ((1.0 - a0) / a0).sqrt()
            }
        };
        self.sigmas = sigmas.into_iter().map(|s| s as f32).chain([last]).collect();
        self.timesteps_f64 = timesteps.iter().map(|&t| t as f64).collect();
        self.model_outputs = vec![None; c.solver_order];
        self.lower_order_nums = 0;
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
        let c = &self.config;
        let len = self.timesteps_f64.len();
        if step_index >= len {
            return Err(DiffusionError::invalid(
                "DPMSolverMultistepScheduler::step",
                format!("step index {step_index} out of range for {len} timesteps (call set_timesteps first?)"),
            ));
        }
        let lower_order_final = step_index == len - 1
            && (c.euler_at_final
                || (c.lower_order_final && len < 15)
                || c.final_sigmas_type == FinalSigmasType::Zero);
        let lower_order_second = step_index + 2 == len && c.lower_order_final && len < 15;
        let sigma = at(&self.sigmas, step_index, "sigmas")?;
        let x0 = self.convert_model_output(model_output, sample, sigma)?;
        self.model_outputs.remove(0);
        self.model_outputs.push(Some(x0));
        let order = self.config.solver_order;
        let noise = match self.config.algorithm_type {
            AlgorithmType::SdeDpmSolverPlusPlus | AlgorithmType::SdeDpmSolver => {
                Some(generator.randn(model_output.dims().to_vec())?)
            }
            _ => None,
        };
        let use_order = if order == 1 || self.lower_order_nums < 1 || lower_order_final {
            1
        } else if order == 2 || self.lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let prev = self.update(use_order, step_index, sample, noise.as_ref())?;
        if self.lower_order_nums < order {
            self.lower_order_nums += 1;
        }
        Ok(SchedulerOutput {
            prev_sample: prev,
            pred_original_sample: None,
        })
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step_index: usize) -> Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(at(&self.sigmas, step_index, "sigmas")?);
        zip2(original, noise, |x, n| alpha_t * x + sigma_t * n)
    }

    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn name(&self) -> &'static str {
        "DPMSolverMultistepScheduler"
    }
}
