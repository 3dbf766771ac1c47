//! Noise schedules and the forward (noising) process, by hand.
//!
//! A schedule is T betas; `alpha_t = 1 - beta_t`, `ac_t = prod_{s<=t} alpha_s`
//! (`alphas_cumprod`). One noising step is
//! `x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z`, and t of them collapse into the
//! closed form `x_t = sqrt(ac_t) x_0 + sqrt(1 - ac_t) eps`. The signal-to-noise ratio
//! of `x_t` is `ac_t / (1 - ac_t)`. The library computes the same schedules in
//! `diffusion/src/schedulers/betas.rs` (float32, as torch does); these are float64.

use diffusion::Result;
use tensor::random::TorchGenerator;
use tensor::Tensor;

/// DDPM's schedule (Ho et al. 2020): `beta_i = start + (end - start) i / (T - 1)`.
pub fn linear_betas(t: usize, start: f64, end: f64) -> Vec<f64> {
    let d = (t.max(2) - 1) as f64;
    (0..t)
        .map(|i| start + (end - start) * i as f64 / d)
        .collect()
}

/// Stable Diffusion's schedule: linear in `sqrt(beta)`, then squared.
pub fn scaled_linear_betas(t: usize, start: f64, end: f64) -> Vec<f64> {
    linear_betas(t, start.sqrt(), end.sqrt())
        .into_iter()
        .map(|b| b * b)
        .collect()
}

/// `ac_t = prod_{s <= t} (1 - beta_s)`.
pub fn alphas_cumprod(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

/// Signal-to-noise ratio of `x_t`: `ac_t / (1 - ac_t)`.
pub fn snr(ac: f64) -> f64 {
    ac / (1.0 - ac)
}

/// `sqrt(ac) x0 + sqrt(1 - ac) eps` with one `ac` per batch element.
/// x0, eps: (B, C, H, W); `ac.len() == B`.
pub fn q_sample(x0: &Tensor, eps: &Tensor, ac: &[f64]) -> Result<Tensor> {
    let b = x0.dims()[0];
    let s: Vec<f32> = ac.iter().map(|a| a.sqrt() as f32).collect();
    let n: Vec<f32> = ac.iter().map(|a| (1.0 - a).sqrt() as f32).collect();
    let s = Tensor::from_vec(s, [b, 1, 1, 1])?;
    let n = Tensor::from_vec(n, [b, 1, 1, 1])?;
    Ok(x0.mul(&s)?.add(&eps.mul(&n)?)?)
}

/// The same `x_t` by `t + 1` single steps `x <- sqrt(1 - beta_s) x + sqrt(beta_s) z`,
/// `s = 0..=t`, each with fresh noise from `rng`. x0: (B, C, H, W).
pub fn noise_step_by_step(
    x0: &Tensor,
    betas: &[f64],
    t: usize,
    rng: &mut TorchGenerator,
) -> Result<Tensor> {
    let mut x = x0.clone();
    for &b in betas.iter().take(t + 1) {
        let z = rng.randn(x.dims().to_vec())?;
        x = x
            .mul_scalar((1.0 - b).sqrt() as f32)?
            .add(&z.mul_scalar(b.sqrt() as f32)?)?;
    }
    Ok(x)
}

/// Mean and (population) variance of all values of a tensor, in f64.
pub fn mean_var(x: &Tensor) -> Result<(f64, f64)> {
    let v = x.to_vec()?;
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
    let var = v.iter().map(|&a| (f64::from(a) - m).powi(2)).sum::<f64>() / n;
    Ok((m, var))
}

/// How well `n` noisy copies of one image, `x: (n, 1, H, W)`, fit `N(sqrt(ac) x0,
/// (1 - ac) I)`: the worst pixel's |sample mean - sqrt(ac) x0| and the sample
/// variance averaged over pixels (to compare with `1 - ac`). `x0: (1, 1, H, W)`.
pub fn fit_to_closed_form(x: &Tensor, x0: &Tensor, ac: f64) -> Result<(f64, f64)> {
    let (v, x0) = (x.to_vec()?, x0.to_vec()?);
    let per = x0.len().max(1);
    let n = (v.len() / per).max(1) as f64;
    let (mut worst_mean, mut var_sum) = (0.0f64, 0.0f64);
    for (p, &x0p) in x0.iter().enumerate() {
        let col: Vec<f64> = v.chunks(per).map(|c| f64::from(c[p])).collect();
        let m = col.iter().sum::<f64>() / n;
        let var = col.iter().map(|a| (a - m).powi(2)).sum::<f64>() / n;
        worst_mean = worst_mean.max((m - ac.sqrt() * f64::from(x0p)).abs());
        var_sum += var;
    }
    Ok((worst_mean, var_sum / per as f64))
}
