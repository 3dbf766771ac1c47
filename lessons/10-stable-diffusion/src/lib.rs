//! Lesson 10: Stable Diffusion deconstructed. Every stage of `StableDiffusion::generate`
//! written out by hand on the library's parts, so each can be printed, changed and
//! checked: tokenize, encode, the unconditional prompt, the noise scaled by
//! `init_noise_sigma`, the loop with classifier-free guidance, decode.
//!
//! The library's version of the same loop is `diffusion/src/pipelines/generate.rs`;
//! claim 5 checks the two agree exactly.

use std::path::PathBuf;

use autodiff::Var;
use diffusion::pipelines::StableDiffusion;
use diffusion::schedulers::Scheduler;
use diffusion::Result;
use tensor::random::TorchGenerator;
use tensor::Tensor;

/// The tiny random-weight model folder the tests use (`fixtures/tiny-sd`): the same
/// architecture and loader as SD 1.5, small enough to run in a second.
pub fn tiny_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-sd")
}

/// Stage 1 and 2: prompts -> token ids (B, 77) -> CLIP's last hidden state (B, 77, D).
pub fn encode(sd: &StableDiffusion, prompts: &[&str]) -> Result<Tensor> {
    let mut ids = Vec::new();
    for p in prompts {
        ids.extend(sd.tokenizer.encode_padded(p, 77)?.ids);
    }
    let hidden = autodiff::no_grad(|| sd.text_encoder.forward(&ids, prompts.len()))?;
    Ok(hidden.value().clone())
}

/// What the hand-written loop needs.
pub struct Recipe<'a> {
    pub prompt: &'a str,
    /// The unconditional branch of guidance: "" unless a negative prompt is given.
    pub negative_prompt: &'a str,
    pub steps: usize,
    pub guidance_scale: f32,
    pub seed: u64,
    /// Latent size (h, w): the image size divided by the VAE factor.
    pub latent_hw: (usize, usize),
}

/// Stages 3 to 5, txt2img: returns the final latents (1, 4, h, w). Calls
/// `on_step(i, t, latents)` after every step.
pub fn denoise(
    sd: &StableDiffusion,
    scheduler: &mut dyn Scheduler,
    recipe: &Recipe,
    mut on_step: impl FnMut(usize, f64, &Tensor),
) -> Result<Tensor> {
    // 3. Text: [uncond, cond] in one batch, so one UNet call serves both branches.
    let context = encode(sd, &[recipe.negative_prompt, recipe.prompt])?;
    // 4. Noise, scaled to the variance the sampler starts from.
    scheduler.set_timesteps(recipe.steps)?;
    let mut gen = TorchGenerator::manual_seed(recipe.seed);
    let (h, w) = recipe.latent_hw;
    let mut latents = gen
        .randn([1, 4, h, w])?
        .mul_scalar(scheduler.init_noise_sigma() as f32)?;
    // 5. The loop with classifier-free guidance.
    let timesteps = scheduler.timesteps().to_vec();
    let context = Var::constant(context);
    for (i, &t) in timesteps.iter().enumerate() {
        let input = Tensor::cat(&[&latents, &latents], 0)?;
        let input = Var::constant(scheduler.scale_model_input(&input, i)?);
        let eps = autodiff::no_grad(|| sd.unet.forward(&input, t, &context))?;
        let halves = eps.value().chunk(2, 0)?;
        let (uncond, cond) = (&halves[0], &halves[1]);
        let guided = uncond.add(&cond.sub(uncond)?.mul_scalar(recipe.guidance_scale)?)?;
        latents = scheduler.step(&guided, i, &latents, &mut gen)?.prev_sample;
        on_step(i, t, &latents);
    }
    Ok(latents)
}

/// Stage 6: latents -> image (1, 3, H, W) in about [-1, 1].
pub fn decode(sd: &StableDiffusion, latents: &Tensor) -> Result<Tensor> {
    let z = Var::constant(latents.mul_scalar(1.0 / sd.vae.config().scaling_factor as f32)?);
    Ok(autodiff::no_grad(|| sd.vae.decode(&z))?.value().clone())
}

/// Standard deviation of all elements (population), in f64.
pub fn std_all(t: &Tensor) -> Result<f64> {
    let v = t.to_vec()?;
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    Ok((v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// Largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let (a, b) = (a.to_vec()?, b.to_vec()?);
    Ok(a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max))
}
