//! The denoising loop shared by txt2img, img2img and inpainting, step for step as
//! diffusers' `StableDiffusionPipeline`, `StableDiffusionImg2ImgPipeline` and
//! `StableDiffusionInpaintPipeline` (`__call__`), so a seed gives diffusers' numbers.
//!
//! Shapes, for B prompts, n images each, latents of C = 4 channels at H/8 x W/8:
//!
//! ```text
//! embeds   (B n, 77, D)           [uncond; cond] -> (2 B n, 77, D) with guidance
//! latents  (B n, C, H/8, W/8)     = randn * init_noise_sigma            (txt2img)
//!                                 = add_noise(0.18215 vae(img), randn, t_start)   (img2img)
//! loop over timesteps[t_start..]:
//!   x  = scale_model_input([latents; latents], i)      (2 B n, C, h, w)
//!        (9-channel inpaint UNets: x = cat(x, mask, masked-image latents) on dim 1)
//!   e  = unet(x, t, embeds) -> (e_u, e_c);  e = e_u + g (e_c - e_u)   (+ guidance rescale)
//!   latents = scheduler.step(e, i, latents)
//!   (4-channel inpainting: latents = (1 - m) add_noise(image latents, noise, t_{i+1}) + m latents)
//! images = vae.decode(latents / scaling_factor)  (B n, 3, H, W) in about [-1, 1]
//! ```
//!
//! A guidance-distilled UNet (`time_cond_proj_dim` in its config; Meng et al.
//! 2210.03142, diffusers' `LatentConsistencyModelPipeline`) gets no CFG batch: one
//! conditional evaluation per step with `timestep_cond = get_guidance_scale_embedding(g - 1)`.
//!
//! The initial noise is multiplied by `init_noise_sigma` (1 for DDPM/DDIM/PNDM, about
//! 14.6 for the sigma-based samplers): their loop starts from `x_T = sigma_max * eps`,
//! so the noise must have that variance, not 1. One [`TorchGenerator`] seeded with
//! `seed` makes every random draw in diffusers' order (posterior samples of the VAE,
//! the noise, the ancestral samplers' noise), which is what makes a seed portable.

use autodiff::Var;
use tensor::random::TorchGenerator;
use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::models::embeddings::get_guidance_scale_embedding;
use crate::pipelines::image::{binarize_mask, match_channels};
use crate::pipelines::model::StableDiffusion;
use crate::pipelines::prompt::PromptEmbeds;
use crate::schedulers::Scheduler;

/// What to generate. `Default` is txt2img of the empty prompt, 50 steps, guidance 7.5.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub prompts: Vec<String>,
    /// None, or one per prompt ("" when absent).
    pub negative_prompts: Vec<String>,
    /// Precomputed embeddings (slerp, textual inversion, Imagic); replace `prompts`.
    pub prompt_embeds: Option<PromptEmbeds>,
    pub num_images_per_prompt: usize,
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
    /// Guidance rescale phi (2305.08891, section 3.4); 0 turns it off.
    pub guidance_rescale: f64,
    /// Image size; None takes the init image's size or the model's default.
    pub width: Option<usize>,
    pub height: Option<usize>,
    pub seed: u64,
    /// img2img / inpainting: (C, H, W) or (1, C, H, W) in [-1, 1].
    pub init_image: Option<Tensor>,
    /// How much of the schedule to run on the init image, in (0, 1].
    pub strength: f64,
    /// Inpainting: (1, H, W) or (1, 1, H, W) in [0, 1]; >= 0.5 is repainted.
    pub mask: Option<Tensor>,
    /// Start from these latents (B n, C, h, w) instead of fresh noise (txt2img).
    pub latents: Option<Tensor>,
    /// Decode by overlapping tiles (large images in bounded memory).
    pub vae_tiling: bool,
    /// Return the latents only (skip the VAE decode).
    pub latents_only: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            prompts: vec![String::new()],
            negative_prompts: Vec::new(),
            prompt_embeds: None,
            num_images_per_prompt: 1,
            num_inference_steps: 50,
            guidance_scale: 7.5,
            guidance_rescale: 0.0,
            width: None,
            height: None,
            seed: 0,
            init_image: None,
            strength: 1.0,
            mask: None,
            latents: None,
            vae_tiling: false,
            latents_only: false,
        }
    }
}

/// What a step callback sees: after `scheduler.step` of step `step` (0-based among
/// the `num_steps` steps that run).
pub struct StepInfo<'a> {
    pub step: usize,
    pub num_steps: usize,
    pub timestep: f64,
    pub latents: &'a Tensor,
}

/// Called after every step; may return new latents to continue from
/// (diffusers' `callback_on_step_end` with `latents` in its outputs).
pub type StepCallback<'a> = &'a mut dyn FnMut(&StepInfo) -> Result<Option<Tensor>>;

/// The result: final latents (B n, C, h, w) and, unless `latents_only`, the decoded
/// images (B n, 3, H, W) in about [-1, 1] (save with `tensor::io::image::save_image_pm1`).
pub struct Generated {
    pub latents: Tensor,
    pub images: Option<Tensor>,
}

/// Inpainting state: the latent-size mask and what the UNet or the blend needs.
struct Inpaint {
    /// (B n, 1, h, w), 1 where the image is repainted.
    mask: Tensor,
    /// 9-channel UNets: the masked image's latents (B n, C, h, w).
    masked_latents: Option<Tensor>,
    /// 4-channel UNets: the image's latents and the noise, for the blend.
    blend: Option<(Tensor, Tensor)>,
}

impl StableDiffusion {
    /// Run the pipeline with `scheduler` (whose config should be this model's
    /// `scheduler_config`, possibly another class); `callback` runs after every step.
    pub fn generate(
        &self,
        params: &GenerateParams,
        scheduler: &mut dyn Scheduler,
        mut callback: Option<StepCallback>,
    ) -> Result<Generated> {
        let w_dim = self.unet.config().time_cond_proj_dim;
        let guidance = params.guidance_scale > 1.0 && w_dim.is_none();
        let embeds = match &params.prompt_embeds {
            Some(e) => e.clone(),
            None => self.encode_prompt(
                &params.prompts,
                &params.negative_prompts,
                params.num_images_per_prompt,
                guidance,
            )?,
        };
        if guidance && embeds.uncond.is_none() {
            return Err(DiffusionError::invalid(
                "generate",
                "guidance_scale > 1 needs unconditional embeddings (PromptEmbeds::uncond)",
            ));
        }
        let batch = embeds.batch();
        let context = Var::constant(embeds.unet_context()?);
        let w_embedding = match w_dim {
            Some(d) => Some(Var::constant(get_guidance_scale_embedding(
                &vec![params.guidance_scale - 1.0; batch],
                d,
            )?)),
            None => None,
        };
        let (height, width) = self.image_size(params)?;
        let factor = self.vae_scale_factor();
        let latent_channels = self.vae.config().latent_channels;
        let shape = [batch, latent_channels, height / factor, width / factor];

        scheduler.set_timesteps(params.num_inference_steps)?;
        let start = start_index(params, scheduler)?;
        let timesteps = scheduler.timesteps().to_vec();
        let mut gen = TorchGenerator::manual_seed(params.seed);
        let unet_in = self.unet.config().in_channels;

        let init = match &params.init_image {
            Some(img) => Some(self.prepare_image(img, height, width)?),
            None => None,
        };
        let is_inpaint = params.mask.is_some();
        // img2img always starts from the noised image; inpainting only below strength 1.
        let noised_start = init.is_some() && (!is_inpaint || params.strength < 1.0);
        // Image latents are drawn first (as diffusers) for a noised start, and for the
        // 4-channel inpaint blend.
        let needs_image_latents =
            noised_start || (init.is_some() && is_inpaint && unet_in == latent_channels);
        let image_latents = match (&init, needs_image_latents) {
            (Some(img), true) => Some(tile_rows(&self.encode_image(img, &mut gen)?, batch)?),
            _ => None,
        };
        let noise = match &params.latents {
            Some(l) if l.dims() == shape => l.clone(),
            Some(l) => {
                return Err(DiffusionError::invalid(
                    "generate",
                    format!("latents have shape {:?}, expected {shape:?}", l.dims()),
                ))
            }
            None => gen.randn(shape)?,
        };
        let mut latents = match &image_latents {
            Some(img) if noised_start => scheduler.add_noise(img, &noise, start)?,
            _ => noise.mul_scalar(scheduler.init_noise_sigma() as f32)?,
        };
        let inpaint = match (&params.mask, &init) {
            (Some(mask), Some(img)) => Some(self.prepare_inpaint(
                mask,
                img,
                &shape,
                &mut gen,
                image_latents.clone().zip(Some(noise.clone())),
            )?),
            (Some(_), None) => {
                return Err(DiffusionError::invalid(
                    "generate",
                    "a mask needs an init image (--init-image)",
                ))
            }
            _ => None,
        };
        let expected_in = match &inpaint {
            Some(_) if unet_in != latent_channels => latent_channels * 2 + 1,
            _ => latent_channels,
        };
        if unet_in != expected_in {
            return Err(DiffusionError::invalid(
                "generate",
                format!(
                    "the UNet takes {unet_in} input channels; this mode feeds {expected_in} \
                     (9-channel UNets are for inpainting and need --init-image and --mask)"
                ),
            ));
        }

        let num_steps = timesteps.len() - start;
        for (step, i) in (start..timesteps.len()).enumerate() {
            let t = timesteps[i];
            let model_in = if guidance {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let mut model_in = scheduler.scale_model_input(&model_in, i)?;
            if let Some(Inpaint {
                mask,
                masked_latents: Some(masked),
                ..
            }) = &inpaint
            {
                let copies = if guidance { 2 } else { 1 };
                let m = tile_rows(mask, batch * copies)?;
                let ml = tile_rows(masked, batch * copies)?;
                model_in = Tensor::cat(&[&model_in, &m, &ml], 1)?;
            }
            let eps = autodiff::no_grad(|| {
                self.unet
                    .forward_with_cond(&Var::constant(model_in), t, &context, w_embedding.as_ref())
                    .map(|v| v.value().clone())
            })?;
            let eps = if guidance {
                let parts = eps.chunk(2, 0)?;
                let (u, c) = (&parts[0], &parts[1]);
                let g = u.add(&c.sub(u)?.mul_scalar(params.guidance_scale as f32)?)?;
                if params.guidance_rescale > 0.0 {
                    rescale_noise_cfg(&g, c, params.guidance_rescale)?
                } else {
                    g
                }
            } else {
                eps
            };
            latents = scheduler.step(&eps, i, &latents, &mut gen)?.prev_sample;
            if let Some(Inpaint {
                mask,
                blend: Some((image_latents, noise)),
                ..
            }) = &inpaint
            {
                let proper = if i + 1 < timesteps.len() {
                    scheduler.add_noise(image_latents, noise, i + 1)?
                } else {
                    image_latents.clone()
                };
                let m = tile_rows(mask, batch)?;
                // (1 - m) proper + m latents = proper + m (latents - proper)
                latents = proper.add(&m.mul(&latents.sub(&proper)?)?)?;
            }
            check_finite(&latents, step, t)?;
            if let Some(cb) = callback.as_mut() {
                let info = StepInfo {
                    step,
                    num_steps,
                    timestep: t,
                    latents: &latents,
                };
                if let Some(new) = cb(&info)? {
                    latents = new;
                }
            }
        }
        let images = if params.latents_only {
            None
        } else {
            Some(self.decode_latents(&latents, params.vae_tiling)?)
        };
        Ok(Generated { latents, images })
    }

    /// Latents to images: `vae.decode(latents / scaling_factor)`, one image at a
    /// time (peak memory of one decode), optionally by tiles.
    pub fn decode_latents(&self, latents: &Tensor, tiled: bool) -> Result<Tensor> {
        let scale = 1.0 / self.vae.config().scaling_factor as f32;
        let n = latents.dims().first().copied().unwrap_or(0);
        let mut images = Vec::with_capacity(n);
        for b in 0..n {
            let z = Var::constant(latents.narrow(0, b, 1)?.mul_scalar(scale)?);
            let img = autodiff::no_grad(|| {
                if tiled {
                    self.vae.decode_tiled(&z)
                } else {
                    self.vae.decode(&z)
                }
            })?;
            images.push(img.value().clone());
        }
        Ok(Tensor::cat(&images, 0)?)
    }

    /// An image (N, C, H, W) in [-1, 1] to scaled latents: `scaling_factor *
    /// posterior.sample(gen)` (diffusers' `retrieve_latents(..., "sample")`).
    pub fn encode_image(&self, image: &Tensor, gen: &mut TorchGenerator) -> Result<Tensor> {
        let posterior = autodiff::no_grad(|| self.vae.encode(&Var::constant(image.clone())))?;
        let sample = posterior.sample(gen)?.value().clone();
        Ok(sample.mul_scalar(self.vae.config().scaling_factor as f32)?)
    }

    /// Height and width: given, else the init image's, else the model default;
    /// each must be a positive multiple of the VAE factor.
    fn image_size(&self, params: &GenerateParams) -> Result<(usize, usize)> {
        let from_image = params.init_image.as_ref().map(|img| {
            let d = img.dims();
            (d[d.len().saturating_sub(2)], d[d.len().saturating_sub(1)])
        });
        let default = self.default_size();
        let height = params
            .height
            .or(from_image.map(|s| s.0))
            .unwrap_or(default.0);
        let width = params
            .width
            .or(from_image.map(|s| s.1))
            .unwrap_or(default.1);
        let f = self.vae_scale_factor();
        if height == 0 || width == 0 || !height.is_multiple_of(f) || !width.is_multiple_of(f) {
            return Err(DiffusionError::invalid(
                "generate",
                format!("image size {width}x{height} must be positive multiples of {f}"),
            ));
        }
        Ok((height, width))
    }

    /// The init image as (1, C_vae, H, W), checked against the requested size.
    fn prepare_image(&self, img: &Tensor, height: usize, width: usize) -> Result<Tensor> {
        let img = if img.rank() == 3 {
            img.unsqueeze(0)?
        } else {
            img.clone()
        };
        let d = img.dims().to_vec();
        if d.len() != 4 || d[2] != height || d[3] != width {
            return Err(DiffusionError::invalid(
                "generate",
                format!(
                    "the init image has shape {d:?}; expected (1, C, {height}, {width}) \
                     (resize it, or leave --width/--height unset to use its size)"
                ),
            ));
        }
        match_channels(&img, self.vae.config().in_channels)
    }

    /// Mask and masked-image latents, drawing from `gen` as diffusers does (the
    /// masked image is encoded even for 4-channel UNets, which do not use it).
    fn prepare_inpaint(
        &self,
        mask: &Tensor,
        image: &Tensor,
        shape: &[usize; 4],
        gen: &mut TorchGenerator,
        blend: Option<(Tensor, Tensor)>,
    ) -> Result<Inpaint> {
        let (h, w) = (image.dims()[2], image.dims()[3]);
        let mask = binarize_mask(mask, h, w)?; // (1, 1, H, W) in {0, 1}
        let keep = mask.affine(-1.0, 1.0)?; // 1 - m
        let masked_image = image.mul(&keep)?;
        let masked = tile_rows(&self.encode_image(&masked_image, gen)?, shape[0])?;
        let small = mask.upsample_nearest2d(shape[2], shape[3])?;
        let nine = self.unet.config().in_channels != shape[1];
        Ok(Inpaint {
            mask: small,
            masked_latents: nine.then_some(masked),
            blend: if nine { None } else { blend },
        })
    }
}

/// The first timestep index: `N - min(int(N strength), N)` times the scheduler order
/// (img2img and inpainting; 0 for txt2img).
fn start_index(params: &GenerateParams, scheduler: &dyn Scheduler) -> Result<usize> {
    if params.init_image.is_none() {
        return Ok(0);
    }
    if !(params.strength > 0.0 && params.strength <= 1.0) {
        return Err(DiffusionError::invalid(
            "generate",
            format!("strength {} must be in (0, 1]", params.strength),
        ));
    }
    let n = params.num_inference_steps;
    let init = ((n as f64 * params.strength) as usize).min(n);
    let start = (n - init) * scheduler.order();
    if start >= scheduler.timesteps().len() {
        return Err(DiffusionError::invalid(
            "generate",
            format!(
                "strength {} with {n} steps leaves no step to run; raise one of them",
                params.strength
            ),
        ));
    }
    Ok(start)
}

/// Tile a batch to `n` rows by whole copies (torch's `x.repeat(n / b, 1, 1, 1)`).
fn tile_rows(x: &Tensor, n: usize) -> Result<Tensor> {
    let b = x.dims().first().copied().unwrap_or(0);
    if b == n {
        return Ok(x.clone());
    }
    if b == 0 || !n.is_multiple_of(b) {
        return Err(DiffusionError::invalid(
            "generate",
            format!("cannot repeat a batch of {b} to {n}"),
        ));
    }
    let copies: Vec<&Tensor> = std::iter::repeat_n(x, n / b).collect();
    Ok(Tensor::cat(&copies, 0)?)
}

/// Guidance rescale (2305.08891, 3.4): scale the guided prediction to the standard
/// deviation of the text prediction, per image, and mix by `phi`.
pub fn rescale_noise_cfg(noise_cfg: &Tensor, noise_text: &Tensor, phi: f64) -> Result<Tensor> {
    let dims: Vec<isize> = (1..noise_cfg.rank() as isize).collect();
    let std_text = noise_text.std(&dims, 1, true)?;
    let std_cfg = noise_cfg.std(&dims, 1, true)?;
    let rescaled = noise_cfg.mul(&std_text.div(&std_cfg)?)?;
    let phi = phi as f32;
    Ok(rescaled
        .mul_scalar(phi)?
        .add(&noise_cfg.mul_scalar(1.0 - phi)?)?)
}

/// Fail with the step and timestep when the latents stop being finite.
fn check_finite(latents: &Tensor, step: usize, t: f64) -> Result<()> {
    if latents.to_vec()?.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(DiffusionError::invalid(
            "generate",
            format!(
                "the latents became NaN or infinite at step {step} (t = {t}); \
                 the weights may be corrupt or the guidance scale too large"
            ),
        ))
    }
}
