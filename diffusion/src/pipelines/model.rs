//! [`StableDiffusion`]: the four models of a pipeline and the scheduler config, loaded
//! from a diffusers model folder (see [`super::folder`] for the layout).
//!
//! Each model has its own [`nn::ParamStore`], keyed exactly by the checkpoint names
//! of its file (`conv_in.weight`, `text_model.encoder.layers.0.mlp.fc1.bias`), so the
//! same struct serves inference (under `autodiff::no_grad`) and the training and
//! editing code of the later lessons (distillation, Imagic), which optimise one
//! store and freeze the others. The tokenizer comes from `tokenizer/`, or from the
//! CLIP vocabulary embedded in this crate when the folder has none.
//!
//! A folder may borrow components from another: `"_base": "../fashion-sd"` in its
//! `model_index.json` (a path relative to the folder; diffusers ignores `_` keys)
//! makes every component folder it lacks (`text_encoder/`, `vae/`, `tokenizer/`, ...)
//! come from the base folder. The distilled students (`diffusion/assets/fashion-sd-*`)
//! ship only `unet/` and `scheduler/` this way.
//!
//! Loading checks every shape against the config and names any missing, misshapen
//! or unexpected key; weights stored as f16/bf16 are widened to f32.

use std::path::{Path, PathBuf};

use nn::ParamStore;

use crate::clip::{ClipTextModel, ClipTokenizer};
use crate::config::read_config;
use crate::error::{DiffusionError, Result};
use crate::models::{
    AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel,
};
use crate::pipelines::folder::{check_model_folder, config_file, weights_file};
use crate::schedulers::SchedulerConfig;

/// A loaded Stable Diffusion model: tokenizer, text encoder, UNet, VAE and the
/// scheduler config of the folder.
pub struct StableDiffusion {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    pub scheduler_config: SchedulerConfig,
    pub text_encoder_params: ParamStore,
    pub unet_params: ParamStore,
    pub vae_params: ParamStore,
    /// The folder it was loaded from.
    pub dir: PathBuf,
}

impl StableDiffusion {
    /// Load every component of the model folder `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<StableDiffusion> {
        let dir = dir.as_ref();
        check_model_folder(dir)?;
        let part = |name: &str| component_dir(dir, name);
        let tokenizer = load_tokenizer(&part("tokenizer")?)?;

        let text_encoder_params = ParamStore::new();
        let text_encoder = ClipTextModel::from_dir(part("text_encoder")?, &text_encoder_params)?;

        let unet_dir = part("unet")?;
        let unet_cfg: UNet2DConditionConfig = read_config(&config_file(&unet_dir, "config.json")?)?;
        let unet_params = ParamStore::new();
        let unet = UNet2DConditionModel::load(&unet_params, &weights_file(&unet_dir)?, &unet_cfg)?;

        let vae_dir = part("vae")?;
        let vae_cfg: AutoencoderKLConfig = read_config(&config_file(&vae_dir, "config.json")?)?;
        let vae_params = ParamStore::new();
        let vae = AutoencoderKL::load(&vae_params, &weights_file(&vae_dir)?, &vae_cfg)?;

        let scheduler_config = SchedulerConfig::from_file(&config_file(
            &part("scheduler")?,
            "scheduler_config.json",
        )?)?;
        for store in [&text_encoder_params, &unet_params, &vae_params] {
            store.eval();
        }
        Ok(StableDiffusion {
            tokenizer,
            text_encoder,
            unet,
            vae,
            scheduler_config,
            text_encoder_params,
            unet_params,
            vae_params,
            dir: dir.to_path_buf(),
        })
    }

    /// Move every weight (text encoder, UNet, VAE) to `device`; the models then run
    /// there (`tensor::Device::wgpu()` for the GPU). Inputs made on the CPU
    /// (latents, timesteps, masks) are uploaded by the ops that meet them.
    pub fn to_device(&self, device: &tensor::Device) -> Result<()> {
        for store in [
            &self.text_encoder_params,
            &self.unet_params,
            &self.vae_params,
        ] {
            store.to_device(device)?;
        }
        Ok(())
    }

    /// The VAE's downscaling factor (8 for SD: 2^(number of VAE blocks - 1)).
    pub fn vae_scale_factor(&self) -> usize {
        1 << self.vae.config().block_out_channels.len().saturating_sub(1)
    }

    /// The default image size `(height, width)`: the UNet's `sample_size` times the
    /// VAE factor (512 for SD 1.5, 768 for SD 2.x 768-v; 512 when the config has none).
    pub fn default_size(&self) -> (usize, usize) {
        let f = self.vae_scale_factor();
        let (h, w) = self.unet.config().sample_size_hw().unwrap_or((64, 64));
        (h * f, w * f)
    }
}

/// The `_base` folder named by `dir/model_index.json` (resolved against `dir`),
/// checked to exist; `None` without one.
pub fn base_folder(dir: &Path) -> Result<Option<PathBuf>> {
    let index = dir.join("model_index.json");
    if !index.is_file() {
        return Ok(None);
    }
    let value: serde_json::Value = read_config(&index)?;
    let Some(base) = value.get("_base") else {
        return Ok(None);
    };
    let Some(rel) = base.as_str() else {
        return Err(DiffusionError::config(
            &index,
            "_base must be a path string (relative to the folder)",
        ));
    };
    let path = dir.join(rel);
    if !path.is_dir() {
        return Err(DiffusionError::config(
            &index,
            format!("_base folder {} does not exist", path.display()),
        ));
    }
    Ok(Some(path))
}

/// Where component `name` of the folder `dir` lives: `dir/name` when it exists, else
/// the same lookup in its `_base` folder, and so on down the chain (a student
/// distilled from a student); `dir/name` when no folder of the chain has it.
pub fn component_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    let mut at = dir.to_path_buf();
    for _ in 0..16 {
        if at.join(name).exists() {
            return Ok(at.join(name));
        }
        match base_folder(&at)? {
            Some(base) => at = base,
            None => return Ok(dir.join(name)),
        }
    }
    Err(DiffusionError::config(
        &dir.join("model_index.json"),
        "more than 16 folders in the _base chain (a cycle?)",
    ))
}

/// The folder's tokenizer files, or the embedded CLIP vocabulary when there are none.
fn load_tokenizer(dir: &Path) -> Result<ClipTokenizer> {
    if dir.is_dir() {
        ClipTokenizer::from_dir(dir)
    } else {
        ClipTokenizer::embedded()
    }
}
