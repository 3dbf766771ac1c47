//! `UNet2DConditionModel`: Stable Diffusion's denoiser (`lessons/10-stable-diffusion`;
//! diffusers `models/unets/unet_2d_condition.py`).
//!
//! `sample: (B, C_in, H, W)` noisy latents, `timestep` (one for the batch, or one per
//! element), `encoder_hidden_states: (B, S, D)` text embeddings -> predicted noise
//! `(B, C_out, H, W)`. Inside: sinusoidal `time_proj` -> `time_embedding` MLP gives
//! `emb: (B, 4 C0)`; `conv_in`; the down blocks halve the size at every level but the
//! last and keep every intermediate output as a skip; the mid block; the up blocks
//! concatenate the skips back in reverse order and double the size; GroupNorm, SiLU,
//! `conv_out`. A guidance-distilled UNet (`time_cond_proj_dim`, Meng et al.
//! 2210.03142, as LCM's) also takes `timestep_cond: (B, time_cond_proj_dim)` (the
//! guidance embedding), added to the sinusoids through `time_embedding.cond_proj`.
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

use crate::error::{DiffusionError, Result};
use crate::models::embeddings::{TimestepEmbedding, Timesteps};
use crate::models::unet_blocks::{
    CrossAttnConfig, DownBlock2D, DownBlockConfig, UNetMidBlock2DCrossAttn, UpBlock2D,
};
pub use crate::models::unet_config::{OneOrMany, UNet2DConditionConfig};
use autodiff::Var;
use nn::{Conv2d, Conv2dConfig, GroupNorm, Module, ParamStore, VarBuilder};

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
        let time_embedding = TimestepEmbedding::with_cond(
            vb.pp("time_embedding"),
            c0,
            temb,
            cfg.time_cond_proj_dim,
        )?;
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
        self.forward_with_cond(sample, timestep, encoder_hidden_states, None)
    }

    /// [`UNet2DConditionModel::forward`] with diffusers' `timestep_cond: (B,
    /// time_cond_proj_dim)` (the guidance embedding of a guidance-distilled UNet).
    pub fn forward_with_cond<'a>(
        &self,
        sample: &Var,
        timestep: impl Into<TimestepArg<'a>>,
        encoder_hidden_states: &Var,
        timestep_cond: Option<&Var>,
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
        if let Some(c) = timestep_cond {
            let want = [b, cfg.time_cond_proj_dim.unwrap_or(0)];
            if c.dims() != want {
                return Err(DiffusionError::invalid(
                    "UNet2DConditionModel",
                    format!("timestep_cond must be {want:?}, got {:?}", c.dims()),
                ));
            }
        }
        let emb = self
            .time_embedding
            .forward_cond(&self.time_proj.forward(&ts)?, timestep_cond)?;
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
