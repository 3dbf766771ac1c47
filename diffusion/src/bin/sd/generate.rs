//! `sd generate`: options, progress bar, timing summary and the PNG grid.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use diffusion::pipelines::folder::generation_defaults;
use diffusion::pipelines::{GenerateParams, StableDiffusion, StepInfo};
use diffusion::schedulers::{make_scheduler, scheduler_from_config, SchedulerKind};
use diffusion::{DiffusionError, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tensor::io::image::{image_grid, load_image, save_image_pm1, unit_to_pm1};
use tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Cpu,
    Wgpu,
}

impl Device {
    /// The tensor device; for wgpu the shared adapter is opened and named on stderr
    /// (once per run). No adapter, or a driver error, is a clear error.
    pub fn open(self) -> Result<tensor::Device> {
        static NAMED: std::sync::Once = std::sync::Once::new();
        match self {
            Device::Cpu => Ok(tensor::Device::Cpu),
            Device::Wgpu => {
                let gpu = tensor::Device::wgpu()?;
                if let tensor::Device::Wgpu(w) = &gpu {
                    NAMED.call_once(|| eprintln!("device: {:?}", w.context()));
                }
                Ok(gpu)
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The prompt(s), as positional arguments.
    #[arg(value_name = "PROMPT")]
    prompts: Vec<String>,
    /// A prompt (repeat for a batch of prompts).
    #[arg(long, short)]
    prompt: Vec<String>,
    /// What not to draw (none, or one per --prompt).
    #[arg(long)]
    negative_prompt: Vec<String>,
    /// A diffusers Stable Diffusion model folder (default: the shipped Fashion-MNIST
    /// model, diffusion/assets/fashion-sd).
    #[arg(long, env = "SD_MODEL")]
    model: Option<PathBuf>,
    /// Denoising steps (default: the model's recommendation, else 30).
    #[arg(long)]
    steps: Option<usize>,
    /// Classifier-free guidance scale, 1 turns guidance off (default: the model's
    /// recommendation, else 7.5).
    #[arg(long)]
    guidance: Option<f64>,
    /// Guidance rescale phi in [0, 1] (2305.08891).
    #[arg(long, default_value_t = 0.0)]
    guidance_rescale: f64,
    /// Sampler: ddpm, ddim, pndm, lms, euler, euler-a, dpm++2m, dpm++2m-karras
    /// (default: the model folder's scheduler).
    #[arg(long)]
    scheduler: Option<String>,
    /// Seed of the torch-compatible generator (the same seed gives diffusers' noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image width in pixels (a multiple of 8; default: the model's size).
    #[arg(long)]
    width: Option<usize>,
    /// Image height in pixels (a multiple of 8; default: the model's size).
    #[arg(long)]
    height: Option<usize>,
    /// img2img / inpainting: the starting image (PNG).
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// How much to change the init image, in (0, 1].
    #[arg(long)]
    strength: Option<f64>,
    /// Inpainting: a mask PNG of the image's size, white where to repaint.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Images per prompt (default: the model's recommendation, else 1).
    #[arg(long)]
    num_images: Option<usize>,
    /// Output PNG (a grid when there are several images); default: the first free
    /// name of sd-out.png, sd-out-2.png, ...
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to run the models.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Decode the latents by tiles (large images in bounded memory).
    #[arg(long)]
    vae_tiling: bool,
    /// A textual-inversion embedding (learned_embeds.safetensors) to load; its token
    /// can then be used in prompts (repeatable).
    #[arg(long)]
    textual_inversion: Vec<PathBuf>,
    /// Write a preview PNG (decoded latents) every N steps, next to --out.
    #[arg(long)]
    preview_every: Option<usize>,
}

/// The shipped model's folder, next to this crate's sources.
pub(crate) fn default_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("fashion-sd")
}

/// `sd-out.png`, or the first of `sd-out-2.png`, `sd-out-3.png`, ... that is free.
fn free_out_name() -> PathBuf {
    let first = PathBuf::from("sd-out.png");
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| PathBuf::from(format!("sd-out-{i}.png")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

pub fn run(mut args: GenerateArgs) -> Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| DiffusionError::invalid("--threads", e.to_string()))?;
    }
    let mut prompts = std::mem::take(&mut args.prompts);
    prompts.append(&mut args.prompt);
    if prompts.is_empty() {
        return Err(DiffusionError::invalid(
            "sd generate",
            "give a prompt: sd \"a photo of a sneaker\" (or --prompt, repeatable)",
        ));
    }
    let out = match &args.out {
        Some(out) if out.exists() && !args.force => {
            return Err(DiffusionError::io(
                out,
                "already exists; pass --force to overwrite it or choose another --out",
            ))
        }
        Some(out) => out.clone(),
        None => free_out_name(),
    };
    let model = args.model.clone().unwrap_or_else(default_model);
    let defaults = generation_defaults(&model)?;
    let steps = args.steps.or(defaults.num_inference_steps).unwrap_or(30);
    let guidance = args.guidance.or(defaults.guidance_scale).unwrap_or(7.5);
    let num_images = args
        .num_images
        .or(defaults.num_images_per_prompt)
        .unwrap_or(1);
    let t0 = Instant::now();
    let mut sd = StableDiffusion::load(&model)?;
    for path in &args.textual_inversion {
        let tokens = sd.load_textual_inversion(path, None)?;
        eprintln!(
            "textual inversion {}: added {}",
            path.display(),
            tokens.join(" ")
        );
    }
    if args.device == Device::Wgpu {
        // CLIP, UNet and VAE weights go to the GPU; the scheduler runs where its
        // inputs are.
        sd.to_device(&args.device.open()?)?;
    }
    let load_time = t0.elapsed();

    let kind = match args.scheduler.as_ref().or(defaults.scheduler.as_ref()) {
        Some(name) => Some(name.parse::<SchedulerKind>()?),
        None => None,
    };
    let mut scheduler = match kind {
        Some(kind) => make_scheduler(kind, &sd.scheduler_config)?,
        None => scheduler_from_config(&sd.scheduler_config)?,
    };
    let init_image = args.init_image.as_deref().map(read_pm1).transpose()?;
    let mask = args.mask.as_deref().map(read_unit).transpose()?;
    if args.strength.is_some() && init_image.is_none() {
        return Err(DiffusionError::invalid(
            "--strength",
            "only applies with --init-image",
        ));
    }
    let params = GenerateParams {
        prompts: prompts.clone(),
        negative_prompts: args.negative_prompt.clone(),
        num_images_per_prompt: num_images,
        num_inference_steps: steps,
        guidance_scale: guidance,
        guidance_rescale: args.guidance_rescale,
        width: args.width,
        height: args.height,
        seed: args.seed,
        init_image,
        strength: args
            .strength
            .unwrap_or(if args.mask.is_some() { 1.0 } else { 0.8 }),
        mask,
        vae_tiling: args.vae_tiling,
        ..Default::default()
    };

    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| DiffusionError::invalid("progress", e.to_string()))?
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{} ({})", "denoising", scheduler.name()));
    let t_loop = Instant::now();
    let mut last = Instant::now();
    let mut step_times: Vec<Duration> = Vec::new();
    let preview = args.preview_every.filter(|&n| n > 0);
    let mut callback = |info: &StepInfo| -> Result<Option<Tensor>> {
        step_times.push(last.elapsed());
        last = Instant::now();
        let mean = step_times.iter().sum::<Duration>().as_secs_f64() / step_times.len() as f64;
        bar.set_length(info.num_steps as u64);
        bar.set_position(info.step as u64 + 1);
        bar.set_message(format!("{mean:.2} s/it, t = {:.0}", info.timestep));
        if let Some(n) = preview {
            if (info.step + 1).is_multiple_of(n) && info.step + 1 < info.num_steps {
                let images = sd.decode_latents(info.latents, args.vae_tiling)?;
                let path = preview_path(&out, info.step + 1);
                save_grid(&path, &images, prompts.len(), num_images)?;
                bar.println(format!("preview: {}", path.display()));
            }
        }
        Ok(None)
    };
    let generated = sd.generate(&params, scheduler.as_mut(), Some(&mut callback))?;
    bar.finish();
    let loop_time = t_loop.elapsed();
    let images = generated
        .images
        .ok_or_else(|| DiffusionError::invalid("generate", "no images were decoded"))?;
    save_grid(&out, &images, prompts.len(), num_images)?;
    let total = t0.elapsed();
    eprintln!(
        "wrote {} ({} image(s)); load {:.2}s, generate+decode {:.2}s ({} UNet steps), total {:.2}s",
        out.display(),
        images.dims()[0],
        load_time.as_secs_f64(),
        loop_time.as_secs_f64(),
        step_times.len(),
        total.as_secs_f64()
    );
    Ok(())
}

/// `out.png` -> `out.step-05.png`.
fn preview_path(out: &Path, step: usize) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.step-{step:02}.png"))
}

/// Save (N, C, H, W) in [-1, 1] as one PNG: a grid of `rows` prompts x `cols` images.
fn save_grid(path: &Path, images: &Tensor, rows: usize, cols: usize) -> Result<()> {
    let grid = if images.dims()[0] == 1 {
        images.clone()
    } else {
        image_grid(images, rows, cols)?
    };
    Ok(save_image_pm1(path, &grid)?)
}

fn read_unit(path: &Path) -> Result<Tensor> {
    Ok(load_image(path)?)
}

fn read_pm1(path: &Path) -> Result<Tensor> {
    Ok(unit_to_pm1(&load_image(path)?)?)
}
