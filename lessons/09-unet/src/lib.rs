//! Lesson 09: the conditional UNet, cross-attention, and classifier-free guidance, on
//! the model this project trained from scratch and ships (`diffusion/assets/fashion-sd`:
//! a CLIP-architecture text encoder, a UNet2DConditionModel with cross-attention and an
//! AutoencoderKL, trained by `sd train-vae` and `sd train-unet`, code in
//! `diffusion/src/train/`).
//!
//! The helpers here measure what the README claims: how much the prompt moves the
//! UNet's prediction (cross-attention), how well the trained UNet predicts the noise
//! it was trained on, and how often generated images show the prompted class, with
//! and without guidance (the project's own classifier, `diffusion/src/eval/`).

use std::path::PathBuf;

use autodiff::Var;
use diffusion::eval::classifier::{argmax_rows, FashionClassifier};
use diffusion::pipelines::{GenerateParams, StableDiffusion};
use diffusion::schedulers::{make_scheduler, SchedulerKind};
use diffusion::train::captions::eval_prompt;
use diffusion::Result;
use nn::ParamStore;
use tensor::Tensor;

/// The shipped model folder.
pub fn shipped_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../diffusion/assets/fashion-sd")
}

/// The shipped evaluation classifier.
pub fn load_classifier() -> Result<FashionClassifier> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../diffusion/assets/fashion-classifier.safetensors");
    FashionClassifier::load(&ParamStore::new(), &path)
}

/// The UNet's noise prediction `(B, C, h, w)` for latents `x` at timestep `t` under
/// the text embeddings of `prompts` (one per row).
pub fn predict_noise(
    sd: &StableDiffusion,
    x: &Tensor,
    t: f64,
    prompts: &[String],
) -> Result<Tensor> {
    let ctx = Var::constant(sd.encode_text(prompts)?);
    let eps = autodiff::no_grad(|| sd.unet.forward(&Var::constant(x.clone()), t, &ctx))?;
    Ok(eps.value().clone())
}

/// Generate `per_class` images for each of the ten classes ("a photo of a ..."),
/// `steps` DPM++ steps at `guidance`, and return them (10 per_class, 1, 32, 32) in
/// [0, 1] with the labels they were prompted with.
pub fn generate_classes(
    sd: &StableDiffusion,
    per_class: usize,
    guidance: f64,
    steps: usize,
    seed: u64,
) -> Result<(Tensor, Vec<usize>)> {
    let prompts = (0..10).map(eval_prompt).collect::<Result<Vec<_>>>()?;
    let mut scheduler = make_scheduler(SchedulerKind::DpmSolverMultistep, &sd.scheduler_config)?;
    let params = GenerateParams {
        prompts,
        num_images_per_prompt: per_class,
        num_inference_steps: steps,
        guidance_scale: guidance,
        seed,
        ..Default::default()
    };
    let out = sd.generate(&params, scheduler.as_mut(), None)?;
    let images = out
        .images
        .ok_or_else(|| diffusion::DiffusionError::invalid("generate_classes", "no images"))?;
    let images = images.affine(0.5, 0.5)?.clamp(0.0, 1.0)?;
    let labels = (0..10)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    Ok((images, labels))
}

/// Fraction of `images` the classifier labels as `labels`.
pub fn prompt_accuracy(
    classifier: &FashionClassifier,
    images: &Tensor,
    labels: &[usize],
) -> Result<f64> {
    let (_, logits) = classifier.embed(images)?;
    let predicted = argmax_rows(&logits)?;
    let hits = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(hits as f64 / labels.len().max(1) as f64)
}

/// Mean absolute value of a tensor's elements.
pub fn mean_abs(t: &Tensor) -> Result<f64> {
    let v = t.to_vec()?;
    Ok(v.iter().map(|x| x.abs() as f64).sum::<f64>() / v.len().max(1) as f64)
}
