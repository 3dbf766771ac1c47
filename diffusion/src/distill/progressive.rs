//! Progressive distillation (Salimans & Ho 2022, arXiv 2202.00512, Algorithm 2) of
//! the DDIM sampler (`lessons/10-stable-diffusion`, chapter "Progressive distillation").
//!
//! One round, teacher with N steps, student (a copy of the teacher) with N/2, both
//! on diffusers' trailing DDIM grid ([`super::sampler`]), per training row:
//!
//! ```text
//! z0 = VAE latent of a training image, caption c (empty 15% of the time)
//! j ~ U{0..N/2},  t = student grid[j] = teacher grid[2j],  t1 = teacher grid[2j+1]
//! z_t  = alpha_t z0 + sigma_t noise
//! z'   = DDIM(teacher(z_t, t, c),  t  -> t - T//N)         two teacher steps
//! z''  = DDIM(teacher(z', t1, c),  t1 -> t1 - T//N)
//! x~   = (z'' - (sigma''/sigma_t) z_t) / (alpha'' - (sigma''/sigma_t) alpha_t),  t'' = t - T//(N/2)
//! loss = max(SNR_t, 1) |x^ - x~|^2,  x^ = (z_t - sigma_t student(z_t, t, c)) / alpha_t
//! ```
//!
//! The parametrisation: the network keeps predicting epsilon (it starts as a copy of an
//! epsilon-trained teacher, and the folder keeps `prediction_type: epsilon`), and the
//! loss is the paper's x-space loss with truncated-SNR weighting `max(SNR, 1)`, which
//! in epsilon space is `max(1, 1/SNR) |e^ - e~|^2` ([`super::sampler::truncated_snr_scale`]).
//! Conditioning: the teacher is distilled per caption (conditional and unconditional
//! alike), and the student is then sampled with classifier-free guidance at the
//! model's default scale, as SD is (two evaluations per step); [`super::guided`] is
//! the one-evaluation alternative. For a w-conditioned teacher (guided stage two)
//! every row also carries its guidance scale, teacher and student alike.
//!
//! ```
//! use diffusion::distill::progressive::halvings;
//! assert_eq!(halvings(64, 4).unwrap(), vec![64, 32, 16, 8]);
//! assert!(halvings(64, 3).is_err());
//! ```

use std::path::PathBuf;

use tensor::Tensor;

use crate::distill::sampler::{
    ddim_step_rows, distill_scheduler_config, distill_target, truncated_snr_scale, DdimGrid,
};
use crate::distill::{
    draw_batch, guidance_embedding, mean_loss, probe_batches, student_eps, student_from,
    teacher_eps, train_student, weighted_loss, DistillOptions, DrawnBatch, UnetWeights,
};
use crate::error::{DiffusionError, Result};
use crate::models::UNet2DConditionModel;
use crate::pipelines::StableDiffusion;
use crate::train::unet::LatentSet;

/// The teacher step counts of the rounds from `from` down to `to` (each a halving).
pub fn halvings(from: usize, to: usize) -> Result<Vec<usize>> {
    let mut n = from;
    let mut out = Vec::new();
    while n > to && n.is_multiple_of(2) {
        out.push(n);
        n /= 2;
    }
    if n != to || to == 0 {
        return Err(DiffusionError::invalid(
            "distill",
            format!("{to} steps is not {from} halved a whole number of times"),
        ));
    }
    Ok(out)
}

/// The two grids of a round and the checks that the student's is every other
/// point of the teacher's.
pub struct RoundGrids {
    pub teacher: DdimGrid,
    pub student: DdimGrid,
}

impl RoundGrids {
    pub fn new(teacher_steps: usize) -> Result<RoundGrids> {
        let cfg = distill_scheduler_config();
        let teacher = DdimGrid::new(&cfg, teacher_steps)?;
        let student = DdimGrid::new(&cfg, teacher_steps / 2)?;
        let nested = student.len() * 2 == teacher.len()
            && (0..student.len()).all(|j| student.timesteps[j] == teacher.timesteps[2 * j]);
        if !nested {
            return Err(DiffusionError::invalid(
                "distill",
                format!("the {teacher_steps}-step grid does not halve into the next one"),
            ));
        }
        Ok(RoundGrids { teacher, student })
    }
}

/// The teacher's two DDIM steps from the batch's `z_t` (rows on the student grid),
/// and the student-space target: `(z'', x~, e~)`.
pub fn two_teacher_steps(
    teacher: &UNet2DConditionModel,
    grids: &RoundGrids,
    batch: &DrawnBatch,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (tg, sg) = (&grids.teacher, &grids.student);
    let w = guidance_embedding(teacher, &batch.guidance)?;
    let i0: Vec<usize> = batch.grid_index.iter().map(|&j| 2 * j).collect();
    let t0: Vec<i64> = i0.iter().map(|&i| tg.timesteps[i]).collect();
    let p0: Vec<i64> = i0.iter().map(|&i| tg.prev(i)).collect();
    let t1: Vec<i64> = i0.iter().map(|&i| tg.timesteps[i + 1]).collect();
    let p1: Vec<i64> = i0.iter().map(|&i| tg.prev(i + 1)).collect();
    let e0 = teacher_eps(teacher, &batch.z_t, &t0, &batch.ctx, w.as_ref())?;
    let z1 = ddim_step_rows(tg, &e0, &batch.z_t, &t0, &p0)?;
    let e1 = teacher_eps(teacher, &z1, &t1, &batch.ctx, w.as_ref())?;
    let z2 = ddim_step_rows(tg, &e1, &z1, &t1, &p1)?;
    let tpp: Vec<i64> = batch.grid_index.iter().map(|&j| sg.prev(j)).collect();
    let (x, e) = distill_target(sg, &batch.z_t, &z2, &batch.t, &tpp)?;
    Ok((z2, x, e))
}

/// The distillation loss of one drawn batch (rows on the student grid).
pub fn pd_loss(
    teacher: &UNet2DConditionModel,
    student: &UNet2DConditionModel,
    grids: &RoundGrids,
    batch: &DrawnBatch,
) -> Result<autodiff::Var> {
    let (_, _, e_target) = two_teacher_steps(teacher, grids, batch)?;
    let w = guidance_embedding(student, &batch.guidance)?;
    let pred = student_eps(student, &batch.z_t, &batch.t, &batch.ctx, w.as_ref())?;
    let scale = truncated_snr_scale(&grids.student, &batch.t)?;
    weighted_loss(&pred, &e_target, &scale)
}

/// What one round did.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundReport {
    pub teacher_steps: usize,
    pub student_steps: usize,
    /// The loss on a fixed held-out batch of the round, for the initial student
    /// (= the teacher) and the trained one.
    pub loss_before: f64,
    pub loss_after: f64,
    pub steps_run: usize,
    pub seconds: f64,
    /// Where the round's student weights (f32) are kept.
    pub weights: PathBuf,
}

/// Distill `start` (with `w_max` set, a w-conditioned UNet whose rows draw their own
/// guidance) from `from` steps down to `to`, one round per halving; each round's
/// student is kept in `run_dir/{prefix}-{N}.safetensors` (a rerun skips finished rounds
/// and resumes an interrupted one from its checkpoint). Returns the final student and
/// one report per round run.
#[allow(clippy::too_many_arguments)]
pub fn progressive_distill(
    sd: &StableDiffusion,
    set: &LatentSet,
    start: UnetWeights,
    from: usize,
    to: usize,
    w_max: Option<f64>,
    prefix: &str,
    opts: &DistillOptions,
    mut on_student: impl FnMut(usize, &UnetWeights) -> Result<()>,
) -> Result<(UnetWeights, Vec<RoundReport>)> {
    let run_dir = opts
        .run
        .checkpoint
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut teacher_w = start;
    let mut reports = Vec::new();
    for n in halvings(from, to)? {
        let half = n / 2;
        let kept = run_dir.join(format!("{prefix}-{half}.safetensors"));
        if kept.is_file() {
            teacher_w = UnetWeights {
                tensors: tensor::io::load(&kept)?,
                config: teacher_w.config.clone(),
            };
            println!(
                "{prefix}: {n} -> {half} steps already done ({})",
                kept.display()
            );
            on_student(half, &teacher_w)?;
            continue;
        }
        let report = distill_round(sd, set, &teacher_w, n, w_max, prefix, opts, &kept)?;
        println!(
            "{prefix}: {n} -> {half} steps: held-out loss {:.5} -> {:.5} ({} steps, {:.0} s)",
            report.loss_before, report.loss_after, report.steps_run, report.seconds
        );
        reports.push(report);
        teacher_w = UnetWeights {
            tensors: tensor::io::load(&kept)?,
            config: teacher_w.config.clone(),
        };
        on_student(half, &teacher_w)?;
    }
    Ok((teacher_w, reports))
}

/// One round: train a copy of `teacher_w` to match two of its DDIM steps with one,
/// write the student to `keep` (f32, atomically).
#[allow(clippy::too_many_arguments)]
pub fn distill_round(
    sd: &StableDiffusion,
    set: &LatentSet,
    teacher_w: &UnetWeights,
    teacher_steps: usize,
    w_max: Option<f64>,
    prefix: &str,
    opts: &DistillOptions,
    keep: &std::path::Path,
) -> Result<RoundReport> {
    let grids = RoundGrids::new(teacher_steps)?;
    let (teacher_store, teacher) = teacher_w.build()?;
    teacher_store.eval();
    let (store, student) = student_from(teacher_w, None)?;
    let mut o = opts.clone();
    let dir = opts
        .run
        .checkpoint
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    o.run.checkpoint = dir.join(format!(
        "{prefix}-{teacher_steps}to{}-checkpoint.safetensors",
        teacher_steps / 2
    ));
    let held_out = held_out_indices(set, opts.run.batch_size);
    let probe = probe_batches(
        sd,
        set,
        &held_out,
        opts.run.seed ^ 0xe7a1,
        &grids.student,
        opts.p_empty,
        w_max,
    )?;
    let probe_loss = |s: &UNet2DConditionModel| -> Result<f64> {
        mean_loss(&probe, |b| {
            autodiff::no_grad(|| pd_loss(&teacher, s, &grids, b))
        })
    };
    let loss_before = probe_loss(&student)?;
    let n = set.len() - held_out.len();
    let summary = train_student(&store, n, &o, |b| {
        let batch = draw_batch(
            sd,
            set,
            &b.indices,
            b.seed,
            &grids.student,
            opts.p_empty,
            w_max,
        )?;
        pd_loss(&teacher, &student, &grids, &batch)
    })?;
    store.eval();
    let loss_after = probe_loss(&student)?;
    let tensors = store.tensors();
    tensor::io::save(
        keep,
        tensors.iter().map(|(k, v)| (k, v)),
        tensor::io::DType::F32,
    )?;
    Ok(RoundReport {
        teacher_steps,
        student_steps: teacher_steps / 2,
        loss_before,
        loss_after,
        steps_run: summary.steps_run,
        seconds: summary.seconds,
        weights: keep.to_path_buf(),
    })
}

/// The last `batch` images of the set: held out of training (training batches are
/// drawn from the first `len - batch`), for the before/after loss.
pub fn held_out_indices(set: &LatentSet, batch: usize) -> Vec<usize> {
    let n = set.len();
    (n.saturating_sub(batch)..n).collect()
}
