//! `cargo run --release -p lesson-10-stable-diffusion [-- --model DIR --prompt P --steps N
//! --guidance G --seed S --out DIR]`: the pipeline stage by stage, printing what each
//! stage makes, and writing `out/10-steps.png` (the latents decoded after every step,
//! left to right) and `out/10-final.png`. Runs on the tiny random-weight model
//! `fixtures/tiny-sd` unless `--model` names a diffusers Stable Diffusion folder.

use diffusion::pipelines::StableDiffusion;
use diffusion::schedulers::scheduler_from_config;
use lesson_10_stable_diffusion::{decode, denoise, encode, std_all, tiny_model_dir, Recipe};
use tensor::io::image::{image_grid, save_image_pm1};
use tensor::Tensor;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = value("--model").map_or_else(tiny_model_dir, Into::into);
    let prompt = value("--prompt").unwrap_or_else(|| "a photo of a cat".into());
    let steps: usize = value("--steps").map_or(Ok(10), |v| v.parse())?;
    let guidance: f32 = value("--guidance").map_or(Ok(7.5), |v| v.parse())?;
    let seed: u64 = value("--seed").map_or(Ok(42), |v| v.parse())?;
    let out = std::path::PathBuf::from(value("--out").unwrap_or_else(|| "out".into()));
    std::fs::create_dir_all(&out)?;

    let sd = StableDiffusion::load(&dir)?;
    println!("model: {}", dir.display());
    let ids = sd.tokenizer.encode_padded(&prompt, 77)?.ids;
    println!(
        "1. tokenize {prompt:?}: {:?} ... ({} ids)",
        &ids[..10],
        ids.len()
    );
    let e = encode(&sd, &["", &prompt])?;
    println!(
        "2. encode: (2, 77) ids -> {:?} (row 0 the empty prompt, row 1 the prompt)",
        e.dims()
    );
    let mut scheduler = scheduler_from_config(&sd.scheduler_config)?;
    scheduler.set_timesteps(steps)?;
    println!(
        "3. {}: {} timesteps from {} to {}, init_noise_sigma {:.4}",
        scheduler.name(),
        scheduler.timesteps().len(),
        scheduler.timesteps()[0],
        scheduler.timesteps()[scheduler.timesteps().len() - 1],
        scheduler.init_noise_sigma()
    );
    let (h, w) = sd.default_size();
    let f = sd.vae_scale_factor();
    let recipe = Recipe {
        prompt: &prompt,
        negative_prompt: "",
        steps,
        guidance_scale: guidance,
        seed,
        latent_hw: (h / f, w / f),
    };
    let mut frames: Vec<Tensor> = Vec::new();
    let mut failed = None;
    let latents = denoise(&sd, scheduler.as_mut(), &recipe, |i, t, x| {
        println!(
            "4. step {i:2}  t = {t:6.1}  std(latents) = {:.4}",
            std_all(x).unwrap_or(f64::NAN)
        );
        match decode(&sd, x) {
            Ok(img) => frames.push(img),
            Err(e) => failed = Some(e),
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let image = decode(&sd, &latents)?;
    println!(
        "5. decode: latents {:?} -> image {:?}",
        latents.dims(),
        image.dims()
    );
    let strip = image_grid(&Tensor::cat(&frames, 0)?, 1, frames.len())?;
    save_image_pm1(out.join("10-steps.png"), &strip)?;
    save_image_pm1(out.join("10-final.png"), &image)?;
    println!("wrote {0}/10-steps.png and {0}/10-final.png", out.display());
    Ok(())
}
