//! Writing the trained models as a diffusers model folder, the layout
//! [`crate::pipelines::StableDiffusion::load`] reads (and diffusers'
//! `StableDiffusionPipeline.from_pretrained` would):
//!
//! ```text
//! model_index.json
//! scheduler/scheduler_config.json
//! text_encoder/{config.json, model.safetensors}
//! unet/{config.json, diffusion_pytorch_model.safetensors}
//! vae/{config.json, diffusion_pytorch_model.safetensors}
//! ```
//!
//! Configs carry diffusers' field names (`_class_name`, `block_out_channels`, ...) and
//! every file is written atomically. The tokenizer folder is left out: the loader
//! then uses the CLIP vocabulary embedded in this crate.
//!
//! ```
//! use diffusion::train::folder::with_class_name;
//! let v = with_class_name(serde_json::json!({"in_channels": 1}), "AutoencoderKL");
//! assert_eq!(v["_class_name"], "AutoencoderKL");
//! assert_eq!(v["in_channels"], 1);
//! ```

use std::path::Path;

use nn::ParamStore;
use tensor::io::DType;

use crate::error::{DiffusionError, Result};
use crate::train::create_dir;

/// The diffusers version the configs claim (the one the fixtures were made with).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// `value` (a JSON object) with `_class_name` and `_diffusers_version` added.
pub fn with_class_name(mut value: serde_json::Value, class: &str) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("_class_name".into(), class.into());
        map.insert("_diffusers_version".into(), DIFFUSERS_VERSION.into());
    }
    value
}

/// Write `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| DiffusionError::config(path, e.to_string()))?;
    tensor::io::write_atomic(path, format!("{text}\n").as_bytes())?;
    Ok(())
}

/// Write the parameters of `store` whose names start with `prefix` (the prefix
/// removed) to `path` in `dtype`, atomically.
pub fn save_params(store: &ParamStore, prefix: &str, path: &Path, dtype: DType) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let tensors: Vec<(String, tensor::Tensor)> = store
        .tensors()
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t)))
        .collect();
    if tensors.is_empty() {
        return Err(DiffusionError::invalid(
            "save_params",
            format!("no parameter starts with '{prefix}'"),
        ));
    }
    tensor::io::save(path, tensors.iter().map(|(n, t)| (n, t)), dtype)?;
    Ok(())
}

/// `model_index.json` of a StableDiffusionPipeline without safety checker, with the
/// settings `sd generate` uses for the model when not told otherwise
/// (`_generation_defaults`: 30 steps, guidance 7.5, 8 images).
pub fn model_index() -> serde_json::Value {
    let mut v = with_class_name(
        serde_json::json!({
            "feature_extractor": [null, null],
            "image_encoder": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
        "StableDiffusionPipeline",
    );
    if let Some(map) = v.as_object_mut() {
        map.insert("_name_or_path".into(), "fashion-sd".into());
        map.insert(
            "_generation_defaults".into(),
            serde_json::json!({
                "num_inference_steps": 30,
                "guidance_scale": 7.5,
                "num_images_per_prompt": 8
            }),
        );
    }
    v
}

/// The scheduler the model ships with: SD 1.x's training schedule (scaled_linear
/// 0.00085..0.012, 1000 steps, epsilon) sampled by DPM++ 2M, which needs few steps.
/// `clip_sample: false` as in SD 1.5's folder: DDPM/DDIM (`--scheduler ddim`) would
/// otherwise clamp the predicted x0 to [-1, 1], and latents have std 1.
pub fn scheduler_config() -> serde_json::Value {
    with_class_name(
        serde_json::json!({
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "trained_betas": null,
            "prediction_type": "epsilon",
            "clip_sample": false,
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
            "solver_type": "midpoint",
            "lower_order_final": true,
            "use_karras_sigmas": false,
            "timestep_spacing": "leading",
            "steps_offset": 1,
            "thresholding": false,
            "final_sigmas_type": "zero",
        }),
        "DPMSolverMultistepScheduler",
    )
}
