//! Lesson 05: training an MLP and a small CNN on Fashion-MNIST with the `nn` crate's
//! `Learner` (AdamW, one-cycle schedule, cross-entropy).
//!
//! Images come in as (B, 1, 28, 28) in [0, 1] and are normalised with the training
//! set's mean 0.2860 and std 0.3530. The MLP flattens them to (B, 784); the CNN keeps
//! them as images and halves the size with stride-2 convolutions
//! (28 -> 14 -> 7 -> 4), then flattens the 128 x 4 x 4 features and classifies.
//! [`train`] is the lesson's default run; it returns the test accuracy on all 10,000
//! test images.
//!
//! ```
//! use lesson_05_training::{cnn, mlp, Arch};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! let store = ParamStore::new();
//! let _model = mlp(VarBuilder::from_init(&store, WichmannHill::seed(1))).unwrap();
//! assert_eq!(store.num_elements(), 784 * 128 + 128 + 128 * 10 + 10); // 101,770
//! let store = ParamStore::new();
//! let _model = cnn(VarBuilder::from_init(&store, WichmannHill::seed(1))).unwrap();
//! assert_eq!(store.num_elements(), Arch::Cnn.parameters());
//! ```

use std::time::Instant;

use autodiff::{no_grad, Var};
use nn::{
    Activation, AdamW, AdamWConfig, BatchOutput, Conv2d, Conv2dConfig, Learner, Linear, Module,
    OneCycle, ParamStore, ProgressBar, Recorder, Result, Sequential, VarBuilder,
};
use tensor::data::{Batch, Batches, FashionMnist, ImageDataset};
use tensor::random::WichmannHill;
use tensor::Tensor;

/// Mean and standard deviation of the Fashion-MNIST training pixels (in [0, 1]).
pub const MEAN: f32 = 0.2860;
pub const STD: f32 = 0.3530;

/// `(x - MEAN) / STD`.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.affine(1.0 / STD, -MEAN / STD)?)
}

/// Reshape (B, C, H, W) to (B, C*H*W).
struct Flatten;
impl Module for Flatten {
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(x.flatten(1, -1)?)
    }
}

/// The MLP: 784 -> 128 -> ReLU -> 10.
pub fn mlp(vb: VarBuilder) -> Result<Sequential> {
    Ok(Sequential::new()
        .with(Flatten)
        .with(Linear::new(vb.pp("0"), 784, 128, true)?)
        .with(Activation::ReLU)
        .with(Linear::new(vb.pp("2"), 128, 10, true)?))
}

/// The CNN's channels after each stride-2 convolution.
pub const CNN_CHANNELS: [usize; 3] = [32, 64, 128];

/// The CNN: three 3x3 stride-2 convolutions with ReLU (1 -> 32 -> 64 -> 128 channels,
/// 28 -> 14 -> 7 -> 4 pixels), flatten to 128 * 4 * 4 = 2048, linear 2048 -> 10.
pub fn cnn(vb: VarBuilder) -> Result<Sequential> {
    let cfg = Conv2dConfig {
        stride: 2,
        padding: 1,
        ..Default::default()
    };
    let mut seq = Sequential::new();
    let mut c_in = 1;
    for (i, &c) in CNN_CHANNELS.iter().enumerate() {
        seq.push(Conv2d::new(vb.pp(2 * i), c_in, c, 3, cfg, true)?);
        seq.push(Activation::ReLU);
        c_in = c;
    }
    seq.push(Flatten);
    seq.push(Linear::new(
        vb.pp(2 * CNN_CHANNELS.len() + 1),
        c_in * 16,
        10,
        true,
    )?);
    Ok(seq)
}

/// Which model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Mlp,
    Cnn,
}

impl Arch {
    pub fn build(self, vb: VarBuilder) -> Result<Sequential> {
        match self {
            Arch::Mlp => mlp(vb),
            Arch::Cnn => cnn(vb),
        }
    }
    /// Number of trainable numbers.
    pub fn parameters(self) -> usize {
        match self {
            Arch::Mlp => 784 * 128 + 128 + 128 * 10 + 10,
            Arch::Cnn => {
                let mut n = 0;
                let mut c_in = 1;
                for &c in &CNN_CHANNELS {
                    n += c * c_in * 9 + c;
                    c_in = c;
                }
                n + c_in * 16 * 10 + 10
            }
        }
    }
}

/// A training recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    pub epochs: usize,
    pub batch_size: usize,
    pub max_lr: f64,
    pub weight_decay: f64,
    /// Seeds the initial weights and each epoch's shuffle.
    pub seed: u64,
}

impl Recipe {
    /// The lesson's default run for `arch`.
    pub fn default_for(arch: Arch) -> Recipe {
        match arch {
            Arch::Mlp => Recipe {
                epochs: 2,
                batch_size: 128,
                max_lr: 3e-3,
                weight_decay: 1e-2,
                seed: 1,
            },
            Arch::Cnn => Recipe {
                epochs: 3,
                batch_size: 128,
                max_lr: 1e-2,
                weight_decay: 1e-2,
                seed: 1,
            },
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// Accuracy on the 10,000 test images after training.
    pub test_accuracy: f64,
    /// Wall time of training (without evaluation).
    pub train_seconds: f64,
    pub steps: usize,
}

/// Logits for `images` (B, 1, 28, 28) in [0, 1], without recording a graph.
pub fn predict(model: &dyn Module, images: &Tensor) -> Result<Tensor> {
    let x = normalize(images)?;
    no_grad(|| Ok(model.forward(&Var::constant(x))?.value().clone()))
}

/// Accuracy of `model` on all of `data`, 1,000 images at a time.
pub fn evaluate(model: &dyn Module, data: &ImageDataset) -> Result<f64> {
    let mut correct = 0;
    for batch in Batches::new(data, 1000)? {
        let batch = batch?;
        let targets: Vec<usize> = batch.labels.iter().map(|&l| usize::from(l)).collect();
        correct += nn::correct(&predict(model, &batch.images)?, &targets)?;
    }
    Ok(correct as f64 / data.len() as f64)
}

/// The loss of one batch (cross-entropy of the normalised images' logits).
pub fn batch_loss(model: &dyn Module, batch: &Batch) -> Result<BatchOutput> {
    let x = Var::constant(normalize(&batch.images)?);
    let targets: Vec<usize> = batch.labels.iter().map(|&l| usize::from(l)).collect();
    let logits = model.forward(&x)?;
    let loss = nn::cross_entropy(&logits, &targets)?;
    Ok(BatchOutput::new(loss, targets.len()).with_classes(logits.value().clone(), targets))
}

/// Train `arch` with `recipe` on the training set and measure test accuracy.
/// `progress` shows a progress bar (and per-epoch lines).
pub fn train(data: &FashionMnist, arch: Arch, recipe: Recipe, progress: bool) -> Result<RunReport> {
    let store = ParamStore::new();
    let model = arch.build(VarBuilder::from_init(
        &store,
        WichmannHill::seed(recipe.seed),
    ))?;
    let opt = AdamW::new(
        &store,
        AdamWConfig {
            lr: recipe.max_lr,
            weight_decay: recipe.weight_decay,
            ..Default::default()
        },
    );
    let steps_per_epoch = data.train.len().div_ceil(recipe.batch_size);
    let train_set = &data.train;
    let seed = recipe.seed;
    let bs = recipe.batch_size;
    let recorder = Recorder::new();
    let mut learner = Learner::new(
        &store,
        opt,
        |b: &Batch| batch_loss(&model, b),
        move |epoch| {
            let mut rng = WichmannHill::seed(seed.wrapping_mul(1000) + epoch as u64 + 1);
            Ok(Batches::new(train_set, bs)?.shuffled(&mut rng))
        },
    )
    .schedule(OneCycle::new(
        recipe.max_lr,
        recipe.epochs * steps_per_epoch,
    ))
    .callback(recorder.clone());
    if progress {
        learner = learner.callback(ProgressBar::new());
    }
    let started = Instant::now();
    let report = learner.fit(recipe.epochs)?;
    let train_seconds = started.elapsed().as_secs_f64();
    store.eval();
    let test_accuracy = evaluate(&model, &data.test)?;
    Ok(RunReport {
        train_loss: report.epochs.iter().map(|e| e.train_loss).collect(),
        test_accuracy,
        train_seconds,
        steps: report.steps,
    })
}
