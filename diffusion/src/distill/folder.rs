//! A distilled student as a diffusers model folder that `sd generate --model <dir>`
//! (and [`crate::pipelines::StableDiffusion::load`]) reads like any other:
//!
//! ```text
//! model_index.json        "_base": "../fashion-sd" (text_encoder/, vae/ come from there),
//!                         "_generation_defaults": {"num_inference_steps": 4, ...}
//! scheduler/scheduler_config.json   DDIMScheduler, trailing, epsilon, no clipping
//! unet/config.json        the student's config (time_cond_proj_dim for guided students)
//! unet/diffusion_pytorch_model.safetensors   f16 weights
//! ```
//!
//! `_base` is written relative to the folder, so the shipped students keep working
//! wherever the repository is cloned.
//!
//! ```
//! use diffusion::distill::folder::relative_path;
//! use std::path::Path;
//! let r = relative_path(Path::new("/a/b/assets/fashion-sd"), Path::new("/a/b/assets/pd4"));
//! assert_eq!(r, Path::new("../fashion-sd"));
//! ```

use std::path::{Component, Path, PathBuf};

use nn::ParamStore;
use tensor::io::DType;

use crate::distill::sampler::distill_scheduler_json;
use crate::distill::UnetWeights;
use crate::error::{DiffusionError, Result};
use crate::train::create_dir;
use crate::train::folder::{model_index, save_params, with_class_name, write_json};

/// `target` relative to the folder `from` (both absolute or both relative to the
/// same place), with `..` for every component of `from` past their common prefix.
pub fn relative_path(target: &Path, from: &Path) -> PathBuf {
    let t: Vec<Component> = target.components().collect();
    let f: Vec<Component> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Generation settings written into the student's `model_index.json`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StudentDefaults {
    pub steps: usize,
    pub guidance_scale: f64,
}

/// Write `student` as the model folder `dir`, borrowing the other components from
/// `base` (a model folder; `_base` is stored relative to `dir`).
pub fn write_student_folder(
    dir: &Path,
    student: &UnetWeights,
    base: &Path,
    defaults: StudentDefaults,
) -> Result<()> {
    create_dir(dir)?;
    let canon = |p: &Path| p.canonicalize().map_err(|e| DiffusionError::io(p, e));
    let rel = relative_path(&canon(base)?, &canon(dir)?);
    let unet = dir.join("unet");
    let value = serde_json::to_value(&student.config)
        .map_err(|e| DiffusionError::config(&unet, e.to_string()))?;
    write_json(
        &unet.join("config.json"),
        &with_class_name(value, "UNet2DConditionModel"),
    )?;
    let store = ParamStore::new();
    for (k, v) in &student.tensors {
        store.insert(k.clone(), v.clone())?;
    }
    save_params(
        &store,
        "",
        &unet.join("diffusion_pytorch_model.safetensors"),
        DType::F16,
    )?;
    write_ddim_index(dir, &rel, defaults)
}

/// A folder that samples `base`'s own UNet with the distillation's DDIM scheduler
/// (trailing grid, no clipping): the teacher as the tables evaluate it.
pub fn write_teacher_folder(dir: &Path, base: &Path, steps: usize, guidance: f64) -> Result<()> {
    create_dir(dir)?;
    let canon = |p: &Path| p.canonicalize().map_err(|e| DiffusionError::io(p, e));
    let rel = relative_path(&canon(base)?, &canon(dir)?);
    write_ddim_index(
        dir,
        &rel,
        StudentDefaults {
            steps,
            guidance_scale: guidance,
        },
    )
}

/// The scheduler (the distillation's DDIM) and `model_index.json` (`_base` = `rel`,
/// the generation defaults, the folder's name) of a student or teacher folder `dir`.
fn write_ddim_index(dir: &Path, rel: &Path, defaults: StudentDefaults) -> Result<()> {
    write_json(
        &dir.join("scheduler").join("scheduler_config.json"),
        &distill_scheduler_json(),
    )?;
    let mut index = model_index();
    if let Some(map) = index.as_object_mut() {
        map.insert(
            "scheduler".into(),
            serde_json::json!(["diffusers", "DDIMScheduler"]),
        );
        map.insert(
            "_base".into(),
            rel.to_string_lossy().replace('\\', "/").into(),
        );
        map.insert(
            "_generation_defaults".into(),
            serde_json::json!({
                "num_inference_steps": defaults.steps,
                "guidance_scale": defaults.guidance_scale,
                "num_images_per_prompt": 8,
            }),
        );
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string());
        map.insert("_name_or_path".into(), name.unwrap_or_default().into());
    }
    write_json(&dir.join("model_index.json"), &index)
}
