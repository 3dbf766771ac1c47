//! The UNet's levels (`lessons/10-stable-diffusion`; diffusers
//! `models/unets/unet_2d_blocks.py`: `CrossAttnDownBlock2D`, `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D`, `UpBlock2D`).
//!
//! - Down block: `layers` x (`ResnetBlock2D` [+ `Transformer2DModel`]), then an
//!   optional `Downsample2D`. It returns the new hidden state *and* every intermediate
//!   output (one per layer, plus the downsampled one): the skips.
//!   `(B, C_in, H, W) -> (B, C_out, H/2, W/2)`.
//! - Mid block: resnet, then `layers` x (transformer, resnet); shape kept.
//! - Up block: `layers + 1` x (concatenate the *last* remaining skip on channels,
//!   `cat([h, skip], dim=1)`, then resnet [+ transformer]), then an optional
//!   `Upsample2D` (to the next skip's size). The skips are consumed last-in,
//!   first-out, so the up path mirrors the down path.
//!
//! A block with no transformers is diffusers' `DownBlock2D` / `UpBlock2D`; with
//! them it is `CrossAttnDownBlock2D` / `CrossAttnUpBlock2D` (same parameter names).
//!
//! ```
//! use autodiff::Var;
//! use diffusion::models::unet_blocks::{DownBlock2D, DownBlockConfig};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let cfg = DownBlockConfig { num_layers: 2, ..DownBlockConfig::new(8, 16, 32, 4) };
//! let block = DownBlock2D::new(VarBuilder::from_init(&store, WichmannHill::seed(1)), &cfg).unwrap();
//! let (h, skips) = block.forward(&Var::constant(Tensor::ones([1, 8, 6, 6])), &Var::constant(Tensor::ones([1, 32])), None).unwrap();
//! assert_eq!(h.dims(), &[1, 16, 3, 3]);
//! assert_eq!(skips.len(), 3); // two resnets + the downsampler
//! ```

use autodiff::Var;

use crate::error::{DiffusionError, Result};
use crate::models::attention::{Transformer2DConfig, Transformer2DModel};
use crate::models::resnet::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};
use nn::VarBuilder;

/// Cross-attention settings of a block's transformers.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossAttnConfig {
    pub num_attention_heads: usize,
    pub cross_attention_dim: usize,
    pub transformer_layers: usize,
    pub use_linear_projection: bool,
    pub only_cross_attention: bool,
}

impl CrossAttnConfig {
    fn transformer(&self, channels: usize, groups: usize) -> Result<Transformer2DConfig> {
        let heads = self.num_attention_heads;
        if heads == 0 || !channels.is_multiple_of(heads) {
            return Err(DiffusionError::invalid(
                "CrossAttnConfig",
                format!("{heads} attention heads do not divide {channels} channels"),
            ));
        }
        Ok(Transformer2DConfig {
            num_attention_heads: heads,
            attention_head_dim: channels / heads,
            in_channels: channels,
            norm_num_groups: groups,
            cross_attention_dim: self.cross_attention_dim,
            num_layers: self.transformer_layers,
            use_linear_projection: self.use_linear_projection,
            only_cross_attention: self.only_cross_attention,
        })
    }
}

/// Settings of a down block (and, with `add_downsample` read as `add_upsample` and
/// `prev_output_channels`, of an up block).
#[derive(Clone, Debug, PartialEq)]
pub struct DownBlockConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub temb_channels: usize,
    pub num_layers: usize,
    pub resnet_groups: usize,
    pub resnet_eps: f64,
    pub output_scale_factor: f64,
    pub add_downsample: bool,
    pub downsample_padding: usize,
    /// `Some` for `CrossAttnDownBlock2D`.
    pub cross_attn: Option<CrossAttnConfig>,
}

impl DownBlockConfig {
    /// One layer, a downsampler, eps 1e-5, no transformers.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        temb_channels: usize,
        groups: usize,
    ) -> Self {
        DownBlockConfig {
            in_channels,
            out_channels,
            temb_channels,
            num_layers: 1,
            resnet_groups: groups,
            resnet_eps: 1e-5,
            output_scale_factor: 1.0,
            add_downsample: true,
            downsample_padding: 1,
            cross_attn: None,
        }
    }

    fn resnet(&self, cin: usize, cout: usize) -> ResnetBlock2DConfig {
        ResnetBlock2DConfig {
            temb_channels: Some(self.temb_channels),
            output_scale_factor: self.output_scale_factor,
            ..ResnetBlock2DConfig::new(cin, cout, self.resnet_groups, self.resnet_eps)
        }
    }
}

fn transformers(
    vb: &VarBuilder,
    cfg: &DownBlockConfig,
    n: usize,
) -> Result<Vec<Transformer2DModel>> {
    match &cfg.cross_attn {
        None => Ok(Vec::new()),
        Some(ca) => {
            let tcfg = ca.transformer(cfg.out_channels, cfg.resnet_groups)?;
            (0..n)
                .map(|i| Transformer2DModel::new(vb.pp("attentions").pp(i), &tcfg))
                .collect()
        }
    }
}

/// `DownBlock2D` (no `attentions`) or `CrossAttnDownBlock2D`.
#[derive(Clone, Debug)]
pub struct DownBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsampler: Option<Downsample2D>,
}

impl DownBlock2D {
    pub fn new(vb: VarBuilder, cfg: &DownBlockConfig) -> Result<Self> {
        let resnets = (0..cfg.num_layers)
            .map(|i| {
                let cin = if i == 0 {
                    cfg.in_channels
                } else {
                    cfg.out_channels
                };
                ResnetBlock2D::new(vb.pp("resnets").pp(i), &cfg.resnet(cin, cfg.out_channels))
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = transformers(&vb, cfg, cfg.num_layers)?;
        let downsampler = if cfg.add_downsample {
            let c = cfg.out_channels;
            Some(Downsample2D::new(
                vb.pp("downsamplers").pp(0),
                c,
                c,
                cfg.downsample_padding,
            )?)
        } else {
            None
        };
        Ok(DownBlock2D {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// `x: (B, C_in, H, W)`, `temb: (B, T)`, `context: (B, S, D)` (needed with
    /// transformers) -> (`(B, C_out, H', W')`, the skips in order).
    pub fn forward(&self, x: &Var, temb: &Var, context: Option<&Var>) -> Result<(Var, Vec<Var>)> {
        let mut h = x.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(&h, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(&h, need_context("CrossAttnDownBlock2D", context)?)?;
            }
            skips.push(h.clone());
        }
        if let Some(down) = &self.downsampler {
            h = down.forward(&h)?;
            skips.push(h.clone());
        }
        Ok((h, skips))
    }
}

fn need_context<'a>(op: &'static str, context: Option<&'a Var>) -> Result<&'a Var> {
    context
        .ok_or_else(|| DiffusionError::invalid(op, "cross-attention needs encoder_hidden_states"))
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) x layers.
#[derive(Clone, Debug)]
pub struct UNetMidBlock2DCrossAttn {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl UNetMidBlock2DCrossAttn {
    /// `cfg.in_channels == cfg.out_channels`; `cfg.num_layers` transformer layers (1 in SD).
    pub fn new(vb: VarBuilder, cfg: &DownBlockConfig) -> Result<Self> {
        let c = cfg.in_channels;
        let resnets = (0..=cfg.num_layers)
            .map(|i| ResnetBlock2D::new(vb.pp("resnets").pp(i), &cfg.resnet(c, c)))
            .collect::<Result<Vec<_>>>()?;
        let attentions = transformers(&vb, cfg, cfg.num_layers)?;
        if attentions.len() != cfg.num_layers {
            return Err(DiffusionError::invalid(
                "UNetMidBlock2DCrossAttn",
                "the mid block needs cross-attention settings",
            ));
        }
        Ok(UNetMidBlock2DCrossAttn {
            resnets,
            attentions,
        })
    }

    /// `(B, C, H, W) -> (B, C, H, W)`.
    pub fn forward(&self, x: &Var, temb: &Var, context: &Var) -> Result<Var> {
        let mut h = x.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            if i > 0 {
                h = self.attentions[i - 1].forward(&h, context)?;
            }
            h = resnet.forward(&h, Some(temb))?;
        }
        Ok(h)
    }
}

/// `UpBlock2D` (no `attentions`) or `CrossAttnUpBlock2D`.
#[derive(Clone, Debug)]
pub struct UpBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsampler: Option<Upsample2D>,
}

impl UpBlock2D {
    /// `cfg.in_channels` is the channels of the deepest skip this block takes (the
    /// previous level's output), `prev_output_channels` the incoming hidden state's;
    /// `cfg.num_layers` resnets (layers_per_block + 1); `cfg.add_downsample` means
    /// "add an upsampler".
    pub fn new(vb: VarBuilder, cfg: &DownBlockConfig, prev_output_channels: usize) -> Result<Self> {
        let n = cfg.num_layers;
        let resnets = (0..n)
            .map(|i| {
                let skip = if i == n - 1 {
                    cfg.in_channels
                } else {
                    cfg.out_channels
                };
                let cin = if i == 0 {
                    prev_output_channels
                } else {
                    cfg.out_channels
                };
                ResnetBlock2D::new(
                    vb.pp("resnets").pp(i),
                    &cfg.resnet(cin + skip, cfg.out_channels),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let attentions = transformers(&vb, cfg, n)?;
        let upsampler = if cfg.add_downsample {
            let c = cfg.out_channels;
            Some(Upsample2D::new(vb.pp("upsamplers").pp(0), c, c)?)
        } else {
            None
        };
        Ok(UpBlock2D {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// `x: (B, C_prev, H, W)`, `skips`: this block's skips in down order (the last one
    /// is used first), `upsample_size`: the size to upsample to (`None`: x2) ->
    /// `(B, C_out, H', W')`.
    pub fn forward(
        &self,
        x: &Var,
        skips: &[Var],
        temb: &Var,
        context: Option<&Var>,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Var> {
        if skips.len() != self.resnets.len() {
            return Err(DiffusionError::invalid(
                "UpBlock2D",
                format!(
                    "{} resnets need as many skips, got {}",
                    self.resnets.len(),
                    skips.len()
                ),
            ));
        }
        let mut h = x.clone();
        for (i, (resnet, skip)) in self.resnets.iter().zip(skips.iter().rev()).enumerate() {
            h = Var::cat(&[&h, skip], 1)?;
            h = resnet.forward(&h, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(&h, need_context("CrossAttnUpBlock2D", context)?)?;
            }
        }
        if let Some(up) = &self.upsampler {
            h = up.forward(&h, upsample_size)?;
        }
        Ok(h)
    }
}
