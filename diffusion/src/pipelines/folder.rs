//! Finding the parts of a diffusers model folder.
//!
//! A folder as `StableDiffusionPipeline.save_pretrained` writes it:
//!
//! ```text
//! model_index.json          {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], ...}
//! scheduler/scheduler_config.json
//! text_encoder/config.json  text_encoder/model.safetensors
//! tokenizer/vocab.json      tokenizer/merges.txt   (or bpe_simple_vocab_16e6.txt.gz)
//! unet/config.json          unet/diffusion_pytorch_model.safetensors
//! vae/config.json           vae/diffusion_pytorch_model.safetensors
//! ```
//!
//! Weights may also be the `fp16` variant (`diffusion_pytorch_model.fp16.safetensors`);
//! they are widened to f32 when loaded. Pickled `.bin` weights are refused with a
//! message that says how to convert them. Every missing piece is an error that names
//! the path it looked for.
//!
//! ```
//! use diffusion::pipelines::folder::weights_file;
//! let dir = std::env::temp_dir().join(format!("sd-folder-doc-{}", std::process::id()));
//! std::fs::create_dir_all(dir.join("unet")).unwrap();
//! std::fs::write(dir.join("unet/diffusion_pytorch_model.fp16.safetensors"), b"").unwrap();
//! let found = weights_file(&dir.join("unet")).unwrap();
//! assert!(found.ends_with("unet/diffusion_pytorch_model.fp16.safetensors"));
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DiffusionError, Result};

/// Generation settings a model folder recommends, from the optional
/// `"_generation_defaults"` object of its `model_index.json` (diffusers ignores keys
/// that start with `_`). The shipped Fashion-MNIST model sets them; the `sd` command
/// uses them where the user gives no option.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GenerationDefaults {
    pub num_inference_steps: Option<usize>,
    pub guidance_scale: Option<f64>,
    /// A scheduler name as the `sd` command takes it (`ddim`, `euler-a`, ...).
    pub scheduler: Option<String>,
    pub num_images_per_prompt: Option<usize>,
}

/// The folder's [`GenerationDefaults`] (all `None` without a `model_index.json` or key).
pub fn generation_defaults(dir: &Path) -> Result<GenerationDefaults> {
    let index = dir.join("model_index.json");
    if !index.is_file() {
        return Ok(GenerationDefaults::default());
    }
    let value: serde_json::Value = crate::config::read_config(&index)?;
    match value.get("_generation_defaults") {
        Some(d) => serde_json::from_value(d.clone())
            .map_err(|e| DiffusionError::config(&index, format!("_generation_defaults: {e}"))),
        None => Ok(GenerationDefaults::default()),
    }
}

/// The file names a component's weights may have, in the order they are tried.
const WEIGHT_NAMES: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
];

/// The weights file of one component folder (`unet/`, `vae/`, `text_encoder/`).
pub fn weights_file(component: &Path) -> Result<PathBuf> {
    if !component.is_dir() {
        return Err(DiffusionError::io(
            component,
            "no such folder (a diffusers model folder has unet/, vae/, text_encoder/, tokenizer/ and scheduler/)",
        ));
    }
    for name in WEIGHT_NAMES {
        let path = component.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let has = |suffix: &str| {
        std::fs::read_dir(component).ok().is_some_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
        })
    };
    let hint = if has(".safetensors.index.json") {
        "the weights are sharded into several files; merge them into one safetensors file"
    } else if has(".bin") || has(".ckpt") {
        "only pickled PyTorch weights (.bin) are here; convert them to safetensors \
         (in Python: `pipe.save_pretrained(dir, safe_serialization=True)`)"
    } else {
        "no weights file found"
    };
    Err(DiffusionError::io(
        component,
        format!(
            "{hint} (looked for {})",
            WEIGHT_NAMES.map(|n| n.to_string()).join(", ")
        ),
    ))
}

/// `component/config.json` (or `scheduler_config.json`), checked to exist.
pub fn config_file(component: &Path, name: &str) -> Result<PathBuf> {
    let path = component.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DiffusionError::io(&path, "missing config file"))
    }
}

/// Check that `dir` looks like a Stable Diffusion model folder: it exists and, if
/// it has a `model_index.json`, that file names a pipeline class this crate serves.
pub fn check_model_folder(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(DiffusionError::io(
            dir,
            "model folder not found (give a diffusers Stable Diffusion folder with --model)",
        ));
    }
    let index = dir.join("model_index.json");
    if !index.is_file() {
        return Ok(());
    }
    let value: serde_json::Value = crate::config::read_config(&index)?;
    let class = value
        .get("_class_name")
        .and_then(|c| c.as_str())
        .unwrap_or("StableDiffusionPipeline");
    const SERVED: [&str; 4] = [
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionInpaintPipelineLegacy",
    ];
    if SERVED.contains(&class) {
        Ok(())
    } else {
        Err(DiffusionError::config(
            &index,
            format!(
                "pipeline class {class} is not served (this crate runs {})",
                SERVED.join(", ")
            ),
        ))
    }
}
