//! `cargo run --release -p lesson-06-autoencoder [-- --epochs N --batches K --beta B --out DIR]`: trains
//! the VAE on Fashion-MNIST with a progress bar, writes `out/06-reconstructions.png`
//! and `out/06-samples.png`, and prints the test-set reconstruction MSE.

use std::time::Instant;

use lesson_06_autoencoder::{
    across_batch_variance, build, mean_image_mse, reconstruction_grid, reconstruction_mse, samples,
    train, TrainConfig, VaeConfig,
};
use tensor::data::FashionMnist;
use tensor::io::image::{image_grid, save_image_unit};
use tensor::random::TorchGenerator;

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
    let epochs: usize = value("--epochs").map_or(Ok(2), |v| v.parse())?;
    let batches: Option<usize> = value("--batches").map(|v| v.parse()).transpose()?;
    let beta: f32 = value("--beta").map_or(Ok(TrainConfig::default().beta), |v| v.parse())?;
    let out = value("--out").unwrap_or_else(|| "out".to_string());

    let data = FashionMnist::load()?;
    let (store, vae) = build(0, VaeConfig::default())?;
    println!(
        "VAE: {} parameters; 32x32 images -> 4x8x8 latents",
        store.num_elements()
    );
    let cfg = TrainConfig {
        epochs,
        batches_per_epoch: batches,
        beta,
        ..Default::default()
    };
    let t = Instant::now();
    let report = train(&vae, &store, &data.train, cfg)?;
    let secs = t.elapsed().as_secs_f64();
    let steps = report.fit.steps;
    let last: Vec<&(f32, f32)> = report.terms.iter().rev().take(50).collect();
    let k = last.len().max(1) as f32;
    let (mse_tail, kl_tail) = last
        .iter()
        .fold((0.0, 0.0), |(a, b), (m, kl)| (a + m / k, b + kl / k));
    println!(
        "trained {steps} steps of {} in {secs:.1} s ({:.0} ms/step); last 50 batches: mse {mse_tail:.5}, kl {kl_tail:.1} nats/image",
        cfg.batch_size,
        1000.0 * secs / steps.max(1) as f64
    );

    let n = data.test.len();
    let t = Instant::now();
    let mse = reconstruction_mse(&vae, &data.test, n)?;
    let baseline = mean_image_mse(&data.train, &data.test, n)?;
    println!(
        "test reconstruction MSE over {n} images: {mse:.5} (RMSE {:.4}); mean-image baseline {baseline:.5}, {:.1}x lower ({:.1} s)",
        mse.sqrt(),
        baseline / mse,
        t.elapsed().as_secs_f64()
    );

    std::fs::create_dir_all(&out)?;
    let grid = reconstruction_grid(&vae, &data.test, 8, 8)?;
    save_image_unit(format!("{out}/06-reconstructions.png"), &grid)?;
    let mut rng = TorchGenerator::manual_seed(1);
    let s = samples(&vae, 64, &mut rng)?;
    let vals = s.to_vec()?;
    let (lo, hi) = vals
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    println!(
        "64 samples from N(0, 1) latents: pixels in [{lo:.4}, {hi:.4}], variance across samples {:.4} (test images: {:.4})",
        across_batch_variance(&s)?,
        across_batch_variance(&data.test.batch_tensor(&(0..64).collect::<Vec<_>>(), 2)?)?
    );
    save_image_unit(format!("{out}/06-samples.png"), &image_grid(&s, 8, 8)?)?;
    println!(
        "wrote {out}/06-reconstructions.png ({}x{}: input | reconstruction pairs) and {out}/06-samples.png (256x256)",
        grid.dims()[2],
        grid.dims()[1]
    );
    Ok(())
}
