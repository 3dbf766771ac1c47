//! `SchedulerConfig`: a diffusers `scheduler/scheduler_config.json`, read as diffusers'
//! `ConfigMixin.from_config` reads it for *any* scheduler class.
//!
//! diffusers keeps one flat dictionary per scheduler folder. When a pipeline swaps the
//! scheduler (`EulerDiscreteScheduler.from_config(pipe.scheduler.config)`), every key the
//! new class takes is read from that dictionary when it is present, and every key that is
//! absent gets the *new class's* default. So the handful of keys whose default differs
//! between classes are `Option`s here and are resolved by each scheduler:
//!
//! | key | DDPM | DDIM | PNDM | LMS | Euler | Euler a | DPM++ |
//! |-----|------|------|------|-----|-------|---------|-------|
//! | `timestep_spacing` | leading | leading | leading | linspace | linspace | linspace | linspace |
//! | `set_alpha_to_one` | - | true | false | - | - | - | - |
//! | `variance_type` | fixed_small | - | - | - | - | - | None |
//!
//! The trap this reproduces: SD 1.5's original `scheduler_config.json` (PNDM) has no
//! `timestep_spacing` key, so Euler built from it uses `linspace`; a config that was
//! re-saved by a recent diffusers *does* carry `"timestep_spacing": "leading"`, and then
//! Euler keeps `leading` (and `init_noise_sigma` becomes `sqrt(sigma_max^2 + 1)`).
//!
//! Python writes `-Infinity` for `lambda_min_clipped` (not valid JSON); [`SchedulerConfig::from_json`]
//! reads bare `Infinity`, `-Infinity` and `NaN` tokens as `null` (that key's default, -inf).
//!
//! ```
//! use diffusion::schedulers::{SchedulerConfig, TimestepSpacing};
//! let cfg = SchedulerConfig::from_json(r#"{"_class_name": "PNDMScheduler",
//!     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
//!     "steps_offset": 1, "skip_prk_steps": true, "lambda_min_clipped": -Infinity}"#).unwrap();
//! assert_eq!(cfg.timestep_spacing, None); // absent: each scheduler's own default
//! assert_eq!(cfg.timestep_spacing_or(TimestepSpacing::Linspace), TimestepSpacing::Linspace);
//! assert_eq!(cfg.steps_offset, 1);
//! assert!(cfg.lambda_min_clipped.is_none());
//! ```

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DiffusionError, Result};

/// How betas are laid over the training timesteps (`beta_schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `torch.linspace(beta_start, beta_end, T)`.
    Linear,
    /// `torch.linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2` (Stable Diffusion).
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal, betas capped at 0.999.
    SquaredcosCapV2,
}

/// What the model predicts (`prediction_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The noise epsilon.
    Epsilon,
    /// v = sqrt(ac) * eps - sqrt(1 - ac) * x0 (Salimans & Ho).
    VPrediction,
    /// The clean sample x0 (`sample`, Euler also accepts `original_sample`).
    #[serde(alias = "original_sample")]
    Sample,
}

/// How `set_timesteps` spreads N steps over the training timesteps (`timestep_spacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `(arange(N) * (T // N)).round()[::-1] + steps_offset`.
    Leading,
    /// `linspace(0, T - 1, N)[::-1]` (rounded for the integer-timestep schedulers).
    Linspace,
    /// `round(arange(T, 0, -T / N)) - 1`.
    Trailing,
}

/// DDPM's posterior variance (`variance_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// beta~_t = (1 - ac_prev) / (1 - ac_t) * beta_t.
    FixedSmall,
    /// exp(0.5 * log beta~_t), the standard deviation directly.
    FixedSmallLog,
    /// beta_t.
    FixedLarge,
    /// log beta_t (diffusers then takes its square root: NaN; refused here).
    FixedLargeLog,
    /// The model predicts the variance (not supported here).
    Learned,
    /// The model interpolates log variances (not supported here).
    LearnedRange,
}

/// Euler's sigma interpolation (`interpolation_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationType {
    /// `np.interp(timesteps, arange(T), sigmas)`.
    Linear,
    /// `exp(linspace(log sigma_max, log sigma_min, N + 1))`.
    LogLinear,
}

/// Euler's model time input (`timestep_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepType {
    /// The (fractional) training timestep.
    Discrete,
    /// `0.25 * log(sigma)` (only with v-prediction, as diffusers).
    Continuous,
}

/// The last sigma of the Euler / DPM++ schedules (`final_sigmas_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    /// 0: the last step lands on the clean sample.
    Zero,
    /// `sqrt((1 - ac[0]) / ac[0])`, the smallest training sigma.
    SigmaMin,
}

/// DPM-Solver's formulation (`algorithm_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlgorithmType {
    /// DPM-Solver++ (data prediction), the SD default.
    #[serde(rename = "dpmsolver++")]
    DpmSolverPlusPlus,
    /// SDE variant of DPM-Solver++ (adds noise from the generator each step).
    #[serde(rename = "sde-dpmsolver++")]
    SdeDpmSolverPlusPlus,
    /// The original noise-prediction DPM-Solver (deprecated in diffusers).
    #[serde(rename = "dpmsolver")]
    DpmSolver,
    /// SDE variant of the original DPM-Solver (deprecated in diffusers).
    #[serde(rename = "sde-dpmsolver")]
    SdeDpmSolver,
    /// DEIS configs given to DPM++ become dpmsolver++ (as diffusers).
    #[serde(rename = "deis")]
    Deis,
}

/// DPM-Solver's second-order correction (`solver_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverType {
    /// The midpoint rule (SD default).
    Midpoint,
    /// Heun's rule.
    Heun,
    /// UniPC / DEIS solver types given to DPM++ become midpoint (as diffusers).
    #[serde(alias = "logrho", alias = "bh1", alias = "bh2")]
    Other,
}

/// A diffusers scheduler config, every field any of the seven schedulers reads.
/// Unknown keys are ignored; see the module docs for the per-class defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// The diffusers class that wrote the file (`PNDMScheduler`...).
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Training timesteps T (1000).
    pub num_train_timesteps: usize,
    /// First beta (0.0001; SD 0.00085).
    pub beta_start: f64,
    /// Last beta (0.02; SD 0.012).
    pub beta_end: f64,
    /// Beta schedule (linear).
    pub beta_schedule: BetaSchedule,
    /// Explicit betas, overriding the schedule.
    pub trained_betas: Option<Vec<f64>>,
    /// What the model predicts (epsilon).
    pub prediction_type: PredictionType,
    /// Spacing; `None` = the scheduler's default (see module docs).
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Added to leading-spaced timesteps (SD 1.x: 1).
    pub steps_offset: usize,
    /// DDIM/PNDM: alpha_prod at "t = -1" is 1 (true) or `ac[0]`; `None` = class default.
    pub set_alpha_to_one: Option<bool>,
    /// PNDM: PLMS only (SD: true) instead of the Runge-Kutta warm-up.
    pub skip_prk_steps: bool,
    /// DDPM/DDIM: clamp the predicted x0 to +-clip_sample_range (true).
    pub clip_sample: bool,
    /// The clamp range (1.0).
    pub clip_sample_range: f64,
    /// Dynamic thresholding (Imagen); not supported, must be false.
    pub thresholding: bool,
    /// Rescale betas to zero terminal SNR (Lin et al. 2023).
    pub rescale_betas_zero_snr: bool,
    /// DDPM variance; `None` = fixed_small.
    pub variance_type: Option<VarianceType>,
    /// LMS/Euler/DPM++: Karras et al. sigmas (rho = 7).
    pub use_karras_sigmas: bool,
    /// Exponential sigmas (not supported, must be false).
    pub use_exponential_sigmas: bool,
    /// Beta-distribution sigmas (not supported, must be false).
    pub use_beta_sigmas: bool,
    /// DPM++: Lu et al. lambdas (not supported, must be false).
    pub use_lu_lambdas: bool,
    /// DPM++: flow-matching sigmas (not supported, must be false).
    pub use_flow_sigmas: bool,
    /// Euler: lower end for Karras sigmas (default: the schedule's).
    pub sigma_min: Option<f64>,
    /// Euler: upper end for Karras sigmas (default: the schedule's).
    pub sigma_max: Option<f64>,
    /// Euler: sigma interpolation (linear).
    pub interpolation_type: InterpolationType,
    /// Euler: timestep input type (discrete).
    pub timestep_type: TimestepType,
    /// Euler/DPM++: last sigma (zero).
    pub final_sigmas_type: FinalSigmasType,
    /// DPM++: algorithm (dpmsolver++).
    pub algorithm_type: AlgorithmType,
    /// DPM++: multistep order 1..=3 (2).
    pub solver_order: usize,
    /// DPM++: second-order rule (midpoint).
    pub solver_type: SolverType,
    /// DPM++: lower the order at the last steps when N < 15 (true).
    pub lower_order_final: bool,
    /// DPM++: first-order last step (false).
    pub euler_at_final: bool,
    /// DPM++: clip the lambda range (`None` = -inf, no clipping).
    pub lambda_min_clipped: Option<f64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: None,
            skip_prk_steps: false,
            clip_sample: true,
            clip_sample_range: 1.0,
            thresholding: false,
            rescale_betas_zero_snr: false,
            variance_type: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            sigma_min: None,
            sigma_max: None,
            interpolation_type: InterpolationType::Linear,
            timestep_type: TimestepType::Discrete,
            final_sigmas_type: FinalSigmasType::Zero,
            algorithm_type: AlgorithmType::DpmSolverPlusPlus,
            solver_order: 2,
            solver_type: SolverType::Midpoint,
            lower_order_final: true,
            euler_at_final: false,
            lambda_min_clipped: None,
        }
    }
}

impl SchedulerConfig {
    /// Stable Diffusion 1.x's `scheduler/scheduler_config.json` as first published:
    /// PNDM, scaled_linear 0.00085..0.012, steps_offset 1, skip_prk_steps, no
    /// `timestep_spacing` key, `clip_sample` false, `set_alpha_to_one` false.
    pub fn stable_diffusion_v1() -> Self {
        SchedulerConfig {
            class_name: Some("PNDMScheduler".into()),
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            skip_prk_steps: true,
            set_alpha_to_one: Some(false),
            clip_sample: false,
            ..Default::default()
        }
    }

    /// Read `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DiffusionError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parse config JSON text (Python's `Infinity`/`NaN` tokens read as null).
    pub fn from_json(text: &str) -> Result<Self> {
        Self::parse(text, Path::new("<json>"))
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let cleaned = python_json_to_json(text);
        crate::config::parse_config(&cleaned, path)
    }

    /// `timestep_spacing` if the file had it, else `default` (the class's).
    pub fn timestep_spacing_or(&self, default: TimestepSpacing) -> TimestepSpacing {
        self.timestep_spacing.unwrap_or(default)
    }

    /// The scheduler named by `_class_name`.
    pub fn kind(&self) -> Result<super::SchedulerKind> {
        let name = self.class_name.as_deref().ok_or_else(|| {
            DiffusionError::invalid("SchedulerConfig::kind", "the config has no _class_name")
        })?;
        super::SchedulerKind::from_class_name(name)
    }

    /// Refuse the options this crate does not implement, naming them.
    pub(crate) fn check_supported(&self, class: &str) -> Result<()> {
        let refused = [
            (self.thresholding, "thresholding"),
            (self.use_exponential_sigmas, "use_exponential_sigmas"),
            (self.use_beta_sigmas, "use_beta_sigmas"),
            (self.use_lu_lambdas, "use_lu_lambdas"),
            (self.use_flow_sigmas, "use_flow_sigmas"),
        ];
        for (on, key) in refused {
            if on {
                return Err(DiffusionError::invalid(
                    "scheduler config",
                    format!("{class}: `{key}: true` is not supported"),
                ));
            }
        }
        if self.num_train_timesteps < 2 {
            return Err(DiffusionError::invalid(
                "scheduler config",
                format!(
                    "{class}: num_train_timesteps must be >= 2, got {}",
                    self.num_train_timesteps
                ),
            ));
        }
        Ok(())
    }
}

impl FromStr for SchedulerConfig {
    type Err = DiffusionError;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_json(s)
    }
}

/// Replace the bare tokens `Infinity`, `-Infinity` and `NaN` that Python's `json`
/// writes (outside strings) by `null`.
fn python_json_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push_str("null");
            rest = &rest[t.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tokens_become_null_outside_strings() {
        let s = python_json_to_json(r#"{"a": -Infinity, "b": "NaN Infinity", "c": NaN}"#);
        assert_eq!(s, r#"{"a": null, "b": "NaN Infinity", "c": null}"#);
    }

    #[test]
    fn enums_parse_diffusers_spellings() {
        let cfg = SchedulerConfig::from_json(
            r#"{"algorithm_type": "sde-dpmsolver++", "prediction_type": "v_prediction",
                "timestep_spacing": "trailing", "beta_schedule": "squaredcos_cap_v2",
                "solver_type": "bh2", "variance_type": "fixed_small_log", "trained_betas": null}"#,
        )
        .unwrap();
        assert_eq!(cfg.algorithm_type, AlgorithmType::SdeDpmSolverPlusPlus);
        assert_eq!(cfg.prediction_type, PredictionType::VPrediction);
        assert_eq!(cfg.timestep_spacing, Some(TimestepSpacing::Trailing));
        assert_eq!(cfg.beta_schedule, BetaSchedule::SquaredcosCapV2);
        assert_eq!(cfg.solver_type, SolverType::Other);
        assert_eq!(cfg.variance_type, Some(VarianceType::FixedSmallLog));
        assert!(SchedulerConfig::from_json(r#"{"beta_schedule": "sigmoid"}"#).is_err());
    }
}
