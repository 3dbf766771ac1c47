//! Time training steps of the lesson's CNN: forward + cross-entropy, backward, AdamW,
//! on a fixed (128, 1, 28, 28) batch, after 5 warm-up steps.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release -p lesson-05-training --example bench_train -- --batches 50
//! ```
//!
//! Prints `ms_per_batch <total> forward <f> backward <b> optimizer <o>` (means over the
//! timed batches). `benches/peers/train_cnn.py` runs this next to the same model in
//! PyTorch (single thread) and prints the ratio.

use std::time::Instant;

use autodiff::Var;
use lesson_05_training::cnn;
use nn::{AdamW, AdamWConfig, Module, Optimizer, ParamStore, VarBuilder};
use tensor::random::WichmannHill;
use tensor::Tensor;

const BATCH: usize = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batches: usize = match args.iter().position(|a| a == "--batches") {
        Some(i) => args.get(i + 1).ok_or("--batches needs a number")?.parse()?,
        None => 50,
    };
    let store = ParamStore::new();
    let model = cnn(VarBuilder::from_init(&store, WichmannHill::seed(1)))?;
    let mut opt = AdamW::new(&store, AdamWConfig::default());
    let mut rng = WichmannHill::seed(2);
    let x = Var::constant(Tensor::randn([BATCH, 1, 28, 28], &mut rng)?);
    let targets: Vec<usize> = (0..BATCH).map(|i| (i * 7) % 10).collect();
    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    for step in 0..batches + 5 {
        let t0 = Instant::now();
        let loss = nn::cross_entropy(&model.forward(&x)?, &targets)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        let t3 = Instant::now();
        if step >= 5 {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            upd += (t3 - t2).as_secs_f64();
        }
    }
    let ms = |s: f64| 1e3 * s / batches.max(1) as f64;
    println!(
        "ms_per_batch {:.3} forward {:.3} backward {:.3} optimizer {:.3}",
        ms(fwd + bwd + upd),
        ms(fwd),
        ms(bwd),
        ms(upd)
    );
    Ok(())
}
