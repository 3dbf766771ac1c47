//! `sd edit`: Imagic (arXiv 2210.09276, `diffusion::imagic`) on one image: optimise
//! the target text's embedding (stage A), fine-tune a copy of the UNet on the image
//! (stage B), each with a progress bar, then generate at one eta or a sweep of them
//! (stage C) and write the image, or a strip `input | eta_1 | eta_2 ...`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use diffusion::imagic::{fit_image, Imagic, ImagicConfig, Stage};
use diffusion::pipelines::StableDiffusion;
use diffusion::schedulers::SchedulerKind;
use diffusion::{DiffusionError, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tensor::io::image::{image_grid, load_image, save_image_pm1};
use tensor::Tensor;

/// Settings of the three stages, shared by `sd edit` and `sd edit-report`.
#[derive(Args, Debug, Clone)]
pub struct ImagicArgs {
    /// Stage A: Adam steps on the text embedding.
    #[arg(long, default_value_t = ImagicConfig::default().embed_steps)]
    pub embed_steps: usize,
    /// Stage A learning rate.
    #[arg(long, default_value_t = ImagicConfig::default().embed_lr)]
    pub embed_lr: f64,
    /// Stage B: Adam steps on the copy of the UNet.
    #[arg(long, default_value_t = ImagicConfig::default().finetune_steps)]
    pub finetune_steps: usize,
    /// Stage B learning rate.
    #[arg(long, default_value_t = ImagicConfig::default().finetune_lr)]
    pub finetune_lr: f64,
    /// Noised copies of the image per optimisation step.
    #[arg(long, default_value_t = ImagicConfig::default().batch_size)]
    pub batch_size: usize,
    /// Seed of the posterior sample, the noise draws and the generation noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stage C sampler (ddim as the paper; any of `sd generate --scheduler`).
    #[arg(long, default_value = "ddim")]
    pub scheduler: String,
    /// Stage C denoising steps.
    #[arg(long, default_value_t = ImagicConfig::default().num_inference_steps)]
    pub steps: usize,
    /// Stage C classifier-free guidance scale.
    #[arg(long, default_value_t = ImagicConfig::default().guidance_scale)]
    pub guidance: f64,
    /// Hide the progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

impl ImagicArgs {
    pub fn config(&self) -> Result<ImagicConfig> {
        Ok(ImagicConfig {
            embed_steps: self.embed_steps,
            embed_lr: self.embed_lr,
            finetune_steps: self.finetune_steps,
            finetune_lr: self.finetune_lr,
            batch_size: self.batch_size,
            seed: self.seed,
            scheduler: self.scheduler.parse::<SchedulerKind>()?,
            num_inference_steps: self.steps,
            guidance_scale: self.guidance,
        })
    }
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The image to edit (PNG; a 28x28 Fashion-MNIST image is padded to 32x32).
    #[arg(long)]
    image: PathBuf,
    /// The target text ("a photo of a dress"); not needed with --load.
    #[arg(long, short, required_unless_present = "load")]
    prompt: Option<String>,
    /// Interpolation weight of the target embedding: 0 reproduces the image, 1 is the
    /// target text alone.
    #[arg(long, default_value_t = 0.7, conflicts_with = "etas")]
    eta: f64,
    /// Several etas (comma-separated): writes a strip `input | eta...`.
    #[arg(long, value_delimiter = ',')]
    etas: Vec<f64>,
    /// A diffusers model folder (default: the shipped Fashion-MNIST model).
    #[arg(long, env = "SD_MODEL")]
    model: Option<PathBuf>,
    /// Output PNG (default: sd-edit.png).
    #[arg(long, short, default_value = "sd-edit.png")]
    out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
    /// Save e_opt, e_tgt and the fine-tuned UNet to this safetensors file (17 MB for
    /// the shipped model) after stage B.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Skip stages A and B: reuse what --save wrote (same model).
    #[arg(long, conflicts_with_all = ["save", "prompt"])]
    load: Option<PathBuf>,
    /// Where to run the three stages (the models, e_opt and the fine-tuned UNet).
    #[arg(long, value_enum, default_value_t = crate::generate::Device::Cpu)]
    device: crate::generate::Device,
    #[command(flatten)]
    imagic: ImagicArgs,
}

/// An indicatif bar per stage, driven by `Imagic::fit`'s progress callback.
pub struct StageBars {
    bars: Option<(ProgressBar, ProgressBar)>,
}

impl StageBars {
    pub fn new(cfg: &ImagicConfig, show: bool) -> Result<StageBars> {
        if !show {
            return Ok(StageBars { bars: None });
        }
        let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| DiffusionError::invalid("progress", e.to_string()))?
            .progress_chars("=> ");
        let make = |len: usize, prefix: &'static str| {
            let b = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
            b.set_style(style.clone());
            b.set_prefix(prefix);
            b
        };
        Ok(StageBars {
            bars: Some((
                make(cfg.embed_steps, "A: embedding"),
                make(cfg.finetune_steps, "B: fine-tuning UNet"),
            )),
        })
    }

    pub fn update(&self, stage: Stage, step: usize, total: usize, loss: f32) {
        if let Some((a, b)) = &self.bars {
            let bar = if stage == Stage::Embed { a } else { b };
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
            if step == total {
                bar.finish();
            }
        }
    }
}

/// Load a PNG as the model's input (1, C, H, W) in [-1, 1].
pub fn read_input(sd: &StableDiffusion, path: &Path) -> Result<Tensor> {
    let img = load_image(path)?;
    fit_image(&img, sd.default_size(), sd.vae.config().in_channels)
        .map_err(|e| DiffusionError::invalid("--image", format!("{}: {e}", path.display())))
}

/// Save (N, C, H, W) in [-1, 1] as one row.
pub fn save_row(path: &Path, images: &Tensor) -> Result<()> {
    let n = images.dims()[0];
    let grid = if n == 1 {
        images.clone()
    } else {
        image_grid(images, 1, n)?
    };
    Ok(save_image_pm1(path, &grid)?)
}

pub fn edit_cmd(args: EditArgs) -> Result<()> {
    if args.out.exists() && !args.force {
        return Err(DiffusionError::io(
            &args.out,
            "already exists; pass --force to overwrite it or choose another --out",
        ));
    }
    let etas = if args.etas.is_empty() {
        vec![args.eta]
    } else {
        args.etas.clone()
    };
    if let Some(bad) = etas.iter().find(|e| !e.is_finite()) {
        return Err(DiffusionError::invalid(
            "--eta",
            format!("{bad} is not a number"),
        ));
    }
    let cfg = args.imagic.config()?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(crate::generate::default_model);
    let t0 = Instant::now();
    let mut sd = StableDiffusion::load(&model)?;
    sd.to_device(&args.device.open()?)?;
    let input = read_input(&sd, &args.image)?;
    let bars = StageBars::new(&cfg, !args.imagic.no_progress)?;
    let mut progress = |s: Stage, i: usize, n: usize, l: f32| bars.update(s, i, n, l);
    let mut imagic = match (&args.load, &args.prompt) {
        (Some(path), _) => Imagic::load(&sd, path)?,
        (None, Some(prompt)) => Imagic::fit(&sd, &input, prompt, &cfg, Some(&mut progress))?,
        (None, None) => {
            return Err(DiffusionError::invalid(
                "sd edit",
                "give --prompt or --load",
            ))
        }
    };
    if let Some(path) = &args.save {
        imagic.save(path)?;
        eprintln!(
            "saved e_opt, e_tgt and the fine-tuned UNet to {}",
            path.display()
        );
    }
    let t_c = Instant::now();
    let images = imagic.generate(&mut sd, &etas, &cfg)?;
    let t_c = t_c.elapsed().as_secs_f64();
    let strip = if etas.len() == 1 {
        images
    } else {
        // The input as the VAE saw it, in the output's channels, first.
        let shown = diffusion::pipelines::image::match_channels(&input, images.dims()[1])?;
        Tensor::cat(&[&shown, &images], 0)?
    };
    save_row(&args.out, &strip)?;
    let loss = |v: &[f32]| v.last().copied().unwrap_or(f32::NAN);
    if imagic.embed_losses.is_empty() {
        eprintln!(
            "stages A and B: loaded; stage C: {} image(s) in {t_c:.2} s",
            etas.len()
        );
    } else {
        eprintln!(
            "stage A: loss {:.4} -> {:.4} in {:.1} s; stage B: loss {:.4} -> {:.4} in {:.1} s; \
             stage C: {} image(s) in {:.2} s",
            imagic.embed_losses.first().copied().unwrap_or(f32::NAN),
            loss(&imagic.embed_losses),
            imagic.seconds.0,
            imagic.finetune_losses.first().copied().unwrap_or(f32::NAN),
            loss(&imagic.finetune_losses),
            imagic.seconds.1,
            etas.len(),
            t_c
        );
    }
    eprintln!(
        "wrote {} (etas {:?}); total {:.1} s",
        args.out.display(),
        etas,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
