//! Training with the parameters on wgpu: an MLP's forward, backward (autodiff's
//! derivative kernels included) and AdamW / SGD steps (the fused kernels of
//! `tensor::ops::optim`, their state on the GPU), with an EMA, give the same
//! parameters as the same run on the CPU (1e-5), and every parameter and shadow
//! copied back stays on the GPU. Without an adapter each test prints that it
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use autodiff::Var;
use nn::{
    Activation, AdamW, AdamWConfig, Ema, Linear, Module, Optimizer, ParamStore, Sequential, Sgd,
    SgdConfig, VarBuilder,
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

/// `steps` optimizer steps of a squared loss on a fixed batch; the parameters and
/// the EMA's shadows copied into a second store, all as host vectors, and whether
/// every parameter was still on `dev` after each step.
fn train(dev: &Device, adam: bool, steps: usize) -> (Vec<Vec<f32>>, bool) {
    let (store, m) = model(dev);
    let mut rng = WichmannHill::seed(5);
    let x = Tensor::randn([16, 3], &mut rng).unwrap();
    let y = Tensor::randn([16, 1], &mut rng).unwrap();
    let (x, y) = (x.to_device(dev).unwrap(), y.to_device(dev).unwrap());
    let mut opt: Box<dyn Optimizer> = if adam {
        let c = AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..Default::default()
        };
        Box::new(AdamW::new(&store, c))
    } else {
        let c = SgdConfig {
            lr: 1e-2,
            momentum: 0.9,
            ..Default::default()
        };
        Box::new(Sgd::new(&store, c))
    };
    let mut ema = Ema::new(&store, 0.9).unwrap();
    let mut stayed = true;
    for _ in 0..steps {
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
        let (want, on_cpu) = train(&Device::Cpu, adam, 4);
        let (got, on_gpu) = train(&gpu, adam, 4);
        assert!(on_cpu && on_gpu, "adam {adam}: a parameter changed device");
        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
            let d = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(d <= 1e-5, "adam {adam}: tensor {i} differs by {d}");
        }
    }
}
