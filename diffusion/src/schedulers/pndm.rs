//! PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models"): linear
//! multistep (PLMS) on the DDIM transfer `phi(x, eps, t, t')`, SD 1.x's default.
//!
//! PLMS keeps the last four eps and combines them Adams-Bashforth style:
//! `(55 e1 - 59 e2 + 37 e3 - 9 e4) / 24`, with lower orders while the history fills.
//! With `skip_prk_steps` (SD) the first step is done twice (a second-order warm-up at the
//! same timestep: the schedule has N + 1 entries, e.g. 901, 801, 801, 701, ... for N = 10);
//! without it, 3 Runge-Kutta (PRK) steps of 4 evaluations each run first.
//! The transfer: `x_{t'} = sqrt(ac_{t'} / ac_t) x_t - (ac_{t'} - ac_t) eps /
//! (ac_t sqrt(1 - ac_{t'}) + sqrt(ac_t (1 - ac_t) ac_{t'}))`.
//! Shapes: model_output, sample (B, C, H, W) -> prev_sample (B, C, H, W).
//!
//! Source: diffusers `schedulers/scheduling_pndm.py`. Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{PNDMScheduler, Scheduler, SchedulerConfig};
//! let cfg = SchedulerConfig { steps_offset: 1, ..Default::default() };
//! let mut s = PNDMScheduler::new(&cfg).unwrap(); // PRK + PLMS (skip_prk_steps false)
//! s.set_timesteps(10).unwrap();
//! let expect = [901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1];
//! assert_eq!(s.timesteps(), expect.map(|t| t as f64).as_slice());
//! ```

use tensor::random::TorchGenerator;

use super::betas::NoiseSchedule;
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::ddpm::add_noise_alpha_prod;
use super::elementwise::{map1, zip2, zip_n};
use super::spacing::pndm_base_timesteps;
use super::{at, Scheduler, SchedulerOutput};
use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// diffusers' `PNDMScheduler`.
#[derive(Clone, Debug)]
pub struct PNDMScheduler {
    config: SchedulerConfig,
    schedule: NoiseSchedule,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    prk_timesteps: Vec<i64>,
    timesteps: Vec<i64>,
    timesteps_f64: Vec<f64>,
    counter: usize,
    ets: Vec<Tensor>,
    cur_model_output: Option<Tensor>,
    cur_sample: Option<Tensor>,
}

const PNDM_ORDER: usize = 4;

impl PNDMScheduler {
    /// Build from a config (defaults: leading spacing, set_alpha_to_one false, PRK on).
    pub fn new(config: &SchedulerConfig) -> Result<Self> {
        config.check_supported("PNDMScheduler")?;
        if config.prediction_type == PredictionType::Sample {
            return Err(DiffusionError::invalid(
                "PNDMScheduler",
                "prediction_type must be epsilon or v_prediction",
            ));
        }
        let mut config = config.clone();
        config.class_name = Some("PNDMScheduler".into());
        config.timestep_spacing = Some(config.timestep_spacing_or(TimestepSpacing::Leading));
        let set_alpha_to_one = config.set_alpha_to_one.unwrap_or(false);
        config.set_alpha_to_one = Some(set_alpha_to_one);
        // PNDM has no rescale_betas_zero_snr key in diffusers
        let schedule = NoiseSchedule::build(&config, false)?;
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Ok(PNDMScheduler {
            config,
            schedule,
            final_alpha_cumprod,
            num_inference_steps: None,
            prk_timesteps: Vec::new(),
            timesteps: Vec::new(),
            timesteps_f64: Vec::new(),
            counter: 0,
            ets: Vec::new(),
            cur_model_output: None,
            cur_sample: None,
        })
    }

    fn ratio(&self) -> Result<i64> {
        let n = self.num_inference_steps.ok_or_else(|| {
            DiffusionError::invalid("PNDMScheduler::step", "call set_timesteps first")
        })?;
        Ok((self.config.num_train_timesteps / n) as i64)
    }

    /// `_get_prev_sample`: the DDIM-like transfer from t to prev_t with eps.
    fn prev_sample(
        &self,
        sample: &Tensor,
        t: i64,
        prev_t: i64,
        model_output: &Tensor,
    ) -> Result<Tensor> {
        let a = self.schedule.alpha_prod(t)?;
        let ap = if prev_t >= 0 {
            self.schedule.alpha_prod(prev_t)?
        } else {
            self.final_alpha_cumprod
        };
        let (b, bp) = (1.0 - a, 1.0 - ap);
        let eps = match self.config.prediction_type {
            PredictionType::VPrediction => {
                let (sa, sb) = (a.sqrt(), b.sqrt());
                zip2(model_output, sample, |m, s| sa * m + sb * s)?
            }
            _ => model_output.clone(),
        };
        let sample_coeff = (ap / a).sqrt();
        let denom = a * bp.sqrt() + (a * b * ap).sqrt();
        let diff = ap - a;
        zip2(sample, &eps, |s, e| sample_coeff * s - diff * e / denom)
    }

    fn step_prk(
        &mut self,
        model_output: &Tensor,
        timestep: i64,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let ratio = self.ratio()?;
        let diff_to_prev = if self.counter % 2 == 1 { 0 } else { ratio / 2 };
        let prev_t = timestep - diff_to_prev;
        let t = at(&self.prk_timesteps, self.counter / 4 * 4, "prk timesteps")?;
        let sixth = (1.0f64 / 6.0) as f32;
        let third = (1.0f64 / 3.0) as f32;
        let accumulate = |cur: &Option<Tensor>, w: f32| -> Result<Tensor> {
            match cur {
                None => map1(model_output, |m| w * m),
                Some(c) => zip2(c, model_output, |c, m| c + w * m),
            }
        };
        let mut eps = model_output.clone();
        match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(accumulate(&self.cur_model_output, sixth)?);
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.clone());
            }
            1 | 2 => self.cur_model_output = Some(accumulate(&self.cur_model_output, third)?),
            _ => {
                eps = accumulate(&self.cur_model_output, sixth)?;
                self.cur_model_output = None;
            }
        }
        let cur_sample = self.cur_sample.clone().unwrap_or_else(|| sample.clone());
        let prev = self.prev_sample(&cur_sample, t, prev_t, &eps)?;
        self.counter += 1;
        Ok(prev)
    }

    fn step_plms(
        &mut self,
        model_output: &Tensor,
        timestep: i64,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let ratio = self.ratio()?;
        if !self.config.skip_prk_steps && self.ets.len() < 3 {
            return Err(DiffusionError::invalid(
                "PNDMScheduler::step",
                "PLMS needs the 3 PRK steps (12 calls) first",
            ));
        }
        let mut t = timestep;
        let mut prev_t = timestep - ratio;
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.clone());
        } else {
            prev_t = timestep;
            t = timestep + ratio;
        }
        let mut sample = sample.clone();
        let n = self.ets.len();
        let ets = self.ets.clone();
        let e = |k: usize| &ets[n - k];
        let eps = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output.clone()
        } else if n == 1 && self.counter == 1 {
            let eps = zip2(model_output, e(1), |m, e1| (m + e1) / 2.0)?;
            sample = self.cur_sample.take().ok_or_else(|| {
                DiffusionError::invalid("PNDMScheduler::step", "missing first-step sample")
            })?;
            eps
        } else if n == 2 {
            zip2(e(1), e(2), |e1, e2| (3.0 * e1 - e2) / 2.0)?
        } else if n == 3 {
            zip_n(&[e(1), e(2), e(3)], |x| {
                (23.0 * x[0] - 16.0 * x[1] + 5.0 * x[2]) / 12.0
            })?
        } else {
            let w = (1.0f64 / 24.0) as f32;
            zip_n(&[e(1), e(2), e(3), e(4)], |x| {
                w * (55.0 * x[0] - 59.0 * x[1] + 37.0 * x[2] - 9.0 * x[3])
            })?
        };
        let prev = self.prev_sample(&sample, t, prev_t, &eps)?;
        self.counter += 1;
        Ok(prev)
    }
}

impl Scheduler for PNDMScheduler {
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let c = &self.config;
        if !c.skip_prk_steps && num_inference_steps < PNDM_ORDER {
            return Err(DiffusionError::invalid(
                "PNDMScheduler::set_timesteps",
                format!("`num_inference_steps` must be >= {PNDM_ORDER} when skip_prk_steps is false, got {num_inference_steps}"),
            ));
        }
        let base = pndm_base_timesteps(
            c.timestep_spacing_or(TimestepSpacing::Leading),
            c.num_train_timesteps,
            num_inference_steps,
            c.steps_offset,
        )?;
        let len = base.len();
        let (prk, plms): (Vec<i64>, Vec<i64>) = if c.skip_prk_steps {
            // concat(ts[:-1], ts[-2:-1], ts[-1:])[::-1]
            let mut v: Vec<i64> = base[..len - 1].to_vec();
            if len >= 2 {
                v.push(base[len - 2]);
            }
            v.push(base[len - 1]);
            v.reverse();
            (Vec::new(), v)
        } else {
            let half = (c.num_train_timesteps / num_inference_steps / 2) as i64;
            // ts[-4:].repeat(2) + tile([0, half], 4), then [:-1].repeat(2)[1:-1][::-1]
            let pairs: Vec<i64> = base[len - PNDM_ORDER..]
                .iter()
                .flat_map(|&t| [t, t + half])
                .collect();
            let doubled: Vec<i64> = pairs[..pairs.len() - 1]
                .iter()
                .flat_map(|&t| [t, t])
                .collect();
            let mut prk = doubled[1..doubled.len() - 1].to_vec();
            prk.reverse();
            let mut plms = base[..len - 3].to_vec();
            plms.reverse();
            (prk, plms)
        };
        self.timesteps = prk.iter().chain(&plms).copied().collect();
        self.timesteps_f64 = self.timesteps.iter().map(|&t| t as f64).collect();
        self.prk_timesteps = prk;
        self.num_inference_steps = Some(num_inference_steps);
        self.ets.clear();
        self.counter = 0;
        self.cur_model_output = None;
        self.cur_sample = None;
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
        _generator: &mut TorchGenerator,
    ) -> Result<SchedulerOutput> {
        let timestep = at(&self.timesteps, step_index, "timesteps")?;
        let prev = if self.counter < self.prk_timesteps.len() && !self.config.skip_prk_steps {
            self.step_prk(model_output, timestep, sample)?
        } else {
            self.step_plms(model_output, timestep, sample)?
        };
        Ok(SchedulerOutput {
            prev_sample: prev,
            pred_original_sample: None,
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
        "PNDMScheduler"
    }
}
