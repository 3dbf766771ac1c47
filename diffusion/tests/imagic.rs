//! Imagic (`diffusion::imagic`): input preparation, the loss draws, the UNet copy,
//! the three stages on the tiny random model `fixtures/tiny-sd`, and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;

use autodiff::Var;
use diffusion::imagic::loss::{diffusion_loss, reconstruction_loss, LossDraws};
use diffusion::imagic::metrics::{cosine, pixel_similarity, softmax_rows};
use diffusion::imagic::{copy_unet, fit_image, Imagic, ImagicConfig, Stage};
use diffusion::pipelines::StableDiffusion;
use diffusion::schedulers::betas::NoiseSchedule;
use diffusion::schedulers::{PredictionType, SchedulerConfig, SchedulerKind};
use tensor::random::TorchGenerator;
use tensor::Tensor;

fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-sd")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A deterministic test picture in [0, 1]: a bright square on black.
fn picture(c: usize, h: usize, w: usize) -> Tensor {
    let mut v = vec![0.0f32; c * h * w];
    for ch in 0..c {
        for y in h / 4..3 * h / 4 {
            for x in w / 4..3 * w / 4 {
                v[(ch * h + y) * w + x] = 0.5 + 0.4 * ((x + y + ch) % 3) as f32 / 2.0;
            }
        }
    }
    Tensor::from_vec(v, [c, h, w]).unwrap()
}

fn config() -> ImagicConfig {
    ImagicConfig {
        embed_steps: 12,
        embed_lr: 5e-2,
        finetune_steps: 12,
        finetune_lr: 1e-3,
        batch_size: 4,
        seed: 3,
        scheduler: SchedulerKind::Ddim,
        num_inference_steps: 6,
        guidance_scale: 7.5,
    }
}

struct Fitted {
    sd: StableDiffusion,
    imagic: Imagic,
    input: Tensor,
    unet_before: Vec<(String, Tensor)>,
    progress: Vec<(Stage, usize, usize)>,
}

/// Stages A and B once on the tiny model, shared by the tests below.
fn fitted() -> &'static std::sync::Mutex<Fitted> {
    static F: OnceLock<std::sync::Mutex<Fitted>> = OnceLock::new();
    F.get_or_init(|| {
        let sd = StableDiffusion::load(tiny_dir()).unwrap();
        let (h, w) = sd.default_size();
        let input = fit_image(&picture(3, h, w), (h, w), 3).unwrap();
        let unet_before = sd.unet_params.tensors();
        let mut progress = Vec::new();
        let mut cb = |s: Stage, i: usize, n: usize, _l: f32| progress.push((s, i, n));
        let imagic =
            Imagic::fit(&sd, &input, "a photo of a cat", &config(), Some(&mut cb)).unwrap();
        std::sync::Mutex::new(Fitted {
            sd,
            imagic,
            input,
            unet_before,
            progress,
        })
    })
}

#[test]
fn fit_image_pads_fashion_mnist_and_rejects_other_sizes() {
    let img = picture(1, 28, 28);
    let x = fit_image(&img, (32, 32), 1).unwrap();
    assert_eq!(x.dims(), &[1, 1, 32, 32]);
    let v = x.to_vec().unwrap();
    let src = img.to_vec().unwrap();
    // The 2-pixel border is black (-1); the inside is the image mapped to [-1, 1].
    assert!(v[..64].iter().all(|&p| p == -1.0));
    for y in 0..28 {
        for xx in 0..28 {
            assert_eq!(v[(y + 2) * 32 + xx + 2], 2.0 * src[y * 28 + xx] - 1.0);
        }
    }
    // Same size: only the range changes; grey to RGB repeats the channel.
    let same = fit_image(&picture(1, 32, 32), (32, 32), 3).unwrap();
    assert_eq!(same.dims(), &[1, 3, 32, 32]);
    assert_eq!(
        max_abs_diff(
            &same.narrow(1, 0, 1).unwrap(),
            &same.narrow(1, 2, 1).unwrap()
        ),
        0.0
    );
    // Too big, odd margin, too small, more than one image: clear errors.
    for (bad, size) in [
        (picture(1, 40, 40), (32, 32)),
        (picture(1, 29, 29), (32, 32)),
        (picture(1, 16, 16), (32, 32)),
    ] {
        let e = fit_image(&bad, size, 1).unwrap_err().to_string();
        assert!(e.contains("this model takes 32x32"), "{e}");
    }
    let two = Tensor::zeros([2, 1, 32, 32]);
    assert!(fit_image(&two, (32, 32), 1)
        .unwrap_err()
        .to_string()
        .contains("one image"));
}

#[test]
fn loss_draws_noise_the_latents_as_the_schedule_says() {
    let schedule = NoiseSchedule::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
    let z0 = TorchGenerator::manual_seed(1).randn([1, 4, 3, 3]).unwrap();
    let d = LossDraws::stratified(&z0, 5, 9, &schedule).unwrap();
    assert_eq!(d.timesteps, vec![100.0, 300.0, 500.0, 700.0, 900.0]);
    // Recompute from the same noise: noise = target (epsilon).
    let noise = TorchGenerator::manual_seed(9).randn([5, 4, 3, 3]).unwrap();
    assert_eq!(max_abs_diff(&d.target, &noise), 0.0);
    let (z, n, x) = (
        z0.to_vec().unwrap(),
        noise.to_vec().unwrap(),
        d.noisy.to_vec().unwrap(),
    );
    for (k, &t) in d.timesteps.iter().enumerate() {
        let ac = schedule.alphas_cumprod[t as usize];
        for j in 0..36 {
            let want = ac.sqrt() * z[j] + (1.0 - ac).sqrt() * n[k * 36 + j];
            assert!((x[k * 36 + j] - want).abs() < 1e-6);
        }
    }
    // v-prediction: v = sqrt(ac) n - sqrt(1 - ac) z0.
    let v = LossDraws::stratified_for(&z0, 5, 9, &schedule, PredictionType::VPrediction).unwrap();
    let tv = v.target.to_vec().unwrap();
    let ac = schedule.alphas_cumprod[900];
    let want = ac.sqrt() * n[4 * 36] - (1.0 - ac).sqrt() * z[0];
    assert!((tv[4 * 36] - want).abs() < 1e-6);
    // Random draws: timesteps in range, reproducible from the generator.
    let a = LossDraws::random(
        &z0,
        7,
        &mut TorchGenerator::manual_seed(4),
        &schedule,
        PredictionType::Epsilon,
    )
    .unwrap();
    let b = LossDraws::random(
        &z0,
        7,
        &mut TorchGenerator::manual_seed(4),
        &schedule,
        PredictionType::Epsilon,
    )
    .unwrap();
    assert_eq!(a.timesteps, b.timesteps);
    assert!(a.timesteps.iter().all(|&t| (0.0..1000.0).contains(&t)));
    assert_eq!(max_abs_diff(&a.noisy, &b.noisy), 0.0);
    assert!(LossDraws::stratified(&Tensor::zeros([2, 4, 3, 3]), 3, 0, &schedule).is_err());
}

#[test]
fn the_unet_copy_computes_the_same_and_trains_alone() {
    let sd = StableDiffusion::load(tiny_dir()).unwrap();
    let (copy, store) = copy_unet(&sd).unwrap();
    assert_eq!(store.num_elements(), sd.unet_params.num_elements());
    let schedule = NoiseSchedule::new(&sd.scheduler_config).unwrap();
    let z0 = TorchGenerator::manual_seed(2)
        .randn([1, 4, 16, 16])
        .unwrap();
    let draws = LossDraws::stratified(&z0, 2, 5, &schedule).unwrap();
    let e = sd.encode_text(&["a cat".into()]).unwrap();
    let a = reconstruction_loss(&sd.unet, &draws, &e).unwrap();
    let b = reconstruction_loss(&copy, &draws, &e).unwrap();
    assert_eq!(a, b);
    // A gradient step on the copy changes its loss, not the original's.
    let loss = diffusion_loss(&copy, &draws, &Var::constant(e.clone())).unwrap();
    let grads = loss.backward().unwrap();
    let mut opt = nn::Sgd::new(
        &store,
        nn::SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    );
    nn::Optimizer::step(&mut opt, &grads).unwrap();
    let b2 = reconstruction_loss(&copy, &draws, &e).unwrap();
    assert!(b2 < b, "one SGD step on the copy: {b} -> {b2}");
    assert_eq!(reconstruction_loss(&sd.unet, &draws, &e).unwrap(), a);
}

#[test]
fn stages_a_and_b_lower_the_loss_and_leave_the_model_alone() {
    let f = fitted().lock().unwrap();
    let im = &f.imagic;
    let cfg = config();
    assert_eq!(im.embed_losses.len(), cfg.embed_steps);
    assert_eq!(im.finetune_losses.len(), cfg.finetune_steps);
    // One progress call per step, stage A first, each counting to its total.
    assert_eq!(f.progress.len(), cfg.embed_steps + cfg.finetune_steps);
    assert_eq!(f.progress[0], (Stage::Embed, 1, cfg.embed_steps));
    assert_eq!(
        *f.progress.last().unwrap(),
        (Stage::Finetune, cfg.finetune_steps, cfg.finetune_steps)
    );
    // The embedding moved, the shipped UNet did not, the copy did.
    assert_eq!(im.e_opt.dims(), im.e_tgt.dims());
    assert!(max_abs_diff(&im.e_opt, &im.e_tgt) > 1e-3);
    for ((name, before), (_, after)) in f.unet_before.iter().zip(f.sd.unet_params.tensors()) {
        assert_eq!(max_abs_diff(before, &after), 0.0, "{name} changed");
    }
    let moved = im
        .unet_params
        .tensors()
        .iter()
        .zip(&f.unet_before)
        .filter(|((_, a), (_, b))| max_abs_diff(a, b) > 0.0)
        .count();
    assert!(moved > f.unet_before.len() / 2, "{moved} tensors moved");
    // The measured loss falls through both stages.
    let schedule = NoiseSchedule::new(&f.sd.scheduler_config).unwrap();
    let draws = LossDraws::stratified(&im.latents, 16, 11, &schedule).unwrap();
    let l0 = reconstruction_loss(&f.sd.unet, &draws, &im.e_tgt).unwrap();
    let l1 = reconstruction_loss(&f.sd.unet, &draws, &im.e_opt).unwrap();
    let l2 = reconstruction_loss(&im.unet, &draws, &im.e_opt).unwrap();
    assert!(l1 < l0 && l2 < l1, "loss {l0} -> {l1} -> {l2}");
    // Interpolation: the two ends and the middle.
    assert_eq!(max_abs_diff(&im.embedding(0.0).unwrap(), &im.e_opt), 0.0);
    assert_eq!(max_abs_diff(&im.embedding(1.0).unwrap(), &im.e_tgt), 0.0);
    let mid = im.e_tgt.add(&im.e_opt).unwrap().mul_scalar(0.5).unwrap();
    assert!(max_abs_diff(&im.embedding(0.5).unwrap(), &mid) < 1e-6);
}

#[test]
fn stage_c_shares_the_noise_and_restores_the_unet() {
    let mut guard = fitted().lock().unwrap();
    let f = &mut *guard;
    let cfg = config();
    let (h, w) = f.sd.default_size();
    let images = f
        .imagic
        .generate(&mut f.sd, &[0.3, 0.3, 1.0], &cfg)
        .unwrap();
    assert_eq!(images.dims(), &[3, 3, h, w]);
    // The same eta gives the same image (one shared noise); another eta differs.
    let row = |i| images.narrow(0, i, 1).unwrap();
    assert!(max_abs_diff(&row(0), &row(1)) < 1e-5);
    assert!(max_abs_diff(&row(0), &row(2)) > 1e-3);
    // Generating one eta alone gives the same picture as within the batch.
    let alone = f.imagic.generate(&mut f.sd, &[1.0], &cfg).unwrap();
    assert!(max_abs_diff(&alone, &row(2)) < 1e-4);
    // Without stage B the same embedding and noise give another picture.
    let untuned = f
        .imagic
        .generate_without_finetuning(&f.sd, &[1.0], &cfg)
        .unwrap();
    assert!(max_abs_diff(&untuned, &alone) > 1e-3);
    // sd.unet is the shipped one again: its loss is the untouched model's.
    let schedule = NoiseSchedule::new(&f.sd.scheduler_config).unwrap();
    let draws = LossDraws::stratified(&f.imagic.latents, 4, 1, &schedule).unwrap();
    let (copy, _) = copy_unet(&f.sd).unwrap();
    let e = &f.imagic.e_opt;
    let ours = reconstruction_loss(&f.sd.unet, &draws, e).unwrap();
    let tuned = reconstruction_loss(&f.imagic.unet, &draws, e).unwrap();
    assert_eq!(reconstruction_loss(&copy, &draws, e).unwrap(), ours);
    assert!(tuned < ours);
    assert!(f
        .imagic
        .generate(&mut f.sd, &[], &cfg)
        .unwrap_err()
        .to_string()
        .contains("eta"));
    assert_eq!(f.input.dims(), &[1, 3, h, w]);
}

#[test]
fn save_and_load_give_the_same_edit() {
    let mut guard = fitted().lock().unwrap();
    let f = &mut *guard;
    let dir = std::env::temp_dir().join(format!("imagic-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("imagic.safetensors");
    f.imagic.save(&path).unwrap();
    let mut loaded = Imagic::load(&f.sd, &path).unwrap();
    assert_eq!(max_abs_diff(&loaded.e_opt, &f.imagic.e_opt), 0.0);
    assert_eq!(max_abs_diff(&loaded.latents, &f.imagic.latents), 0.0);
    let cfg = config();
    let a = f.imagic.generate(&mut f.sd, &[0.7], &cfg).unwrap();
    let b = loaded.generate(&mut f.sd, &[0.7], &cfg).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    // A file without Imagic's keys is a clear error.
    let other = dir.join("other.safetensors");
    f.sd.vae_params.save(&other).unwrap();
    let e = Imagic::load(&f.sd, &other).err().unwrap().to_string();
    assert!(e.contains("not written by Imagic::save"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_are_errors() {
    let sd = StableDiffusion::load(tiny_dir()).unwrap();
    let (h, w) = sd.default_size();
    let input = fit_image(&picture(3, h, w), (h, w), 3).unwrap();
    let cfg = ImagicConfig {
        batch_size: 0,
        ..config()
    };
    let e = Imagic::fit(&sd, &input, "a cat", &cfg, None).err().unwrap();
    assert!(e.to_string().contains("batch size"), "{e}");
}

#[test]
fn metrics_measure_what_they_say() {
    let x_in = [0.0, 0.5, 1.0, 0.5];
    assert_eq!(pixel_similarity(&x_in, &x_in), 1.0);
    // Off by 0.3 in one pixel: 1 - 0.3 / |x_in| (|x_in| = sqrt(1.5)).
    let x = [0.0, 0.8, 1.0, 0.5];
    assert!((pixel_similarity(&x, &x_in) - (1.0 - 0.3 / 1.5f64.sqrt())).abs() < 1e-6);
    assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-12);
    assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
    let p =
        softmax_rows(&Tensor::from_vec(vec![0.0, 0.0, 2f32.ln(), 5.0, 5.0, 5.0], [2, 3]).unwrap())
            .unwrap();
    assert!((p[0][2] - 0.5).abs() < 1e-6 && (p[0][0] - 0.25).abs() < 1e-6);
    assert!(p[1].iter().all(|&q| (q - 1.0 / 3.0).abs() < 1e-9));
}

#[test]
fn sd_edit_runs_end_to_end_and_explains_bad_input() {
    use std::process::Command;
    use tensor::io::image::{load_image, save_image_unit};
    let dir = std::env::temp_dir().join(format!("imagic-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sd = StableDiffusion::load(tiny_dir()).unwrap();
    let (h, w) = sd.default_size();
    save_image_unit(dir.join("in.png"), &picture(3, h, w)).unwrap();
    save_image_unit(dir.join("small.png"), &picture(3, h / 2, w / 2)).unwrap();
    let model = tiny_dir();
    let run = |extra: &[&str]| {
        let mut args = vec!["edit", "--model", model.to_str().unwrap(), "--no-progress"];
        args.extend_from_slice(&["--embed-steps", "2", "--finetune-steps", "2"]);
        args.extend_from_slice(&["--batch-size", "2", "--steps", "3"]);
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_sd"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    // A sweep: a strip input | eta 0 | eta 1, and the saved stages.
    let out = run(&[
        "--image",
        "in.png",
        "--prompt",
        "a cat",
        "--etas",
        "0,1",
        "--out",
        "strip.png",
        "--save",
        "e.safetensors",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        load_image(dir.join("strip.png")).unwrap().dims(),
        &[3, h, 3 * w]
    );
    // Reusing them: stage C only, one image.
    let out = run(&[
        "--image",
        "in.png",
        "--load",
        "e.safetensors",
        "--out",
        "one.png",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stages A and B: loaded"), "{stderr}");
    assert_eq!(load_image(dir.join("one.png")).unwrap().dims(), &[3, h, w]);
    // Bad input: one clear line each, exit status 1, nothing written.
    for (extra, says) in [
        (
            vec![
                "--image",
                "small.png",
                "--prompt",
                "a cat",
                "--out",
                "x.png",
            ],
            "this model takes",
        ),
        (
            vec!["--image", "none.png", "--prompt", "a cat", "--out", "x.png"],
            "none.png",
        ),
        (
            vec!["--image", "in.png", "--prompt", "a cat", "--out", "one.png"],
            "already exists",
        ),
        (vec!["--image", "in.png", "--out", "x.png"], "--prompt"),
    ] {
        let out = run(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if says == "--prompt" { 2 } else { 1 }),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
    }
    assert!(!dir.join("x.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
