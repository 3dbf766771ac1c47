//! The evaluation classifier: lesson 05's CNN (`lessons/05-training`) on Fashion-MNIST
//! padded to 32x32, with one hidden layer added whose 64 features serve as the
//! embedding for the Frechet distance ([`super::fid`]), as Inception's pool features
//! serve FID.
//!
//! x: (B, 1, 32, 32) in [0, 1] -> normalise -> three 3x3 stride-2 convs with ReLU
//! (32, 64, 128 channels; 32 -> 16 -> 8 -> 4) -> flatten 2048 -> linear 64 -> ReLU
//! (the features) -> linear 10 (the logits).
//!
//! ```
//! use diffusion::eval::classifier::FashionClassifier;
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! let store = ParamStore::new();
//! let _c = FashionClassifier::new(VarBuilder::from_init(&store, WichmannHill::seed(1))).unwrap();
//! assert_eq!(store.num_elements(), 320 + 18_496 + 73_856 + 131_136 + 650);
//! ```

use std::path::Path;
use std::time::Instant;

use autodiff::{no_grad, Var};
use nn::{
    AdamW, AdamWConfig, BatchOutput, Conv2d, Conv2dConfig, Learner, Linear, Module, OneCycle,
    ParamStore, ProgressBar, VarBuilder,
};
use tensor::data::{Batch, Batches, FashionMnist, ImageDataset};
use tensor::random::WichmannHill;
use tensor::Tensor;

use crate::error::Result;

/// Mean and std of the Fashion-MNIST training pixels (lesson 05).
pub const MEAN: f32 = 0.2860;
pub const STD: f32 = 0.3530;
/// Width of the feature layer.
pub const FEATURES: usize = 64;

/// The CNN.
pub struct FashionClassifier {
    pub convs: Vec<Conv2d>,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl FashionClassifier {
    /// Parameters `convs.{0,1,2}`, `fc1`, `fc2`.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let mut convs = Vec::new();
        let mut c_in = 1;
        for (i, c) in [32, 64, 128].into_iter().enumerate() {
            convs.push(Conv2d::new(vb.pp("convs").pp(i), c_in, c, 3, cfg, true)?);
            c_in = c;
        }
        Ok(FashionClassifier {
            convs,
            fc1: Linear::new(vb.pp("fc1"), c_in * 16, FEATURES, true)?,
            fc2: Linear::new(vb.pp("fc2"), FEATURES, 10, true)?,
        })
    }

    /// Load weights saved by [`train_classifier`].
    pub fn load(store: &ParamStore, path: &Path) -> Result<Self> {
        let vb = VarBuilder::from_safetensors(store, path)?;
        let c = Self::new(vb.clone())?;
        vb.finish()?;
        store.eval();
        Ok(c)
    }

    /// `x: (B, 1, 32, 32)` in [0, 1] -> `(features (B, 64), logits (B, 10))`.
    pub fn forward_features(&self, x: &Var) -> Result<(Var, Var)> {
        let mut h = x.affine(1.0 / STD, -MEAN / STD)?;
        for conv in &self.convs {
            h = conv.forward(&h)?.relu()?;
        }
        let f = self.fc1.forward(&h.flatten(1, -1)?)?.relu()?;
        let logits = self.fc2.forward(&f)?;
        Ok((f, logits))
    }

    /// Features and logits of images in [0, 1], without a graph, 500 at a time.
    pub fn embed(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = images.dims().first().copied().unwrap_or(0);
        let (mut fs, mut ls) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let len = 500.min(n - start);
            let x = Var::constant(images.narrow(0, start, len)?);
            let (f, l) = no_grad(|| self.forward_features(&x))?;
            fs.push(f.value().clone());
            ls.push(l.value().clone());
            start += len;
        }
        Ok((Tensor::cat(&fs, 0)?, Tensor::cat(&ls, 0)?))
    }
}

/// Index of the largest logit of each row of `(B, 10)`.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>> {
    let c = logits.dims().get(1).copied().unwrap_or(1).max(1);
    let v = logits.to_vec()?;
    Ok(v.chunks(c)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &x)| if x > b.1 { (i, x) } else { b },
                )
                .0
        })
        .collect())
}

/// Padded (32x32) images `[0, 1]` of a whole split.
pub fn padded(ds: &ImageDataset) -> Result<Tensor> {
    Ok(ds.to_tensor_padded(2)?)
}

/// What [`train_classifier`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifierReport {
    pub test_accuracy: f64,
    pub train_seconds: f64,
    pub steps: usize,
}

/// Train the classifier (AdamW, one-cycle, batch 128) for `epochs` and save it to
/// `out`; returns the test accuracy on all 10,000 test images.
pub fn train_classifier(
    data: &FashionMnist,
    epochs: usize,
    out: &Path,
    progress: bool,
) -> Result<ClassifierReport> {
    let store = ParamStore::new();
    let model = FashionClassifier::new(VarBuilder::from_init(&store, WichmannHill::seed(1)))?;
    let opt = AdamW::new(
        &store,
        AdamWConfig {
            lr: 1e-2,
            weight_decay: 1e-2,
            ..Default::default()
        },
    );
    let bs = 128;
    let steps = epochs * data.train.len().div_ceil(bs);
    let train = &data.train;
    let mut learner = Learner::new(
        &store,
        opt,
        |b: &Batch| {
            let targets: Vec<usize> = b.labels.iter().map(|&l| usize::from(l)).collect();
            let (_, logits) = model
                .forward_features(&Var::constant(b.images.clone()))
                .map_err(crate::train::vae::to_nn)?;
            let loss = nn::cross_entropy(&logits, &targets)?;
            Ok(BatchOutput::new(loss, targets.len()).with_classes(logits.value().clone(), targets))
        },
        move |epoch| {
            let mut rng = WichmannHill::seed(1000 + epoch as u64);
            Ok(Batches::new(train, bs)?.pad(2).shuffled(&mut rng))
        },
    )
    .schedule(OneCycle::new(1e-2, steps));
    if progress {
        learner = learner.callback(ProgressBar::new());
    }
    let started = Instant::now();
    let report = learner.fit(epochs)?;
    let train_seconds = started.elapsed().as_secs_f64();
    drop(learner);
    store.eval();
    let (_, logits) = model.embed(&padded(&data.test)?)?;
    let pred = argmax_rows(&logits)?;
    let correct = pred
        .iter()
        .zip(data.test.labels())
        .filter(|(p, &l)| **p == usize::from(l))
        .count();
    store.save(out)?;
    Ok(ClassifierReport {
        test_accuracy: correct as f64 / data.test.len() as f64,
        train_seconds,
        steps: report.steps,
    })
}
