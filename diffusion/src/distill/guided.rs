//! Guided distillation (Meng et al. 2023, "On Distillation of Guided Diffusion
//! Models", arXiv 2210.03142; `lessons/10-stable-diffusion`, chapter "Guided
//! distillation"). Classifier-free guidance costs two UNet evaluations per step
//! (`e_u + g (e_c - e_u)`); the guided student gives the same in one.
//!
//! Stage one, per training row (teacher frozen, student = teacher + a zero-initialised
//! `time_embedding.cond_proj`, the UNet's `time_cond_proj_dim` input as in diffusers):
//!
//! ```text
//! t ~ the 64-step trailing DDIM grid, g ~ U[0, w_max], z_t = alpha_t z0 + sigma_t noise
//! target  = e_u + g (e_c - e_u)          teacher, one batch of [uncond; cond]
//! student = unet(z_t, t, c, cond_proj(emb(g - 1)))      one evaluation
//! loss    = max(1, 1/SNR_t) |student - target|^2        (= max(SNR, 1) |x^ - x~|^2)
//! ```
//!
//! Stage one starts with `cond_warmup` steps that train `cond_proj` alone at a higher
//! learning rate (everything else frozen): the embedding is sinusoids of `1000 (g - 1)`,
//! and only its few lowest frequencies vary smoothly with g, with small amplitude, so a
//! zero-initialised projection at the network's learning rate barely moves in a short
//! run (measured: with 200 joint steps alone the student's accuracy was flat across
//! g = 0..8). Then all weights train together.
//!
//! `emb` is diffusers' `get_guidance_scale_embedding` of `g - 1` (the LCM pipeline's
//! convention, so diffusers' `LatentConsistencyModelPipeline` feeds the same input);
//! the pipeline ([`crate::pipelines::StableDiffusion::generate`]) does one conditional
//! evaluation per step for such a UNet. Timesteps are drawn from the 64-step grid
//! (every later grid is a subset of it) rather than all 1000, to spend a short CPU
//! budget where the sampler evaluates. Stage two is
//! [`super::progressive::progressive_distill`] of this student with a guidance scale
//! per row (teacher and student both conditioned on it).
//!
//! ```
//! use diffusion::distill::guided::cfg_combine;
//! use tensor::Tensor;
//! let u = Tensor::from_vec(vec![1.0, 1.0, 0.0, 0.0], [2, 2, 1, 1]).unwrap();
//! let c = Tensor::from_vec(vec![2.0, 3.0, 1.0, 1.0], [2, 2, 1, 1]).unwrap();
//! // row 0 at g = 2: 1 + 2 (2 - 1) = 3, 1 + 2 (3 - 1) = 5; row 1 at g = 0: e_u.
//! let g = cfg_combine(&u, &c, &[2.0, 0.0]).unwrap().to_vec().unwrap();
//! assert_eq!(g, vec![3.0, 5.0, 0.0, 0.0]);
//! ```

use std::path::Path;

use autodiff::Var;
use tensor::Tensor;

use crate::distill::progressive::held_out_indices;
use crate::distill::sampler::{distill_scheduler_config, truncated_snr_scale, DdimGrid};
use crate::distill::{
    draw_batch, guidance_embedding, mean_loss, probe_batches, student_eps, student_from,
    teacher_eps, train_student, weighted_loss, DistillOptions, DrawnBatch, UnetWeights,
};
use crate::error::{DiffusionError, Result};
use crate::models::UNet2DConditionModel;
use crate::pipelines::StableDiffusion;
use crate::train::unet::LatentSet;

/// `e_u + g_r (e_c - e_u)` with one guidance scale per row.
pub fn cfg_combine(e_u: &Tensor, e_c: &Tensor, g: &[f64]) -> Result<Tensor> {
    let b = g.len();
    let (u, c) = (e_u.contiguous()?.to_vec()?, e_c.contiguous()?.to_vec()?);
    if u.len() != c.len() || e_u.dims().first() != Some(&b) {
        return Err(DiffusionError::invalid(
            "cfg_combine",
            format!(
                "shapes {:?} and {:?} for {b} scales",
                e_u.dims(),
                e_c.dims()
            ),
        ));
    }
    let per = u.len() / b.max(1);
    let out: Vec<f32> = (0..u.len())
        .map(|j| {
            let g = g[j / per.max(1)] as f32;
            u[j] + g * (c[j] - u[j])
        })
        .collect();
    Ok(Tensor::from_vec(out, e_u.dims().to_vec())?)
}

/// The teacher's classifier-free guided epsilon for the batch (one `[uncond; cond]`
/// evaluation of `2B` rows), each row at its own scale.
pub fn teacher_cfg(teacher: &UNet2DConditionModel, batch: &DrawnBatch) -> Result<Tensor> {
    let b = batch.t.len();
    let z = Tensor::cat(&[&batch.z_t, &batch.z_t], 0)?;
    let ctx = Tensor::cat(&[&batch.ctx_uncond, &batch.ctx], 0)?;
    let t: Vec<i64> = batch.t.iter().chain(&batch.t).copied().collect();
    let e = teacher_eps(teacher, &z, &t, &ctx, None)?;
    cfg_combine(&e.narrow(0, 0, b)?, &e.narrow(0, b, b)?, &batch.guidance)
}

/// Stage one's loss: the student's single w-conditioned evaluation against the
/// teacher's guided output.
pub fn stage_one_loss(
    teacher: &UNet2DConditionModel,
    student: &UNet2DConditionModel,
    grid: &DdimGrid,
    batch: &DrawnBatch,
) -> Result<Var> {
    let target = teacher_cfg(teacher, batch)?;
    let w = guidance_embedding(student, &batch.guidance)?;
    if w.is_none() {
        return Err(DiffusionError::invalid(
            "guided distillation",
            "the student has no time_cond_proj_dim",
        ));
    }
    let pred = student_eps(student, &batch.z_t, &batch.t, &batch.ctx, w.as_ref())?;
    weighted_loss(&pred, &target, &truncated_snr_scale(grid, &batch.t)?)
}

/// What stage one did: held-out loss before/after, steps, time.
#[derive(Clone, Debug, PartialEq)]
pub struct StageOneReport {
    pub loss_before: f64,
    pub loss_after: f64,
    pub steps_run: usize,
    pub seconds: f64,
}

/// The `cond_proj`-only warm-up of stage one: steps and learning rate (0 steps: none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CondWarmup {
    pub steps: usize,
    pub lr: f64,
}

/// Stage one: train a w-conditioned copy of `teacher_w` (`cond_dim` wide guidance
/// embedding) on timesteps of the `grid_steps` grid with `g ~ U[0, w_max]`: first
/// `warmup.steps` of `cond_proj` alone at `warmup.lr`, then `opts.run.steps` of all
/// weights; keeps the student in `keep` (f32). A finished `keep` is reused.
#[allow(clippy::too_many_arguments)]
pub fn guided_stage_one(
    sd: &StableDiffusion,
    set: &LatentSet,
    teacher_w: &UnetWeights,
    cond_dim: usize,
    grid_steps: usize,
    w_max: f64,
    warmup: CondWarmup,
    opts: &DistillOptions,
    keep: &Path,
) -> Result<(UnetWeights, Option<StageOneReport>)> {
    let (_, probe_student) = student_from(teacher_w, Some(cond_dim))?;
    let config = probe_student.config().clone();
    if keep.is_file() {
        println!("guided stage one already done ({})", keep.display());
        let tensors = tensor::io::load(keep)?;
        return Ok((UnetWeights { tensors, config }, None));
    }
    let grid = DdimGrid::new(&distill_scheduler_config(), grid_steps)?;
    let (teacher_store, teacher) = teacher_w.build()?;
    teacher_store.eval();
    let (store, student) = student_from(teacher_w, Some(cond_dim))?;
    let held_out = held_out_indices(set, opts.run.batch_size);
    let probe = probe_batches(
        sd,
        set,
        &held_out,
        opts.run.seed ^ 0xe7a1,
        &grid,
        opts.p_empty,
        Some(w_max),
    )?;
    let probe_loss = |s: &UNet2DConditionModel| -> Result<f64> {
        mean_loss(&probe, |b| {
            autodiff::no_grad(|| stage_one_loss(&teacher, s, &grid, b))
        })
    };
    let loss_before = probe_loss(&student)?;
    let n = set.len() - held_out.len();
    let mut loss = |b: &crate::train::data::BatchPlan| {
        let batch = draw_batch(
            sd,
            set,
            &b.indices,
            b.seed,
            &grid,
            opts.p_empty,
            Some(w_max),
        )?;
        stage_one_loss(&teacher, &student, &grid, &batch)
    };
    let (mut seconds, mut steps_run) = (0.0, 0);
    if warmup.steps > 0 {
        let mut o = opts.clone();
        o.run.steps = warmup.steps;
        o.run.lr = warmup.lr;
        o.run.warmup = o.run.warmup.min(warmup.steps / 4);
        o.run.checkpoint = o.run.checkpoint.with_extension("cond.safetensors");
        store.freeze("")?;
        store.unfreeze("time_embedding.cond_proj")?;
        let s = train_student(&store, n, &o, &mut loss)?;
        store.unfreeze("")?;
        (seconds, steps_run) = (s.seconds, s.steps_run);
    }
    store.train();
    let summary = train_student(&store, n, opts, &mut loss)?;
    store.eval();
    let loss_after = probe_loss(&student)?;
    let tensors = store.tensors();
    tensor::io::save(
        keep,
        tensors.iter().map(|(k, v)| (k, v)),
        tensor::io::DType::F32,
    )?;
    println!(
        "guided stage one: held-out loss {loss_before:.5} -> {loss_after:.5} ({} steps, {:.0} s)",
        summary.steps_run + steps_run,
        summary.seconds + seconds
    );
    Ok((
        UnetWeights {
            tensors: tensors.into_iter().collect(),
            config,
        },
        Some(StageOneReport {
            loss_before,
            loss_after,
            steps_run: summary.steps_run + steps_run,
            seconds: summary.seconds + seconds,
        }),
    ))
}
