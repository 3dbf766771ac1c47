//! `UNet2DConditionModel`: Stable Diffusion's denoiser (`lessons/10-stable-diffusion`;
//! diffusers `models/unets/unet_2d_condition.py`).
//!
//! `sample: (B, C_in, H, W)` noisy latents, `timestep` (one for the batch, or one per
//! element), `encoder_hidden_states: (B, S, D)` text embeddings -> predicted noise
//! `(B, C_out, H, W)`. Inside: sinusoidal `time_proj` -> `time_embedding` MLP gives
//! `emb: (B, 4 C0)`; `conv_in`; the down blocks halve the size at every level but the
//! last and keep every intermediate output as a skip; the mid block; the up blocks
//! concatenate the skips back in reverse order and double the size; GroupNorm, SiLU,
//! `conv_out`.
//!
//! The architecture comes from the model folder's `unet/config.json`
//! ([`UNet2DConditionConfig`], diffusers' defaults for missing fields), so one type
//! serves SD 1.x (conv projections, `attention_head_dim: 8` read as 8 *heads*, the
//! diffusers naming trap), SD 2.x (`use_linear_projection`, per-block head counts),
//! inpainting (`in_channels: 9`) and tiny test models. Options that change the math
//! in ways not implemented here (class or addition embeddings, dual cross-attention,
//! scale-shift resnets, ...) are refused with an error naming the field.
//!
//! ```
//! use autodiff::Var;
//! use diffusion::models::unet_2d_condition::{UNet2DConditionConfig, UNet2DConditionModel};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let cfg: UNet2DConditionConfig = serde_json::from_str(r#"{
//!     "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
//!     "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
//!     "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
//!     "cross_attention_dim": 12, "attention_head_dim": 2 }"#).unwrap();
//! let store = ParamStore::new();
//! let unet = UNet2DConditionModel::new(VarBuilder::from_init(&store, WichmannHill::seed(1)), &cfg).unwrap();
//! let x = Var::constant(Tensor::ones([1, 4, 8, 6]));
//! let ctx = Var::constant(Tensor::ones([1, 5, 12]));
//! let eps = autodiff::no_grad(|| unet.forward(&x, 999.0, &ctx)).unwrap();
//! assert_eq!(eps.dims(), &[1, 4, 8, 6]);
//! ```

use std::path::Path;

use autodiff::Var;
use nn::{Conv2d, Conv2dConfig, GroupNorm, Module, ParamStore, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::config::read_config;
use crate::error::{DiffusionError, Result};
use crate::models::embeddings::{TimestepEmbedding, Timesteps};
use crate::models::unet_blocks::{
    CrossAttnConfig, DownBlock2D, DownBlockConfig, UNetMidBlock2DCrossAttn, UpBlock2D,
};

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
        if self.num_class_embeds.is_some()
            || self.time_cond_proj_dim.is_some()
            || self.encoder_hid_dim.is_some()
        {
            return bad("num_class_embeds / time_cond_proj_dim / encoder_hid_dim are not supported (only null)".into());
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
        if self.conv_in_kernel % 2 == 0 || self.conv_out_kernel % 2 == 0 {
            return bad("conv_in_kernel / conv_out_kernel must be odd".into());
        }
        Ok(())
    }
}

/// A timestep for the whole batch or one per batch element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimestepArg<'a> {
    Scalar(f64),
    PerBatch(&'a [f64]),
}

impl From<f64> for TimestepArg<'_> {
    fn from(t: f64) -> Self {
        TimestepArg::Scalar(t)
    }
}

impl<'a> From<&'a [f64]> for TimestepArg<'a> {
    fn from(t: &'a [f64]) -> Self {
        TimestepArg::PerBatch(t)
    }
}

impl<'a> From<&'a Vec<f64>> for TimestepArg<'a> {
    fn from(t: &'a Vec<f64>) -> Self {
        TimestepArg::PerBatch(t)
    }
}

/// The conditional UNet.
#[derive(Clone, Debug)]
pub struct UNet2DConditionModel {
    config: UNet2DConditionConfig,
    pub conv_in: Conv2d,
    pub time_proj: Timesteps,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock2D>,
    pub mid_block: Option<UNetMidBlock2DCrossAttn>,
    pub up_blocks: Vec<UpBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

fn is_cross(kind: &str, plain: &str, cross: &str) -> Result<bool> {
    let k = kind.strip_prefix("UNetRes").unwrap_or(kind);
    if k == plain {
        Ok(false)
    } else if k == cross {
        Ok(true)
    } else {
        Err(DiffusionError::config(
            Path::new("unet/config.json"),
            format!("block type {kind:?} is not supported (expected {plain} or {cross})"),
        ))
    }
}

impl UNet2DConditionModel {
    /// Build from `cfg` with parameters from `vb` (diffusers' key names).
    pub fn new(vb: VarBuilder, cfg: &UNet2DConditionConfig) -> Result<Self> {
        cfg.validate()?;
        let boc = &cfg.block_out_channels;
        let n = boc.len();
        let groups = cfg.norm_num_groups.unwrap_or(32);
        let heads = cfg
            .attention_head_dim
            .clone()
            .map_or_else(|| Ok(boc.clone()), |h| h.per_block(n, "attention_head_dim"))?;
        let cross_dims = cfg
            .cross_attention_dim
            .per_block(n, "cross_attention_dim")?;
        let layers = cfg.layers_per_block.per_block(n, "layers_per_block")?;
        let t_layers = cfg
            .transformer_layers_per_block
            .per_block(n, "transformer_layers_per_block")?;
        // (`mid_block_only_cross_attention` is not passed on to UNetMidBlock2DCrossAttn
        // by diffusers either: the mid block always self-attends.)
        let only_cross = cfg
            .only_cross_attention
            .per_block(n, "only_cross_attention")?;
        let c0 = boc[0];
        let temb = cfg.time_embedding_dim.unwrap_or(4 * c0);
        let (kin, kout) = (cfg.conv_in_kernel, cfg.conv_out_kernel);
        let conv_in = Conv2d::new(
            vb.pp("conv_in"),
            cfg.in_channels,
            c0,
            kin,
            Conv2dConfig::padding(kin / 2),
            true,
        )?;
        let time_proj = Timesteps::new(c0, cfg.flip_sin_to_cos, cfg.freq_shift);
        let time_embedding = TimestepEmbedding::new(vb.pp("time_embedding"), c0, temb)?;
        let block_cfg =
            |cin: usize, cout: usize, i: usize, cross: bool, only: bool| DownBlockConfig {
                in_channels: cin,
                out_channels: cout,
                temb_channels: temb,
                num_layers: layers[i],
                resnet_groups: groups,
                resnet_eps: cfg.norm_eps,
                output_scale_factor: cfg.resnet_out_scale_factor,
                add_downsample: i + 1 < n,
                downsample_padding: cfg.downsample_padding,
                cross_attn: cross.then(|| CrossAttnConfig {
                    num_attention_heads: heads[i],
                    cross_attention_dim: cross_dims[i],
                    transformer_layers: t_layers[i],
                    use_linear_projection: cfg.use_linear_projection,
                    only_cross_attention: only,
                }),
            };
        let mut down_blocks = Vec::with_capacity(n);
        let mut out_ch = c0;
        for (i, kind) in cfg.down_block_types.iter().enumerate() {
            let cross = is_cross(kind, "DownBlock2D", "CrossAttnDownBlock2D")?;
            let in_ch = out_ch;
            out_ch = boc[i];
            let bc = block_cfg(in_ch, out_ch, i, cross, only_cross[i]);
            down_blocks.push(DownBlock2D::new(vb.pp("down_blocks").pp(i), &bc)?);
        }
        let mid_block = match cfg.mid_block_type {
            Some(_) => {
                let last = n - 1;
                let mut mc = block_cfg(boc[last], boc[last], last, true, false);
                mc.num_layers = 1;
                mc.output_scale_factor = cfg.mid_block_scale_factor;
                Some(UNetMidBlock2DCrossAttn::new(vb.pp("mid_block"), &mc)?)
            }
            None => None,
        };
        // Up path: reversed lists, except the head counts' index, which diffusers
        // reverses too (reversed_num_attention_heads[i]).
        let rev = |v: &Vec<usize>| v.iter().rev().copied().collect::<Vec<_>>();
        let (r_boc, r_heads, r_cross, r_layers, r_t) = (
            rev(boc),
            rev(&heads),
            rev(&cross_dims),
            rev(&layers),
            rev(&t_layers),
        );
        let r_only: Vec<bool> = only_cross.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(n);
        let mut out_ch = r_boc[0];
        for (i, kind) in cfg.up_block_types.iter().enumerate() {
            let cross = is_cross(kind, "UpBlock2D", "CrossAttnUpBlock2D")?;
            let prev = out_ch;
            out_ch = r_boc[i];
            let in_ch = r_boc[(i + 1).min(n - 1)];
            let bc = DownBlockConfig {
                in_channels: in_ch,
                out_channels: out_ch,
                temb_channels: temb,
                num_layers: r_layers[i] + 1,
                resnet_groups: groups,
                resnet_eps: cfg.norm_eps,
                output_scale_factor: cfg.resnet_out_scale_factor,
                add_downsample: i + 1 < n,
                downsample_padding: cfg.downsample_padding,
                cross_attn: cross.then(|| CrossAttnConfig {
                    num_attention_heads: r_heads[i],
                    cross_attention_dim: r_cross[i],
                    transformer_layers: r_t[i],
                    use_linear_projection: cfg.use_linear_projection,
                    only_cross_attention: r_only[i],
                }),
            };
            up_blocks.push(UpBlock2D::new(vb.pp("up_blocks").pp(i), &bc, prev)?);
        }
        Ok(UNet2DConditionModel {
            config: cfg.clone(),
            conv_in,
            time_proj,
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::new(vb.pp("conv_norm_out"), groups, c0, cfg.norm_eps)?,
            conv_out: Conv2d::new(
                vb.pp("conv_out"),
                c0,
                cfg.out_channels,
                kout,
                Conv2dConfig::padding(kout / 2),
                true,
            )?,
        })
    }

    /// Load a diffusers safetensors file (f32/f16/bf16) strictly: every key must be
    /// used and every shape must match.
    pub fn load(store: &ParamStore, path: &Path, cfg: &UNet2DConditionConfig) -> Result<Self> {
        let vb = VarBuilder::from_safetensors(store, path)?;
        let unet = Self::new(vb.clone(), cfg)?;
        vb.finish()?;
        Ok(unet)
    }

    /// Load a diffusers `unet/` folder: `config.json` + `diffusion_pytorch_model.safetensors`.
    pub fn from_pretrained(store: &ParamStore, dir: &Path) -> Result<Self> {
        let cfg = UNet2DConditionConfig::from_file(&dir.join("config.json"))?;
        Self::load(
            store,
            &dir.join("diffusion_pytorch_model.safetensors"),
            &cfg,
        )
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.config
    }

    /// `sample: (B, C_in, H, W)`, `timestep`: `f64` or `&[f64]` (length B),
    /// `encoder_hidden_states: (B, S, D)` -> `(B, C_out, H, W)`.
    pub fn forward<'a>(
        &self,
        sample: &Var,
        timestep: impl Into<TimestepArg<'a>>,
        encoder_hidden_states: &Var,
    ) -> Result<Var> {
        let cfg = &self.config;
        let [b, c, _, _] = *sample.dims() else {
            return Err(DiffusionError::invalid(
                "UNet2DConditionModel",
                format!("sample must be (B, C, H, W), got {:?}", sample.dims()),
            ));
        };
        if c != cfg.in_channels {
            return Err(DiffusionError::invalid(
                "UNet2DConditionModel",
                format!(
                    "sample has {c} channels, the config says in_channels = {}",
                    cfg.in_channels
                ),
            ));
        }
        match *encoder_hidden_states.dims() {
            [eb, _, _] if eb == b => {}
            ref d => {
                return Err(DiffusionError::invalid(
                    "UNet2DConditionModel",
                    format!("encoder_hidden_states must be ({b}, S, D), got {d:?}"),
                ))
            }
        }
        let ts: Vec<f64> = match timestep.into() {
            TimestepArg::Scalar(t) => vec![t; b],
            TimestepArg::PerBatch(t) if t.len() == b => t.to_vec(),
            TimestepArg::PerBatch(t) if t.len() == 1 => vec![t[0]; b],
            TimestepArg::PerBatch(t) => {
                return Err(DiffusionError::invalid(
                    "UNet2DConditionModel",
                    format!("{} timesteps for a batch of {b}", t.len()),
                ))
            }
        };
        let sample = if cfg.center_input_sample {
            sample.affine(2.0, -1.0)?
        } else {
            sample.clone()
        };
        let emb = self.time_embedding.forward(&self.time_proj.forward(&ts)?)?;
        let ctx = Some(encoder_hidden_states);

        let mut h = self.conv_in.forward(&sample)?;
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            let (next, res) = block.forward(&h, &emb, ctx)?;
            h = next;
            skips.extend(res);
        }
        if let Some(mid) = &self.mid_block {
            h = mid.forward(&h, &emb, encoder_hidden_states)?;
        }
        for block in &self.up_blocks {
            let k = block.resnets.len();
            let res = skips.split_off(skips.len().saturating_sub(k));
            // Upsample to the next skip's size (x2 when the latent divides evenly).
            let size = skips.last().map(|s| (s.dims()[2], s.dims()[3]));
            h = block.forward(&h, &res, &emb, ctx, size)?;
        }
        let h = self.conv_norm_out.forward(&h)?.silu()?;
        Ok(self.conv_out.forward(&h)?)
    }
}
