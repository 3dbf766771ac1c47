//! Claims 1-13 of `lessons/10-stable-diffusion/README.md`, on the tiny
//! random-weight model `fixtures/tiny-sd` (SD 1.5's architecture and loader).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diffusion::pipelines::{GenerateParams, StableDiffusion, StepInfo};
use diffusion::schedulers::{make_scheduler, SchedulerConfig, SchedulerKind};
use lesson_10_stable_diffusion::{
    decode, denoise, encode, max_abs_diff, std_all, tiny_model_dir, Recipe,
};
use tensor::random::TorchGenerator;
use tensor::Tensor;

fn model() -> StableDiffusion {
    StableDiffusion::load(tiny_model_dir()).unwrap()
}

fn recipe<'a>(prompt: &'a str, negative: &'a str, guidance: f32) -> Recipe<'a> {
    Recipe {
        prompt,
        negative_prompt: negative,
        steps: 8,
        guidance_scale: guidance,
        seed: 42,
        latent_hw: (16, 16),
    }
}

fn params(prompt: &str, negative: &str, guidance: f64) -> GenerateParams {
    GenerateParams {
        prompts: vec![prompt.into()],
        negative_prompts: if negative.is_empty() {
            vec![]
        } else {
            vec![negative.into()]
        },
        num_inference_steps: 8,
        guidance_scale: guidance,
        seed: 42,
        width: Some(32),
        height: Some(32),
        latents_only: true,
        ..Default::default()
    }
}

#[test]
fn claim_1_prompts_become_77_token_ids() {
    let sd = model();
    let ids = sd
        .tokenizer
        .encode_padded("a photo of a cat", 77)
        .unwrap()
        .ids;
    assert_eq!(ids[..7], [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(ids.len(), 77);
    assert!(ids[7..].iter().all(|&i| i == 49407));
    let empty = sd.tokenizer.encode_padded("", 77).unwrap().ids;
    assert_eq!(empty[..2], [49406, 49407]);
}

#[test]
fn claim_2_the_causal_mask_makes_each_position_see_only_its_past() {
    let sd = model();
    let e = encode(&sd, &["a photo of a cat", "a photo of a dog"]).unwrap();
    let (cat, dog) = (e.narrow(0, 0, 1).unwrap(), e.narrow(0, 1, 1).unwrap());
    // positions 0..5 are <start> a photo of a: identical inputs and past, identical rows
    let before =
        max_abs_diff(&cat.narrow(1, 0, 5).unwrap(), &dog.narrow(1, 0, 5).unwrap()).unwrap();
    assert_eq!(before, 0.0);
    let at = max_abs_diff(&cat.narrow(1, 5, 1).unwrap(), &dog.narrow(1, 5, 1).unwrap()).unwrap();
    assert!(at > 1e-3, "the word itself differs: {at}");
}

#[test]
fn claim_3_the_empty_prompt_is_a_real_embedding() {
    let sd = model();
    let e = encode(&sd, &["", "a photo of a cat"]).unwrap();
    let empty = e.narrow(0, 0, 1).unwrap();
    assert!(std_all(&empty).unwrap() > 0.1);
    assert!(max_abs_diff(&empty, &e.narrow(0, 1, 1).unwrap()).unwrap() > 0.1);
}

#[test]
fn claim_4_noise_is_scaled_to_the_samplers_starting_variance() {
    let cfg = SchedulerConfig::stable_diffusion_v1();
    let mut euler = make_scheduler(SchedulerKind::Euler, &cfg).unwrap();
    euler.set_timesteps(30).unwrap();
    let sigma = euler.init_noise_sigma();
    assert!((sigma - 14.6146).abs() < 1e-3, "sigma_max {sigma}");
    let eps = TorchGenerator::manual_seed(0)
        .randn([1, 4, 64, 64])
        .unwrap();
    let x_t = eps.mul_scalar(sigma as f32).unwrap();
    let s = std_all(&x_t).unwrap();
    assert!((s / sigma - 1.0).abs() < 0.03, "std(x_T) = {s}");
    // the UNet sees x / sqrt(sigma^2 + 1): unit variance again
    let unet_in = euler.scale_model_input(&x_t, 0).unwrap();
    let s_in = std_all(&unet_in).unwrap();
    assert!(
        (s_in - sigma / (sigma * sigma + 1.0).sqrt()).abs() < 0.03 && (s_in - 1.0).abs() < 0.03
    );
    let mut ddim = make_scheduler(SchedulerKind::Ddim, &cfg).unwrap();
    ddim.set_timesteps(30).unwrap();
    assert_eq!(ddim.init_noise_sigma(), 1.0);
}

#[test]
fn claim_5_the_hand_written_loop_is_the_pipeline() {
    let sd = model();
    let mut s1 = make_scheduler(SchedulerKind::Pndm, &sd.scheduler_config).unwrap();
    let ours = denoise(
        &sd,
        s1.as_mut(),
        &recipe("a photo of a cat", "", 7.5),
        |_, _, _| {},
    )
    .unwrap();
    let mut s2 = make_scheduler(SchedulerKind::Pndm, &sd.scheduler_config).unwrap();
    let lib = sd
        .generate(&params("a photo of a cat", "", 7.5), s2.as_mut(), None)
        .unwrap();
    let d = max_abs_diff(&ours, &lib.latents).unwrap();
    assert!(d <= 1e-6, "hand loop vs pipeline: {d}");
    let image = decode(&sd, &ours).unwrap();
    assert_eq!(image.dims(), &[1, 3, 32, 32]);
}

#[test]
fn claim_6_guidance_scale_1_is_the_conditional_prediction_alone() {
    let sd = model();
    let mut s1 = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
    let guided_1 = denoise(&sd, s1.as_mut(), &recipe("a dress", "", 1.0), |_, _, _| {}).unwrap();
    let mut s2 = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
    let cond_only = sd
        .generate(&params("a dress", "", 1.0), s2.as_mut(), None)
        .unwrap();
    let d = max_abs_diff(&guided_1, &cond_only.latents).unwrap();
    // u + (c - u) rounds differently from c in the last bit; over 8 steps of
    // latents of size ~3 that stays ~1e-5.
    assert!(d <= 1e-4, "u + 1 (c - u) vs c: {d}");
    let mut s3 = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
    let guided_8 = denoise(&sd, s3.as_mut(), &recipe("a dress", "", 8.0), |_, _, _| {}).unwrap();
    assert!(max_abs_diff(&guided_8, &guided_1).unwrap() > 1e-2);
}

#[test]
fn claim_7_a_negative_prompt_replaces_the_empty_prompt() {
    let sd = model();
    let mut s1 = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
    let hand = denoise(
        &sd,
        s1.as_mut(),
        &recipe("a dress", "a boot", 7.5),
        |_, _, _| {},
    )
    .unwrap();
    let mut s2 = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
    let lib = sd
        .generate(&params("a dress", "a boot", 7.5), s2.as_mut(), None)
        .unwrap();
    assert!(max_abs_diff(&hand, &lib.latents).unwrap() <= 1e-6);
    let mut s3 = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
    let plain = sd
        .generate(&params("a dress", "", 7.5), s3.as_mut(), None)
        .unwrap();
    assert!(max_abs_diff(&plain.latents, &lib.latents).unwrap() > 1e-2);
}

#[test]
fn claim_8_img2img_runs_int_steps_times_strength_steps() {
    let sd = model();
    let image = TorchGenerator::manual_seed(3)
        .rand([1, 3, 32, 32])
        .unwrap()
        .affine(2.0, -1.0)
        .unwrap();
    for (strength, expect) in [(0.6, 6), (0.25, 2), (1.0, 10)] {
        let mut sched = make_scheduler(SchedulerKind::Ddim, &sd.scheduler_config).unwrap();
        let mut seen: Vec<f64> = Vec::new();
        let mut cb = |info: &StepInfo| -> diffusion::Result<Option<Tensor>> {
            seen.push(info.timestep);
            Ok(None)
        };
        let p = GenerateParams {
            init_image: Some(image.clone()),
            strength,
            num_inference_steps: 10,
            ..params("a trouser", "", 7.5)
        };
        sd.generate(&p, sched.as_mut(), Some(&mut cb)).unwrap();
        assert_eq!(seen.len(), expect, "strength {strength}");
        // DDIM with 10 leading steps of SD 1.5: 901, 801, ..., 1; img2img starts late
        assert_eq!(seen[0], 1.0 + 100.0 * (expect as f64 - 1.0));
    }
}

#[test]
fn claim_9_a_callback_sees_every_step_and_can_change_the_latents() {
    let sd = model();
    let mut sched = make_scheduler(SchedulerKind::Euler, &sd.scheduler_config).unwrap();
    let mut steps = 0;
    let mut zero_at_3 = |info: &StepInfo| -> diffusion::Result<Option<Tensor>> {
        steps += 1;
        Ok((info.step == 3).then(|| Tensor::zeros(info.latents.dims().to_vec())))
    };
    let edited = sd
        .generate(
            &params("a bag", "", 7.5),
            sched.as_mut(),
            Some(&mut zero_at_3),
        )
        .unwrap();
    assert_eq!(steps, 8);
    let mut sched = make_scheduler(SchedulerKind::Euler, &sd.scheduler_config).unwrap();
    let plain = sd
        .generate(&params("a bag", "", 7.5), sched.as_mut(), None)
        .unwrap();
    assert!(max_abs_diff(&edited.latents, &plain.latents).unwrap() > 1e-2);
}

// ---- Claims 10-13: progressive and guided distillation (`diffusion::distill`) ----

mod distill_claims {
    use std::path::PathBuf;

    use diffusion::distill::folder::{write_student_folder, StudentDefaults};
    use diffusion::distill::guided::{guided_stage_one, CondWarmup};
    use diffusion::distill::progressive::{distill_round, two_teacher_steps, RoundGrids};
    use diffusion::distill::sampler::distill_scheduler_config;
    use diffusion::distill::{DistillOptions, DrawnBatch, UnetWeights};
    use diffusion::pipelines::folder::generation_defaults;
    use diffusion::pipelines::{GenerateParams, StableDiffusion};
    use diffusion::schedulers::{make_scheduler, scheduler_from_config, SchedulerKind};
    use diffusion::train::unet::LatentSet;
    use diffusion::train::RunOptions;
    use tensor::random::TorchGenerator;

    use super::model;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("claims-distill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// 80 "images" of 4x8x8 latents: a smooth pattern per class plus a little noise.
    fn latent_set() -> LatentSet {
        let (n, per) = (80, 4 * 8 * 8);
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut mean = Vec::with_capacity(n * per);
        for &l in &labels {
            mean.extend((0..per).map(|j| (0.3 * j as f32 + f32::from(l)).sin()));
        }
        LatentSet {
            mean,
            std: vec![0.1; n * per],
            labels,
            shape: [4, 8, 8],
            scaling: 1.0,
        }
    }

    fn options(dir: &std::path::Path, steps: usize) -> DistillOptions {
        DistillOptions {
            run: RunOptions {
                steps,
                batch_size: 16,
                lr: 1e-4,
                warmup: 3,
                seed: 0,
                checkpoint: dir.join("checkpoint.safetensors"),
                checkpoint_every: 1000,
                stop_at: None,
                log_every: 0,
                progress: false,
                device: tensor::Device::Cpu,
            },
            p_empty: 0.2,
            ema_decay: 0.0,
        }
    }

    #[test]
    fn claim_10_the_target_is_two_teacher_ddim_steps_in_one() {
        let sd = model();
        let set = latent_set();
        let grids = RoundGrids::new(8).unwrap();
        let (_, teacher) = UnetWeights::of(&sd).build().unwrap();
        // Every row at student step j = 1 (t = 749): teacher steps 749 -> 624 -> 499.
        let j = 1;
        let mut batch =
            diffusion::distill::draw_batch(&sd, &set, &[0, 1, 2, 3], 9, &grids.student, 0.0, None)
                .unwrap();
        let z0 = batch.z_t.clone();
        batch = DrawnBatch {
            grid_index: vec![j; 4],
            t: vec![749; 4],
            ..batch
        };
        let (z2, x, e) = two_teacher_steps(&teacher, &grids, &batch).unwrap();
        // The same two steps with the library scheduler and the pipeline's UNet call.
        let cfg = distill_scheduler_config();
        let mut s8 = make_scheduler(SchedulerKind::Ddim, &cfg).unwrap();
        s8.set_timesteps(8).unwrap();
        let mut z = z0.clone();
        let mut gen = TorchGenerator::manual_seed(0);
        for i in [2 * j, 2 * j + 1] {
            let t = s8.timesteps()[i];
            let eps = autodiff::no_grad(|| {
                teacher.forward(
                    &autodiff::Var::constant(z.clone()),
                    t,
                    &autodiff::Var::constant(batch.ctx.clone()),
                )
            })
            .unwrap();
            z = s8.step(eps.value(), i, &z, &mut gen).unwrap().prev_sample;
        }
        assert_eq!(z.to_vec().unwrap(), z2.to_vec().unwrap());
        // One 4-step DDIM step with the target lands there (f32 round-off only).
        let mut s4 = make_scheduler(SchedulerKind::Ddim, &cfg).unwrap();
        s4.set_timesteps(4).unwrap();
        let one = s4.step(&e, j, &z0, &mut gen).unwrap();
        let d = super::max_abs_diff(&one.prev_sample, &z2).unwrap();
        println!("one student step vs two teacher steps: max abs diff {d:e}");
        assert!(d < 1e-4, "{d}");
        assert!(super::max_abs_diff(&one.pred_original_sample.unwrap(), &x).unwrap() < 1e-4);
    }

    #[test]
    fn claim_11_one_student_step_learns_two_teacher_steps() {
        let sd = model();
        let set = latent_set();
        let dir = temp("pd");
        let r = distill_round(
            &sd,
            &set,
            &UnetWeights::of(&sd),
            8,
            None,
            "pd",
            &options(&dir, 60),
            &dir.join("pd-4.safetensors"),
        )
        .unwrap();
        println!("held-out loss {:.5} -> {:.5}", r.loss_before, r.loss_after);
        assert_eq!((r.steps_run, r.student_steps), (60, 4));
        // Measured: 0.650 -> 0.438 (1.48x) in 60 steps of 16 on this random teacher.
        assert!(r.loss_after < r.loss_before / 1.3, "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claim_12_one_w_conditioned_evaluation_learns_cfg() {
        let sd = model();
        let set = latent_set();
        let dir = temp("guided");
        let (w, report) = guided_stage_one(
            &sd,
            &set,
            &UnetWeights::of(&sd),
            8,
            8,
            8.0,
            CondWarmup { steps: 0, lr: 0.0 },
            &options(&dir, 60),
            &dir.join("guided-w.safetensors"),
        )
        .unwrap();
        let r = report.unwrap();
        println!(
            "held-out loss vs CFG {:.5} -> {:.5}",
            r.loss_before, r.loss_after
        );
        assert_eq!(w.config.time_cond_proj_dim, Some(8));
        // Measured: 0.704 -> 0.484 (1.46x); before training the student is the
        // conditional teacher, so this is the gap between e_c and CFG's output.
        assert!(r.loss_after < r.loss_before / 1.3, "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claim_13_a_saved_student_loads_and_generates_in_its_steps() {
        let sd = model();
        let set = latent_set();
        let dir = temp("folder");
        let (w, _) = guided_stage_one(
            &sd,
            &set,
            &UnetWeights::of(&sd),
            8,
            8,
            8.0,
            CondWarmup { steps: 0, lr: 0.0 },
            &options(&dir, 5),
            &dir.join("guided-w.safetensors"),
        )
        .unwrap();
        let out = dir.join("student");
        let defaults = StudentDefaults {
            steps: 4,
            guidance_scale: 7.5,
        };
        write_student_folder(&out, &w, &super::tiny_model_dir(), defaults).unwrap();
        let student = StableDiffusion::load(&out).unwrap();
        let d = generation_defaults(&out).unwrap();
        let mut s = scheduler_from_config(&student.scheduler_config).unwrap();
        let mut steps = 0;
        let mut count = |_: &diffusion::pipelines::StepInfo| {
            steps += 1;
            Ok(None)
        };
        let params = GenerateParams {
            prompts: vec!["a photo of a bag".into()],
            num_inference_steps: d.num_inference_steps.unwrap(),
            guidance_scale: d.guidance_scale.unwrap(),
            num_images_per_prompt: 2,
            width: Some(32),
            height: Some(32),
            ..Default::default()
        };
        let images = student
            .generate(&params, s.as_mut(), Some(&mut count))
            .unwrap()
            .images
            .unwrap();
        assert_eq!(steps, 4);
        assert_eq!(images.dims(), &[2, 3, 32, 32]);
        assert!(images.to_vec().unwrap().iter().all(|v| v.is_finite()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
