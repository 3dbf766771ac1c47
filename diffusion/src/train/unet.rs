//! Stage 2: the text-conditioned denoiser. A [`UNet2DConditionModel`] with
//! cross-attention and a small [`ClipTextModel`] (CLIP's architecture and BPE
//! vocabulary, 2 layers of width 64, trained from scratch jointly with the UNet as
//! there is no pretrained CLIP this small) learn epsilon prediction on the VAE's
//! latents, as SD 1.x did:
//!
//! ```text
//! z0 = vae_scaling * (mean + std * e)        (B, 4, 8, 8), a sample of the posterior
//! t ~ U{0..999}, noise ~ N(0, I)
//! z_t = sqrt(ac_t) z0 + sqrt(1 - ac_t) noise  (scaled_linear betas 0.00085..0.012)
//! loss = mse(unet(z_t, t, clip(caption)), noise)
//! ```
//!
//! Captions come from [`super::captions`], empty for `p_empty` of the samples so that
//! classifier-free guidance has an unconditional embedding to push away from. The
//! UNet and the text encoder share one [`ParamStore`] under the prefixes `unet.` and
//! `text_encoder.`, one AdamW and one EMA; the EMA weights are what is saved.
//!
//! ```
//! use diffusion::train::unet::{fashion_text_config, fashion_unet_config};
//! let unet = fashion_unet_config();
//! let text = fashion_text_config();
//! assert_eq!(unet.in_channels, 4);
//! assert_eq!(text.hidden_size, 64);
//! assert_eq!(text.vocab_size, 49408); // CLIP's BPE vocabulary
//! ```

use std::path::Path;

use autodiff::Var;
use nn::{AdamW, AdamWConfig, BatchOutput, Ema, Learner, ParamStore, VarBuilder};
use tensor::io::DType;
use tensor::random::{TorchGenerator, WichmannHill};
use tensor::Tensor;

use crate::clip::{ClipTextConfig, ClipTextModel, ClipTokenizer};
use crate::error::{DiffusionError, Result};
use crate::models::unet_2d_condition::OneOrMany;
use crate::models::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::schedulers::betas::NoiseSchedule;
use crate::schedulers::SchedulerConfig;
use crate::train::captions::caption;
use crate::train::data::{epoch_batches, weighted_epoch_batches, BatchPlan};
use crate::train::folder::{save_params, with_class_name, write_json};
use crate::train::latents::clean_latents;
use crate::train::vae::to_nn;
use crate::train::{run, warmup_cosine, RunOptions, TrainSummary};

/// Tokens per prompt (CLIP's context length).
pub const MAX_LENGTH: usize = 77;

/// The shipped text encoder's `config.json` (transformers' CLIPTextConfig fields).
pub fn fashion_text_config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "hidden_act": "quick_gelu",
        "hidden_size": 64,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 256,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": MAX_LENGTH,
        "model_type": "clip_text_model",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": 1,
        "projection_dim": 64,
        "torch_dtype": "float16",
        "vocab_size": 49408
    })
}

/// [`fashion_text_config_json`] parsed.
pub fn fashion_text_config() -> ClipTextConfig {
    serde_json::from_value(fashion_text_config_json()).unwrap_or_else(|_| ClipTextConfig::sd1())
}

/// The shipped UNet: 4x8x8 latents, blocks (64, 128) both with cross-attention
/// (8 heads), one resnet per block, cross-attention dim 64 (the text width).
pub fn fashion_unet_config() -> UNet2DConditionConfig {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    UNet2DConditionConfig {
        sample_size: Some(OneOrMany::One(8)),
        in_channels: 4,
        out_channels: 4,
        down_block_types: s(&["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]),
        up_block_types: s(&["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
        block_out_channels: vec![64, 128],
        layers_per_block: OneOrMany::One(1),
        cross_attention_dim: OneOrMany::One(64),
        attention_head_dim: Some(OneOrMany::One(8)),
        ..Default::default()
    }
}

/// Posterior statistics of the training images, computed once with the trained VAE.
#[derive(Clone, Debug)]
pub struct LatentSet {
    /// `(N, C, h, w)` flattened.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub labels: Vec<u8>,
    /// `[C, h, w]`.
    pub shape: [usize; 3],
    /// The VAE's `scaling_factor`.
    pub scaling: f32,
}

impl LatentSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The UNet, the text encoder and their shared store.
pub struct UnetModels {
    pub unet: UNet2DConditionModel,
    pub text: ClipTextModel,
    pub store: ParamStore,
}

impl UnetModels {
    /// Random init (UNet under `unet.`, text encoder under `text_encoder.`).
    pub fn new(unet: &UNet2DConditionConfig, text: &ClipTextConfig, seed: u64) -> Result<Self> {
        let store = ParamStore::new();
        let vb = VarBuilder::from_init(&store, WichmannHill::seed(seed));
        let text = ClipTextModel::new(vb.pp("text_encoder"), text)?;
        let unet = UNet2DConditionModel::new(vb.pp("unet"), unet)?;
        Ok(UnetModels { unet, text, store })
    }

    /// Replace every weight with those of a model folder written by
    /// [`save_unet_and_text`] (`unet/` and `text_encoder/`, any float dtype), to go on
    /// training a shipped model. Strict: the folder must hold exactly these keys.
    pub fn load_pretrained(&self, dir: &Path) -> Result<()> {
        let mut all = std::collections::BTreeMap::new();
        for (prefix, file) in [
            (
                "unet.",
                dir.join("unet").join("diffusion_pytorch_model.safetensors"),
            ),
            (
                "text_encoder.",
                dir.join("text_encoder").join("model.safetensors"),
            ),
        ] {
            for (k, t) in tensor::io::load(&file)? {
                all.insert(format!("{prefix}{k}"), t);
            }
        }
        Ok(self.store.load_tensors(&all, &dir.display().to_string())?)
    }
}

/// Everything one batch needs, drawn from the batch's seed: noisy latents, targets,
/// timesteps and token ids.
pub struct NoisedBatch {
    pub noisy: Tensor,
    pub noise: Tensor,
    pub timesteps: Vec<f64>,
    pub ids: Vec<u32>,
}

/// Draw the batch `indices` of `set` with `seed` (see the module docs).
pub fn noised_batch(
    set: &LatentSet,
    indices: &[usize],
    seed: u64,
    schedule: &NoiseSchedule,
    tokenizer: &ClipTokenizer,
    p_empty: f64,
) -> Result<NoisedBatch> {
    let per: usize = set.shape.iter().product();
    let b = indices.len();
    let mut gen = TorchGenerator::manual_seed(seed);
    let mut e = vec![0.0f32; b * per];
    gen.normal_fill(&mut e);
    let mut noise = vec![0.0f32; b * per];
    gen.normal_fill(&mut noise);
    let n_t = schedule.alphas_cumprod.len();
    let timesteps: Vec<usize> = (0..b)
        .map(|_| ((gen.uniform_f64() * n_t as f64) as usize).min(n_t - 1))
        .collect();
    let z0 = clean_latents(set, indices, &e)?;
    let mut noisy = vec![0.0f32; b * per];
    let mut captions = WichmannHill::seed(seed);
    let mut ids = Vec::with_capacity(b * MAX_LENGTH);
    for (k, &i) in indices.iter().enumerate() {
        let ac = schedule.alphas_cumprod[timesteps[k]];
        let (sa, sb) = (ac.sqrt(), (1.0 - ac).sqrt());
        for j in k * per..(k + 1) * per {
            noisy[j] = sa * z0[j] + sb * noise[j];
        }
        let text = caption(usize::from(set.labels[i]), &mut captions, p_empty)?;
        ids.extend(tokenizer.encode_padded(&text, MAX_LENGTH)?.ids);
    }
    let shape = [b, set.shape[0], set.shape[1], set.shape[2]];
    Ok(NoisedBatch {
        noisy: Tensor::from_vec(noisy, shape)?,
        noise: Tensor::from_vec(noise, shape)?,
        timesteps: timesteps.iter().map(|&t| t as f64).collect(),
        ids,
    })
}

/// The epsilon-prediction loss of a drawn batch.
pub fn unet_loss(models: &UnetModels, batch: &NoisedBatch) -> Result<Var> {
    let n = batch.timesteps.len();
    let ctx = models.text.forward(&batch.ids, n)?;
    let pred = models
        .unet
        .forward(&Var::constant(batch.noisy.clone()), &batch.timesteps, &ctx)?;
    Ok(nn::mse_loss(&pred, &Var::constant(batch.noise.clone()))?)
}

/// Settings of the UNet stage beyond [`RunOptions`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnetStageOptions {
    /// Fraction of empty captions.
    pub p_empty: f64,
    /// EMA decay (with diffusers' warm-up).
    pub ema_decay: f64,
    /// How many times each class's images appear per epoch (all 1: the data as it is).
    pub class_repeats: [usize; 10],
}

/// Train `models` on `set`, resuming from `opts.checkpoint` when it exists; on return
/// the store holds the EMA weights.
pub fn train_unet(
    models: &UnetModels,
    set: &LatentSet,
    opts: &RunOptions,
    stage: UnetStageOptions,
) -> Result<TrainSummary> {
    let schedule = NoiseSchedule::new(&SchedulerConfig::stable_diffusion_v1())?;
    let tokenizer = ClipTokenizer::embedded()?;
    models.store.to_device(&opts.device)?;
    let opt = AdamW::new(
        &models.store,
        AdamWConfig {
            lr: opts.lr,
            weight_decay: 1e-2,
            ..Default::default()
        },
    );
    let mut ema = Ema::new(&models.store, stage.ema_decay)?;
    ema.warmup = true;
    let (n, bs, seed) = (set.len(), opts.batch_size, opts.seed);
    let repeats = stage.class_repeats;
    let labels = &set.labels;
    let learner = Learner::new(
        &models.store,
        opt,
        |b: &BatchPlan| {
            let batch = noised_batch(
                set,
                &b.indices,
                b.seed,
                &schedule,
                &tokenizer,
                stage.p_empty,
            )
            .map_err(to_nn)?;
            let loss = unet_loss(models, &batch).map_err(to_nn)?;
            Ok(BatchOutput::new(loss, b.indices.len()))
        },
        move |epoch| {
            let plans = if repeats.iter().all(|&r| r == 1) {
                epoch_batches(n, bs, seed, epoch)
            } else {
                weighted_epoch_batches(labels, &repeats, bs, seed, epoch)
            };
            Ok(plans.into_iter().map(Ok::<_, nn::NnError>))
        },
    )
    .schedule(warmup_cosine(opts.lr, opts.warmup, opts.steps, 0.1))
    .clip_grad_norm(1.0)
    .ema(ema);
    run(learner, opts, n / bs.max(1))
}

/// Write `text_encoder/` and `unet/` (configs and f16 weights) under the model
/// folder `dir`.
pub fn save_unet_and_text(
    dir: &Path,
    models: &UnetModels,
    text_config: &serde_json::Value,
) -> Result<()> {
    let te = dir.join("text_encoder");
    write_json(&te.join("config.json"), text_config)?;
    save_params(
        &models.store,
        "text_encoder.",
        &te.join("model.safetensors"),
        DType::F16,
    )?;
    let un = dir.join("unet");
    let value = serde_json::to_value(models.unet.config())
        .map_err(|e| DiffusionError::config(&un, e.to_string()))?;
    write_json(
        &un.join("config.json"),
        &with_class_name(value, "UNet2DConditionModel"),
    )?;
    save_params(
        &models.store,
        "unet.",
        &un.join("diffusion_pytorch_model.safetensors"),
        DType::F16,
    )
}
