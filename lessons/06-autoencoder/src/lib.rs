//! Lesson 06: a convolutional variational autoencoder (VAE) on Fashion-MNIST.
//!
//! An image `x: (B, 1, 32, 32)` in [0, 1] (28x28 padded by 2) goes through an
//! encoder to a *spatial* latent, a diagonal Gaussian `N(mean, exp(logvar))` with
//! `mean, logvar: (B, 4, 8, 8)` (256 numbers for 1,024 pixels, as Stable Diffusion's
//! VAE keeps 4 channels at 1/8 of the resolution), and back through a decoder:
//!
//! ```text
//! encoder  x (B,1,32,32) -conv3x3 s2-> (B,32,16,16) -GN,SiLU-conv3x3 s2-> (B,64,8,8)
//!          -GN,SiLU-conv3x3-> (B,8,8,8) = [mean | logvar]
//! sample   z = mean + exp(logvar / 2) * eps,  eps ~ N(0, 1)   (reparameterisation)
//! decoder  z (B,4,8,8) -conv3x3-> (B,64,8,8) -GN,SiLU,up2-> (B,64,16,16) -conv3x3->
//!          (B,32,16,16) -GN,SiLU,up2-> (B,32,32,32) -conv3x3-> (B,1,32,32) -sigmoid->
//! loss     mse(decoder(z), x) + beta * KL(N(mean, exp(logvar)) || N(0, 1))
//! ```
//!
//! `eps` comes from the project's [`TorchGenerator`] (torch's `randn`), so a run is
//! deterministic given its seeds. Sampling new images is decoding `z ~ N(0, 1)`.
//!
//! ```
//! use autodiff::Var;
//! use lesson_06_autoencoder::{Vae, VaeConfig};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let vae = Vae::new(VarBuilder::from_init(&store, WichmannHill::seed(0)), VaeConfig::default()).unwrap();
//! let x = Var::constant(Tensor::full([2, 1, 32, 32], 0.5));
//! let (mean, logvar) = vae.encode(&x).unwrap();
//! assert_eq!(mean.dims(), &[2, 4, 8, 8]);
//! assert_eq!(logvar.dims(), &[2, 4, 8, 8]);
//! assert_eq!(vae.decode(&mean).unwrap().dims(), &[2, 1, 32, 32]);
//! ```

use autodiff::{no_grad, Var};
use nn::{
    AdamW, AdamWConfig, BatchOutput, Conv2d, Conv2dConfig, FitReport, GroupNorm, Learner, Module,
    OneCycle, ParamStore, ProgressBar, VarBuilder,
};
use tensor::data::{Batch, Batches, ImageDataset};
use tensor::random::{TorchGenerator, WichmannHill};
use tensor::Tensor;

pub type Result<T> = std::result::Result<T, nn::NnError>;

/// Image side after padding 28x28 by 2 on each side.
pub const SIDE: usize = 32;
/// Padding applied to each 28x28 image.
pub const PAD: usize = 2;

/// Sizes of the VAE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VaeConfig {
    /// Channels of the (8x8) latent.
    pub latent_channels: usize,
    /// Channels after the first and second encoder convolutions (decoder mirrors).
    pub channels: [usize; 2],
    /// Groups of every GroupNorm.
    pub groups: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            latent_channels: 4,
            channels: [32, 64],
            groups: 8,
        }
    }
}

/// A conv, then GroupNorm and SiLU.
struct ConvBlock {
    conv: Conv2d,
    norm: GroupNorm,
}

impl ConvBlock {
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        stride: usize,
        groups: usize,
    ) -> Result<ConvBlock> {
        let config = Conv2dConfig {
            stride,
            padding: 1,
            ..Default::default()
        };
        Ok(ConvBlock {
            conv: Conv2d::new(vb.pp("conv"), cin, cout, 3, config, true)?,
            norm: GroupNorm::new(vb.pp("norm"), groups, cout, 1e-6)?,
        })
    }

    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(self.norm.forward(&self.conv.forward(x)?)?.silu()?)
    }
}

/// The VAE: encoder to `(mean, logvar)`, decoder back to pixels in (0, 1).
pub struct Vae {
    enc1: ConvBlock,
    enc2: ConvBlock,
    enc_out: Conv2d,
    dec_in: ConvBlock,
    dec_up1: ConvBlock,
    dec_out: Conv2d,
    pub config: VaeConfig,
}

impl Vae {
    /// Build (or load) the parameters under `vb`: `encoder.*`, `decoder.*`.
    pub fn new(vb: VarBuilder, config: VaeConfig) -> Result<Vae> {
        let [c1, c2] = config.channels;
        let (lc, g) = (config.latent_channels, config.groups);
        let (e, d) = (vb.pp("encoder"), vb.pp("decoder"));
        let same = Conv2dConfig::padding(1);
        Ok(Vae {
            enc1: ConvBlock::new(e.pp("down").pp(0), 1, c1, 2, g)?,
            enc2: ConvBlock::new(e.pp("down").pp(1), c1, c2, 2, g)?,
            enc_out: Conv2d::new(e.pp("conv_out"), c2, 2 * lc, 3, same, true)?,
            dec_in: ConvBlock::new(d.pp("conv_in"), lc, c2, 1, g)?,
            dec_up1: ConvBlock::new(d.pp("up").pp(0), c2, c1, 1, g)?,
            dec_out: Conv2d::new(d.pp("conv_out"), c1, 1, 3, same, true)?,
            config,
        })
    }

    /// `x: (B, 1, 32, 32)` -> `(mean, logvar)`, each `(B, latent_channels, 8, 8)`.
    pub fn encode(&self, x: &Var) -> Result<(Var, Var)> {
        let h = self.enc2.forward(&self.enc1.forward(x)?)?;
        let moments = self.enc_out.forward(&h)?;
        let mut parts = moments.chunk(2, 1)?;
        let logvar = parts.pop();
        let mean = parts.pop();
        match (mean, logvar) {
            (Some(m), Some(l)) => Ok((m, l)),
            _ => Err(nn::NnError::invalid(
                "Vae::encode",
                "chunk gave fewer than 2 parts",
            )),
        }
    }

    /// `z: (B, latent_channels, 8, 8)` -> images `(B, 1, 32, 32)` in (0, 1).
    pub fn decode(&self, z: &Var) -> Result<Var> {
        let h = self.dec_in.forward(z)?.upsample_nearest2d_scale(2)?; // (B, c2, 16, 16)
        let h = self.dec_up1.forward(&h)?.upsample_nearest2d_scale(2)?; // (B, c1, 32, 32)
        Ok(self.dec_out.forward(&h)?.sigmoid()?)
    }

    /// The VAE loss of a batch, drawing `eps` from `rng`.
    pub fn loss(&self, x: &Tensor, beta: f32, rng: &mut TorchGenerator) -> Result<VaeLoss> {
        let x = Var::constant(x.clone());
        let (mean, logvar) = self.encode(&x)?;
        let z = reparameterise(&mean, &logvar, rng)?;
        let recon = self.decode(&z)?;
        let mse = nn::mse_loss(&recon, &x)?;
        let kl = nn::kl_diag_gaussian(&mean, &logvar)?;
        let total = mse.add(&kl.mul_scalar(beta)?)?;
        Ok(VaeLoss {
            mse: mse.to_scalar()?,
            kl: kl.to_scalar()?,
            total,
        })
    }
}

/// One batch's loss, with its two terms as numbers.
pub struct VaeLoss {
    /// `mse + beta * kl`, to differentiate.
    pub total: Var,
    /// Mean squared error per pixel (pixels in [0, 1]).
    pub mse: f32,
    /// KL divergence per image, in nats (summed over the 256 latent numbers).
    pub kl: f32,
}

/// `z = mean + exp(logvar / 2) * eps` with `eps = randn` from `rng`: a sample of
/// `N(mean, exp(logvar))` through which gradients reach `mean` and `logvar`.
pub fn reparameterise(mean: &Var, logvar: &Var, rng: &mut TorchGenerator) -> Result<Var> {
    let eps = Var::constant(rng.randn(mean.dims().to_vec())?);
    Ok(mean.add(&logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)?)
}

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Batches per epoch (`None`: the whole training set, last partial batch dropped).
    pub batches_per_epoch: Option<usize>,
    pub batch_size: usize,
    /// Peak lr of the one-cycle schedule (AdamW).
    pub max_lr: f64,
    /// Weight of the KL term.
    pub beta: f32,
    /// Seeds the shuffling (plus the epoch number) and `eps`.
    pub seed: u64,
    /// Show a progress bar and per-epoch lines.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batches_per_epoch: None,
            batch_size: 64,
            max_lr: 3e-3,
            beta: 1e-4,
            seed: 0,
            progress: true,
        }
    }
}

/// What training did: the Learner's report and every batch's `(mse, kl)`.
pub struct TrainReport {
    pub fit: FitReport,
    pub terms: Vec<(f32, f32)>,
}

/// A fresh VAE with weights drawn from `WichmannHill::seed(seed)`.
pub fn build(seed: u64, config: VaeConfig) -> Result<(ParamStore, Vae)> {
    let store = ParamStore::new();
    let vae = Vae::new(
        VarBuilder::from_init(&store, WichmannHill::seed(seed)),
        config,
    )?;
    Ok((store, vae))
}

/// Train `vae` on `train` with AdamW and a one-cycle schedule.
pub fn train(
    vae: &Vae,
    store: &ParamStore,
    train: &ImageDataset,
    cfg: TrainConfig,
) -> Result<TrainReport> {
    let per_epoch_full = train.len() / cfg.batch_size.max(1);
    let per_epoch = cfg
        .batches_per_epoch
        .map_or(per_epoch_full, |b| b.min(per_epoch_full));
    let mut rng = TorchGenerator::manual_seed(cfg.seed);
    let mut terms = Vec::new();
    let fit = {
        let step = |b: &Batch| {
            let l = vae.loss(&b.images, cfg.beta, &mut rng)?;
            terms.push((l.mse, l.kl));
            Ok(BatchOutput::new(l.total, b.labels.len()))
        };
        let data = move |epoch: usize| {
            let mut order_rng = WichmannHill::seed(cfg.seed.wrapping_add(epoch as u64 + 1));
            Ok(Batches::new(train, cfg.batch_size)?
                .pad(PAD)
                .drop_last(true)
                .shuffled(&mut order_rng)
                .take(per_epoch))
        };
        let opt = AdamW::new(
            store,
            AdamWConfig {
                lr: cfg.max_lr,
                ..Default::default()
            },
        );
        let mut learner = Learner::new(store, opt, step, data)
            .schedule(OneCycle::new(cfg.max_lr, cfg.epochs * per_epoch));
        if cfg.progress {
            learner = learner.callback(ProgressBar::new());
        }
        learner.fit(cfg.epochs)?
    };
    Ok(TrainReport { fit, terms })
}

/// Mean squared error per pixel of reconstructing the first `n` images of `data`
/// (padded to 32x32) from their latent means, without sampling and without grad.
pub fn reconstruction_mse(vae: &Vae, data: &ImageDataset, n: usize) -> Result<f64> {
    let n = n.min(data.len());
    let indices: Vec<usize> = (0..n).collect();
    let mut sum = 0.0f64;
    no_grad(|| -> Result<()> {
        for chunk in indices.chunks(256) {
            let x = data.batch_tensor(chunk, PAD)?;
            let recon = vae.decode(&vae.encode(&Var::constant(x.clone()))?.0)?;
            let se = recon.value().sub(&x)?.sqr()?.sum_all()?.to_scalar()?;
            sum += f64::from(se);
        }
        Ok(())
    })?;
    Ok(sum / (n * SIDE * SIDE).max(1) as f64)
}

/// The trivial baseline: MSE per pixel of predicting every one of the first `n`
/// images of `test` by the mean image of `train` (padded to 32x32).
pub fn mean_image_mse(train: &ImageDataset, test: &ImageDataset, n: usize) -> Result<f64> {
    let mean = train.to_tensor_padded(PAD)?.mean(&[0], true)?; // (1, 1, 32, 32)
    let n = n.min(test.len());
    let indices: Vec<usize> = (0..n).collect();
    let x = test.batch_tensor(&indices, PAD)?;
    let se = x.sub(&mean)?.sqr()?.sum_all()?.to_scalar()?;
    Ok(f64::from(se) / (n * SIDE * SIDE).max(1) as f64)
}

/// A grid of `rows` rows of `pairs` (input, reconstruction) pairs side by side, from
/// the first `rows * pairs` test images: `(1, rows * 32, 2 * pairs * 32)`.
pub fn reconstruction_grid(
    vae: &Vae,
    data: &ImageDataset,
    rows: usize,
    pairs: usize,
) -> Result<Tensor> {
    let n = rows * pairs;
    let indices: Vec<usize> = (0..n).collect();
    let x = data.batch_tensor(&indices, PAD)?;
    let recon = no_grad(|| -> Result<Tensor> {
        let v = vae.decode(&vae.encode(&Var::constant(x.clone()))?.0)?;
        Ok(v.value().clone())
    })?;
    // Interleave: (n, 2, 1, 32, 32) -> (2n, 1, 32, 32), input then reconstruction.
    let both = Tensor::stack(&[x, recon], 1)?.reshape([2 * n, 1, SIDE, SIDE])?;
    Ok(tensor::io::image::image_grid(&both, rows, 2 * pairs)?)
}

/// Decode `n` latents drawn from `N(0, 1)` with `rng`: `(n, 1, 32, 32)` in (0, 1).
pub fn samples(vae: &Vae, n: usize, rng: &mut TorchGenerator) -> Result<Tensor> {
    let lc = vae.config.latent_channels;
    let z = Var::constant(rng.randn([n, lc, SIDE / 4, SIDE / 4])?);
    no_grad(|| Ok(vae.decode(&z)?.value().clone()))
}

/// Per-pixel variance across a batch `(n, 1, H, W)`, averaged over pixels: how much
/// the images differ from each other (0 for n copies of one image).
pub fn across_batch_variance(images: &Tensor) -> Result<f64> {
    let mean = images.mean(&[0], true)?;
    let v = images.sub(&mean)?.sqr()?.mean_all()?.to_scalar()?;
    Ok(f64::from(v))
}
