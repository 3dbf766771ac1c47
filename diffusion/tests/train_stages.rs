//! Training both stages on tiny models and synthetic 4x4 "clothes": a few steps
//! lower the loss, a run interrupted and resumed from its checkpoint ends bit for
//! bit where an uninterrupted one does, and the written folder loads with
//! `StableDiffusion::load` and generates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use autodiff::{no_grad, Var};
use diffusion::clip::ClipTextConfig;
use diffusion::clip::ClipTokenizer;
use diffusion::models::unet_2d_condition::OneOrMany;
use diffusion::models::{AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig};
use diffusion::pipelines::{GenerateParams, StableDiffusion};
use diffusion::schedulers::betas::NoiseSchedule;
use diffusion::schedulers::{scheduler_from_config, SchedulerConfig};
use diffusion::train::folder::{model_index, scheduler_config, write_json};
use diffusion::train::unet::{
    noised_batch, save_unet_and_text, train_unet, unet_loss, LatentSet, UnetModels,
    UnetStageOptions,
};
use diffusion::train::vae::{
    encode_posteriors, latent_scaling_factor, save_vae, train_vae, vae_loss,
};
use diffusion::train::RunOptions;
use nn::{ParamStore, VarBuilder};
use tensor::data::ImageDataset;
use tensor::random::{TorchGenerator, WichmannHill};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("train-stages-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 16 images of 4x4: class k is a bright bar at row or column k % 4.
fn toy_data() -> ImageDataset {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..16u8 {
        let k = usize::from(i % 4);
        let vertical = i % 8 >= 4;
        for y in 0..4 {
            for x in 0..4 {
                let on = if vertical { x == k } else { y == k };
                images.push(if on { 200 + i } else { 10 });
            }
        }
        labels.push(i % 8);
    }
    ImageDataset::new(images, labels, 4, 4).unwrap()
}

/// 8x8 (4x4 padded by 2) -> 4x4x4 latents.
fn tiny_vae() -> AutoencoderKLConfig {
    AutoencoderKLConfig {
        in_channels: 1,
        out_channels: 1,
        down_block_types: vec!["DownEncoderBlock2D".into(); 2],
        up_block_types: vec!["UpDecoderBlock2D".into(); 2],
        block_out_channels: vec![32, 32],
        latent_channels: 4,
        sample_size: OneOrMany::One(8),
        ..Default::default()
    }
}

fn tiny_unet() -> UNet2DConditionConfig {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    UNet2DConditionConfig {
        sample_size: Some(OneOrMany::One(4)),
        down_block_types: s(&["CrossAttnDownBlock2D", "DownBlock2D"]),
        up_block_types: s(&["UpBlock2D", "CrossAttnUpBlock2D"]),
        block_out_channels: vec![32, 32],
        layers_per_block: OneOrMany::One(1),
        cross_attention_dim: OneOrMany::One(32),
        attention_head_dim: Some(OneOrMany::One(4)),
        ..Default::default()
    }
}

fn tiny_text_json() -> serde_json::Value {
    serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "max_position_embeddings": 77, "vocab_size": 49408,
        "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
        "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
        "model_type": "clip_text_model"
    })
}

fn opts(dir: &std::path::Path, steps: usize, lr: f64) -> RunOptions {
    RunOptions {
        steps,
        stop_at: None,
        batch_size: 4,
        lr,
        warmup: 2,
        seed: 3,
        checkpoint: dir.join("ckpt.safetensors"),
        checkpoint_every: 1,
        log_every: 0,
        progress: false,
        device: tensor::Device::Cpu,
    }
}

fn tensors(store: &ParamStore) -> Vec<(String, Vec<f32>)> {
    store
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap()))
        .collect()
}

/// Bitwise equality of two stores, naming the first parameter that differs.
fn assert_same(a: &ParamStore, b: &ParamStore) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        let diff = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        let same = va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{na} differs (max abs diff {diff})");
    }
}

fn fixed_vae_loss(vae: &AutoencoderKL, ds: &ImageDataset) -> f32 {
    let idx: Vec<usize> = (0..16).collect();
    let x = Var::constant(diffusion::train::data::images_pm1(ds, &idx, 2).unwrap());
    let (_, mse) =
        no_grad(|| vae_loss(vae, &x, 5e-4, &mut TorchGenerator::manual_seed(9))).unwrap();
    mse.to_scalar().unwrap()
}

#[test]
fn vae_steps_lower_the_loss_and_resume_is_exact() {
    let ds = toy_data();
    let cfg = tiny_vae();
    let init_store = ParamStore::new();
    let init = AutoencoderKL::new(
        VarBuilder::from_init(&init_store, WichmannHill::seed(3)),
        &cfg,
    )
    .unwrap();
    let before = fixed_vae_loss(&init, &ds);

    let a = tmp("vae-a");
    let full = train_vae(&cfg, &opts(&a, 24, 3e-3), &ds, 5e-4).unwrap();
    assert_eq!(full.summary.step, 24);
    let after = fixed_vae_loss(&full.vae, &ds);
    assert!(
        after < 0.5 * before,
        "reconstruction mse {before} -> {after}"
    );

    let again = train_vae(&cfg, &opts(&tmp("vae-c"), 24, 3e-3), &ds, 5e-4).unwrap();
    assert_same(&full.store, &again.store);
    // Interrupted at step 10 (mid-epoch: 4 batches per epoch), then resumed.
    let b = tmp("vae-b");
    let interrupted = RunOptions {
        stop_at: Some(10),
        ..opts(&b, 24, 3e-3)
    };
    let first = train_vae(&cfg, &interrupted, &ds, 5e-4).unwrap();
    assert_eq!(first.summary.step, 10);
    let resumed = train_vae(&cfg, &opts(&b, 24, 3e-3), &ds, 5e-4).unwrap();
    assert_eq!((resumed.summary.step, resumed.summary.steps_run), (24, 14));
    assert_same(&full.store, &resumed.store);

    // The scaling factor makes the sampled latents unit-variance.
    let (mean, std) = encode_posteriors(&full.vae, &ds, &(0..16).collect::<Vec<_>>(), 5).unwrap();
    assert_eq!(mean.len(), 16 * 4 * 4 * 4);
    let s = latent_scaling_factor(&mean, &std, 0).unwrap();
    assert!(s.is_finite() && s > 0.0);
    assert!(latent_scaling_factor(&[0.0; 4], &[0.0; 4], 0).is_err());
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn scaling_factor_of_known_latents() {
    // mean 0, std 2 everywhere: z = 2 eps, so 1 / std(z) is close to 0.5.
    let s = latent_scaling_factor(&vec![0.0; 20000], &vec![2.0; 20000], 1).unwrap();
    assert!((s - 0.5).abs() < 0.01, "{s}");
}

fn toy_latents() -> LatentSet {
    let mut gen = TorchGenerator::manual_seed(4);
    let mut mean = vec![0.0f32; 16 * 64];
    gen.normal_fill(&mut mean);
    LatentSet {
        mean,
        std: vec![0.1; 16 * 64],
        labels: toy_data().labels().to_vec(),
        shape: [4, 4, 4],
        scaling: 0.8,
    }
}

fn fixed_unet_loss(models: &UnetModels, set: &LatentSet) -> f32 {
    let schedule = NoiseSchedule::new(&SchedulerConfig::stable_diffusion_v1()).unwrap();
    let tok = ClipTokenizer::embedded().unwrap();
    let idx: Vec<usize> = (0..16).collect();
    let b = noised_batch(set, &idx, 77, &schedule, &tok, 0.15).unwrap();
    no_grad(|| unet_loss(models, &b))
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The tiny text encoder's config and the stage settings the UNet tests train with.
fn unet_stage() -> (ClipTextConfig, UnetStageOptions) {
    let text_cfg = serde_json::from_value(tiny_text_json()).unwrap();
    let stage = UnetStageOptions {
        p_empty: 0.15,
        ema_decay: 0.9,
        class_repeats: [1; 10],
    };
    (text_cfg, stage)
}

#[test]
fn unet_steps_lower_the_loss_resume_is_exact_and_the_folder_generates() {
    let set = toy_latents();
    let (text_cfg, stage) = unet_stage();
    let a = tmp("unet-a");
    let full = UnetModels::new(&tiny_unet(), &text_cfg, 1).unwrap();
    let before = fixed_unet_loss(&full, &set);
    let summary = train_unet(&full, &set, &opts(&a, 30, 3e-3), stage).unwrap();
    assert_eq!(summary.step, 30);
    let after = fixed_unet_loss(&full, &set);
    assert!(after < 0.8 * before, "epsilon mse {before} -> {after}");

    let b = tmp("unet-b");
    let part = UnetModels::new(&tiny_unet(), &text_cfg, 1).unwrap();
    let interrupted = RunOptions {
        stop_at: Some(13),
        ..opts(&b, 30, 3e-3)
    };
    assert_eq!(
        train_unet(&part, &set, &interrupted, stage).unwrap().step,
        13
    );
    let resumed = UnetModels::new(&tiny_unet(), &text_cfg, 1).unwrap();
    let s = train_unet(&resumed, &set, &opts(&b, 30, 3e-3), stage).unwrap();
    assert_eq!((s.step, s.steps_run), (30, 17));
    // The EMA weights (what is shipped) match too.
    assert_same(&full.store, &resumed.store);

    // A model folder: the VAE (random), then text encoder, UNet, scheduler, index.
    let dir = a.join("model");
    let vae_store = ParamStore::new();
    let cfg = tiny_vae();
    AutoencoderKL::new(
        VarBuilder::from_init(&vae_store, WichmannHill::seed(0)),
        &cfg,
    )
    .unwrap();
    save_vae(&dir.join("vae"), &cfg, &vae_store).unwrap();
    save_unet_and_text(&dir, &full, &tiny_text_json()).unwrap();
    write_json(
        &dir.join("scheduler").join("scheduler_config.json"),
        &scheduler_config(),
    )
    .unwrap();
    write_json(&dir.join("model_index.json"), &model_index()).unwrap();
    let sd = StableDiffusion::load(&dir).unwrap();
    let mut sched = scheduler_from_config(&sd.scheduler_config).unwrap();
    let params = GenerateParams {
        prompts: vec!["a photo of a sneaker".into()],
        num_inference_steps: 4,
        guidance_scale: 3.0,
        ..Default::default()
    };
    let out = sd.generate(&params, sched.as_mut(), None).unwrap();
    assert_eq!(out.images.unwrap().dims(), &[1, 1, 8, 8]);
    // f16 weights: what was saved is the EMA weights rounded to half precision.
    let unet_w = sd
        .unet_params
        .get("conv_in.weight")
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let ema_w = full
        .store
        .get("unet.conv_in.weight")
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    for (x, y) in unet_w.iter().zip(&ema_w) {
        assert!((x - y).abs() <= 1e-3 * y.abs().max(1e-2), "{x} vs {y}");
    }
    // Going on from the folder (`--init-from`): a fresh init takes its weights back,
    // at f16 precision.
    let again = UnetModels::new(&tiny_unet(), &text_cfg, 7).unwrap();
    again.load_pretrained(&dir).unwrap();
    for (name, w) in tensors(&full.store) {
        let v = again.store.get(&name).unwrap().value().to_vec().unwrap();
        for (x, y) in v.iter().zip(&w) {
            assert!(
                (x - y).abs() <= 1e-3 * y.abs().max(1e-2),
                "{name}: {x} vs {y}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn class_weighted_epochs_repeat_each_class_as_asked() {
    use diffusion::train::data::weighted_epoch_batches;
    let labels: Vec<u8> = (0..40).map(|i| (i % 10) as u8).collect();
    let mut repeats = [1usize; 10];
    repeats[6] = 3;
    repeats[2] = 2;
    let plans = weighted_epoch_batches(&labels, &repeats, 5, 11, 0);
    // 40 images + 4 shirts x 2 extra + 4 pullovers x 1 extra = 52 -> 10 full batches.
    assert_eq!(plans.len(), 10);
    let mut seen = vec![0usize; 40];
    for p in &plans {
        assert_eq!(p.indices.len(), 5);
        for &i in &p.indices {
            seen[i] += 1;
        }
    }
    // Two of the 52 fall off the last partial batch: every image shows up at most
    // `repeats` times and all but two draws are there.
    assert_eq!(seen.iter().sum::<usize>(), 50);
    for (i, &k) in seen.iter().enumerate() {
        assert!(k <= repeats[i % 10], "image {i} seen {k} times");
    }
    let shirts: usize = (0..40).filter(|i| i % 10 == 6).map(|i| seen[i]).sum();
    assert!(shirts >= 10, "shirts drawn {shirts} times of 12");
    assert_eq!(
        plans[3].indices,
        weighted_epoch_batches(&labels, &repeats, 5, 11, 0)[3].indices
    );
    assert_ne!(
        plans[0].indices,
        weighted_epoch_batches(&labels, &repeats, 5, 11, 1)[0].indices
    );
}

/// `--device wgpu`: the UNet stage trains with its parameters, AdamW moments and EMA
/// on the GPU (checkpointing every step through them) and ends where the CPU run
/// ends. Each step's gradients differ from the CPU's in the last bits, and Adam
/// divides them by their own running scale, so near-zero gradients can move a
/// weight by up to lr differently: the loss is compared (1e-3 relative) and the
/// weights within 2 lr. Without an adapter the test prints that it skipped.
#[test]
fn unet_stage_on_wgpu_matches_the_cpu() {
    let gpu = match tensor::Device::wgpu() {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    let set = toy_latents();
    let (text_cfg, stage) = unet_stage();
    let lr = 3e-3;
    let (a, b) = (tmp("unet-cpu"), tmp("unet-gpu"));
    let cpu = UnetModels::new(&tiny_unet(), &text_cfg, 1).unwrap();
    train_unet(&cpu, &set, &opts(&a, 6, lr), stage).unwrap();
    let on_gpu = UnetModels::new(&tiny_unet(), &text_cfg, 1).unwrap();
    let gpu_opts = RunOptions {
        device: gpu,
        ..opts(&b, 6, lr)
    };
    let s = train_unet(&on_gpu, &set, &gpu_opts, stage).unwrap();
    assert_eq!(s.step, 6);
    assert!(on_gpu.store.params().iter().all(|p| p.value().is_gpu()));
    let (want, got) = (fixed_unet_loss(&cpu, &set), fixed_unet_loss(&on_gpu, &set));
    assert!(
        (want - got).abs() <= 1e-3 * want.abs(),
        "loss after 6 steps: CPU {want}, wgpu {got}"
    );
    let (tc, tg) = (tensors(&cpu.store), tensors(&on_gpu.store));
    let worst = tc
        .iter()
        .zip(&tg)
        .flat_map(|((_, c), (_, g))| c.iter().zip(g).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= 2.0 * lr as f32, "weights differ by up to {worst}");
    println!("wgpu vs CPU after 6 steps: loss {got} vs {want}, weights within {worst}");
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}
