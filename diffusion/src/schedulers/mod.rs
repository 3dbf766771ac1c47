//! Schedulers: how a diffusion sampler walks from noise to an image, one step per
//! UNet evaluation. Seven of diffusers' schedulers, behind one [`Scheduler`] trait, each
//! reproducing diffusers 0.42.1 to float32 rounding (integer timesteps exactly):
//!
//! | CLI name | type | diffusers source |
//! |----------|------|------------------|
//! | `ddpm` | [`DDPMScheduler`] | `scheduling_ddpm.py` |
//! | `ddim` | [`DDIMScheduler`] | `scheduling_ddim.py` |
//! | `pndm` | [`PNDMScheduler`] (PLMS; PRK warm-up when `skip_prk_steps` is false) | `scheduling_pndm.py` |
//! | `lms` | [`LMSDiscreteScheduler`] | `scheduling_lms_discrete.py` |
//! | `euler` | [`EulerDiscreteScheduler`] | `scheduling_euler_discrete.py` |
//! | `euler-a` | [`EulerAncestralDiscreteScheduler`] | `scheduling_euler_ancestral_discrete.py` |
//! | `dpm++2m`, `dpm++2m-karras` | [`DPMSolverMultistepScheduler`] | `scheduling_dpmsolver_multistep.py` |
//!
//! The loop a pipeline runs (latents: (B, 4, H/8, W/8)):
//!
//! ```text
//! scheduler.set_timesteps(n)?;
//! latents = randn * scheduler.init_noise_sigma();
//! for i in 0..scheduler.timesteps().len() {
//!     let x = scheduler.scale_model_input(&latents, i)?;          // (B, 4, h, w)
//!     let eps = unet(x, scheduler.timesteps()[i], text)?;         // (B, 4, h, w)
//!     latents = scheduler.step(&eps, i, &latents, &mut gen)?.prev_sample;
//! }
//! ```
//!
//! Differences from diffusers' Python signatures, all forced by the trait: `step`,
//! `scale_model_input` and `add_noise` take the *index* into `timesteps()` rather than
//! the timestep value (diffusers looks the index up itself with `index_for_timestep`;
//! for img2img it uses `set_begin_index`, which is what the index here is). PNDM's
//! counter, LMS's derivative history and DPM++'s model-output history stay inside the
//! scheduler and are reset by `set_timesteps`, as in diffusers, so `step` must be called
//! once per index, in order. DDIM's `eta` is a field ([`DDIMScheduler::set_eta`]);
//! Euler's `s_churn` is not offered (always 0, the pipelines' default).
//!
//! Parameters come from a [`SchedulerConfig`] (a diffusers `scheduler_config.json`),
//! read as diffusers' `from_config` reads it for whichever class is built.
//! Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{make_scheduler, SchedulerConfig, SchedulerKind};
//! let cfg = SchedulerConfig::stable_diffusion_v1();
//! let mut s = make_scheduler("lms".parse::<SchedulerKind>().unwrap(), &cfg).unwrap();
//! s.set_timesteps(70).unwrap();
//! assert!((s.init_noise_sigma() - 14.6146).abs() < 1e-4);
//! assert_eq!(s.timesteps()[0], 999.0);
//! assert!((s.timesteps()[1] - 984.5217).abs() < 1e-4);
//! // the first UNet input is scaled by 1 / sqrt(sigma^2 + 1) = 0.068265
//! let x = diffusion::Tensor::ones(vec![1, 4, 2, 2]);
//! let scaled = s.scale_model_input(&x, 0).unwrap().to_vec().unwrap();
//! assert!((scaled[0] - 0.068265).abs() < 1e-6);
//! ```

pub mod betas;
pub mod config;
mod ddim;
mod ddpm;
mod dpmsolver_multistep;
pub mod elementwise;
mod euler;
mod euler_ancestral;
mod lms;
mod pndm;
pub mod spacing;

use std::str::FromStr;

use tensor::random::TorchGenerator;

pub use config::{
    AlgorithmType, BetaSchedule, FinalSigmasType, InterpolationType, PredictionType,
    SchedulerConfig, SolverType, TimestepSpacing, TimestepType, VarianceType,
};
pub use ddim::DDIMScheduler;
pub use ddpm::DDPMScheduler;
pub use dpmsolver_multistep::DPMSolverMultistepScheduler;
pub use euler::EulerDiscreteScheduler;
pub use euler_ancestral::EulerAncestralDiscreteScheduler;
pub use lms::LMSDiscreteScheduler;
pub use pndm::PNDMScheduler;

use crate::error::{DiffusionError, Result};
use crate::Tensor;

/// What one [`Scheduler::step`] returns (diffusers' `SchedulerOutput`).
#[derive(Clone, Debug)]
pub struct SchedulerOutput {
    /// x_{t-1}: the sample for the next step. Same shape as the input sample.
    pub prev_sample: Tensor,
    /// The scheduler's estimate of x_0, where diffusers returns one (not PNDM, DPM++).
    pub pred_original_sample: Option<Tensor>,
}

/// The interface every sampler offers a pipeline (see the module docs for the loop).
pub trait Scheduler: Send {
    /// Choose the `num_inference_steps` timesteps (and sigmas); resets any history.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;
    /// The model's t for each step (LMS/Euler may be fractional). PNDM with PLMS has
    /// N + 1 entries (one timestep repeats), with PRK N + 9, as in diffusers.
    fn timesteps(&self) -> &[f64];
    /// The std of the initial latents (1 for DDPM/DDIM/PNDM/DPM++, sigma_max for the
    /// k-diffusion schedulers with linspace/trailing spacing, else sqrt(sigma_max^2+1)).
    /// The default is the variance-preserving samplers' 1.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The UNet input at step `step_index`: `sample / sqrt(sigma^2 + 1)` for
    /// LMS/Euler/Euler a, unchanged for the others (the default). (B, C, H, W) -> (B, C, H, W).
    fn scale_model_input(&self, sample: &Tensor, step_index: usize) -> Result<Tensor> {
        let _ = step_index;
        Ok(sample.clone())
    }
    /// One denoising step from `timesteps()[step_index]` to the next.
    /// model_output, sample: (B, C, H, W). DDPM (t > 0), Euler a and SDE-DPM++ draw
    /// noise of the sample's shape from `generator` (as `torch.randn(shape, generator=g)`).
    fn step(
        &mut self,
        model_output: &Tensor,
        step_index: usize,
        sample: &Tensor,
        generator: &mut TorchGenerator,
    ) -> Result<SchedulerOutput>;
    /// Noise `original` to the level of `timesteps()[step_index]` (img2img).
    fn add_noise(&self, original: &Tensor, noise: &Tensor, step_index: usize) -> Result<Tensor>;
    /// diffusers' `scheduler.order` (1 for all seven).
    fn order(&self) -> usize {
        1
    }
    /// The config in use, with the class defaults filled in and `_class_name` set.
    fn config(&self) -> &SchedulerConfig;
    /// The diffusers class name (`"EulerDiscreteScheduler"`).
    fn name(&self) -> &'static str;
}

/// The schedulers [`make_scheduler`] can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `ddpm`: DDPMScheduler.
    Ddpm,
    /// `ddim`: DDIMScheduler.
    Ddim,
    /// `pndm`: PNDMScheduler.
    Pndm,
    /// `lms`: LMSDiscreteScheduler.
    Lms,
    /// `euler`: EulerDiscreteScheduler.
    Euler,
    /// `euler-a`: EulerAncestralDiscreteScheduler.
    EulerAncestral,
    /// `dpm++2m`: DPMSolverMultistepScheduler with the config's `use_karras_sigmas`.
    DpmSolverMultistep,
    /// `dpm++2m-karras`: DPMSolverMultistepScheduler with `use_karras_sigmas = true`.
    DpmSolverMultistepKarras,
}

impl SchedulerKind {
    /// Every CLI name, in the order of the enum.
    pub const CLI_NAMES: [&'static str; 8] = [
        "ddpm",
        "ddim",
        "pndm",
        "lms",
        "euler",
        "euler-a",
        "dpm++2m",
        "dpm++2m-karras",
    ];

    /// The kind for a diffusers class name (`_class_name`).
    pub fn from_class_name(name: &str) -> Result<Self> {
        Ok(match name {
            "DDPMScheduler" => SchedulerKind::Ddpm,
            "DDIMScheduler" => SchedulerKind::Ddim,
            "PNDMScheduler" => SchedulerKind::Pndm,
            "LMSDiscreteScheduler" => SchedulerKind::Lms,
            "EulerDiscreteScheduler" => SchedulerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SchedulerKind::EulerAncestral,
            "DPMSolverMultistepScheduler" => SchedulerKind::DpmSolverMultistep,
            other => {
                return Err(DiffusionError::invalid(
                    "SchedulerKind::from_class_name",
                    format!("unsupported scheduler class {other:?}"),
                ))
            }
        })
    }

    /// The CLI name (`"euler-a"`).
    pub fn cli_name(self) -> &'static str {
        Self::CLI_NAMES[self as usize]
    }
}

impl FromStr for SchedulerKind {
    type Err = DiffusionError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "ddpm" => SchedulerKind::Ddpm,
            "ddim" => SchedulerKind::Ddim,
            "pndm" => SchedulerKind::Pndm,
            "lms" => SchedulerKind::Lms,
            "euler" => SchedulerKind::Euler,
            "euler-a" => SchedulerKind::EulerAncestral,
            "dpm++2m" => SchedulerKind::DpmSolverMultistep,
            "dpm++2m-karras" => SchedulerKind::DpmSolverMultistepKarras,
            other => {
                return Err(DiffusionError::invalid(
                    "scheduler name",
                    format!(
                        "unknown scheduler {other:?}; expected one of {}",
                        Self::CLI_NAMES.join(", ")
                    ),
                ))
            }
        })
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// Build `kind` from `config`, as `<Class>.from_config(config)` does in diffusers:
/// the keys present are used, the absent ones take that class's defaults.
pub fn make_scheduler(kind: SchedulerKind, config: &SchedulerConfig) -> Result<Box<dyn Scheduler>> {
    Ok(match kind {
        SchedulerKind::Ddpm => Box::new(DDPMScheduler::new(config)?),
        SchedulerKind::Ddim => Box::new(DDIMScheduler::new(config)?),
        SchedulerKind::Pndm => Box::new(PNDMScheduler::new(config)?),
        SchedulerKind::Lms => Box::new(LMSDiscreteScheduler::new(config)?),
        SchedulerKind::Euler => Box::new(EulerDiscreteScheduler::new(config)?),
        SchedulerKind::EulerAncestral => Box::new(EulerAncestralDiscreteScheduler::new(config)?),
        SchedulerKind::DpmSolverMultistep => Box::new(DPMSolverMultistepScheduler::new(config)?),
        SchedulerKind::DpmSolverMultistepKarras => {
            let mut c = config.clone();
            c.use_karras_sigmas = true;
            Box::new(DPMSolverMultistepScheduler::new(&c)?)
        }
    })
}

/// Build the class the config names (`_class_name`).
pub fn scheduler_from_config(config: &SchedulerConfig) -> Result<Box<dyn Scheduler>> {
    make_scheduler(config.kind()?, config)
}

/// The value at `step_index`, or an error naming the index and the length.
pub(crate) fn at<T: Copy>(v: &[T], step_index: usize, what: &str) -> Result<T> {
    v.get(step_index).copied().ok_or_else(|| {
        DiffusionError::invalid(
            "scheduler",
            format!(
                "step index {step_index} out of range for {} {what} (call set_timesteps first?)",
                v.len()
            ),
        )
    })
}
