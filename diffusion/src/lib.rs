//! Stable Diffusion from its components: CLIP tokenizer and text encoder,
//! UNet2DConditionModel, AutoencoderKL, schedulers and pipelines (the course's
//! Stable Diffusion lessons, `lessons/10-stable-diffusion`).
//!
//! Every module is built on the `nn` crate: parameters are named by their diffusers /
//! transformers checkpoint keys and loaded with [`nn::VarBuilder`], so a diffusers model
//! folder loads as is, and the same modules train (issue "A small Stable Diffusion").
//!
//! - [`clip`]: byte-level BPE tokenizer and CLIPTextModel.
//! - [`models`]: ResnetBlock2D, Transformer2DModel, UNet2DConditionModel, AutoencoderKL.
//! - [`schedulers`]: DDPM, DDIM, PNDM, LMS, Euler, Euler ancestral, DPM++ 2M.
//! - [`pipelines`]: txt2img, img2img, inpainting, loading a model folder.
//! - [`distill`]: progressive and guided distillation of the DDIM sampler.

pub mod clip;
pub mod config;
pub mod distill;
pub mod error;
pub mod eval;
pub mod imagic;
pub mod models;
pub mod pipelines;
pub mod schedulers;
pub mod train;

pub use error::{DiffusionError, Result};
pub use nn::Tensor;
