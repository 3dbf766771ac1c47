//! [`ClipTextConfig`]: a `text_encoder/config.json` (transformers' `CLIPTextConfig`,
//! `models/clip/configuration_clip.py`), with transformers' defaults for absent fields.
//!
//! SD 1.x (OpenAI ViT-L/14): hidden 768, 12 layers, 12 heads, MLP 3072, `quick_gelu`.
//! SD 2.x (OpenCLIP ViT-H/14, last layer dropped): hidden 1024, 23 layers, 16 heads,
//! MLP 4096, `gelu`. `projection_dim` and the dropout fields do not change the text
//! model's output and are ignored. Part of `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::clip::{ClipTextConfig, HiddenAct};
//! let cfg: ClipTextConfig = serde_json::from_str(
//!     r#"{"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
//!         "num_hidden_layers": 12, "projection_dim": 768}"#).unwrap();
//! assert_eq!(cfg.hidden_act, HiddenAct::QuickGelu);
//! assert_eq!((cfg.vocab_size, cfg.max_position_embeddings), (49408, 77));
//! assert_eq!(cfg.head_dim().unwrap(), 64);
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::error::{DiffusionError, Result};

/// The MLP's activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, SD 1.x).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact erf GELU (OpenCLIP, SD 2.x).
    #[serde(rename = "gelu")]
    Gelu,
}

impl HiddenAct {
    /// The `nn` activation.
    pub fn activation(self) -> nn::Activation {
        match self {
            HiddenAct::QuickGelu => nn::Activation::QuickGELU,
            HiddenAct::Gelu => nn::Activation::GELU,
        }
    }
}

/// transformers' `CLIPTextConfig` fields that the text model uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: HiddenAct,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl Default for ClipTextConfig {
    /// transformers' defaults (`CLIPTextConfig()`).
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
            pad_token_id: Some(1),
            bos_token_id: Some(49406),
            eos_token_id: Some(49407),
        }
    }
}

impl ClipTextConfig {
    /// SD 1.x's text encoder (`openai/clip-vit-large-patch14`).
    pub fn sd1() -> ClipTextConfig {
        ClipTextConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_attention_heads: 12,
            ..ClipTextConfig::default()
        }
    }

    /// SD 2.x's text encoder (OpenCLIP ViT-H/14 without its last layer).
    pub fn sd2() -> ClipTextConfig {
        ClipTextConfig {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 23,
            num_attention_heads: 16,
            hidden_act: HiddenAct::Gelu,
            ..ClipTextConfig::default()
        }
    }

    /// Read a `config.json` (a missing file, bad JSON or an unknown `hidden_act` is an
    /// error naming the file), then [`ClipTextConfig::validate`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClipTextConfig> {
        let path = path.as_ref();
        let cfg: ClipTextConfig = crate::config::read_config(path)?;
        cfg.validate()
            .map_err(|e| DiffusionError::config(path, e.to_string()))?;
        Ok(cfg)
    }

    /// `hidden_size / num_attention_heads`, an error unless it divides evenly.
    pub fn head_dim(&self) -> Result<usize> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(DiffusionError::invalid(
                "ClipTextConfig",
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        Ok(self.hidden_size / self.num_attention_heads)
    }

    /// Every size positive and the heads dividing the width.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(DiffusionError::invalid(
                    "ClipTextConfig",
                    format!("{name} must be positive"),
                ));
            }
        }
        self.head_dim().map(|_| ())
    }
}
