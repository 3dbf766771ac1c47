//! Timestep spacings and sigma schedules, as the numpy code in diffusers computes them
//! (float64 unless a cast is named): `np.linspace`, `np.arange` with a float step,
//! `np.round` (half to even), `np.interp`, Karras sigmas and `_sigma_to_t`.
//!
//! With T training steps and N inference steps (SD: T = 1000, N = 50):
//! - leading: `(arange(N) * (T // N)).round()[::-1] + steps_offset` -> 981, 961, ..., 1
//! - linspace: `linspace(0, T - 1, N)[::-1]` -> 999, 978.6, ..., 0 (rounded for ints)
//! - trailing: `round(arange(T, 0, -T / N)) - 1` -> 999, 979, ..., 19
//!
//! Source: diffusers `schedulers/scheduling_euler_discrete.py` (`set_timesteps`,
//! `_sigma_to_t`, `_convert_to_karras`). Lesson: `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::schedulers::spacing::{int_timesteps, np_linspace};
//! use diffusion::schedulers::TimestepSpacing;
//! assert_eq!(int_timesteps(TimestepSpacing::Leading, 1000, 5, 1).unwrap(), vec![801, 601, 401, 201, 1]);
//! assert_eq!(int_timesteps(TimestepSpacing::Trailing, 1000, 4, 0).unwrap(), vec![999, 749, 499, 249]);
//! assert_eq!(np_linspace(0.0, 999.0, 4), vec![0.0, 333.0, 666.0, 999.0]);
//! ```

use super::config::TimestepSpacing;
use crate::error::{DiffusionError, Result};

/// `np.linspace(start, stop, num)` (endpoint=True), float64.
pub fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| i as f64 / div * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    y[num - 1] = stop;
    y
}

/// `np.arange(start, stop, step)` for a float step: `start + i * ((start + step) - start)`.
pub fn np_arange_f64(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let second = start + step;
    let delta = second - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * delta,
        })
        .collect()
}

fn check_steps(op: &'static str, num_train: usize, n: usize) -> Result<()> {
    if n == 0 || n > num_train {
        return Err(DiffusionError::invalid(
            op,
            format!("num_inference_steps must be in 1..={num_train}, got {n}"),
        ));
    }
    Ok(())
}

/// Descending integer timesteps of DDPM / DDIM (`np.int64`).
pub fn int_timesteps(
    spacing: TimestepSpacing,
    num_train: usize,
    n: usize,
    steps_offset: usize,
) -> Result<Vec<i64>> {
    check_steps("set_timesteps", num_train, n)?;
    let t = num_train as i64;
    Ok(match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v.round_ties_even() as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = t / n as i64;
            (0..n as i64)
                .rev()
                .map(|i| i * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange_f64(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .map(|v| v.round_ties_even() as i64 - 1)
            .collect(),
    })
}

/// PNDM's ascending `_timesteps` (its trailing branch flips the arange).
pub fn pndm_base_timesteps(
    spacing: TimestepSpacing,
    num_train: usize,
    n: usize,
    steps_offset: usize,
) -> Result<Vec<i64>> {
    let mut v = int_timesteps(spacing, num_train, n, steps_offset)?;
    v.reverse();
    Ok(v)
}

/// Descending float32 timesteps of LMS / Euler / Euler ancestral.
pub fn float_timesteps(
    spacing: TimestepSpacing,
    num_train: usize,
    n: usize,
    steps_offset: usize,
) -> Result<Vec<f32>> {
    check_steps("set_timesteps", num_train, n)?;
    let t = num_train;
    Ok(match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (t - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|v| v as f32)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = t / n;
            (0..n)
                .rev()
                .map(|i| (i * ratio) as f32 + steps_offset as f32)
                .collect()
        }
        TimestepSpacing::Trailing => np_arange_f64(t as f64, 0.0, -(t as f64 / n as f64))
            .into_iter()
            .map(|v| v.round_ties_even() as f32 - 1.0)
            .collect(),
    })
}

/// DPMSolverMultistep's integer timesteps (N + 1 points, the last dropped), with
/// `last_timestep = T - clipped_idx` from `lambda_min_clipped`.
pub fn dpm_timesteps(
    spacing: TimestepSpacing,
    num_train: usize,
    last_timestep: usize,
    n: usize,
    steps_offset: usize,
) -> Result<Vec<i64>> {
    check_steps("set_timesteps", num_train, n)?;
    Ok(match spacing {
        TimestepSpacing::Linspace => {
            let mut v: Vec<i64> = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1)
                .into_iter()
                .map(|x| x.round_ties_even() as i64)
                .collect();
            v.reverse();
            v.pop();
            v
        }
        TimestepSpacing::Leading => {
            let ratio = (last_timestep / (n + 1)) as i64;
            (1..=n as i64)
                .rev()
                .map(|i| i * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            np_arange_f64(last_timestep as f64, 0.0, -(num_train as f64 / n as f64))
                .into_iter()
                .map(|v| v.round_ties_even() as i64 - 1)
                .collect()
        }
    })
}

/// `np.interp(x, arange(len(fp)), fp)`: the training-sigma table read at fractional t.
pub fn np_interp_arange(x: &[f64], fp: &[f64]) -> Vec<f64> {
    let n = fp.len();
    x.iter()
        .map(|&xv| {
            if n == 0 || xv.is_nan() {
                return f64::NAN;
            }
            if xv <= 0.0 {
                return fp[0];
            }
            if xv >= (n - 1) as f64 {
                return fp[n - 1];
            }
            let j = xv.floor() as usize;
            if j as f64 == xv {
                return fp[j];
            }
            let slope = (fp[j + 1] - fp[j]) / ((j + 1) as f64 - j as f64);
            slope * (xv - j as f64) + fp[j]
        })
        .collect()
}

/// Karras et al. (2022) sigmas, rho = 7:
/// `(max^(1/7) + linspace(0, 1, N) * (min^(1/7) - max^(1/7)))^7`.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// `np.log` of the float32 training sigmas, in float32 (diffusers' `log_sigmas`).
pub fn log_sigmas_f32(sigmas: &[f32]) -> Vec<f32> {
    sigmas.iter().map(|s| s.ln()).collect()
}

/// `_sigma_to_t`: the fractional training timestep whose log-sigma is `log(sigma)`,
/// interpolating linearly in log-sigma between neighbours (the bracket width
/// `low - high` is a float32 subtraction, as numpy does it).
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let n = log_sigmas.len();
    if n < 2 {
        return 0.0;
    }
    let log_sigma = sigma.max(1e-10).ln();
    // cumsum(dists >= 0).argmax(): the first index where the running count peaks
    let mut count = 0usize;
    let mut best = 0usize;
    let mut low_idx = 0usize;
    for (i, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls as f64 >= 0.0 {
            count += 1;
            if count > best {
                best = count;
                low_idx = i;
            }
        }
    }
    let low_idx = low_idx.min(n - 2);
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_arange_matches_numpy_rule() {
        let v = np_arange_f64(1000.0, 0.0, -(1000.0 / 3.0));
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], 1000.0);
        assert!((v[2] - 333.3333333333333).abs() < 1e-9);
    }

    #[test]
    fn rejects_zero_or_too_many_steps() {
        assert!(int_timesteps(TimestepSpacing::Leading, 1000, 0, 0).is_err());
        assert!(float_timesteps(TimestepSpacing::Linspace, 1000, 1001, 0).is_err());
    }

    #[test]
    fn interp_reads_table_and_ends() {
        let fp = [1.0, 3.0, 7.0];
        assert_eq!(
            np_interp_arange(&[0.0, 0.5, 1.0, 1.25, 2.0, 5.0], &fp),
            vec![1.0, 2.0, 3.0, 4.0, 7.0, 7.0]
        );
    }
}
