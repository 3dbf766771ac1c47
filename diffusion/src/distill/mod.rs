//! Distillation of the sampler into fewer steps (issue 8; `lessons/10-stable-diffusion`,
//! chapters "Progressive distillation" and "Guided distillation"):
//!
//! - [`progressive`]: Salimans & Ho 2022 (arXiv 2202.00512), Algorithm 2. A student,
//!   first a copy of the teacher, learns to do in one DDIM step what the teacher does
//!   in two ([`sampler::distill_target`]); it then becomes the teacher and the step
//!   count halves again: 64 -> 32 -> 16 -> 8 -> 4.
//! - [`guided`]: Meng et al. 2023 (arXiv 2210.03142). Stage one: a student with a
//!   guidance embedding (`time_cond_proj_dim`) learns the teacher's classifier-free
//!   guided output `e_u + g (e_c - e_u)` for g ~ U[0, 8] in *one* evaluation; stage
//!   two: progressive distillation of that student.
//!
//! Shared here: drawing a batch ([`draw_batch`]: clean latents of training images,
//! noised to a grid timestep per row, captions with the empty prompt at `p_empty`,
//! encoded by the frozen text encoder), the frozen teacher's evaluation
//! ([`teacher_eps`]), a student built from the teacher's weights ([`student_from`]),
//! the loss ([`weighted_loss`]) and the training run ([`train_student`], which is
//! `train::run`: AdamW, warm-up + cosine, EMA, progress bar, resumable atomic
//! checkpoints). Every tensor is `(B, 4, h, w)` latents; contexts `(B, 77, D)`.
//!
//! ```
//! use diffusion::distill::sampler::{distill_scheduler_config, DdimGrid};
//! // Halving keeps the grid: the 32-step timesteps are every other 64-step one.
//! let cfg = distill_scheduler_config();
//! let (g64, g32) = (DdimGrid::new(&cfg, 64).unwrap(), DdimGrid::new(&cfg, 32).unwrap());
//! assert!((0..32).all(|j| g32.timesteps[j] == g64.timesteps[2 * j]));
//! ```

pub mod folder;
pub mod guided;
pub mod progressive;
pub mod sampler;

use std::collections::BTreeMap;

use autodiff::Var;
use nn::{AdamW, AdamWConfig, BatchOutput, Ema, Learner, ParamStore, VarBuilder};
use tensor::random::{TorchGenerator, WichmannHill};
use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::models::embeddings::get_guidance_scale_embedding;
use crate::models::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::pipelines::StableDiffusion;
use crate::train::captions::caption;
use crate::train::data::{epoch_batches, BatchPlan};
use crate::train::latents::clean_latents;
use crate::train::unet::LatentSet;
use crate::train::vae::to_nn;
use crate::train::{run, warmup_cosine, RunOptions, TrainSummary};
use sampler::DdimGrid;

/// A UNet's weights (f32, diffusers key names) and config: a teacher or a student.
#[derive(Clone, Debug)]
pub struct UnetWeights {
    pub tensors: BTreeMap<String, Tensor>,
    pub config: UNet2DConditionConfig,
}

impl UnetWeights {
    /// The weights of a loaded pipeline's UNet.
    pub fn of(sd: &StableDiffusion) -> UnetWeights {
        UnetWeights {
            tensors: sd.unet_params.tensors().into_iter().collect(),
            config: sd.unet.config().clone(),
        }
    }

    /// Build the model in a fresh store.
    pub fn build(&self) -> Result<(ParamStore, UNet2DConditionModel)> {
        student_from(self, None)
    }
}

/// A student: the teacher's weights in a new store; with `add_cond = Some(d)` the
/// config gains `time_cond_proj_dim = d` and `time_embedding.cond_proj.weight`
/// starts at zero, so the student starts out computing exactly what the teacher does.
pub fn student_from(
    teacher: &UnetWeights,
    add_cond: Option<usize>,
) -> Result<(ParamStore, UNet2DConditionModel)> {
    let mut tensors = teacher.tensors.clone();
    let mut config = teacher.config.clone();
    if let Some(d) = add_cond {
        let c0 = config.block_out_channels.first().copied().unwrap_or(0);
        config.time_cond_proj_dim = Some(d);
        tensors.insert(
            "time_embedding.cond_proj.weight".into(),
            Tensor::zeros([c0, d]),
        );
    }
    let store = ParamStore::new();
    let vb = VarBuilder::from_tensors(&store, tensors, "teacher weights");
    let unet = UNet2DConditionModel::new(vb.clone(), &config)?;
    vb.finish()?;
    Ok((store, unet))
}

/// One training batch of distillation.
pub struct DrawnBatch {
    /// Noisy latents `z_t = alpha_t z0 + sigma_t noise`, `(B, C, h, w)`.
    pub z_t: Tensor,
    /// Each row's index into the grid, and its timestep.
    pub grid_index: Vec<usize>,
    pub t: Vec<i64>,
    /// Text embeddings of the captions `(B, 77, D)` and of the empty prompt.
    pub ctx: Tensor,
    pub ctx_uncond: Tensor,
    /// Guidance scale per row (all 0 unless `w_max` was given).
    pub guidance: Vec<f64>,
}

/// Draw the batch `indices` of `set` with `seed`: posterior samples, noise, a grid
/// index per row (uniform over `grid`), a guidance scale `g ~ U[0, w_max]` per row when
/// `w_max` is set, and captions (empty with probability `p_empty`).
pub fn draw_batch(
    sd: &StableDiffusion,
    set: &LatentSet,
    indices: &[usize],
    seed: u64,
    grid: &DdimGrid,
    p_empty: f64,
    w_max: Option<f64>,
) -> Result<DrawnBatch> {
    let per: usize = set.shape.iter().product();
    let b = indices.len();
    let mut gen = TorchGenerator::manual_seed(seed);
    let mut e = vec![0.0f32; b * per];
    gen.normal_fill(&mut e);
    let mut noise = vec![0.0f32; b * per];
    gen.normal_fill(&mut noise);
    let n = grid.len();
    let grid_index: Vec<usize> = (0..b)
        .map(|_| ((gen.uniform_f64() * n as f64) as usize).min(n.saturating_sub(1)))
        .collect();
    let guidance: Vec<f64> = (0..b)
        .map(|_| w_max.map_or(0.0, |w| gen.uniform_f64() * w))
        .collect();
    let z0 = clean_latents(set, indices, &e)?;
    let t: Vec<i64> = grid_index.iter().map(|&i| grid.timesteps[i]).collect();
    let mut z = vec![0.0f32; b * per];
    for (k, &tk) in t.iter().enumerate() {
        let (a, s) = grid.alpha_sigma(tk)?;
        for j in k * per..(k + 1) * per {
            z[j] = a * z0[j] + s * noise[j];
        }
    }
    let mut rng = WichmannHill::seed(seed);
    let captions = indices
        .iter()
        .map(|&i| caption(usize::from(set.labels[i]), &mut rng, p_empty))
        .collect::<Result<Vec<_>>>()?;
    let ctx = sd.encode_text(&captions)?;
    let ctx_uncond = sd.encode_text(&vec![String::new(); b])?;
    let shape = [b, set.shape[0], set.shape[1], set.shape[2]];
    Ok(DrawnBatch {
        z_t: Tensor::from_vec(z, shape)?,
        grid_index,
        t,
        ctx,
        ctx_uncond,
        guidance,
    })
}

/// Batches drawn on the held-out images for the before/after loss of a round:
/// [`PROBE_BATCHES`] draws (noise, timesteps, captions) from seeds derived from `seed`.
#[allow(clippy::too_many_arguments)]
pub fn probe_batches(
    sd: &StableDiffusion,
    set: &LatentSet,
    held_out: &[usize],
    seed: u64,
    grid: &DdimGrid,
    p_empty: f64,
    w_max: Option<f64>,
) -> Result<Vec<DrawnBatch>> {
    (0..PROBE_BATCHES as u64)
        .map(|k| {
            draw_batch(
                sd,
                set,
                held_out,
                seed.wrapping_add(k),
                grid,
                p_empty,
                w_max,
            )
        })
        .collect()
}

/// How many held-out batches measure a round's loss (the loss is heavy-tailed: rows
/// at t = 999 weigh up to 212 times more than low-noise ones).
pub const PROBE_BATCHES: usize = 4;

/// The mean of `loss` over `batches`.
pub fn mean_loss(
    batches: &[DrawnBatch],
    mut loss: impl FnMut(&DrawnBatch) -> Result<Var>,
) -> Result<f64> {
    let mut sum = 0.0;
    for b in batches {
        let l = loss(b)?;
        sum += f64::from(l.value().to_vec()?.first().copied().unwrap_or(f32::NAN));
    }
    Ok(sum / batches.len().max(1) as f64)
}

/// The guidance embedding a w-conditioned UNet takes for scales `g` (diffusers' LCM
/// convention: `get_guidance_scale_embedding(g - 1)`); `None` for a plain UNet.
pub fn guidance_embedding(unet: &UNet2DConditionModel, g: &[f64]) -> Result<Option<Tensor>> {
    match unet.config().time_cond_proj_dim {
        Some(d) => {
            let w: Vec<f64> = g.iter().map(|g| g - 1.0).collect();
            Ok(Some(get_guidance_scale_embedding(&w, d)?))
        }
        None => Ok(None),
    }
}

/// The frozen teacher's epsilon at `z` (one timestep per row), without gradients.
pub fn teacher_eps(
    unet: &UNet2DConditionModel,
    z: &Tensor,
    t: &[i64],
    ctx: &Tensor,
    w_embedding: Option<&Tensor>,
) -> Result<Tensor> {
    let ts: Vec<f64> = t.iter().map(|&t| t as f64).collect();
    let cond = w_embedding.map(|w| Var::constant(w.clone()));
    let out = autodiff::no_grad(|| {
        unet.forward_with_cond(
            &Var::constant(z.clone()),
            &ts,
            &Var::constant(ctx.clone()),
            cond.as_ref(),
        )
    })?;
    Ok(out.value().clone())
}

/// The student's prediction at `z` with gradients.
pub fn student_eps(
    unet: &UNet2DConditionModel,
    z: &Tensor,
    t: &[i64],
    ctx: &Tensor,
    w_embedding: Option<&Tensor>,
) -> Result<Var> {
    let ts: Vec<f64> = t.iter().map(|&t| t as f64).collect();
    let cond = w_embedding.map(|w| Var::constant(w.clone()));
    unet.forward_with_cond(
        &Var::constant(z.clone()),
        &ts,
        &Var::constant(ctx.clone()),
        cond.as_ref(),
    )
}

/// `mean((scale (pred - target))^2)` with a per-row `scale: (B, 1, 1, 1)`.
pub fn weighted_loss(pred: &Var, target: &Tensor, scale: &Tensor) -> Result<Var> {
    let s = Var::constant(scale.clone());
    let target = target.mul(scale)?;
    Ok(nn::mse_loss(&pred.mul(&s)?, &Var::constant(target))?)
}

/// Settings of a distillation beyond [`RunOptions`] (whose `steps` is the optimizer
/// steps of one round).
#[derive(Clone, Debug, PartialEq)]
pub struct DistillOptions {
    pub run: RunOptions,
    /// Fraction of empty captions.
    pub p_empty: f64,
    /// EMA decay of the student (with diffusers' warm-up).
    pub ema_decay: f64,
}

/// Train the student in `store` with `loss(batch_plan)` over `n` images, as
/// `train::run` does (AdamW without weight decay: the student starts at the teacher,
/// warm-up + cosine, gradient clipping at 1, EMA); the store ends holding the EMA.
pub fn train_student<F>(
    store: &ParamStore,
    n: usize,
    opts: &DistillOptions,
    mut loss: F,
) -> Result<TrainSummary>
where
    F: FnMut(&BatchPlan) -> Result<Var>,
{
    let o = &opts.run;
    if n < o.batch_size || o.batch_size == 0 {
        return Err(DiffusionError::invalid(
            "distill",
            format!("{n} training images for batches of {}", o.batch_size),
        ));
    }
    // The student trains on `o.device`; a teacher elsewhere is uploaded as it is used.
    store.to_device(&o.device)?;
    let opt = AdamW::new(
        store,
        AdamWConfig {
            lr: o.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    );
    let mut ema = Ema::new(store, opts.ema_decay)?;
    ema.warmup = true;
    let (bs, seed) = (o.batch_size, o.seed);
    let learner = Learner::new(
        store,
        opt,
        |b: &BatchPlan| {
            let l = loss(b).map_err(to_nn)?;
            Ok(BatchOutput::new(l, b.indices.len()))
        },
        move |epoch| {
            Ok(epoch_batches(n, bs, seed, epoch)
                .into_iter()
                .map(Ok::<_, nn::NnError>))
        },
    )
    .schedule(warmup_cosine(o.lr, o.warmup, o.steps, 0.1))
    .clip_grad_norm(1.0)
    .ema(ema);
    run(learner, o, n / bs)
}
