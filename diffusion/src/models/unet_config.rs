//! The UNet's config: diffusers' `UNet2DConditionModel.__init__` arguments as saved in
//! `unet/config.json` (`lessons/10-stable-diffusion`; diffusers
//! `models/unets/unet_2d_condition.py`). Missing fields take diffusers' defaults;
//! [`UNet2DConditionConfig::validate`] refuses, naming the field, every option whose
//! math is not reproduced here (class/addition embeddings, dual cross-attention,
//! scale-shift resnets, `num_attention_heads`, which diffusers refuses too).
//!
//! Per-block fields (`attention_head_dim`, `cross_attention_dim`, `layers_per_block`,
//! `transformer_layers_per_block`, `only_cross_attention`) are one value or a list
//! ([`OneOrMany`]).
//!
//! ```
//! use diffusion::models::unet_config::{OneOrMany, UNet2DConditionConfig};
//! let cfg: UNet2DConditionConfig =
//!     serde_json::from_str(r#"{"attention_head_dim": [5, 10, 20, 20], "sample_size": 96}"#).unwrap();
//! assert_eq!(cfg.attention_head_dim.as_ref().unwrap().per_block(4, "attention_head_dim").unwrap(), vec![5, 10, 20, 20]);
//! assert_eq!(cfg.block_out_channels, vec![320, 640, 1280, 1280]); // diffusers' default
//! assert_eq!(cfg.sample_size_hw(), Some((96, 96)));
//! assert!(matches!(cfg.layers_per_block, OneOrMany::One(2)));
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::read_config;
use crate::error::{DiffusionError, Result};

/// A config value that is either one item for every block or a list, one per block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone + std::fmt::Debug> OneOrMany<T> {
    /// One value per block (`n` blocks), or an error naming `field`.
    pub fn per_block(&self, n: usize, field: &str) -> Result<Vec<T>> {
        match self {
            OneOrMany::One(v) => Ok(vec![v.clone(); n]),
            OneOrMany::Many(v) if v.len() == n => Ok(v.clone()),
            OneOrMany::Many(v) => Err(DiffusionError::config(
                Path::new("unet/config.json"),
                format!("{field} has {} entries for {n} blocks: {v:?}", v.len()),
            )),
        }
    }
}

/// diffusers' `UNet2DConditionModel` config (`unet/config.json`); missing fields take
/// diffusers' defaults (those of SD 1.x with `cross_attention_dim` 1280).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNet2DConditionConfig {
    pub sample_size: Option<OneOrMany<usize>>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub only_cross_attention: OneOrMany<bool>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: OneOrMany<usize>,
    pub downsample_padding: usize,
    pub mid_block_scale_factor: f64,
    pub dropout: f64,
    pub act_fn: String,
    pub norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub cross_attention_dim: OneOrMany<usize>,
    pub transformer_layers_per_block: OneOrMany<usize>,
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
    pub encoder_hid_dim: Option<usize>,
    pub encoder_hid_dim_type: Option<String>,
    /// In SD 1.x/2.x this is the number of heads (diffusers' naming issue #2011).
    pub attention_head_dim: Option<OneOrMany<usize>>,
    pub num_attention_heads: Option<OneOrMany<usize>>,
    pub dual_cross_attention: bool,
    pub use_linear_projection: bool,
    pub class_embed_type: Option<String>,
    pub addition_embed_type: Option<String>,
    pub num_class_embeds: Option<usize>,
    /// Computes attention in f32 under f16 in diffusers; a no-op here (all f32).
    pub upcast_attention: bool,
    pub resnet_time_scale_shift: String,
    pub resnet_skip_time_act: bool,
    pub resnet_out_scale_factor: f64,
    pub time_embedding_type: String,
    pub time_embedding_dim: Option<usize>,
    pub time_embedding_act_fn: Option<String>,
    pub timestep_post_act: Option<String>,
    pub time_cond_proj_dim: Option<usize>,
    pub conv_in_kernel: usize,
    pub conv_out_kernel: usize,
    pub attention_type: String,
    pub class_embeddings_concat: bool,
    pub mid_block_only_cross_attention: Option<bool>,
    pub cross_attention_norm: Option<String>,
}

impl Default for UNet2DConditionConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        UNet2DConditionConfig {
            sample_size: None,
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: s(&[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: s(&[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]),
            only_cross_attention: OneOrMany::One(false),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: OneOrMany::One(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            dropout: 0.0,
            act_fn: "silu".into(),
            norm_num_groups: Some(32),
            norm_eps: 1e-5,
            cross_attention_dim: OneOrMany::One(1280),
            transformer_layers_per_block: OneOrMany::One(1),
            reverse_transformer_layers_per_block: None,
            encoder_hid_dim: None,
            encoder_hid_dim_type: None,
            attention_head_dim: Some(OneOrMany::One(8)),
            num_attention_heads: None,
            dual_cross_attention: false,
            use_linear_projection: false,
            class_embed_type: None,
            addition_embed_type: None,
            num_class_embeds: None,
            upcast_attention: false,
            resnet_time_scale_shift: "default".into(),
            resnet_skip_time_act: false,
            resnet_out_scale_factor: 1.0,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            time_embedding_act_fn: None,
            timestep_post_act: None,
            time_cond_proj_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            attention_type: "default".into(),
            class_embeddings_concat: false,
            mid_block_only_cross_attention: None,
            cross_attention_norm: None,
        }
    }
}

impl UNet2DConditionConfig {
    /// Read `unet/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config(path)
    }

    /// The latent size the model was trained at, `(h, w)` (`sample_size`).
    pub fn sample_size_hw(&self) -> Option<(usize, usize)> {
        match &self.sample_size {
            Some(OneOrMany::One(s)) => Some((*s, *s)),
            Some(OneOrMany::Many(v)) if v.len() == 2 => Some((v[0], v[1])),
            _ => None,
        }
    }

    /// An error for every option this implementation does not reproduce.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(DiffusionError::config(Path::new("unet/config.json"), msg));
        let none_only: [(&str, &Option<String>); 6] = [
            ("class_embed_type", &self.class_embed_type),
            ("addition_embed_type", &self.addition_embed_type),
            ("encoder_hid_dim_type", &self.encoder_hid_dim_type),
            ("time_embedding_act_fn", &self.time_embedding_act_fn),
            ("timestep_post_act", &self.timestep_post_act),
            ("cross_attention_norm", &self.cross_attention_norm),
        ];
        for (field, v) in none_only {
            if let Some(v) = v {
                return bad(format!("{field} = {v:?} is not supported (only null)"));
            }
        }
        if self.num_class_embeds.is_some() || self.encoder_hid_dim.is_some() {
            return bad("num_class_embeds / encoder_hid_dim are not supported (only null)".into());
        }
        if self.time_cond_proj_dim == Some(0) {
            return bad("time_cond_proj_dim must be positive (or null)".into());
        }
        if self.num_attention_heads.is_some() {
            return bad("num_attention_heads must be null (diffusers refuses it too; heads come from attention_head_dim)".into());
        }
        if self.dual_cross_attention {
            return bad("dual_cross_attention = true is not supported".into());
        }
        if self.reverse_transformer_layers_per_block.is_some() {
            return bad("reverse_transformer_layers_per_block is not supported".into());
        }
        let checks = [
            ("act_fn", self.act_fn.as_str(), ["silu", "swish"].as_slice()),
            (
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                &["default"],
            ),
            (
                "time_embedding_type",
                &self.time_embedding_type,
                &["positional"],
            ),
            ("attention_type", &self.attention_type, &["default"]),
        ];
        for (field, v, ok) in checks {
            if !ok.contains(&v) {
                return bad(format!(
                    "{field} = {v:?} is not supported (expected one of {ok:?})"
                ));
            }
        }
        if let Some(m) = &self.mid_block_type {
            if m != "UNetMidBlock2DCrossAttn" {
                return bad(format!("mid_block_type = {m:?} is not supported"));
            }
        }
        if self.resnet_skip_time_act || self.class_embeddings_concat {
            return bad("resnet_skip_time_act / class_embeddings_concat are not supported".into());
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "block_out_channels ({n}), down_block_types ({}) and up_block_types ({}) must have the same non-zero length",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        if self.norm_num_groups.is_none() {
            return bad("norm_num_groups = null is not supported".into());
        }
        if self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2) {
            return bad("conv_in_kernel / conv_out_kernel must be odd".into());
        }
        Ok(())
    }
}
