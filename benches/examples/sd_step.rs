//! One SD 1.5 UNet step at batch 2 (a CFG step: 64x64 latents, 77x768 context) or
//! one VAE decode (64x64 latents -> 512x512), full SD 1.5 configs with random weights,
//! timed in this process. `benches/peers/sd_step.py` runs it next to diffusers
//! (torch CPU) and prints the ratio and both peak RSS figures.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p benches --example sd_step -- unet 2`
//!
//! Prints one line: `component best_ms peak_rss_mib`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Instant;

use autodiff::Var;
use diffusion::models::{
    AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel,
};
use nn::{ParamStore, VarBuilder};
use tensor::random::{TorchGenerator, WichmannHill};

fn config<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name);
    diffusion::config::read_config(&path).unwrap()
}

/// Peak resident set size of this process in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("unet", String::as_str);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut g = TorchGenerator::manual_seed(0);
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
    let mut best = f64::INFINITY;
    match which {
        "unet" => {
            let cfg: UNet2DConditionConfig = config("sd15_unet.json");
            let unet = UNet2DConditionModel::new(vb, &cfg).unwrap();
            let x = Var::constant(g.randn([2, 4, 64, 64]).unwrap());
            let ctx = Var::constant(g.randn([2, 77, 768]).unwrap());
            for _ in 0..repeats {
                let t0 = Instant::now();
                let y = autodiff::no_grad(|| unet.forward(&x, 500.0, &ctx)).unwrap();
                best = best.min(t0.elapsed().as_secs_f64() * 1e3);
                assert_eq!(y.dims(), &[2, 4, 64, 64]);
            }
        }
        "vae" => {
            let cfg: AutoencoderKLConfig = config("sd15_vae.json");
            let vae = AutoencoderKL::new(vb, &cfg).unwrap();
            let z = Var::constant(g.randn([1, 4, 64, 64]).unwrap());
            for _ in 0..repeats {
                let t0 = Instant::now();
                let y = autodiff::no_grad(|| vae.decode(&z)).unwrap();
                best = best.min(t0.elapsed().as_secs_f64() * 1e3);
                assert_eq!(y.dims(), &[1, 3, 512, 512]);
            }
        }
        other => panic!("unknown component {other} (unet or vae)"),
    }
    println!("{which} {best:.1} {:.0}", peak_rss_mib());
}
