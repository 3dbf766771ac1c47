//! The denoiser and the autoencoder of Stable Diffusion, built from `nn` modules with
//! diffusers' parameter names (`lessons/10-stable-diffusion`; diffusers
//! `models/unets/unet_2d_condition.py`, `models/autoencoders/autoencoder_kl.py`).
//!
//! - [`embeddings`]: sinusoidal `Timesteps`, `TimestepEmbedding`.
//! - [`resnet`]: `ResnetBlock2D`, `Downsample2D`, `Upsample2D`.
//! - [`attention`]: GEGLU `FeedForward`, `BasicTransformerBlock`, `Transformer2DModel`.
//! - [`unet_blocks`]: down / mid / up blocks with and without cross-attention.
//! - [`unet_config`], [`unet_2d_condition`]: `UNet2DConditionConfig` (from
//!   `unet/config.json`) and `UNet2DConditionModel`.
//! - [`vae_blocks`], [`vae`]: `Encoder`, `Decoder`, `AutoencoderKL` (with tiled decode
//!   and old attention key names), `DiagonalGaussianDistribution`.
//!
//! Every module holds `nn::Param` handles (so the same code trains); run inference
//! under `autodiff::no_grad`.

pub mod attention;
pub mod embeddings;
pub mod resnet;
pub mod unet_2d_condition;
pub mod unet_blocks;
pub mod unet_config;
pub mod vae;
pub mod vae_blocks;

pub use unet_2d_condition::{TimestepArg, UNet2DConditionModel};
pub use unet_config::{OneOrMany, UNet2DConditionConfig};
pub use vae::{AutoencoderKL, AutoencoderKLConfig, DiagonalGaussianDistribution};
