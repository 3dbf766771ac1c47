//! Lesson 07: denoising diffusion (DDPM and DDIM) on Fashion-MNIST, in pixel space.
//!
//! - [`schedule`]: betas, `alphas_cumprod`, signal-to-noise, and the forward process
//!   `x_t = sqrt(ac_t) x_0 + sqrt(1 - ac_t) eps`, by hand (float64);
//! - [`model`]: a small UNet (from `diffusion::models::resnet` blocks) predicting eps
//!   from `(x_t, t)`, `x: (B, 1, 28, 28)`;
//! - [`train`]: the training objective and the sampling loop over the library's
//!   `DDPMScheduler` / `DDIMScheduler` through the `Scheduler` trait.
//!
//! ```
//! use lesson_07_ddpm::schedule::{alphas_cumprod, linear_betas};
//! let ac = alphas_cumprod(&linear_betas(1000, 1e-4, 0.02));
//! assert!((ac[0] - 0.9999).abs() < 1e-12);
//! assert!((ac[999] - 4.0358e-5).abs() < 1e-8);
//! ```

pub mod model;
pub mod schedule;
pub mod train;

pub use model::{build, Denoiser, DenoiserConfig};
