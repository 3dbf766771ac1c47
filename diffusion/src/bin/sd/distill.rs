//! `sd distill` (progressive distillation, arXiv 2202.00512) and `sd distill-guided`
//! (guided distillation, arXiv 2210.03142) of a model folder's DDIM sampler; see
//! `diffusion::distill`. Rounds are kept in `--run-dir` (a rerun resumes), every
//! round's student is written there as a model folder (`pd-<N>/`, `guided-<N>/`) next
//! to `teacher-ddim/` (the teacher with the same sampler), and the last student goes
//! to `--out`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use diffusion::distill::folder::{write_student_folder, write_teacher_folder, StudentDefaults};
use diffusion::distill::guided::{guided_stage_one, CondWarmup};
use diffusion::distill::progressive::{halvings, progressive_distill};
use diffusion::distill::{DistillOptions, UnetWeights};
use diffusion::pipelines::StableDiffusion;
use diffusion::train::latents::latent_set;
use diffusion::train::unet::LatentSet;
use diffusion::train::{create_dir, RunOptions};
use diffusion::Result;
use tensor::data::{FashionMnist, ImageDataset};

use crate::generate::Device;

#[derive(Args, Debug, Clone)]
pub struct DistillArgs {
    /// The teacher: a diffusers model folder trained on Fashion-MNIST latents.
    #[arg(long, default_value = "diffusion/assets/fashion-sd")]
    model: PathBuf,
    /// Where the final student goes (default: `diffusion/assets/fashion-sd-pd<N>` or
    /// `fashion-sd-guided<N>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Checkpoints, kept rounds and every round's student folder.
    #[arg(long, default_value = "target/distill-run")]
    run_dir: PathBuf,
    /// The teacher's DDIM step count.
    #[arg(long, default_value_t = 64)]
    from_steps: usize,
    /// The final student's step count (from-steps halved k times).
    #[arg(long, default_value_t = 4)]
    to_steps: usize,
    /// Optimizer steps per halving.
    #[arg(long, default_value_t = 200)]
    steps_per_round: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of empty captions (the teacher was trained with 0.15).
    #[arg(long, default_value_t = 0.15)]
    p_empty: f64,
    #[arg(long, default_value_t = 0.995)]
    ema_decay: f64,
    /// Training images (the first N of Fashion-MNIST's training set).
    #[arg(long, default_value_t = 20000)]
    limit: usize,
    /// The guidance scale written into the students' generation defaults.
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
    #[arg(long)]
    no_progress: bool,
    /// Where to train: the teacher, every student and their optimizer state live
    /// there.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
}

#[derive(Args, Debug)]
pub struct DistillGuidedArgs {
    #[command(flatten)]
    common: DistillArgs,
    /// Optimizer steps of stage one (matching CFG in one evaluation). The shipped
    /// student took 2000 (with --lr 2e-4 --steps-per-round 150); 300 learned only an
    /// averaged guidance.
    #[arg(long, default_value_t = 2000)]
    stage_one_steps: usize,
    /// Guidance scales are drawn from U[0, w_max].
    #[arg(long, default_value_t = 8.0)]
    w_max: f64,
    /// Width of the guidance embedding (`time_cond_proj_dim`).
    #[arg(long, default_value_t = 64)]
    cond_dim: usize,
    /// Steps that train the guidance projection alone before stage one.
    #[arg(long, default_value_t = 100)]
    cond_warmup_steps: usize,
    /// Their learning rate.
    #[arg(long, default_value_t = 3e-3)]
    cond_lr: f64,
}

impl DistillArgs {
    fn options(&self, steps: usize) -> Result<DistillOptions> {
        Ok(DistillOptions {
            run: RunOptions {
                steps,
                batch_size: self.batch_size,
                lr: self.lr,
                warmup: self.warmup,
                seed: self.seed,
                checkpoint: self.run_dir.join("checkpoint.safetensors"),
                checkpoint_every: self.checkpoint_every,
                stop_at: None,
                log_every: self.log_every,
                progress: !self.no_progress,
                device: self.device.open()?,
            },
            p_empty: self.p_empty,
            ema_decay: self.ema_decay,
        })
    }

    /// The teacher, the training latents, and `teacher-ddim/` in the run folder.
    fn prepare(&self) -> Result<(StableDiffusion, LatentSet)> {
        halvings(self.from_steps, self.to_steps)?;
        create_dir(&self.run_dir)?;
        let sd = StableDiffusion::load(&self.model)?;
        let data = FashionMnist::load()?.train;
        let n = self.limit.min(data.len());
        let (h, w) = (data.height(), data.width());
        let ds = ImageDataset::new(
            data.images()[..n * h * w].to_vec(),
            data.labels()[..n].to_vec(),
            h,
            w,
        )?;
        // The cache is named by the VAE's weights so a retrained VAE re-encodes.
        let fp: f32 = sd
            .vae_params
            .tensors()
            .iter()
            .map(|(_, t)| t.to_vec().map(|v| v.iter().take(64).sum::<f32>()))
            .sum::<std::result::Result<f32, _>>()?;
        let cache = self
            .run_dir
            .join(format!("latents-{n}-{:08x}.safetensors", fp.to_bits()));
        let set = latent_set(&sd.vae, &ds, &cache)?;
        // Students start from the teacher's weights, so they start where it lives.
        sd.to_device(&self.device.open()?)?;
        write_teacher_folder(
            &self.run_dir.join("teacher-ddim"),
            &self.model,
            self.from_steps,
            self.guidance,
        )?;
        Ok((sd, set))
    }

    fn student_writer<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl FnMut(usize, &UnetWeights) -> Result<()> + 'a {
        move |steps, w| {
            let dir = self.run_dir.join(format!("{prefix}-{steps}"));
            write_student_folder(&dir, w, &self.model, self.defaults(steps))?;
            println!("wrote {}", dir.display());
            Ok(())
        }
    }

    fn defaults(&self, steps: usize) -> StudentDefaults {
        StudentDefaults {
            steps,
            guidance_scale: self.guidance,
        }
    }

    fn finish(&self, prefix: &str, student: &UnetWeights, started: Instant) -> Result<()> {
        let out = self.out.clone().unwrap_or_else(|| {
            Path::new("diffusion/assets").join(format!("fashion-sd-{prefix}{}", self.to_steps))
        });
        write_student_folder(&out, student, &self.model, self.defaults(self.to_steps))?;
        println!(
            "wrote {} ({} steps) in {:.0} s in total; try `sd generate --model {} \"a sneaker\"`",
            out.display(),
            self.to_steps,
            started.elapsed().as_secs_f64(),
            out.display()
        );
        Ok(())
    }
}

pub fn distill_cmd(args: DistillArgs) -> Result<()> {
    let started = Instant::now();
    let (sd, set) = args.prepare()?;
    println!(
        "distill: {} -> {} steps, {} optimizer steps of {} per halving, {} latents",
        args.from_steps,
        args.to_steps,
        args.steps_per_round,
        args.batch_size,
        set.len()
    );
    let opts = args.options(args.steps_per_round)?;
    let (student, _) = progressive_distill(
        &sd,
        &set,
        UnetWeights::of(&sd),
        args.from_steps,
        args.to_steps,
        None,
        "pd",
        &opts,
        args.student_writer("pd"),
    )?;
    args.finish("pd", &student, started)
}

pub fn distill_guided_cmd(args: DistillGuidedArgs) -> Result<()> {
    let started = Instant::now();
    let c = &args.common;
    let (sd, set) = c.prepare()?;
    println!(
        "distill-guided: stage one {} steps (g ~ U[0, {}]), then {} -> {} steps, {} per halving",
        args.stage_one_steps, args.w_max, c.from_steps, c.to_steps, c.steps_per_round
    );
    let mut opts = c.options(args.stage_one_steps)?;
    opts.run.checkpoint = c.run_dir.join("guided-w-checkpoint.safetensors");
    let (w_student, _) = guided_stage_one(
        &sd,
        &set,
        &UnetWeights::of(&sd),
        args.cond_dim,
        c.from_steps,
        args.w_max,
        CondWarmup {
            steps: args.cond_warmup_steps,
            lr: args.cond_lr,
        },
        &opts,
        &c.run_dir.join("guided-w.safetensors"),
    )?;
    c.student_writer("guided")(c.from_steps, &w_student)?;
    let opts = c.options(c.steps_per_round)?;
    let (student, _) = progressive_distill(
        &sd,
        &set,
        w_student,
        c.from_steps,
        c.to_steps,
        Some(args.w_max),
        "guided",
        &opts,
        c.student_writer("guided"),
    )?;
    c.finish("guided", &student, started)
}
