#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Student folders (`diffusion::distill::folder`) and the pipeline's guided-student
//! path, on `fixtures/tiny-sd`: a written student loads through `_base`, samples with
//! the trailing DDIM grid and its generation defaults; a UNet with
//! `time_cond_proj_dim` gets one conditional evaluation per step (no CFG batch).

use std::path::{Path, PathBuf};

use diffusion::distill::folder::{write_student_folder, StudentDefaults};
use diffusion::distill::{student_from, UnetWeights};
use diffusion::pipelines::folder::generation_defaults;
use diffusion::pipelines::{GenerateParams, StableDiffusion, StepInfo};
use diffusion::schedulers::scheduler_from_config;
use tensor::random::TorchGenerator;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-sd")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distill-folder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn params(guidance: f64) -> GenerateParams {
    GenerateParams {
        prompts: vec!["a photo of a bag".into()],
        num_inference_steps: 4,
        guidance_scale: guidance,
        seed: 3,
        width: Some(32),
        height: Some(32),
        latents_only: true,
        ..Default::default()
    }
}

fn sample(sd: &StableDiffusion, scheduler_of: &StableDiffusion, g: f64) -> (Vec<f32>, Vec<f64>) {
    let mut s = scheduler_from_config(&scheduler_of.scheduler_config).unwrap();
    let mut ts = Vec::new();
    let mut cb = |i: &StepInfo| {
        ts.push(i.timestep);
        Ok(None)
    };
    let out = sd.generate(&params(g), s.as_mut(), Some(&mut cb)).unwrap();
    (out.latents.to_vec().unwrap(), ts)
}

#[test]
fn a_student_folder_loads_through_base_and_samples_the_trailing_grid() {
    let base = StableDiffusion::load(tiny()).unwrap();
    let dir = temp("pd");
    let defaults = StudentDefaults {
        steps: 4,
        guidance_scale: 7.5,
    };
    write_student_folder(&dir, &UnetWeights::of(&base), &tiny(), defaults).unwrap();
    // Only unet/, scheduler/ and model_index.json were written.
    assert!(!dir.join("text_encoder").exists() && !dir.join("vae").exists());
    let student = StableDiffusion::load(&dir).unwrap();
    assert_eq!(
        student.scheduler_config.class_name.as_deref(),
        Some("DDIMScheduler")
    );
    let d = generation_defaults(&dir).unwrap();
    assert_eq!(
        (d.num_inference_steps, d.guidance_scale),
        (Some(4), Some(7.5))
    );
    // Same weights (tiny-sd's are f16-exact), same sampler: the same latents.
    let (a, ts) = sample(&student, &student, 7.5);
    let (b, _) = sample(&base, &student, 7.5);
    assert_eq!(a, b);
    assert_eq!(ts, vec![999.0, 749.0, 499.0, 249.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_guided_student_evaluates_once_per_step() {
    let base = StableDiffusion::load(tiny()).unwrap();
    let teacher = UnetWeights::of(&base);
    // cond_proj at zero: the student is the conditional teacher whatever g is, so its
    // output at g = 7.5 must be the base model's *unguided* conditional sampling.
    let (store, unet) = student_from(&teacher, Some(8)).unwrap();
    let w = UnetWeights {
        tensors: store.tensors().into_iter().collect(),
        config: unet.config().clone(),
    };
    let dir = temp("guided");
    let defaults = StudentDefaults {
        steps: 4,
        guidance_scale: 7.5,
    };
    write_student_folder(&dir, &w, &tiny(), defaults).unwrap();
    let student = StableDiffusion::load(&dir).unwrap();
    assert_eq!(student.unet.config().time_cond_proj_dim, Some(8));
    let (guided, _) = sample(&student, &student, 7.5);
    let (conditional, _) = sample(&base, &student, 1.0);
    assert_eq!(guided, conditional);
    let (cfg, _) = sample(&base, &student, 7.5);
    assert_ne!(guided, cfg);

    // A non-zero projection makes the scale matter.
    let mut w2 = w.clone();
    let proj = TorchGenerator::manual_seed(5).randn([32, 8]).unwrap();
    w2.tensors
        .insert("time_embedding.cond_proj.weight".into(), proj);
    let dir2 = temp("guided2");
    write_student_folder(&dir2, &w2, &tiny(), defaults).unwrap();
    let s2 = StableDiffusion::load(&dir2).unwrap();
    let (g2, _) = sample(&s2, &s2, 2.0);
    let (g6, _) = sample(&s2, &s2, 6.0);
    let diff = g2
        .iter()
        .zip(&g6)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff > 1e-3, "{diff}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}

#[test]
fn a_missing_base_is_an_error_naming_it() {
    let dir = temp("nobase");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model_index.json"),
        r#"{"_class_name": "StableDiffusionPipeline", "_base": "../no-such-model"}"#,
    )
    .unwrap();
    let err = StableDiffusion::load(&dir).err().unwrap().to_string();
    assert!(
        err.contains("_base") && err.contains("no-such-model"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A student of a student: `_base` chains are followed to the folder that has each
/// component (the 2- and 1-step students point at the 4-step one, which points at
/// the shipped model); a folder missing from every link is an error naming it.
#[test]
fn a_chain_of_base_folders_loads() {
    let root = temp("chain");
    let (mid, top) = (root.join("mid"), root.join("top"));
    std::fs::create_dir_all(&mid).unwrap();
    std::fs::create_dir_all(top.join("scheduler")).unwrap();
    let base = tiny().canonicalize().unwrap();
    let index =
        |b: &str| format!("{{\"_class_name\": \"StableDiffusionPipeline\", \"_base\": \"{b}\"}}");
    std::fs::write(mid.join("model_index.json"), index(&base.to_string_lossy())).unwrap();
    std::fs::write(top.join("model_index.json"), index("../mid")).unwrap();
    std::fs::copy(
        base.join("scheduler/scheduler_config.json"),
        top.join("scheduler/scheduler_config.json"),
    )
    .unwrap();
    let sd = StableDiffusion::load(&top).unwrap();
    let direct = StableDiffusion::load(tiny()).unwrap();
    let (a, _) = sample(&sd, &sd, 3.0);
    let (b, _) = sample(&direct, &direct, 3.0);
    assert_eq!(a, b, "the chained folder is the same model");
    let part = diffusion::pipelines::model::component_dir(&top, "unet").unwrap();
    assert_eq!(part, base.join("unet"));
    assert_eq!(
        diffusion::pipelines::model::component_dir(&top, "scheduler").unwrap(),
        top.join("scheduler")
    );
    std::fs::remove_dir_all(&mid).unwrap();
    let e = StableDiffusion::load(&top).err().unwrap().to_string();
    assert!(e.contains("mid"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}
