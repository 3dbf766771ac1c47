//! Claims 14-17 of `lessons/10-stable-diffusion/README.md`, on the shipped
//! Fashion-MNIST model (`diffusion/assets/`): Imagic's three stages and the guided
//! student's w input. Claims 1-13 (the tiny random-weight model) are in `claims.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diffusion::pipelines::{GenerateParams, StableDiffusion};
use lesson_10_stable_diffusion::max_abs_diff;
use tensor::Tensor;

// ---- Imagic (claims 14-16), on the shipped Fashion-MNIST model ----

/// Stages A and B on the first shirt of the Fashion-MNIST test set towards
/// "a photo of a dress", with few steps, once for claims 14-16; and the three
/// reconstruction losses of the input (64 fixed draws): original UNet with e_tgt,
/// with e_opt, fine-tuned UNet with e_opt.
struct ImagicRun {
    sd: StableDiffusion,
    imagic: diffusion::imagic::Imagic,
    input: Tensor,
    losses: [f64; 3],
    unet_before: Vec<(String, Tensor)>,
}

fn imagic_config() -> diffusion::imagic::ImagicConfig {
    diffusion::imagic::ImagicConfig {
        embed_steps: 60,
        finetune_steps: 40,
        batch_size: 4,
        num_inference_steps: 20,
        ..Default::default()
    }
}

fn shipped_model_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../diffusion/assets/fashion-sd")
}

fn imagic_run() -> &'static std::sync::Mutex<ImagicRun> {
    static RUN: std::sync::OnceLock<std::sync::Mutex<ImagicRun>> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        use diffusion::imagic::loss::{reconstruction_loss, LossDraws};
        let sd = StableDiffusion::load(shipped_model_dir()).unwrap();
        let data = tensor::data::FashionMnist::load().unwrap();
        let shirt = data.test.labels().iter().position(|&l| l == 6).unwrap();
        let pixels: Vec<f32> = data
            .test
            .image(shirt)
            .unwrap()
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        let image = Tensor::from_vec(pixels, [1, 28, 28]).unwrap();
        let input = diffusion::imagic::fit_image(&image, sd.default_size(), 1).unwrap();
        let unet_before = sd.unet_params.tensors();
        let imagic = diffusion::imagic::Imagic::fit(
            &sd,
            &input,
            "a photo of a dress",
            &imagic_config(),
            None,
        )
        .unwrap();
        let schedule =
            diffusion::schedulers::betas::NoiseSchedule::new(&sd.scheduler_config).unwrap();
        let draws = LossDraws::stratified(&imagic.latents, 64, 1, &schedule).unwrap();
        let losses = [
            reconstruction_loss(&sd.unet, &draws, &imagic.e_tgt).unwrap(),
            reconstruction_loss(&sd.unet, &draws, &imagic.e_opt).unwrap(),
            reconstruction_loss(&imagic.unet, &draws, &imagic.e_opt).unwrap(),
        ];
        println!("imagic reconstruction losses: {losses:?}");
        std::sync::Mutex::new(ImagicRun {
            sd,
            imagic,
            input,
            losses,
            unet_before,
        })
    })
}

#[test]
fn claim_14_imagic_stage_a_finds_an_embedding_that_explains_the_image() {
    let run = imagic_run().lock().unwrap();
    let [l_tgt, l_opt, _] = run.losses;
    println!("stage A: {l_tgt:.4} -> {l_opt:.4} (x{:.3})", l_opt / l_tgt);
    assert!(l_opt < 0.97 * l_tgt, "stage A: {l_tgt} -> {l_opt}");
    // The UNet was frozen: the loaded weights are bit-identical.
    for ((name, a), (_, b)) in run.unet_before.iter().zip(run.sd.unet_params.tensors()) {
        assert_eq!(max_abs_diff(a, &b).unwrap(), 0.0, "{name}");
    }
    // e_opt stays near the target text: a small move relative to its size.
    let im = &run.imagic;
    let moved = im
        .e_opt
        .sub(&im.e_tgt)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_vec()
        .unwrap()[0]
        .sqrt();
    let size = im.e_tgt.sqr().unwrap().sum_all().unwrap().to_vec().unwrap()[0].sqrt();
    println!("|e_opt - e_tgt| / |e_tgt| = {:.3}", moved / size);
    assert!(moved > 0.0 && moved < 0.5 * size);
}

#[test]
fn claim_15_imagic_stage_b_memorises_the_image_at_eta_0() {
    let mut guard = imagic_run().lock().unwrap();
    let run = &mut *guard;
    let [_, l_opt, l_tuned] = run.losses;
    println!(
        "stage B: {l_opt:.4} -> {l_tuned:.4} (x{:.3})",
        l_tuned / l_opt
    );
    assert!(l_tuned < 0.5 * l_opt, "stage B: {l_opt} -> {l_tuned}");
    let cfg = imagic_config();
    let images = run.imagic.generate(&mut run.sd, &[0.0, 1.0], &cfg).unwrap();
    let unit = |t: &Tensor| {
        t.affine(0.5, 0.5)
            .unwrap()
            .clamp(0.0, 1.0)
            .unwrap()
            .to_vec()
            .unwrap()
    };
    let x_in = unit(&run.input);
    let sim = |i: usize| {
        diffusion::imagic::metrics::pixel_similarity(&unit(&images.narrow(0, i, 1).unwrap()), &x_in)
    };
    let (s0, s1) = (sim(0), sim(1));
    println!("pixel similarity to the input: eta 0 {s0:.3}, eta 1 {s1:.3}");
    assert!(s0 > 0.35 && s0 > s1 + 0.1, "eta 0: {s0}, eta 1: {s1}");
}

#[test]
fn claim_16_imagic_the_target_class_rises_with_eta() {
    let mut guard = imagic_run().lock().unwrap();
    let run = &mut *guard;
    let store = nn::ParamStore::new();
    let clf_path = shipped_model_dir().join("../fashion-classifier.safetensors");
    let clf = diffusion::eval::classifier::FashionClassifier::load(&store, &clf_path).unwrap();
    let etas = [0.0, 0.5, 0.8, 0.9, 1.0];
    let images = run
        .imagic
        .generate(&mut run.sd, &etas, &imagic_config())
        .unwrap();
    let scores = diffusion::imagic::metrics::score_edits(&clf, &images, &run.input, 6, 3).unwrap();
    for (eta, s) in etas.iter().zip(&scores) {
        println!(
            "eta {eta}: P(dress) {:.3}, P(shirt) {:.3}",
            s.p_target, s.p_source
        );
    }
    assert!(scores[0].p_target < 0.1, "eta 0: {:?}", scores[0]);
    assert!(scores[4].p_target > 0.5, "eta 1: {:?}", scores[4]);
    assert!(scores[4].p_source < scores[0].p_source);
}

#[test]
fn claim_17_the_shipped_guided_students_w_input_is_guidance() {
    use diffusion::eval::classifier::FashionClassifier;
    use diffusion::eval::sampling::features_of;
    use diffusion::schedulers::scheduler_from_config;
    use diffusion::train::captions::eval_prompt;
    let sd = StableDiffusion::load(shipped_model_dir().join("../fashion-sd-guided4")).unwrap();
    let store = nn::ParamStore::new();
    let clf_path = shipped_model_dir().join("../fashion-classifier.safetensors");
    let clf = FashionClassifier::load(&store, &clf_path).unwrap();
    // 4 samples of each class, 4 steps (one UNet evaluation each), at guidance g.
    let accuracy = |g: f64| {
        let n = 4;
        let mut right = 0;
        for c in 0..10 {
            let mut s = scheduler_from_config(&sd.scheduler_config).unwrap();
            let p = GenerateParams {
                prompts: vec![eval_prompt(c).unwrap()],
                num_images_per_prompt: n,
                num_inference_steps: 4,
                guidance_scale: g,
                seed: 100 + c as u64,
                ..Default::default()
            };
            let images = sd.generate(&p, s.as_mut(), None).unwrap().images.unwrap();
            let images = images.affine(0.5, 0.5).unwrap().clamp(0.0, 1.0).unwrap();
            let (_, pred) = features_of(&clf, &images).unwrap();
            right += pred.iter().filter(|&&k| k == c).count();
        }
        right as f64 / (10 * n) as f64
    };
    let (a0, a2, a8) = (accuracy(0.0), accuracy(2.0), accuracy(8.0));
    println!("guided student, class accuracy at g = 0, 2, 8: {a0:.3}, {a2:.3}, {a8:.3}");
    assert!(a8 >= 0.8 && a8 >= a0 + 0.25, "g = 0: {a0}, g = 8: {a8}");
    assert!(a2 > a0, "g = 0: {a0}, g = 2: {a2}");
}
