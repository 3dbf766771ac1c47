//! Stable Diffusion from its components: CLIP tokenizer and text encoder,
//! UNet2DConditionModel, AutoencoderKL, schedulers and pipelines.
//!
//! Status: not written yet (issue "Stable Diffusion from its components"). The crate
//! exists so the workspace layout and dependency direction are in place from the start.

pub use nn::Tensor;
