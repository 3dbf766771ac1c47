//! Imagic (Kawar et al. 2023, "Imagic: Text-Based Real Image Editing with Diffusion
//! Models", arXiv 2210.09276): edit one real image towards a target text in three
//! stages, with the text-to-image model itself as the only tool. The course's
//! lesson is `lessons/10-stable-diffusion` (chapter "Imagic"); diffusers has it as the
//! community pipeline `examples/community/imagic_stable_diffusion.py`.
//!
//! ```text
//! z0     = scaling * vae.encode(image).sample()                     (1, C, h, w)
//! e_tgt  = clip("a photo of a dress")                               (1, 77, D)
//! A.  e_opt = argmin_e  E_{t, n} |unet(z_t, t, e) - n|^2             UNet frozen, e from e_tgt
//! B.  unet' = argmin_w  E_{t, n} |unet_w(z_t, t, e_opt) - n|^2       a copy of the UNet, e_opt fixed
//! C.  e(eta) = eta e_tgt + (1 - eta) e_opt;  x = sample(unet', e(eta), CFG)   (DDIM, seeded)
//! ```
//!
//! Stage A finds the embedding closest to the target text under which the frozen model
//! regards the input image as likely; stage B makes the model reproduce the image
//! exactly at that embedding (the shipped UNet is untouched: a copy is tuned); stage C
//! walks from e_opt (the input image, eta = 0) towards e_tgt (eta = 1), and in between
//! the fine-tuned model keeps the image's details while the text moves its content.
//! Every eta shares one starting noise, so a sweep differs only by the embedding.
//!
//! The losses are [`loss`]'s; the Fashion-MNIST measures (target-class probability,
//! similarity to the input) are [`metrics`]'s; `sd edit` and `sd edit-report` run it.
//!
//! ```
//! use diffusion::imagic::{fit_image, ImagicConfig};
//! use diffusion::Tensor;
//! // A 28x28 Fashion-MNIST image is padded by 2 (black) to the model's 32x32.
//! let img = Tensor::ones([1, 28, 28]);
//! let x = fit_image(&img, (32, 32), 1).unwrap();
//! assert_eq!(x.dims(), &[1, 1, 32, 32]);
//! let v = x.to_vec().unwrap();
//! assert_eq!((v[0], v[2 * 32 + 2]), (-1.0, 1.0)); // border black, inside white, in [-1, 1]
//! assert_eq!(ImagicConfig::default().embed_steps, 100);
//! ```

pub mod loss;
pub mod metrics;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use autodiff::Var;
use nn::{AdamW, AdamWConfig, Optimizer, ParamStore, VarBuilder};
use tensor::io::DType;
use tensor::random::TorchGenerator;
use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::imagic::loss::{diffusion_loss, LossDraws};
use crate::models::UNet2DConditionModel;
use crate::pipelines::image::match_channels;
use crate::pipelines::{repeat_rows, GenerateParams, PromptEmbeds, StableDiffusion};
use crate::schedulers::betas::NoiseSchedule;
use crate::schedulers::{make_scheduler, SchedulerKind};

/// Settings of the three stages. The defaults are tuned for the shipped 4M-parameter
/// Fashion-MNIST model (the paper's, for Imagen / SD at 512 px: stage A 100 steps of
/// Adam at lr 1e-3, stage B 1500 steps at lr 5e-7 (diffusers: 2e-6), DDIM 50 steps).
#[derive(Clone, Debug, PartialEq)]
pub struct ImagicConfig {
    /// Stage A: Adam steps on the embedding, and their learning rate.
    pub embed_steps: usize,
    pub embed_lr: f64,
    /// Stage B: Adam steps on the UNet copy, and their learning rate.
    pub finetune_steps: usize,
    pub finetune_lr: f64,
    /// (t, noise) draws per optimisation step (a batch of noised copies of the image).
    pub batch_size: usize,
    /// Seeds the VAE posterior sample, the draws and the generation noise.
    pub seed: u64,
    /// Stage C: sampler, steps and classifier-free guidance.
    pub scheduler: SchedulerKind,
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
}

impl Default for ImagicConfig {
    fn default() -> Self {
        ImagicConfig {
            embed_steps: 100,
            embed_lr: 1e-2,
            finetune_steps: 50,
            finetune_lr: 1e-4,
            batch_size: 8,
            seed: 0,
            scheduler: SchedulerKind::Ddim,
            num_inference_steps: 50,
            guidance_scale: 7.5,
        }
    }
}

/// Which optimisation stage a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A: the text embedding.
    Embed,
    /// B: the UNet.
    Finetune,
}

/// Called after every optimisation step with (stage, step 1..=total, total, loss).
pub type Progress<'a> = &'a mut dyn FnMut(Stage, usize, usize, f32);

/// The result of stages A and B on one image, ready for stage C ([`Imagic::generate`]).
pub struct Imagic {
    /// The input image's scaled latents (1, C, h, w).
    pub latents: Tensor,
    /// The target text's embedding (1, 77, D), the optimised one, and the empty
    /// prompt's (classifier-free guidance's unconditional branch).
    pub e_tgt: Tensor,
    pub e_opt: Tensor,
    pub uncond: Tensor,
    /// The fine-tuned copy of the UNet and its parameters.
    pub unet: UNet2DConditionModel,
    pub unet_params: ParamStore,
    /// The loss of every step of stage A and of stage B.
    pub embed_losses: Vec<f32>,
    pub finetune_losses: Vec<f32>,
    /// Wall time of stage A and stage B.
    pub seconds: (f64, f64),
}

/// An image (C, H, W) or (1, C, H, W) in [0, 1] as the model's input: (1, C_vae, h,
/// w) in [-1, 1]. A smaller image whose margins to (h, w) are even and at most h/8
/// (w/8) is padded with black, centred: Fashion-MNIST's 28x28 becomes 32x32 as in
/// training ([`crate::train::data`]). Any other size is an error asking for a resize.
pub fn fit_image(image: &Tensor, size: (usize, usize), vae_channels: usize) -> Result<Tensor> {
    let img = match image.rank() {
        3 => image.unsqueeze(0)?,
        4 if image.dims()[0] == 1 => image.clone(),
        _ => {
            return Err(DiffusionError::invalid(
                "imagic image",
                format!("expected one image (C, H, W), got shape {:?}", image.dims()),
            ))
        }
    };
    let (h, w) = (img.dims()[2], img.dims()[3]);
    let (th, tw) = size;
    let fits = |have: usize, want: usize| {
        have <= want && (want - have).is_multiple_of(2) && want - have <= want / 8
    };
    let img = if (h, w) == (th, tw) {
        img
    } else if fits(h, th) && fits(w, tw) {
        let (ph, pw) = ((th - h) / 2, (tw - w) / 2);
        img.pad(&[(pw, pw), (ph, ph)], 0.0)?
    } else {
        return Err(DiffusionError::invalid(
            "imagic image",
            format!(
                "the image is {w}x{h}; this model takes {tw}x{th} images (resize it first; \
                 a slightly smaller one, like a 28x28 Fashion-MNIST image, is padded)"
            ),
        ));
    };
    match_channels(&img.affine(2.0, -1.0)?, vae_channels)
}

/// The sampler of stage C (and of the img2img it is compared with): `cfg.scheduler`
/// over the model's scheduler config, with `clip_sample` off. Latent diffusion never
/// clamps the predicted x0 (SD 1.x's own `scheduler_config.json` says
/// `"clip_sample": false`); a folder whose config lacks the key (the shipped one is
/// written for DPM++, which has no such option) would otherwise get DDIM's default
/// `true` and clamp latents of std 1 to [-1, 1], which ruins the samples.
pub fn stage_c_scheduler(
    sd: &StableDiffusion,
    cfg: &ImagicConfig,
) -> Result<Box<dyn crate::schedulers::Scheduler>> {
    let mut config = sd.scheduler_config.clone();
    config.clip_sample = false;
    make_scheduler(cfg.scheduler, &config)
}

/// A trainable copy of `sd`'s UNet in its own store (the loaded one is untouched).
pub fn copy_unet(sd: &StableDiffusion) -> Result<(UNet2DConditionModel, ParamStore)> {
    let map: BTreeMap<String, Tensor> = sd.unet_params.tensors().into_iter().collect();
    let store = ParamStore::new();
    let vb = VarBuilder::from_tensors(&store, map, "the loaded UNet");
    let unet = UNet2DConditionModel::new(vb.clone(), sd.unet.config())?;
    vb.finish()?;
    store.eval();
    Ok((unet, store))
}

/// Adam (no weight decay, as the paper) over `store` for `steps` steps of
/// [`diffusion_loss`] on fresh draws from `gen`; `embedding` is a leaf Var per step.
#[allow(clippy::too_many_arguments)]
fn optimise(
    store: &ParamStore,
    lr: f64,
    steps: usize,
    stage: Stage,
    unet: &UNet2DConditionModel,
    z0: &Tensor,
    embedding: &dyn Fn() -> Var,
    ctx: &mut Fit<'_>,
) -> Result<Vec<f32>> {
    let mut opt = AdamW::new(
        store,
        AdamWConfig {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    );
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        let draws = LossDraws::random(
            z0,
            ctx.batch_size,
            &mut ctx.gen,
            &ctx.schedule,
            ctx.prediction,
        )?;
        let loss = diffusion_loss(unet, &draws, &embedding())?;
        let value = loss.value().to_vec()?.first().copied().unwrap_or(f32::NAN);
        if !value.is_finite() {
            return Err(DiffusionError::invalid(
                "imagic",
                format!("the loss became {value} at step {} of stage {stage:?}; lower the learning rate", step + 1),
            ));
        }
        let grads = loss.backward()?;
        opt.step(&grads)?;
        losses.push(value);
        if let Some(p) = ctx.progress.as_mut() {
            p(stage, step + 1, steps, value);
        }
    }
    Ok(losses)
}

/// What the optimisation loop of both stages shares.
struct Fit<'a> {
    gen: TorchGenerator,
    schedule: NoiseSchedule,
    prediction: crate::schedulers::PredictionType,
    batch_size: usize,
    progress: Option<Progress<'a>>,
}

impl Imagic {
    /// Stages A and B on `image` ((1, C, H, W) in [-1, 1] at the model's size, see
    /// [`fit_image`]) towards `target`.
    pub fn fit(
        sd: &StableDiffusion,
        image: &Tensor,
        target: &str,
        cfg: &ImagicConfig,
        progress: Option<Progress<'_>>,
    ) -> Result<Imagic> {
        if cfg.batch_size == 0 {
            return Err(DiffusionError::invalid(
                "imagic",
                "the batch size must be at least 1",
            ));
        }
        let mut gen = TorchGenerator::manual_seed(cfg.seed);
        let latents = sd.encode_image(image, &mut gen)?;
        let e_tgt = sd.encode_text(&[target.to_string()])?;
        let uncond = sd.encode_text(&[String::new()])?;
        let mut ctx = Fit {
            gen,
            schedule: NoiseSchedule::new(&sd.scheduler_config)?,
            prediction: sd.scheduler_config.prediction_type,
            batch_size: cfg.batch_size,
            progress,
        };
        let (unet, unet_params) = copy_unet(sd)?;

        // A: the embedding is the only trainable parameter; the UNet is frozen, so
        // backward computes no weight gradients.
        let t0 = Instant::now();
        unet_params.freeze("")?;
        let embed_store = ParamStore::new();
        let e = embed_store.insert("e_opt", e_tgt.clone())?;
        let embed_losses = optimise(
            &embed_store,
            cfg.embed_lr,
            cfg.embed_steps,
            Stage::Embed,
            &unet,
            &latents,
            &|| e.var(),
            &mut ctx,
        )?;
        let e_opt = e.value();
        let t_a = t0.elapsed().as_secs_f64();

        // B: the UNet copy learns the image at the fixed e_opt.
        let t1 = Instant::now();
        unet_params.unfreeze("")?;
        let fixed = Var::constant(e_opt.clone());
        let finetune_losses = optimise(
            &unet_params,
            cfg.finetune_lr,
            cfg.finetune_steps,
            Stage::Finetune,
            &unet,
            &latents,
            &|| fixed.clone(),
            &mut ctx,
        )?;
        unet_params.freeze("")?;
        Ok(Imagic {
            latents,
            e_tgt,
            e_opt,
            uncond,
            unet,
            unet_params,
            embed_losses,
            finetune_losses,
            seconds: (t_a, t1.elapsed().as_secs_f64()),
        })
    }

    /// Write the embeddings, the latents and the fine-tuned UNet (f32, keys
    /// `unet.*`) to one safetensors file, atomically, for [`Imagic::load`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut items: Vec<(String, Tensor)> = vec![
            ("e_tgt".into(), self.e_tgt.clone()),
            ("e_opt".into(), self.e_opt.clone()),
            ("uncond".into(), self.uncond.clone()),
            ("latents".into(), self.latents.clone()),
        ];
        for (name, t) in self.unet_params.tensors() {
            items.push((format!("unet.{name}"), t));
        }
        tensor::io::save(path, items.iter().map(|(n, t)| (n, t)), DType::F32)?;
        Ok(())
    }

    /// Read what [`Imagic::save`] wrote, for `sd`'s UNet (same config; every key
    /// and shape is checked), skipping stages A and B.
    pub fn load(sd: &StableDiffusion, path: &Path) -> Result<Imagic> {
        let mut map = tensor::io::load(path)?;
        let mut take = |key: &str| {
            map.remove(key).ok_or_else(|| {
                DiffusionError::invalid(
                    "imagic load",
                    format!(
                        "{} has no '{key}': not written by Imagic::save",
                        path.display()
                    ),
                )
            })
        };
        let (e_tgt, e_opt, uncond, latents) = (
            take("e_tgt")?,
            take("e_opt")?,
            take("uncond")?,
            take("latents")?,
        );
        let weights: BTreeMap<String, Tensor> = map
            .into_iter()
            .filter_map(|(k, t)| k.strip_prefix("unet.").map(|k| (k.to_string(), t)))
            .collect();
        let (unet, unet_params) = copy_unet(sd)?;
        unet_params.load_tensors(&weights, &path.display().to_string())?;
        unet_params.freeze("")?;
        Ok(Imagic {
            latents,
            e_tgt,
            e_opt,
            uncond,
            unet,
            unet_params,
            embed_losses: Vec::new(),
            finetune_losses: Vec::new(),
            seconds: (0.0, 0.0),
        })
    }

    /// `eta e_tgt + (1 - eta) e_opt` (1, 77, D).
    pub fn embedding(&self, eta: f64) -> Result<Tensor> {
        let eta = eta as f32;
        Ok(self
            .e_tgt
            .mul_scalar(eta)?
            .add(&self.e_opt.mul_scalar(1.0 - eta)?)?)
    }

    /// Stage C: one image per eta ((n, C, H, W) in [-1, 1]), all from the same
    /// seeded noise, with the fine-tuned UNet (swapped into `sd` for the call and
    /// swapped back, also on error).
    pub fn generate(
        &mut self,
        sd: &mut StableDiffusion,
        etas: &[f64],
        cfg: &ImagicConfig,
    ) -> Result<Tensor> {
        let params = self.stage_c_params(sd, etas, cfg)?;
        let mut scheduler = stage_c_scheduler(sd, cfg)?;
        std::mem::swap(&mut sd.unet, &mut self.unet);
        let out = sd.generate(&params, scheduler.as_mut(), None);
        std::mem::swap(&mut sd.unet, &mut self.unet);
        out?.images
            .ok_or_else(|| DiffusionError::invalid("imagic", "no images were decoded"))
    }

    /// Stage C with `sd`'s own UNet (stage B left out): the paper's ablation, which
    /// shows what the fine-tuning adds (without it, eta = 0 is not the input).
    pub fn generate_without_finetuning(
        &self,
        sd: &StableDiffusion,
        etas: &[f64],
        cfg: &ImagicConfig,
    ) -> Result<Tensor> {
        let params = self.stage_c_params(sd, etas, cfg)?;
        let mut scheduler = stage_c_scheduler(sd, cfg)?;
        sd.generate(&params, scheduler.as_mut(), None)?
            .images
            .ok_or_else(|| DiffusionError::invalid("imagic", "no images were decoded"))
    }

    /// The pipeline's parameters for the etas: the interpolated embeddings, the
    /// empty prompt's for guidance, one seeded noise repeated for every row.
    fn stage_c_params(
        &self,
        sd: &StableDiffusion,
        etas: &[f64],
        cfg: &ImagicConfig,
    ) -> Result<GenerateParams> {
        if etas.is_empty() {
            return Err(DiffusionError::invalid("imagic", "give at least one eta"));
        }
        let rows: Vec<Tensor> = etas
            .iter()
            .map(|&eta| self.embedding(eta))
            .collect::<Result<_>>()?;
        let n = etas.len();
        let guidance = cfg.guidance_scale > 1.0;
        let embeds = PromptEmbeds {
            cond: Tensor::cat(&rows, 0)?,
            uncond: guidance.then(|| repeat_rows(&self.uncond, n)).transpose()?,
        };
        let d = self.latents.dims().to_vec();
        let noise = TorchGenerator::manual_seed(cfg.seed).randn([1, d[1], d[2], d[3]])?;
        let f = sd.vae_scale_factor();
        Ok(GenerateParams {
            prompt_embeds: Some(embeds),
            num_inference_steps: cfg.num_inference_steps,
            guidance_scale: cfg.guidance_scale,
            height: Some(d[2] * f),
            width: Some(d[3] * f),
            seed: cfg.seed,
            latents: Some(repeat_rows(&noise, n)?),
            ..Default::default()
        })
    }
}
