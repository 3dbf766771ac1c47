//! Evaluating one sampling setting of a model (`sd eval`; issue 7, and issue 8's
//! step-count tables): `samples_per_class` images per Fashion-MNIST class from
//! "a photo of {class}", classified by [`FashionClassifier`]; per-class accuracy and
//! diversity, the Frechet distance of all generated features to real ones
//! ([`super::fid`]), the wall time per image and the UNet evaluations per image
//! (steps x 2 with classifier-free guidance, steps x 1 without it or for a
//! guidance-distilled UNet, which takes the scale as an input).
//!
//! Images go through the classifier in `[0, 1]` as `(N, 1, 32, 32)`; features are
//! `(N, FEATURES)` flattened.
//!
//! ```
//! use diffusion::eval::sampling::unet_evals_per_image;
//! assert_eq!(unet_evals_per_image(64, 7.5, false), 128); // CFG: two per step
//! assert_eq!(unet_evals_per_image(4, 7.5, true), 4);     // guided student: one
//! assert_eq!(unet_evals_per_image(4, 1.0, false), 4);    // no guidance
//! ```

use std::time::Instant;

use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::eval::classifier::{argmax_rows, FashionClassifier, FEATURES};
use crate::eval::fid::frechet_distance_of;
use crate::eval::mean_pairwise_distance;
use crate::pipelines::{GenerateParams, StableDiffusion};
use crate::schedulers::scheduler_from_config;
use crate::train::captions::{eval_prompt, CLASS_NAMES};

/// UNet evaluations per generated image for `steps` first-order steps.
pub fn unet_evals_per_image(steps: usize, guidance: f64, w_conditioned: bool) -> usize {
    if guidance > 1.0 && !w_conditioned {
        2 * steps
    } else {
        steps
    }
}

/// Classifier features `(N * FEATURES)` and predicted classes of images in `[0, 1]`.
pub fn features_of(c: &FashionClassifier, images_unit: &Tensor) -> Result<(Vec<f32>, Vec<usize>)> {
    let (f, l) = c.embed(images_unit)?;
    Ok((f.to_vec()?, argmax_rows(&l)?))
}

/// What to sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleSpec {
    pub steps: usize,
    pub guidance: f64,
    pub samples_per_class: usize,
    pub seed: u64,
}

/// What one setting gave.
#[derive(Clone, Debug)]
pub struct SampleEval {
    pub spec: SampleSpec,
    /// Per class (0..9).
    pub accuracy: Vec<f64>,
    pub diversity: Vec<f64>,
    /// Per class: how many of its samples the classifier called each class.
    pub confusion: Vec<[usize; 10]>,
    /// Frechet distance to the real features.
    pub fid: f64,
    /// Generation + decoding + classification, all classes.
    pub seconds: f64,
    pub images: usize,
    pub unet_evals_per_image: usize,
    /// Up to 8 images per class, `(10 k, 1, 32, 32)` in [0, 1], class-major.
    pub grid: Tensor,
}

impl SampleEval {
    pub fn mean_accuracy(&self) -> f64 {
        self.accuracy.iter().sum::<f64>() / self.accuracy.len().max(1) as f64
    }
    pub fn min_accuracy(&self) -> f64 {
        self.accuracy.iter().copied().fold(1.0, f64::min)
    }
    pub fn mean_diversity(&self) -> f64 {
        self.diversity.iter().sum::<f64>() / self.diversity.len().max(1) as f64
    }
    pub fn seconds_per_image(&self) -> f64 {
        self.seconds / self.images.max(1) as f64
    }
}

/// Generate with the model folder's own scheduler and evaluate (see the module docs);
/// class `c` uses seed `spec.seed + c`.
pub fn evaluate_samples(
    sd: &StableDiffusion,
    clf: &FashionClassifier,
    real_features: &[f32],
    spec: SampleSpec,
) -> Result<SampleEval> {
    let t0 = Instant::now();
    let n = spec.samples_per_class;
    if n == 0 {
        return Err(DiffusionError::invalid(
            "eval",
            "samples per class must be positive",
        ));
    }
    let (mut acc, mut div, mut all_f, mut grid, mut confusion) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (c, _) in CLASS_NAMES.iter().enumerate() {
        let mut sched = scheduler_from_config(&sd.scheduler_config)?;
        let params = GenerateParams {
            prompts: vec![eval_prompt(c)?],
            num_images_per_prompt: n,
            num_inference_steps: spec.steps,
            guidance_scale: spec.guidance,
            seed: spec.seed + c as u64,
            ..Default::default()
        };
        let out = sd.generate(&params, sched.as_mut(), None)?;
        let images = out
            .images
            .ok_or_else(|| DiffusionError::invalid("eval", "no images decoded"))?
            .affine(0.5, 0.5)?
            .clamp(0.0, 1.0)?;
        let (f, pred) = features_of(clf, &images)?;
        acc.push(pred.iter().filter(|&&p| p == c).count() as f64 / n as f64);
        let mut counts = [0usize; 10];
        for &p in &pred {
            counts[p.min(9)] += 1;
        }
        confusion.push(counts);
        div.push(mean_pairwise_distance(&f, FEATURES));
        all_f.extend(f);
        grid.push(images.narrow(0, 0, 8.min(n))?);
    }
    let fid = frechet_distance_of(&all_f, real_features, FEATURES)?;
    let w_conditioned = sd.unet.config().time_cond_proj_dim.is_some();
    Ok(SampleEval {
        spec,
        accuracy: acc,
        diversity: div,
        confusion,
        fid,
        seconds: t0.elapsed().as_secs_f64(),
        images: n * CLASS_NAMES.len(),
        unet_evals_per_image: unet_evals_per_image(spec.steps, spec.guidance, w_conditioned),
        grid: Tensor::cat(&grid, 0)?,
    })
}
