//! Stage 1: the autoencoder. An [`AutoencoderKL`] (SD's VAE architecture with one
//! input channel) is trained to reconstruct Fashion-MNIST images padded to 32x32 in
//! [-1, 1] through a 4x8x8 latent sampled from its posterior:
//! `loss = mse(decode(z), x) + kl_weight * mean(KL(q(z|x) || N(0, I)))` per latent
//! element. SD's VAE adds a perceptual (LPIPS) and an adversarial loss; at 32x32 on
//! grey clothes MSE alone gives usable (if soft) reconstructions in minutes.
//!
//! The scaling factor: SD multiplies latents by 0.18215 so that they have unit
//! variance for the UNet; here it is measured, `1 / std(z)` over sampled latents of
//! training images ([`latent_scaling_factor`]), and written in `vae/config.json`.
//!
//! x: (B, 1, 32, 32) -> posterior (B, 4, 8, 8) -> z -> decode -> (B, 1, 32, 32).
//!
//! ```
//! use diffusion::train::vae::fashion_vae_config;
//! let cfg = fashion_vae_config();
//! assert_eq!(cfg.block_out_channels, [32, 32, 64]);
//! assert_eq!(cfg.downscale_factor(), 4); // 32x32 -> 8x8
//! ```

use std::path::Path;

use autodiff::{no_grad, Var};
use nn::{AdamW, AdamWConfig, BatchOutput, Learner, ParamStore, VarBuilder};
use tensor::data::ImageDataset;
use tensor::io::DType;
use tensor::random::{TorchGenerator, WichmannHill};

use crate::error::Result;
use crate::models::unet_2d_condition::OneOrMany;
use crate::models::{AutoencoderKL, AutoencoderKLConfig};
use crate::train::data::{epoch_batches, images_pm1, BatchPlan};
use crate::train::folder::{save_params, with_class_name, write_json};
use crate::train::{run, warmup_cosine, RunOptions, TrainSummary};

/// Padding that turns 28x28 Fashion-MNIST into 32x32.
pub const PAD: usize = 2;

/// The shipped VAE: 1 channel in and out, blocks (32, 32, 64), one resnet per block,
/// 4 latent channels: 32x32 -> 4x8x8.
pub fn fashion_vae_config() -> AutoencoderKLConfig {
    AutoencoderKLConfig {
        in_channels: 1,
        out_channels: 1,
        down_block_types: vec!["DownEncoderBlock2D".into(); 3],
        up_block_types: vec!["UpDecoderBlock2D".into(); 3],
        block_out_channels: vec![32, 32, 64],
        layers_per_block: 1,
        latent_channels: 4,
        norm_num_groups: 32,
        sample_size: OneOrMany::One(32),
        force_upcast: false,
        ..Default::default()
    }
}

/// The VAE loss of one batch `x: (B, C, H, W)` in [-1, 1], the posterior sampled
/// with `gen`: `(total, mse)`.
pub fn vae_loss(
    vae: &AutoencoderKL,
    x: &Var,
    kl_weight: f64,
    gen: &mut TorchGenerator,
) -> Result<(Var, Var)> {
    let posterior = vae.encode(x)?;
    let z = posterior.sample(gen)?;
    let recon = vae.decode(&z)?;
    let mse = nn::mse_loss(&recon, x)?;
    let per_elem: usize = posterior.mean.dims().iter().skip(1).product();
    let kl = posterior
        .kl()?
        .mean_all()?
        .mul_scalar((kl_weight / per_elem.max(1) as f64) as f32)?;
    Ok((mse.add(&kl)?, mse))
}

/// A VAE and the store holding its parameters (names as in diffusers' checkpoint).
pub struct TrainedVae {
    pub vae: AutoencoderKL,
    pub store: ParamStore,
    pub summary: TrainSummary,
}

/// Train a VAE of config `cfg` on `ds` (images padded by [`PAD`]), resuming from
/// `opts.checkpoint` when it exists.
pub fn train_vae(
    cfg: &AutoencoderKLConfig,
    opts: &RunOptions,
    ds: &ImageDataset,
    kl_weight: f64,
) -> Result<TrainedVae> {
    let store = ParamStore::new();
    let vae = AutoencoderKL::new(
        VarBuilder::from_init(&store, WichmannHill::seed(opts.seed)),
        cfg,
    )?;
    store.to_device(&opts.device)?;
    let batches_per_epoch = ds.len() / opts.batch_size.max(1);
    let opt = AdamW::new(
        &store,
        AdamWConfig {
            lr: opts.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    );
    let (n, bs, seed) = (ds.len(), opts.batch_size, opts.seed);
    let learner = Learner::new(
        &store,
        opt,
        |b: &BatchPlan| {
            let x = Var::constant(images_pm1(ds, &b.indices, PAD).map_err(to_nn)?);
            let mut gen = TorchGenerator::manual_seed(b.seed);
            let (loss, _) = vae_loss(&vae, &x, kl_weight, &mut gen).map_err(to_nn)?;
            Ok(BatchOutput::new(loss, b.indices.len()))
        },
        move |epoch| {
            Ok(epoch_batches(n, bs, seed, epoch)
                .into_iter()
                .map(Ok::<_, nn::NnError>))
        },
    )
    .schedule(warmup_cosine(opts.lr, opts.warmup, opts.steps, 0.1))
    .clip_grad_norm(1.0);
    let summary = run(learner, opts, batches_per_epoch)?;
    Ok(TrainedVae {
        vae,
        store,
        summary,
    })
}

/// Errors of this crate inside `nn`'s training loop.
pub(crate) fn to_nn(e: crate::DiffusionError) -> nn::NnError {
    match e {
        crate::DiffusionError::Nn(e) => e,
        other => nn::NnError::invalid("diffusion", other.to_string()),
    }
}

/// The posterior `(mean, std)` of images `indices`, each `(N, C_lat, h, w)`
/// flattened, computed in batches of `batch` without gradients.
pub fn encode_posteriors(
    vae: &AutoencoderKL,
    ds: &ImageDataset,
    indices: &[usize],
    batch: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut mean, mut std) = (Vec::new(), Vec::new());
    for chunk in indices.chunks(batch.max(1)) {
        let x = Var::constant(images_pm1(ds, chunk, PAD)?);
        let p = no_grad(|| vae.encode(&x))?;
        mean.extend(p.mean.value().to_vec()?);
        std.extend(p.std.value().to_vec()?);
    }
    Ok((mean, std))
}

/// `1 / std` of latents `mean + std * eps` (eps from `seed`): the factor that gives
/// the UNet unit-variance inputs, as SD's 0.18215 was chosen.
pub fn latent_scaling_factor(mean: &[f32], std: &[f32], seed: u64) -> Result<f64> {
    let mut gen = TorchGenerator::manual_seed(seed);
    let mut eps = vec![0.0f32; mean.len()];
    gen.normal_fill(&mut eps);
    let z: Vec<f64> = mean
        .iter()
        .zip(std)
        .zip(&eps)
        .map(|((m, s), e)| f64::from(m + s * e))
        .collect();
    let n = z.len().max(1) as f64;
    let mu = z.iter().sum::<f64>() / n;
    let var = z.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n;
    if !(var > 0.0 && var.is_finite()) {
        return Err(crate::DiffusionError::invalid(
            "latent_scaling_factor",
            format!("latent variance is {var}"),
        ));
    }
    Ok(1.0 / var.sqrt())
}

/// Write `vae/config.json` (with `scaling_factor`) and the weights (f32) under `dir`.
pub fn save_vae(dir: &Path, cfg: &AutoencoderKLConfig, store: &ParamStore) -> Result<()> {
    let value =
        serde_json::to_value(cfg).map_err(|e| crate::DiffusionError::config(dir, e.to_string()))?;
    write_json(
        &dir.join("config.json"),
        &with_class_name(value, "AutoencoderKL"),
    )?;
    save_params(
        store,
        "",
        &dir.join("diffusion_pytorch_model.safetensors"),
        DType::F32,
    )
}
