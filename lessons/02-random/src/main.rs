//! Lesson 02-random: prints each claim of the README with the numbers behind it, and
//! writes a histogram of 10,000 normal draws as a PNG.
//!
//! ```text
//! cargo run --release -p lesson-02-random [-- PATH [--force]]
//! ```
//! PATH defaults to `out/02-random-histogram.png` (created, overwritten on re-runs).
//! An existing file at a PATH you give is only replaced with `--force`.

use std::path::PathBuf;

use lesson_02_random::{ascii, mean_std, render, write_png_atomic, Histogram, SEED};
use tensor::random::{draw_in_forked_child, NaiveWichmannHill, TorchGenerator, WichmannHill};
use tensor::{Rng, Tensor};

const DEFAULT_OUT: &str = "out/02-random-histogram.png";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = None;
    let mut force = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--force" => force = true,
            "-h" | "--help" => {
                println!("usage: lesson-02-random [PATH] [--force]   (PATH default {DEFAULT_OUT})");
                return Ok(());
            }
            _ if out.is_none() && !arg.starts_with('-') => out = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?} (try --help)").into()),
        }
    }
    let user_path = out.is_some();
    let out = out.unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    if user_path && out.exists() && !force {
        return Err(format!("{} exists; pass --force to replace it", out.display()).into());
    }

    println!("1. Wichmann-Hill as in the course (tensor/src/random/wichmann_hill.rs)");
    let mut rng = NaiveWichmannHill::seed(SEED);
    println!("   seed({SEED}) -> state {:?}", rng.state());
    let ten: Vec<f64> = (0..10).map(|_| rng.uniform()).collect();
    for chunk in ten.chunks(5) {
        println!("   {chunk:?}");
    }
    println!("   state after ten draws {:?}", rng.state());
    let mut rng = NaiveWichmannHill::seed(SEED);
    let mean = (0..10_000).map(|_| rng.uniform()).sum::<f64>() / 10_000.0;
    println!("   mean of the first 10,000 draws {mean:.14}");

    println!("\n2. The fork bug: a copied state repeats the stream (fork in a real child)");
    let mut naive = NaiveWichmannHill::seed(SEED);
    for _ in 0..3 {
        naive.uniform();
    }
    let (_, child) = draw_in_forked_child(&mut naive)?;
    println!(
        "   after 3 draws: parent {}, child {child}",
        naive.uniform()
    );

    println!(
        "\n3. The fix: re-derive from (seed, pid) in the child (tensor/src/random/fork_safe.rs)"
    );
    let mut safe = WichmannHill::seed(SEED);
    for _ in 0..3 {
        safe.uniform();
    }
    let (pid, child) = draw_in_forked_child(&mut safe)?;
    let predicted = safe.forked_stream(pid).uniform();
    println!(
        "   after 3 draws: parent {}, child (pid {pid}) {child}",
        safe.uniform()
    );
    println!("   the parent's prediction for (seed, {pid}): {predicted}");
    let mut root = WichmannHill::seed(SEED);
    let firsts: Vec<f64> = (0..3).map(|_| root.split().uniform()).collect();
    println!("   split() streams for workers, first draws: {firsts:?}");

    println!("\n4. Box-Muller normals (tensor/src/random/normal.rs)");
    let x = Tensor::randn([10_000], &mut WichmannHill::seed(SEED))?.to_vec()?;
    let (m, s) = mean_std(&x);
    println!("   10,000 draws: mean {m:.4}, std {s:.4}");
    let within = |k: f32| x.iter().filter(|v| v.abs() < k).count() as f64 / x.len() as f64;
    println!(
        "   within 1/2/3 std: {:.4} {:.4} {:.4} (normal: 0.6827 0.9545 0.9973)",
        within(1.0),
        within(2.0),
        within(3.0)
    );

    println!("\n5. torch-compatible randn (tensor/src/random/torch.rs, mt19937.rs)");
    let latents = TorchGenerator::manual_seed(100)
        .randn([1, 4, 64, 64])?
        .to_vec()?;
    println!(
        "   manual_seed(100); randn(1,4,64,64)[:4] = {:?}",
        &latents[..4]
    );

    println!("\n6. The histogram of the 10,000 normals (40 bins over [-4, 4))");
    let h = Histogram::new(&x, -4.0, 4.0, 40)?;
    for line in ascii(&h, 2, 50) {
        println!("   {line}");
    }
    println!("   outside [-4, 4): {} below, {} above", h.below, h.above);
    let (chi2, dof) = h.chi_square_vs_normal();
    println!("   chi-square vs the normal density: {chi2:.1} over {dof} bins");
    let img = render(&h, 800, 450)?;
    write_png_atomic(&img, &out)?;
    println!(
        "   wrote {} ({}x{})",
        out.display(),
        img.width(),
        img.height()
    );
    Ok(())
}
