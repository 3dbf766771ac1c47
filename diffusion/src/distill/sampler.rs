//! The sampler being distilled: deterministic DDIM (eta = 0) on diffusers' grid, one
//! timestep *per batch row*, so a training batch can mix steps of the schedule.
//!
//! With `alpha_t = sqrt(ac_t)`, `sigma_t = sqrt(1 - ac_t)` (scaled_linear betas),
//! an epsilon prediction `e` at `z_t` gives `x = (z_t - sigma_t e) / alpha_t` and
//!
//! ```text
//! z_{t'} = alpha_{t'} x + sigma_{t'} e,      t' = t - T // N    (ac_{t'} = 1 when t' < 0)
//! ```
//!
//! exactly as [`crate::schedulers::DDIMScheduler::step`] computes it (f32, the same
//! operations; a test checks the two agree bit for bit). The grid is diffusers'
//! `"trailing"` spacing (`round(arange(T, 0, -T/N)) - 1`: 999 first), which halves
//! cleanly: the N/2 grid is every other point of the N grid.
//!
//! Progressive distillation (Salimans & Ho 2022, arXiv 2202.00512, Algorithm 2) asks
//! the student for the `x` that makes *one* DDIM step from `z_t` to `z_t''` land where
//! *two* teacher steps landed: [`distill_target`],
//! `x~ = (z'' - (sigma''/sigma) z_t) / (alpha'' - (sigma''/sigma) alpha_t)`.
//! Shapes: every tensor here is `(B, C, h, w)` with one timestep per row.
//!
//! ```
//! use diffusion::distill::sampler::{distill_scheduler_config, DdimGrid};
//! let g = DdimGrid::new(&distill_scheduler_config(), 4).unwrap();
//! assert_eq!(g.timesteps, vec![999, 749, 499, 249]);
//! assert_eq!(g.prev(3), -1); // the last step lands on x0 (ac = 1)
//! let (a, s) = g.alpha_sigma(-1).unwrap();
//! assert_eq!((a, s), (1.0, 0.0));
//! ```

use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::schedulers::betas::NoiseSchedule;
use crate::schedulers::{DDIMScheduler, Scheduler, SchedulerConfig};

/// The students' `scheduler/scheduler_config.json`: DDIM, trailing spacing, epsilon,
/// no clipping (latents are not in [-1, 1]), `set_alpha_to_one`, SD's betas.
pub fn distill_scheduler_json() -> serde_json::Value {
    crate::train::folder::with_class_name(
        serde_json::json!({
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "trained_betas": null,
            "prediction_type": "epsilon",
            "timestep_spacing": "trailing",
            "steps_offset": 0,
            "set_alpha_to_one": true,
            "clip_sample": false,
            "thresholding": false,
            "rescale_betas_zero_snr": false,
        }),
        "DDIMScheduler",
    )
}

/// [`distill_scheduler_json`] parsed.
pub fn distill_scheduler_config() -> SchedulerConfig {
    serde_json::from_value(distill_scheduler_json()).unwrap_or_default()
}

/// An N-step DDIM grid: `timesteps[i]` and the schedule's `alphas_cumprod`.
#[derive(Clone, Debug)]
pub struct DdimGrid {
    pub timesteps: Vec<i64>,
    /// `T // N`, DDIM's step back (diffusers' rule whatever the spacing).
    pub stride: i64,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
}

impl DdimGrid {
    /// The grid `DDIMScheduler` uses for `config` and `n` steps.
    pub fn new(config: &SchedulerConfig, n: usize) -> Result<DdimGrid> {
        let mut s = DDIMScheduler::new(config)?;
        s.set_timesteps(n)?;
        let schedule = NoiseSchedule::new(config)?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            schedule.alphas_cumprod.first().copied().unwrap_or(1.0)
        };
        Ok(DdimGrid {
            timesteps: s.timesteps().iter().map(|&t| t as i64).collect(),
            stride: (config.num_train_timesteps / n.max(1)) as i64,
            alphas_cumprod: schedule.alphas_cumprod,
            final_alpha_cumprod,
        })
    }

    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// Where step `i` lands: `timesteps[i] - T // N`.
    pub fn prev(&self, i: usize) -> i64 {
        self.timesteps.get(i).copied().unwrap_or(0) - self.stride
    }

    /// `ac_t` (`final_alpha_cumprod` for t < 0).
    pub fn alpha_prod(&self, t: i64) -> Result<f32> {
        if t < 0 {
            return Ok(self.final_alpha_cumprod);
        }
        usize::try_from(t)
            .ok()
            .and_then(|i| self.alphas_cumprod.get(i).copied())
            .ok_or_else(|| {
                DiffusionError::invalid("DdimGrid", format!("timestep {t} out of range"))
            })
    }

    /// `(alpha_t, sigma_t) = (sqrt(ac_t), sqrt(1 - ac_t))`.
    pub fn alpha_sigma(&self, t: i64) -> Result<(f32, f32)> {
        let a = self.alpha_prod(t)?;
        Ok((a.sqrt(), (1.0 - a).sqrt()))
    }
}

fn rows(x: &Tensor, what: &str, b: usize) -> Result<(Vec<f32>, usize)> {
    let d = x.dims();
    if d.first() != Some(&b) {
        return Err(DiffusionError::invalid(
            "distill",
            format!("{what} has shape {d:?}, expected {b} rows"),
        ));
    }
    let v = x.contiguous()?.to_vec()?;
    let per = v.len() / b.max(1);
    Ok((v, per))
}

/// One DDIM step per row: `z_t` at `t[r]`, epsilon `eps`, to `t_prev[r]`.
pub fn ddim_step_rows(
    grid: &DdimGrid,
    eps: &Tensor,
    z: &Tensor,
    t: &[i64],
    t_prev: &[i64],
) -> Result<Tensor> {
    let b = t.len();
    let (e, per) = rows(eps, "eps", b)?;
    let (zv, _) = rows(z, "z", b)?;
    let mut out = vec![0f32; zv.len()];
    for (r, &tr) in t.iter().enumerate() {
        let a = grid.alpha_prod(tr)?;
        let ap = grid.alpha_prod(*t_prev.get(r).unwrap_or(&-1))?;
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        let (sap, dir) = (ap.sqrt(), (1.0 - ap).sqrt());
        for j in r * per..(r + 1) * per {
            let x0 = (zv[j] - sb * e[j]) / sa;
            out[j] = sap * x0 + dir * e[j];
        }
    }
    Ok(Tensor::from_vec(out, z.dims().to_vec())?)
}

/// The paper's target `x~` per row, from `z_t` at `t`, the teacher's two-step result
/// `z''` and where one student step lands, `t''`; returned as the epsilon that the
/// student's DDIM step turns into `x~`: `e~ = (z_t - alpha_t x~) / sigma_t`, and also
/// `x~` itself.
pub fn distill_target(
    grid: &DdimGrid,
    z_t: &Tensor,
    z_pp: &Tensor,
    t: &[i64],
    t_pp: &[i64],
) -> Result<(Tensor, Tensor)> {
    let b = t.len();
    let (z, per) = rows(z_t, "z_t", b)?;
    let (zpp, _) = rows(z_pp, "z''", b)?;
    let mut x = vec![0f32; z.len()];
    let mut e = vec![0f32; z.len()];
    for (r, &tr) in t.iter().enumerate() {
        let (a, s) = grid.alpha_sigma(tr)?;
        let (app, spp) = grid.alpha_sigma(*t_pp.get(r).unwrap_or(&-1))?;
        let ratio = spp / s;
        for j in r * per..(r + 1) * per {
            x[j] = (zpp[j] - ratio * z[j]) / (app - ratio * a);
            e[j] = (z[j] - a * x[j]) / s;
        }
    }
    let shape = z_t.dims().to_vec();
    Ok((
        Tensor::from_vec(x, shape.clone())?,
        Tensor::from_vec(e, shape)?,
    ))
}

/// Per-row loss weights in epsilon space for the paper's truncated-SNR x-loss:
/// `max(SNR, 1) |x^ - x~|^2 = max(1, 1/SNR) |e^ - e~|^2`; returns the square roots
/// `sqrt(max(1, sigma^2 / alpha^2))` as a `(B, 1, 1, 1)` tensor.
pub fn truncated_snr_scale(grid: &DdimGrid, t: &[i64]) -> Result<Tensor> {
    let w = t
        .iter()
        .map(|&t| {
            let (a, s) = grid.alpha_sigma(t)?;
            Ok((s / a).max(1.0))
        })
        .collect::<Result<Vec<f32>>>()?;
    Ok(Tensor::from_vec(w, [t.len(), 1, 1, 1])?)
}
