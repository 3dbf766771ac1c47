//! Whole pipelines against diffusers on the tiny model folder `fixtures/tiny-sd`
//! (`scripts/gen_fixtures.py --only pipelines`): txt2img with every scheduler, CFG,
//! negative prompts, batches, guidance rescale, v-prediction, a prompt over 77
//! tokens, img2img, and inpainting with 4- and 9-channel UNets. Latents are held to
//! 1e-3 and decoded images to 2/255, as the team guide asks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use diffusion::models::{UNet2DConditionConfig, UNet2DConditionModel};
use diffusion::pipelines::{GenerateParams, StableDiffusion, StepInfo};
use diffusion::schedulers::{make_scheduler, SchedulerConfig, SchedulerKind};
use diffusion::Tensor;
use serde_json::Value;
use tensor::io::SafeTensorsFile;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

struct Golden {
    file: SafeTensorsFile,
    cases: Vec<Value>,
}

fn golden() -> Golden {
    let file = SafeTensorsFile::open(fixtures().join("pipelines.safetensors")).unwrap();
    let cases = serde_json::from_str(&file.metadata().unwrap()["cases"]).unwrap();
    Golden { file, cases }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        other => panic!("not a prompt: {other}"),
    }
}

/// Replace the UNet by the one in `fixtures/<name>/`.
fn swap_unet(sd: &mut StableDiffusion, name: &str) {
    let dir = fixtures().join(name);
    let cfg: UNet2DConditionConfig =
        diffusion::config::read_config(&dir.join("config.json")).unwrap();
    let store = nn::ParamStore::new();
    sd.unet = UNet2DConditionModel::load(
        &store,
        &dir.join("diffusion_pytorch_model.safetensors"),
        &cfg,
    )
    .unwrap();
    sd.unet_params = store;
}

fn run_case(name: &str) {
    run_case_on(name, None);
}

/// The golden case `name`, with the text encoder, UNet and VAE on `device` when
/// given (a GPU through wgpu), against the same diffusers fixtures and tolerances.
fn run_case_on(name: &str, device: Option<&tensor::Device>) {
    let g = golden();
    let case = g.cases.iter().find(|c| c["name"] == name).unwrap().clone();
    let mut sd = StableDiffusion::load(fixtures().join("tiny-sd")).unwrap();
    if let Some(unet) = case["unet"].as_str() {
        swap_unet(&mut sd, unet);
    }
    if let Some(d) = device {
        sd.to_device(d).unwrap();
        assert!(sd.unet_params.params().iter().all(|p| p.value().is_gpu()));
    }
    let args = &case["args"];
    let mut cfg_json = serde_json::to_value(&sd.scheduler_config).unwrap();
    for (k, v) in case["scheduler_config"].as_object().unwrap() {
        cfg_json[k] = v.clone();
    }
    let cfg: SchedulerConfig = serde_json::from_value(cfg_json).unwrap();
    let kind: SchedulerKind = case["scheduler"].as_str().unwrap().parse().unwrap();
    let mut scheduler = make_scheduler(kind, &cfg).unwrap();
    let params = GenerateParams {
        prompts: strings(&args["prompt"]),
        negative_prompts: strings(&args["negative_prompt"]),
        num_images_per_prompt: args["num_images_per_prompt"].as_u64().unwrap_or(1) as usize,
        num_inference_steps: args["num_inference_steps"].as_u64().unwrap() as usize,
        guidance_scale: args["guidance_scale"].as_f64().unwrap(),
        guidance_rescale: args["guidance_rescale"].as_f64().unwrap_or(0.0),
        width: args["width"].as_u64().map(|w| w as usize),
        height: args["height"].as_u64().map(|h| h as usize),
        seed: args["seed"].as_u64().unwrap(),
        init_image: case["image"]
            .as_bool()
            .unwrap()
            .then(|| g.file.get("image").unwrap()),
        strength: args["strength"].as_f64().unwrap_or(1.0),
        mask: case["mask"]
            .as_bool()
            .unwrap()
            .then(|| g.file.get("mask").unwrap()),
        ..Default::default()
    };
    let mut steps: Vec<Tensor> = Vec::new();
    let mut record = |info: &StepInfo| -> diffusion::Result<Option<Tensor>> {
        steps.push(info.latents.clone());
        Ok(None)
    };
    let out = sd
        .generate(&params, scheduler.as_mut(), Some(&mut record))
        .unwrap();

    let want = g.file.get(&format!("{name}.latents")).unwrap();
    let d = max_abs_diff(&out.latents, &want);
    assert!(d <= 1e-3, "{name}: latents differ by {d}");
    let final_d = d;
    if g.file.contains(&format!("{name}.steps")) {
        let all = g.file.get(&format!("{name}.steps")).unwrap();
        assert_eq!(
            all.dims()[0],
            steps.len(),
            "{name}: number of callback calls"
        );
        for (i, s) in steps.iter().enumerate() {
            let d = max_abs_diff(s, &all.narrow(0, i, 1).unwrap().squeeze(0).unwrap());
            assert!(d <= 1e-3, "{name}: latents after step {i} differ by {d}");
        }
    }
    // Images: ours in [-1, 1] -> [0, 1] as diffusers' postprocess, then compared.
    let ours = out
        .images
        .unwrap()
        .affine(0.5, 0.5)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    let want = g.file.get(&format!("{name}.image")).unwrap();
    let di = max_abs_diff(&ours, &want);
    assert!(di <= 2.0 / 255.0, "{name}: images differ by {di} (> 2/255)");
    let on = device.map_or("cpu", |d| d.name());
    eprintln!("{name} ({on}): max abs diff latents {final_d:.2e}, image {di:.2e}");
}

/// Every golden case again with the models on wgpu (lavapipe in CI), held to the
/// same diffusers fixtures: 1e-3 on the latents, 2/255 on the images.
#[test]
fn every_golden_case_on_wgpu() {
    let gpu = match tensor::Device::wgpu() {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    let g = golden();
    for case in &g.cases {
        run_case_on(case["name"].as_str().unwrap(), Some(&gpu));
    }
}

#[test]
fn txt2img_pndm_with_callback() {
    run_case("txt2img_pndm");
}

#[test]
fn txt2img_ddim_batch_negative_prompts_rescale() {
    run_case("txt2img_ddim_batch");
}

#[test]
fn txt2img_without_guidance_lms() {
    run_case("txt2img_no_cfg_lms");
}

#[test]
fn txt2img_euler() {
    run_case("txt2img_euler");
}

#[test]
fn txt2img_euler_ancestral() {
    run_case("txt2img_euler_a");
}

#[test]
fn txt2img_dpm_solver_karras() {
    run_case("txt2img_dpm_karras");
}

#[test]
fn txt2img_prompt_longer_than_77_tokens() {
    run_case("txt2img_long_prompt");
}

#[test]
fn txt2img_v_prediction_linear_projection_unet() {
    run_case("txt2img_vpred");
}

#[test]
fn img2img_ddim() {
    run_case("img2img_ddim");
}

#[test]
fn img2img_euler_ancestral() {
    run_case("img2img_euler_a");
}

#[test]
fn inpaint_4_channel_blend() {
    run_case("inpaint4_pndm");
}

#[test]
fn inpaint_4_channel_with_strength() {
    run_case("inpaint4_euler_strength");
}

#[test]
fn inpaint_9_channel_unet() {
    run_case("inpaint9_ddim");
}

#[test]
fn every_golden_case_has_a_test() {
    let names: Vec<String> = golden()
        .cases
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let source = include_str!("pipelines.rs");
    for n in names {
        assert!(
            source.contains(&format!("run_case(\"{n}\")")),
            "no test for {n}"
        );
    }
}

#[test]
fn textual_inversion_tokens_reach_the_pipelines_text_encoder() {
    // The clip group's fixture: hidden states of prompts using `<cat-toy>` (one
    // vector) and `<style>` (three), made with diffusers' own loader.
    let fx = SafeTensorsFile::open(fixtures().join("clip_text_model.safetensors")).unwrap();
    let cases: Value = serde_json::from_str(&fx.metadata().unwrap()["cases"]).unwrap();
    let case = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ti_batch2")
        .unwrap();
    let mut sd = StableDiffusion::load(fixtures().join("tiny-sd")).unwrap();
    let single = sd
        .load_textual_inversion(fixtures().join("clip_learned_embeds.safetensors"), None)
        .unwrap();
    assert_eq!(single, ["<cat-toy>"]);
    sd.load_textual_inversion(
        fixtures().join("clip_learned_embeds_multi.safetensors"),
        None,
    )
    .unwrap();
    let raw = strings(&case["raw_prompts"]);
    let hidden = sd.encode_text(&raw).unwrap();
    let d = max_abs_diff(&hidden, &fx.get("ti_batch2").unwrap());
    assert!(d <= 1e-4, "textual inversion hidden states differ by {d}");
}
