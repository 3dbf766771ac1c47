//! Training with the parameters on wgpu: an MLP's forward, backward (autodiff's
//! derivative kernels included) and AdamW / SGD steps (the fused kernels of
//! `tensor::ops::optim`, their state on the GPU), with an EMA, give the same
//! parameters as the same run on the CPU (1e-5), also when checkpointed halfway and
//! resumed into a fresh GPU model; every parameter, moment and shadow stays on the
//! GPU. Without an adapter each test prints that it
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use autodiff::Var;
use nn::{
    load_checkpoint, save_checkpoint, Activation, AdamW, AdamWConfig, Ema, Linear, Module,
    Optimizer, ParamStore, Sequential, Sgd, SgdConfig, TrainState, VarBuilder,
};
use tensor::random::WichmannHill;
use tensor::{Device, Tensor};

/// A (3 -> 8 -> 1) GELU MLP and its store, with weights from a fixed seed, on `dev`.
fn model(dev: &Device) -> (ParamStore, Sequential) {
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(3));
    let m = Sequential::new()
        .with(Linear::new(vb.pp("0"), 3, 8, true).unwrap())
        .with(Activation::GELU)
        .with(Linear::new(vb.pp("2"), 8, 1, true).unwrap());
    let mut rng = WichmannHill::seed(11);
    for p in store.params() {
        let v = Tensor::randn(p.dims(), &mut rng)
            .unwrap()
            .mul_scalar(0.5)
            .unwrap();
        p.set(v.to_device(dev).unwrap()).unwrap();
    }
    (store, m)
}

/// AdamW (with weight decay) or SGD (with momentum) over `store`.
fn optimizer(store: &ParamStore, adam: bool) -> Box<dyn Optimizer> {
    if adam {
        let c = AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..Default::default()
        };
        Box::new(AdamW::new(store, c))
    } else {
        let c = SgdConfig {
            lr: 1e-2,
            momentum: 0.9,
            ..Default::default()
        };
        Box::new(Sgd::new(store, c))
    }
}

/// `steps` optimizer steps of a squared loss on a fixed batch; the parameters and
/// the EMA's shadows copied into a second store, all as host vectors, and whether
/// every parameter was still on `dev` after each step. With `resume_at`, the run
/// is checkpointed after that step and continued by a fresh model, optimizer and
/// EMA on `dev` loaded from the checkpoint.
fn train(
    dev: &Device,
    adam: bool,
    steps: usize,
    resume_at: Option<usize>,
) -> (Vec<Vec<f32>>, bool) {
    let (mut store, mut m) = model(dev);
    let mut rng = WichmannHill::seed(5);
    let x = Tensor::randn([16, 3], &mut rng).unwrap();
    let y = Tensor::randn([16, 1], &mut rng).unwrap();
    let (x, y) = (x.to_device(dev).unwrap(), y.to_device(dev).unwrap());
    let mut opt = optimizer(&store, adam);
    let mut ema = Ema::new(&store, 0.9).unwrap();
    let mut stayed = true;
    for step in 0..steps {
        if resume_at == Some(step) {
            let path = std::env::temp_dir().join(format!(
                "nn-wgpu-resume-{adam}-{}.safetensors",
                std::process::id()
            ));
            let state = TrainState {
                step,
                ..Default::default()
            };
            save_checkpoint(&path, &store, &*opt, Some(&ema), &state).unwrap();
            (store, m) = model(dev);
            opt = optimizer(&store, adam);
            ema = Ema::new(&store, 0.9).unwrap();
            let back = load_checkpoint(&path, &store, &mut *opt, Some(&mut ema)).unwrap();
            assert_eq!(back.step, step);
            stayed &= store.params().iter().all(|p| p.value().device() == *dev);
            std::fs::remove_file(&path).unwrap();
        }
        let pred = m.forward(&Var::constant(x.clone())).unwrap();
        let loss = nn::mse_loss(&pred, &Var::constant(y.clone())).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads).unwrap();
        ema.update().unwrap();
        stayed &= store.params().iter().all(|p| p.value().device() == *dev);
        stayed &= store
            .params()
            .iter()
            .all(|p| ema.shadow(p.name()).unwrap().device() == *dev);
    }
    let (shadow_store, _) = model(dev);
    ema.copy_to(&shadow_store).unwrap();
    stayed &= shadow_store
        .params()
        .iter()
        .all(|p| p.value().device() == *dev);
    let values = store
        .params()
        .iter()
        .chain(shadow_store.params().iter())
        .map(|p| p.value().to_vec().unwrap())
        .collect();
    (values, stayed)
}

#[test]
fn training_on_wgpu_matches_the_cpu_and_stays_there() {
    let gpu = match Device::wgpu() {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    for adam in [true, false] {
        let (want, on_cpu) = train(&Device::Cpu, adam, 4, None);
        for resume_at in [None, Some(2)] {
            let (got, on_gpu) = train(&gpu, adam, 4, resume_at);
            let what = format!("adam {adam}, resumed at {resume_at:?}");
            assert!(on_cpu && on_gpu, "{what}: a parameter changed device");
            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(d <= 1e-5, "{what}: tensor {i} differs by {d}");
            }
        }
    }
}
