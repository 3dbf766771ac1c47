//! `cargo run --release -p lesson-07-ddpm [-- --steps N --out DIR]`: prints the
//! schedules, checks the forward process, trains the denoiser on Fashion-MNIST
//! (default 1500 steps of 64), samples with DDPM and DDIM, and writes
//! `out/07-forward.png`, `out/07-ddim-samples.png`, `out/07-ddpm-samples.png` and
//! `out/07-reverse.png`.

use std::time::Instant;

use diffusion::schedulers::betas::NoiseSchedule;
use diffusion::schedulers::{BetaSchedule, DDIMScheduler, DDPMScheduler, SchedulerConfig};
use lesson_07_ddpm::schedule::{
    alphas_cumprod, fit_to_closed_form, linear_betas, mean_var, noise_step_by_step, q_sample,
    scaled_linear_betas, snr,
};
use lesson_07_ddpm::train::{ddpm_config, eval_loss, images_pm1, sample, train, TrainConfig};
use lesson_07_ddpm::{build, DenoiserConfig};
use tensor::data::FashionMnist;
use tensor::io::image::{image_grid, save_image_pm1};
use tensor::random::TorchGenerator;
use tensor::Tensor;

/// DDIM step indices (of 50) shown in `07-reverse.png`: the picture forms late.
const REVERSE_FRAMES: [usize; 8] = [0, 15, 25, 32, 38, 42, 46, 49];

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
    let steps: usize = value("--steps").map_or(Ok(TrainConfig::default().steps), |v| v.parse())?;
    let out = value("--out").unwrap_or_else(|| "out".to_string());
    std::fs::create_dir_all(&out)?;

    // 1. Schedules.
    let lin = alphas_cumprod(&linear_betas(1000, 1e-4, 0.02));
    let sd = alphas_cumprod(&scaled_linear_betas(1000, 0.00085, 0.012));
    println!("t      linear ac   (snr)        scaled_linear ac  (snr)");
    for t in [0usize, 99, 249, 499, 749, 999] {
        println!(
            "{t:4}   {:.6}  ({:10.4})   {:.6}  ({:10.4})",
            lin[t],
            snr(lin[t]),
            sd[t],
            snr(sd[t])
        );
    }
    let lib = NoiseSchedule::new(&ddpm_config())?;
    let sdcfg = SchedulerConfig {
        beta_schedule: BetaSchedule::ScaledLinear,
        beta_start: 0.00085,
        beta_end: 0.012,
        ..Default::default()
    };
    let lib_sd = NoiseSchedule::new(&sdcfg)?;
    let maxdiff = |a: &[f64], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - f64::from(*y)).abs())
            .fold(0.0, f64::max)
    };
    println!(
        "by hand (f64) vs diffusion::schedulers::betas (f32): max |diff| linear {:.2e}, scaled_linear {:.2e}",
        maxdiff(&lin, &lib.alphas_cumprod),
        maxdiff(&sd, &lib_sd.alphas_cumprod)
    );

    // 2. The forward process on real images.
    let data = FashionMnist::load()?;
    let x0 = images_pm1(&data.train, &(0..512).collect::<Vec<_>>())?;
    let (m0, v0) = mean_var(&x0)?;
    let z = TorchGenerator::manual_seed(1).randn(x0.dims().to_vec())?;
    // Standardised data (mean 0, var 1) stays at var 1 under the closed form.
    let xs = x0
        .add_scalar(-m0 as f32)?
        .mul_scalar((1.0 / v0.sqrt()) as f32)?;
    print!("variance of x_t (standardised images): ");
    for t in [0usize, 100, 300, 600, 999] {
        let xt = q_sample(&xs, &z, &vec![lin[t]; 512])?;
        print!("t={t} {:.4}  ", mean_var(&xt)?.1);
    }
    println!();
    let betas = linear_betas(1000, 1e-4, 0.02);
    let one = images_pm1(&data.train, &[0])?
        .broadcast_as([2000, 1, 28, 28])?
        .contiguous()?;
    let seq = noise_step_by_step(&one, &betas, 299, &mut TorchGenerator::manual_seed(2))?;
    let eps = TorchGenerator::manual_seed(3).randn([2000, 1, 28, 28])?;
    let closed = q_sample(&one, &eps, &vec![lin[299]; 2000])?;
    let img0 = images_pm1(&data.train, &[0])?;
    let (sw, sv) = fit_to_closed_form(&seq, &img0, lin[299])?;
    let (cw, cv) = fit_to_closed_form(&closed, &img0, lin[299])?;
    println!(
        "image 0 noised to t=299, 2000 times: 300 single steps: worst pixel mean error {sw:.4}, mean variance {sv:.4}; closed form: {cw:.4}, {cv:.4}; predicted 0, {:.4}",
        1.0 - lin[299]
    );
    let cols = [0usize, 50, 100, 200, 300, 500, 700, 999];
    let mut cells = Vec::new();
    let imgs = images_pm1(&data.train, &(0..8).collect::<Vec<_>>())?;
    let e8 = TorchGenerator::manual_seed(4).randn([8, 1, 28, 28])?;
    for &t in &cols {
        cells.push(q_sample(&imgs, &e8, &[lin[t]; 8])?);
    }
    let grid = Tensor::stack(&cells, 1)?.reshape([64, 1, 28, 28])?;
    save_image_pm1(format!("{out}/07-forward.png"), &image_grid(&grid, 8, 8)?)?;

    // 3. Training.
    let (store, model) = build(0, DenoiserConfig::default())?;
    println!("denoiser: {} parameters", store.num_elements());
    let before = eval_loss(&model, &data.test, 512, 99)?;
    let cfg = TrainConfig {
        steps,
        ..Default::default()
    };
    let t0 = Instant::now();
    let (_, losses) = train(&model, &store, &data.train, cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    let after = eval_loss(&model, &data.test, 512, 99)?;
    let tail = losses.iter().rev().take(50).sum::<f32>() / 50f32.min(losses.len() as f32);
    println!(
        "trained {} steps of {} in {secs:.1} s ({:.0} ms/step); last 50 training losses {tail:.4}; held-out loss (512 test images) {before:.4} -> {after:.4}",
        losses.len(),
        cfg.batch_size,
        1000.0 * secs / losses.len().max(1) as f64
    );

    // 4. Sampling.
    let (dm, dv) = mean_var(&images_pm1(&data.test, &(0..1000).collect::<Vec<_>>())?)?;
    let x_t = TorchGenerator::manual_seed(7).randn([64, 1, 28, 28])?;
    let t0 = Instant::now();
    let mut ddim = DDIMScheduler::new(&ddpm_config())?;
    let mut reverse = Vec::new();
    let ddim_x = sample(
        &model,
        &mut ddim,
        50,
        &x_t,
        &mut TorchGenerator::manual_seed(8),
        |i, _, x| {
            if REVERSE_FRAMES.contains(&i) {
                reverse.push(x.narrow(0, 0, 8).and_then(|v| v.contiguous()));
            }
        },
    )?;
    let ddim_secs = t0.elapsed().as_secs_f64();
    let mut ddpm = DDPMScheduler::new(&ddpm_config())?;
    let t0 = Instant::now();
    let ddpm_x = sample(
        &model,
        &mut ddpm,
        100,
        &x_t,
        &mut TorchGenerator::manual_seed(8),
        |_, _, _| {},
    )?;
    let ddpm_secs = t0.elapsed().as_secs_f64();
    let (nm, nv) = mean_var(&x_t)?;
    let (am, av) = mean_var(&ddim_x)?;
    let (bm, bv) = mean_var(&ddpm_x)?;
    println!("pixel mean / std: data {dm:.4} / {:.4}; noise {nm:.4} / {:.4}; DDIM-50 samples {am:.4} / {:.4} ({ddim_secs:.1} s); DDPM-100 samples {bm:.4} / {:.4} ({ddpm_secs:.1} s)",
        dv.sqrt(), nv.sqrt(), av.sqrt(), bv.sqrt());
    let ddim_again = sample(
        &model,
        &mut ddim,
        50,
        &x_t,
        &mut TorchGenerator::manual_seed(9),
        |_, _, _| {},
    )?;
    let ddpm_again = sample(
        &model,
        &mut ddpm,
        100,
        &x_t,
        &mut TorchGenerator::manual_seed(9),
        |_, _, _| {},
    )?;
    println!(
        "same x_T, other generator: DDIM max |diff| {:.2e}, DDPM max |diff| {:.3}",
        max_abs_diff(&ddim_x, &ddim_again)?,
        max_abs_diff(&ddpm_x, &ddpm_again)?
    );
    let ddim10 = sample(
        &model,
        &mut ddim,
        10,
        &x_t,
        &mut TorchGenerator::manual_seed(8),
        |_, _, _| {},
    )?;
    let other = sample(
        &model,
        &mut ddim,
        50,
        &TorchGenerator::manual_seed(70).randn([64, 1, 28, 28])?,
        &mut TorchGenerator::manual_seed(8),
        |_, _, _| {},
    )?;
    println!(
        "DDIM from the same x_T: 10 vs 50 steps mse {:.4}; 50 steps from another x_T mse {:.4}",
        mse(&ddim10, &ddim_x)?,
        mse(&other, &ddim_x)?
    );
    save_image_pm1(
        format!("{out}/07-ddim-samples.png"),
        &image_grid(&ddim_x, 8, 8)?,
    )?;
    save_image_pm1(
        format!("{out}/07-ddpm-samples.png"),
        &image_grid(&ddpm_x, 8, 8)?,
    )?;
    let mut frames = vec![x_t.narrow(0, 0, 8)?.contiguous()?];
    for r in reverse {
        frames.push(r?);
    }
    let nf = frames.len();
    let rev = Tensor::stack(&frames, 1)?.reshape([8 * nf, 1, 28, 28])?;
    save_image_pm1(format!("{out}/07-reverse.png"), &image_grid(&rev, 8, nf)?)?;
    println!("wrote {out}/07-forward.png, {out}/07-ddim-samples.png, {out}/07-ddpm-samples.png, {out}/07-reverse.png");
    Ok(())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64, Box<dyn std::error::Error>> {
    Ok(a.to_vec()?
        .iter()
        .zip(b.to_vec()?)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max))
}

fn mse(a: &Tensor, b: &Tensor) -> Result<f64, Box<dyn std::error::Error>> {
    let (av, bv) = (a.to_vec()?, b.to_vec()?);
    Ok(av
        .iter()
        .zip(&bv)
        .map(|(x, y)| f64::from((x - y) * (x - y)))
        .sum::<f64>()
        / av.len().max(1) as f64)
}
