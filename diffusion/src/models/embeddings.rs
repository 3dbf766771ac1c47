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
//!   (SD 1.5: 320 -> 1280 -> 1280).
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

/// `TimestepEmbedding`: `linear_1 -> SiLU -> linear_2`.
#[derive(Clone, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    /// `vb.linear_1: (time_embed_dim, in_channels)`, `vb.linear_2: (time_embed_dim, time_embed_dim)`.
    pub fn new(vb: VarBuilder, in_channels: usize, time_embed_dim: usize) -> Result<Self> {
        Ok(TimestepEmbedding {
            linear_1: Linear::new(vb.pp("linear_1"), in_channels, time_embed_dim, true)?,
            linear_2: Linear::new(vb.pp("linear_2"), time_embed_dim, time_embed_dim, true)?,
        })
    }

    /// `(B, in_channels) -> (B, time_embed_dim)`.
    pub fn forward(&self, t_emb: &Var) -> Result<Var> {
        let h = self.linear_1.forward(t_emb)?.silu()?;
        Ok(self.linear_2.forward(&h)?)
    }
}
