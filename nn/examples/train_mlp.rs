//! Train a small MLP on a synthetic regression task with a progress bar, stop it
//! partway and resume it from its checkpoint.
//!
//! ```sh
//! cargo run -p nn --release --example train_mlp -- --stop-after 300   # stops, checkpoint written
//! cargo run -p nn --release --example train_mlp -- --resume            # continues where it stopped
//! ```
//!
//! Flags: `--epochs N` (default 20), `--stop-after K` (batches), `--resume`,
//! `--checkpoint PATH` (default `train_mlp.safetensors` in the temp directory).

use std::path::PathBuf;

use autodiff::Var;
use nn::{
    Activation, AdamW, AdamWConfig, BatchOutput, Checkpointer, Learner, Linear, Module, NnError,
    OneCycle, ParamStore, ProgressBar, Sequential, StopAfter, VarBuilder,
};
use tensor::data::IndexBatches;
use tensor::random::WichmannHill;
use tensor::Tensor;

const SAMPLES: usize = 8192;
const BATCH: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    let value = |name: &str| flag(name).and_then(|i| args.get(i + 1)).cloned();
    let epochs: usize = value("--epochs").map_or(Ok(20), |v| v.parse())?;
    let stop_after: Option<usize> = value("--stop-after").map(|v| v.parse()).transpose()?;
    let path = value("--checkpoint")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("train_mlp.safetensors"));

    // y = sin(3 x0) + x1 x2 on x ~ N(0, 1)^3
    let mut rng = WichmannHill::seed(1);
    let x = Tensor::randn([SAMPLES, 3], &mut rng)?;
    let xs = x.to_vec()?;
    let ys: Vec<f32> = xs
        .chunks(3)
        .map(|p| (3.0 * p[0]).sin() + p[1] * p[2])
        .collect();
    let y = Tensor::from_vec(ys, [SAMPLES, 1])?;

    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(2));
    let model = Sequential::new()
        .with(Linear::new(vb.pp("layers").pp(0), 3, 64, true)?)
        .with(Activation::SiLU)
        .with(Linear::new(vb.pp("layers").pp(2), 64, 64, true)?)
        .with(Activation::SiLU)
        .with(Linear::new(vb.pp("layers").pp(4), 64, 1, true)?);
    println!(
        "{} parameters in {} tensors",
        store.num_elements(),
        store.len()
    );

    let step = |(xb, yb): &(Tensor, Tensor)| {
        let pred = model.forward(&Var::constant(xb.clone()))?;
        Ok(BatchOutput::new(
            nn::mse_loss(&pred, &Var::constant(yb.clone()))?,
            xb.dims()[0],
        ))
    };
    let data = |epoch: usize| {
        let (x, y) = (x.clone(), y.clone());
        let order =
            IndexBatches::shuffled(SAMPLES, BATCH, true, &mut WichmannHill::seed(epoch as u64))?;
        Ok(order
            .map(move |idx| Ok::<_, NnError>((x.index_select(0, &idx)?, y.index_select(0, &idx)?))))
    };
    let opt = AdamW::new(&store, AdamWConfig::default());
    let mut learner = Learner::new(&store, opt, step, data)
        .schedule(OneCycle::new(1e-2, epochs * (SAMPLES / BATCH)))
        .clip_grad_norm(1.0)
        .callback(ProgressBar::new())
        .callback(Checkpointer::new(&path, 100));
    if let Some(k) = stop_after {
        learner = learner.callback(StopAfter::new(k));
    }
    if flag("--resume").is_some() {
        learner.resume(&path)?;
        let s = learner.state;
        println!(
            "resumed {}: epoch {}, batch {}, step {}",
            path.display(),
            s.epoch + 1,
            s.batch,
            s.step
        );
    }
    let report = learner.fit(epochs)?;
    if report.stopped {
        learner.save_checkpoint(&path)?;
        println!(
            "stopped at step {}; resume with --resume (checkpoint {})",
            learner.state.step,
            path.display()
        );
    } else {
        println!("done: {} steps", learner.state.step);
    }
    Ok(())
}
