//! Stable Diffusion pipelines: a model folder loaded as [`StableDiffusion`], prompts
//! to embeddings ([`prompt`]), and one denoising loop ([`generate`]) serving txt2img,
//! img2img and inpainting with classifier-free guidance, negative prompts, guidance
//! rescale and per-step callbacks, numerically as diffusers. The course's
//! deconstruction of this loop is `lessons/10-stable-diffusion`.
//!
//! ```no_run
//! use diffusion::pipelines::{GenerateParams, StableDiffusion};
//! use diffusion::schedulers::{make_scheduler, SchedulerKind};
//! let sd = StableDiffusion::load("stable-diffusion-v1-5").unwrap();
//! let mut scheduler = make_scheduler(SchedulerKind::Pndm, &sd.scheduler_config).unwrap();
//! let params = GenerateParams {
//!     prompts: vec!["a photograph of an astronaut riding a horse".into()],
//!     num_inference_steps: 25,
//!     seed: 42,
//!     ..Default::default()
//! };
//! let out = sd.generate(&params, scheduler.as_mut(), None).unwrap();
//! let images = out.images.unwrap(); // (1, 3, 512, 512) in [-1, 1]
//! tensor::io::image::save_image_pm1("astronaut.png", &images).unwrap();
//! ```

pub mod folder;
pub mod generate;
pub mod image;
pub mod model;
pub mod prompt;

pub use generate::{rescale_noise_cfg, GenerateParams, Generated, StepCallback, StepInfo};
pub use model::StableDiffusion;
pub use prompt::{repeat_rows, slerp, PromptEmbeds, MAX_LENGTH};
