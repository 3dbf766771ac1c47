//! `sd train-vae` and `sd train-unet`: the two stages of training the miniature
//! Fashion-MNIST Stable Diffusion (see `diffusion::train`). Both resume from their
//! checkpoint in `--run-dir` when one exists, and write their part of the diffusers
//! model folder `--model-dir` when done.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use diffusion::models::AutoencoderKL;
use diffusion::train::folder::{model_index, scheduler_config, write_json};
use diffusion::train::unet::{
    fashion_text_config_json, fashion_unet_config, save_unet_and_text, train_unet, LatentSet,
    UnetModels, UnetStageOptions,
};
use diffusion::train::vae::{
    encode_posteriors, fashion_vae_config, latent_scaling_factor, save_vae, train_vae,
};
use diffusion::train::{create_dir, RunOptions};
use diffusion::{DiffusionError, Result};

use crate::generate::Device;
use nn::ParamStore;
use tensor::data::{FashionMnist, ImageDataset};

/// Options both stages share.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The diffusers model folder to write (and, for train-unet, to read vae/ from).
    #[arg(long, default_value = "diffusion/assets/fashion-sd")]
    model_dir: PathBuf,
    /// Where checkpoints (and the latent cache) go.
    #[arg(long, default_value = "target/fashion-sd-run")]
    run_dir: PathBuf,
    /// Optimizer steps in total.
    #[arg(long)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Stop at this step (the run stays resumable; the lr schedule still spans --steps).
    #[arg(long)]
    stop_at: Option<usize>,
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Where to train (the parameters, optimizer state and EMA live there).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
}

impl CommonArgs {
    fn run_options(&self, name: &str) -> Result<RunOptions> {
        create_dir(&self.run_dir)?;
        Ok(RunOptions {
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup: self.warmup,
            seed: self.seed,
            checkpoint: self.run_dir.join(format!("{name}-checkpoint.safetensors")),
            checkpoint_every: self.checkpoint_every,
            stop_at: self.stop_at,
            log_every: self.log_every,
            progress: !self.no_progress,
            device: self.device.open()?,
        })
    }

    fn train_images(&self) -> Result<ImageDataset> {
        let data = FashionMnist::load()?;
        match self.limit {
            Some(n) if n < data.train.len() => {
                let (h, w) = (data.train.height(), data.train.width());
                Ok(ImageDataset::new(
                    data.train.images()[..n * h * w].to_vec(),
                    data.train.labels()[..n].to_vec(),
                    h,
                    w,
                )?)
            }
            _ => Ok(data.train),
        }
    }
}

#[derive(Args, Debug)]
pub struct TrainVaeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Weight of the KL term (per latent element, against the per-pixel MSE).
    #[arg(long, default_value_t = 5e-4)]
    kl_weight: f64,
    /// Images whose latents measure the scaling factor.
    #[arg(long, default_value_t = 5000)]
    scaling_images: usize,
}

pub fn train_vae_cmd(args: TrainVaeArgs) -> Result<()> {
    let started = Instant::now();
    let c = &args.common;
    let ds = c.train_images()?;
    let opts = c.run_options("vae")?;
    let mut cfg = fashion_vae_config();
    println!(
        "train-vae: {} images, {} steps of {}, checkpoint {}",
        ds.len(),
        opts.steps,
        opts.batch_size,
        opts.checkpoint.display()
    );
    let trained = train_vae(&cfg, &opts, &ds, args.kl_weight)?;
    println!(
        "trained to step {} ({} this run, {:.1} s); {} parameters",
        trained.summary.step,
        trained.summary.steps_run,
        trained.summary.seconds,
        trained.store.num_elements()
    );
    trained.store.eval();
    let idx: Vec<usize> = (0..args.scaling_images.min(ds.len())).collect();
    let (mean, std) = encode_posteriors(&trained.vae, &ds, &idx, 250)?;
    cfg.scaling_factor = latent_scaling_factor(&mean, &std, c.seed)?;
    println!("scaling_factor = {:.5}", cfg.scaling_factor);
    save_vae(&c.model_dir.join("vae"), &cfg, &trained.store)?;
    println!(
        "wrote {} in {:.1} s in total",
        c.model_dir.join("vae").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct TrainUnetArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Fraction of empty captions (for classifier-free guidance).
    #[arg(long, default_value_t = 0.15)]
    p_empty: f64,
    #[arg(long, default_value_t = 0.999)]
    ema_decay: f64,
    /// Start from the weights of this model folder's `unet/` and `text_encoder/`
    /// (a fresh optimizer and schedule) instead of a random init: to go on training
    /// a shipped model.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Class-weighted epochs, as `label=repeats` pairs: `6=3,2=2` shows each shirt 3
    /// times and each pullover twice per epoch, every other class once.
    #[arg(long, value_delimiter = ',')]
    class_repeats: Vec<String>,
}

/// Parse `label=repeats` pairs into per-class repeat counts (1 where not given).
fn parse_class_repeats(pairs: &[String]) -> Result<[usize; 10]> {
    let mut out = [1usize; 10];
    for p in pairs {
        let bad = || {
            DiffusionError::invalid(
                "--class-repeats",
                format!("'{p}' is not label=repeats with a label 0..9 and repeats >= 1"),
            )
        };
        let (l, r) = p.split_once('=').ok_or_else(bad)?;
        let l: usize = l.trim().parse().map_err(|_| bad())?;
        let r: usize = r.trim().parse().map_err(|_| bad())?;
        if l > 9 || r == 0 {
            return Err(bad());
        }
        out[l] = r;
    }
    Ok(out)
}

/// The posteriors of every training image, cached in the run folder.
fn latent_set(c: &CommonArgs, ds: &ImageDataset) -> Result<LatentSet> {
    let store = ParamStore::new();
    let vae = AutoencoderKL::from_pretrained(&store, &c.model_dir.join("vae"))?;
    store.eval();
    let cache = c.run_dir.join(format!("latents-{}.safetensors", ds.len()));
    diffusion::train::latents::latent_set(&vae, ds, &cache)
}

pub fn train_unet_cmd(args: TrainUnetArgs) -> Result<()> {
    let started = Instant::now();
    let c = &args.common;
    let opts = c.run_options("unet")?;
    let ds = c.train_images()?;
    let set = latent_set(c, &ds)?;
    let text_json = fashion_text_config_json();
    let text_cfg = serde_json::from_value(text_json.clone())
        .map_err(|e| DiffusionError::invalid("text encoder config", e.to_string()))?;
    let models = UnetModels::new(&fashion_unet_config(), &text_cfg, c.seed)?;
    let class_repeats = parse_class_repeats(&args.class_repeats)?;
    if let Some(dir) = &args.init_from {
        models.load_pretrained(dir)?;
        println!("starting from the weights in {}", dir.display());
    }
    let n_text = models
        .store
        .under("text_encoder.")
        .iter()
        .map(|p| p.numel())
        .sum::<usize>();
    println!(
        "train-unet: {} latents {:?} (scaling {:.5}), {} steps of {}; UNet {} + text encoder {} parameters",
        set.len(),
        set.shape,
        set.scaling,
        opts.steps,
        opts.batch_size,
        models.store.num_elements() - n_text,
        n_text
    );
    let stage = UnetStageOptions {
        p_empty: args.p_empty,
        ema_decay: args.ema_decay,
        class_repeats,
    };
    let summary = train_unet(&models, &set, &opts, stage)?;
    println!(
        "trained to step {} ({} this run, {:.1} s)",
        summary.step, summary.steps_run, summary.seconds
    );
    write_model_folder(&c.model_dir, &models, &text_json)?;
    println!(
        "wrote {} in {:.1} s in total",
        c.model_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_model_folder(
    dir: &Path,
    models: &UnetModels,
    text_json: &serde_json::Value,
) -> Result<()> {
    save_unet_and_text(dir, models, text_json)?;
    write_json(
        &dir.join("scheduler").join("scheduler_config.json"),
        &scheduler_config(),
    )?;
    write_json(&dir.join("model_index.json"), &model_index())
}
