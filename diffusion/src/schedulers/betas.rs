//! The noise schedule every scheduler shares: betas, alphas = 1 - betas and
//! alphas_cumprod, computed exactly as diffusers computes them (float32 torch tensors).
//!
//! - `torch.linspace(start, end, T, dtype=float32)`: float32 step `(end - start) / (T - 1)`;
//!   the first half is `start + step * i`, the second `end - step * (T - 1 - i)`, each a
//!   fused multiply-add in torch's CPU kernel (so `mul_add` here, or 1 ulp differs).
//! - `torch.cumprod` on CPU accumulates in float64 and rounds each prefix to float32.
//! - the cosine schedule is float64 Python math, then one cast to float32.
//!
//! Source: diffusers `schedulers/scheduling_ddpm.py` (`betas_for_alpha_bar`,
//! `rescale_zero_terminal_snr`, `__init__`). Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::{betas::NoiseSchedule, SchedulerConfig};
//! let s = NoiseSchedule::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
//! assert!((s.alphas_cumprod[0] - 0.99915).abs() < 1e-7);
//! assert!((s.alphas_cumprod[999] - 0.0046601).abs() < 1e-7);
//! // k-diffusion sigmas sqrt((1 - ac) / ac): 0.029168 .. 14.61465
//! let sig = s.sigmas();
//! assert!((sig[0] - 0.029168).abs() < 1e-6 && (sig[999] - 14.61465).abs() < 1e-4);
//! ```

use super::config::{BetaSchedule, SchedulerConfig};
use crate::error::{DiffusionError, Result};

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU, bit for bit.
pub fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((steps - i - 1) as f32, end)
                    }
                })
                .collect()
        }
    }
}

/// `torch.cumprod(x, 0)` for float32 on CPU: a float64 running product, each prefix
/// rounded to float32.
pub fn torch_cumprod_f32(x: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    x.iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// The cosine schedule (`betas_for_alpha_bar`, `alpha_transform_type="cosine"`):
/// `beta_i = min(1 - abar((i+1)/T) / abar(i/T), 0.999)` with
/// `abar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2`, in float64, cast to float32.
pub fn betas_for_alpha_bar(num_diffusion_timesteps: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        let c = ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos();
        c * c
    };
    let n = num_diffusion_timesteps as f64;
    (0..num_diffusion_timesteps)
        .map(|i| {
            let t1 = i as f64 / n;
            let t2 = (i + 1) as f64 / n;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1), in float32 as diffusers:
/// shift and scale sqrt(alphas_cumprod) so the last is 0 and the first unchanged.
pub fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let mut s: Vec<f32> = torch_cumprod_f32(&alphas)
        .iter()
        .map(|a| a.sqrt())
        .collect();
    let (Some(&s0), Some(&s_t)) = (s.first(), s.last()) else {
        return Vec::new();
    };
    let scale = s0 / (s0 - s_t);
    for v in s.iter_mut() {
        *v -= s_t;
        *v *= scale;
    }
    let bar: Vec<f32> = s.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for w in bar.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

/// betas, alphas and alphas_cumprod (float32, length `num_train_timesteps`).
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    /// beta_t.
    pub betas: Vec<f32>,
    /// 1 - beta_t.
    pub alphas: Vec<f32>,
    /// prod_{s <= t} alpha_s.
    pub alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// The schedule of `cfg` (honouring `trained_betas` and `rescale_betas_zero_snr`).
    pub fn new(cfg: &SchedulerConfig) -> Result<Self> {
        Self::build(cfg, cfg.rescale_betas_zero_snr)
    }

    /// As [`NoiseSchedule::new`], with the zero-SNR rescale decided by the caller (PNDM
    /// and LMS have no `rescale_betas_zero_snr` key in diffusers and ignore it).
    pub fn build(cfg: &SchedulerConfig, rescale_zero_snr: bool) -> Result<Self> {
        let n = cfg.num_train_timesteps;
        let mut betas = match (&cfg.trained_betas, cfg.beta_schedule) {
            (Some(b), _) => {
                if b.len() != n {
                    return Err(DiffusionError::invalid(
                        "NoiseSchedule",
                        format!(
                            "trained_betas has {} values, num_train_timesteps is {n}",
                            b.len()
                        ),
                    ));
                }
                b.iter().map(|&v| v as f32).collect()
            }
            (None, BetaSchedule::Linear) => {
                torch_linspace_f32(cfg.beta_start as f32, cfg.beta_end as f32, n)
            }
            (None, BetaSchedule::ScaledLinear) => {
                let v =
                    torch_linspace_f32(cfg.beta_start.sqrt() as f32, cfg.beta_end.sqrt() as f32, n);
                v.into_iter().map(|x| x * x).collect()
            }
            (None, BetaSchedule::SquaredcosCapV2) => betas_for_alpha_bar(n, 0.999),
        };
        if rescale_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        let alphas_cumprod = torch_cumprod_f32(&alphas);
        Ok(NoiseSchedule {
            betas,
            alphas,
            alphas_cumprod,
        })
    }

    /// The k-diffusion sigmas `((1 - ac) / ac) ** 0.5`, float32, ascending in t.
    pub fn sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod
            .iter()
            .map(|&a| ((1.0 - a) / a).sqrt())
            .collect()
    }

    /// `alphas_cumprod[t]` for an integer timestep, with an error naming t when out of range.
    pub fn alpha_prod(&self, t: i64) -> Result<f32> {
        usize::try_from(t)
            .ok()
            .and_then(|i| self.alphas_cumprod.get(i).copied())
            .ok_or_else(|| {
                DiffusionError::invalid(
                    "scheduler",
                    format!("timestep {t} outside 0..{}", self.alphas_cumprod.len()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_ends_and_midpoint_rule() {
        let v = torch_linspace_f32(0.0001, 0.02, 1000);
        assert_eq!(v[0], 0.0001f32);
        assert_eq!(v[999], 0.02f32);
        assert_eq!(torch_linspace_f32(1.0, 2.0, 1), vec![1.0]);
        assert!(torch_linspace_f32(1.0, 2.0, 0).is_empty());
    }

    #[test]
    fn zero_snr_ends_at_beta_one() {
        let cfg = SchedulerConfig::stable_diffusion_v1();
        let s = NoiseSchedule::build(&cfg, true).unwrap();
        assert_eq!(*s.betas.last().unwrap(), 1.0);
        assert_eq!(*s.alphas_cumprod.last().unwrap(), 0.0);
        // the first alpha_cumprod is unchanged
        let plain = NoiseSchedule::build(&cfg, false).unwrap();
        assert!((s.alphas_cumprod[0] - plain.alphas_cumprod[0]).abs() < 1e-6);
    }
}
