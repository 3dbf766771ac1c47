//! Timestep embeddings: how the UNet is told *when* in the diffusion it is
//! (`lessons/10-stable-diffusion`; diffusers `models/embeddings.py`:
//! `get_timestep_embedding`, `Timesteps`, `TimestepEmbedding`).
//!
//! - [`get_timestep_embedding`]: `t: (B,)` -> `(B, dim)` sinusoids, as in the DDPM paper
//!   and the Transformer's positional encoding. With `half = dim / 2`,
//!   `freq_i = exp(-ln(max_period) * i / (half - downscale_freq_shift))` and the row is
//!   `[sin(t freq), cos(t freq)]`, swapped to `[cos, sin]` by `flip_sin_to_cos` (SD
//!   uses `flip_sin_to_cos = true`, `freq_shift = 0`), zero-padded when `dim` is odd.
//! - [`Timesteps`]: that function with a layer's settings (no parameters).
//! - [`TimestepEmbedding`]: `linear_1 -> SiLU -> linear_2`, `(B, in) -> (B, time_embed_dim)`
//!   (SD 1.5: 320 -> 1280 -> 1280). With `time_cond_proj_dim` (guided distillation,
//!   Meng et al. 2210.03142; LCM) a bias-free `cond_proj: (in, cond_dim)` adds a
//!   projected condition to the sinusoids first: `linear_1(t_emb + cond_proj(c))`.
//! - [`get_guidance_scale_embedding`]: `w: (B,) -> (B, dim)` sinusoids of `1000 w`
//!   (`[sin, cos]`, frequencies `10000^(-i / (half - 1))`), the condition a
//!   guidance-distilled UNet receives (diffusers' LCM pipeline, with `w = g - 1`).
//!
//! Arithmetic follows torch's: the frequencies and `t * freq` are float32 (the
//! timestep is cast to float32 first, as diffusers does), and sin/cos are evaluated
//! exactly on those float32 arguments.
//!
//! ```
//! use diffusion::models::embeddings::get_timestep_embedding;
//! // dim 4: half = 2, freqs [1, 10000^(-1/2) = 0.01]; t = 1, cos first.
//! let e = get_timestep_embedding(&[1.0], 4, true, 0.0, 1.0, 10000.0).unwrap();
//! let v = e.to_vec().unwrap();
//! assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[1] - 0.01f32.cos()).abs() < 1e-6);
//! assert!((v[2] - 1f32.sin()).abs() < 1e-6 && (v[3] - 0.01f32.sin()).abs() < 1e-6);
//! ```

use autodiff::Var;
use nn::{Linear, Module, VarBuilder};
use tensor::Tensor;

use crate::error::{DiffusionError, Result};

/// Sinusoidal embeddings of `timesteps` (one per batch element): `(B,) -> (B, dim)`.
pub fn get_timestep_embedding(
    timesteps: &[f64],
    embedding_dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f64,
    scale: f64,
    max_period: f64,
) -> Result<Tensor> {
    let half = embedding_dim / 2;
    let denom = half as f64 - downscale_freq_shift;
    if half > 0 && denom == 0.0 {
        return Err(DiffusionError::invalid(
            "get_timestep_embedding",
            format!("embedding_dim {embedding_dim} with downscale_freq_shift {downscale_freq_shift} divides by zero"),
        ));
    }
    // torch: exponent = -ln(max_period) * arange(half) (f32), / (half - shift), exp.
    let neg_log = -(max_period.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let e = (neg_log * i as f32) / denom as f32;
            f64::from(e).exp() as f32
        })
        .collect();
    let mut out = vec![0f32; timesteps.len() * embedding_dim];
    for (row, &t) in out.chunks_mut(embedding_dim).zip(timesteps) {
        let t = t as f32;
        for (i, &f) in freqs.iter().enumerate() {
            let arg = f64::from((t * f) * scale as f32);
            let (s, c) = (arg.sin() as f32, arg.cos() as f32);
            let (first, second) = if flip_sin_to_cos { (c, s) } else { (s, c) };
            row[i] = first;
            row[half + i] = second;
        }
    }
    Ok(Tensor::from_vec(out, [timesteps.len(), embedding_dim])?)
}

/// `Timesteps`: the sinusoidal projection with fixed settings (no parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct Timesteps {
    pub num_channels: usize,
    pub flip_sin_to_cos: bool,
    pub downscale_freq_shift: f64,
    pub scale: f64,
}

impl Timesteps {
    pub fn new(num_channels: usize, flip_sin_to_cos: bool, downscale_freq_shift: f64) -> Timesteps {
        Timesteps {
            num_channels,
            flip_sin_to_cos,
            downscale_freq_shift,
            scale: 1.0,
        }
    }

    /// `timesteps: (B,)` -> `(B, num_channels)`, a constant (no gradient flows to `t`).
    pub fn forward(&self, timesteps: &[f64]) -> Result<Var> {
        Ok(Var::constant(get_timestep_embedding(
            timesteps,
            self.num_channels,
            self.flip_sin_to_cos,
            self.downscale_freq_shift,
            self.scale,
            10000.0,
        )?))
    }
}

/// diffusers' `get_guidance_scale_embedding(w, embedding_dim)` (from VDM): row
/// `[sin(1000 w f_i), cos(1000 w f_i)]` with `f_i = exp(-ln(10000) i / (half - 1))`,
/// zero-padded when `dim` is odd. `w: (B,) -> (B, dim)`.
pub fn get_guidance_scale_embedding(w: &[f64], embedding_dim: usize) -> Result<Tensor> {
    let half = embedding_dim / 2;
    if half < 2 {
        return Err(DiffusionError::invalid(
            "get_guidance_scale_embedding",
            format!("embedding_dim {embedding_dim} must be at least 4"),
        ));
    }
    // torch: log(10000) / (half - 1) in f32, exp(arange * -emb) in f32.
    let step = (10000f32).ln() / (half - 1) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut out = vec![0f32; w.len() * embedding_dim];
    for (row, &w) in out.chunks_mut(embedding_dim).zip(w) {
        let w = (w * 1000.0) as f32;
        for (i, &f) in freqs.iter().enumerate() {
            let arg = f64::from(w * f);
            row[i] = arg.sin() as f32;
            row[half + i] = arg.cos() as f32;
        }
    }
    Ok(Tensor::from_vec(out, [w.len(), embedding_dim])?)
}

/// `TimestepEmbedding`: `[+ cond_proj(condition)] -> linear_1 -> SiLU -> linear_2`.
#[derive(Clone, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
    /// `time_cond_proj_dim -> in_channels`, no bias (guidance-distilled UNets).
    pub cond_proj: Option<Linear>,
}

impl TimestepEmbedding {
    /// `vb.linear_1: (time_embed_dim, in_channels)`, `vb.linear_2: (time_embed_dim, time_embed_dim)`.
    pub fn new(vb: VarBuilder, in_channels: usize, time_embed_dim: usize) -> Result<Self> {
        Self::with_cond(vb, in_channels, time_embed_dim, None)
    }

    /// As [`TimestepEmbedding::new`], plus `vb.cond_proj: (in_channels, cond_proj_dim)`
    /// when `cond_proj_dim` is given (diffusers' `cond_proj_dim`).
    pub fn with_cond(
        vb: VarBuilder,
        in_channels: usize,
        time_embed_dim: usize,
        cond_proj_dim: Option<usize>,
    ) -> Result<Self> {
        let cond_proj = match cond_proj_dim {
            Some(d) => Some(Linear::new(vb.pp("cond_proj"), d, in_channels, false)?),
            None => None,
        };
        Ok(TimestepEmbedding {
            linear_1: Linear::new(vb.pp("linear_1"), in_channels, time_embed_dim, true)?,
            linear_2: Linear::new(vb.pp("linear_2"), time_embed_dim, time_embed_dim, true)?,
            cond_proj,
        })
    }

    /// `(B, in_channels) -> (B, time_embed_dim)`.
    pub fn forward(&self, t_emb: &Var) -> Result<Var> {
        self.forward_cond(t_emb, None)
    }

    /// `t_emb: (B, in_channels)`, `condition: (B, cond_proj_dim)` (ignored, as in
    /// diffusers, when `None`) -> `(B, time_embed_dim)`.
    pub fn forward_cond(&self, t_emb: &Var, condition: Option<&Var>) -> Result<Var> {
        let x = match (condition, &self.cond_proj) {
            (Some(c), Some(proj)) => t_emb.add(&proj.forward(c)?)?,
            (Some(_), None) => {
                return Err(DiffusionError::invalid(
                    "TimestepEmbedding",
                    "a timestep condition was given but the UNet has no time_cond_proj_dim",
                ))
            }
            (None, _) => t_emb.clone(),
        };
        let h = self.linear_1.forward(&x)?.silu()?;
        Ok(self.linear_2.forward(&h)?)
    }
}
