//! The convolutional pieces of the UNet and the VAE (`lessons/10-stable-diffusion`;
//! diffusers `models/resnet.py` `ResnetBlock2D`, `models/downsampling.py`
//! `Downsample2D`, `models/upsampling.py` `Upsample2D`).
//!
//! - [`ResnetBlock2D`]: `x: (B, C_in, H, W)`, optional `temb: (B, T)` ->
//!   `(B, C_out, H, W)`:
//!   `h = conv1(silu(norm1(x)))`, `h += time_emb_proj(silu(temb))[:, :, None, None]`,
//!   `h = conv2(silu(norm2(h)))` (dropout is the identity at inference),
//!   `out = (shortcut(x) + h) / output_scale_factor`, where the shortcut is a 1x1
//!   `conv_shortcut` when `C_in != C_out`, else the identity. Both GroupNorms use the
//!   block's `eps` (1e-5 in the SD UNet from `norm_eps`, 1e-6 in the VAE).
//! - [`Downsample2D`]: a 3x3 stride-2 conv (`(H, W) -> (ceil(H/2), ceil(W/2))`); the
//!   UNet pads by 1 on every side, the VAE encoder (`padding = 0`) pads only right
//!   and bottom by 1 first, as diffusers does.
//! - [`Upsample2D`]: nearest-neighbour x2 (or to an explicit size) then a 3x3 conv.
//!
//! ```
//! use autodiff::Var;
//! use diffusion::models::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
//! let cfg = ResnetBlock2DConfig { temb_channels: Some(16), ..ResnetBlock2DConfig::new(8, 12, 4, 1e-5) };
//! let block = ResnetBlock2D::new(vb.pp("resnets").pp(0), &cfg).unwrap();
//! let x = Var::constant(Tensor::ones([2, 8, 5, 3]));
//! let temb = Var::constant(Tensor::ones([2, 16]));
//! assert_eq!(block.forward(&x, Some(&temb)).unwrap().dims(), &[2, 12, 5, 3]);
//! assert!(store.names().contains(&"resnets.0.conv_shortcut.weight".to_string()));
//! ```

use autodiff::Var;
use nn::{Conv2d, Conv2dConfig, GroupNorm, Linear, Module, VarBuilder};

use crate::error::Result;

/// Sizes and settings of a [`ResnetBlock2D`] (diffusers' constructor arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct ResnetBlock2DConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding; `None` for the VAE's blocks (no `time_emb_proj`).
    pub temb_channels: Option<usize>,
    pub groups: usize,
    /// Groups of `norm2`; `None` means `groups`.
    pub groups_out: Option<usize>,
    pub eps: f64,
    pub output_scale_factor: f64,
    /// Force (or forbid) the 1x1 shortcut; `None`: only when `in != out`.
    pub use_in_shortcut: Option<bool>,
}

impl ResnetBlock2DConfig {
    /// `in -> out` channels, `groups` GroupNorm groups, `eps`; no time embedding.
    pub fn new(in_channels: usize, out_channels: usize, groups: usize, eps: f64) -> Self {
        ResnetBlock2DConfig {
            in_channels,
            out_channels,
            temb_channels: None,
            groups,
            groups_out: None,
            eps,
            output_scale_factor: 1.0,
            use_in_shortcut: None,
        }
    }
}

/// Two 3x3 convs with GroupNorm + SiLU before each, a time-embedding shift in the
/// middle, and a residual connection.
#[derive(Clone, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn new(vb: VarBuilder, cfg: &ResnetBlock2DConfig) -> Result<Self> {
        let (cin, cout) = (cfg.in_channels, cfg.out_channels);
        let same = Conv2dConfig::padding(1);
        let time_emb_proj = match cfg.temb_channels {
            Some(t) => Some(Linear::new(vb.pp("time_emb_proj"), t, cout, true)?),
            None => None,
        };
        let shortcut = cfg.use_in_shortcut.unwrap_or(cin != cout);
        let conv_shortcut = if shortcut {
            Some(Conv2d::new(
                vb.pp("conv_shortcut"),
                cin,
                cout,
                1,
                Conv2dConfig::default(),
                true,
            )?)
        } else {
            None
        };
        Ok(ResnetBlock2D {
            norm1: GroupNorm::new(vb.pp("norm1"), cfg.groups, cin, cfg.eps)?,
            conv1: Conv2d::new(vb.pp("conv1"), cin, cout, 3, same, true)?,
            time_emb_proj,
            norm2: GroupNorm::new(
                vb.pp("norm2"),
                cfg.groups_out.unwrap_or(cfg.groups),
                cout,
                cfg.eps,
            )?,
            conv2: Conv2d::new(vb.pp("conv2"), cout, cout, 3, same, true)?,
            conv_shortcut,
            output_scale_factor: cfg.output_scale_factor,
        })
    }

    /// `x: (B, C_in, H, W)`, `temb: (B, T)` (ignored when the block has no
    /// `time_emb_proj`) -> `(B, C_out, H, W)`.
    pub fn forward(&self, x: &Var, temb: Option<&Var>) -> Result<Var> {
        let h = self.norm1.forward(x)?.silu()?;
        let mut h = self.conv1.forward(&h)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&t.silu()?)?; // (B, C_out)
            let t = t.unsqueeze(-1)?.unsqueeze(-1)?; // (B, C_out, 1, 1)
            h = h.add(&t)?;
        }
        let h = self.norm2.forward(&h)?.silu()?;
        let h = self.conv2.forward(&h)?;
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        let out = skip.add(&h)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            Ok(out.mul_scalar((1.0 / self.output_scale_factor) as f32)?)
        }
    }
}

/// A stride-2 3x3 conv named `conv` (diffusers' `Downsample2D(use_conv=True, name="op")`).
#[derive(Clone, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
    /// 1 in the UNet; 0 in the VAE encoder, which then pads right/bottom by one.
    pub padding: usize,
}

impl Downsample2D {
    /// `vb.conv: (out, in, 3, 3)`.
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        padding: usize,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride: 2,
            padding,
            ..Default::default()
        };
        Ok(Downsample2D {
            conv: Conv2d::new(vb.pp("conv"), in_channels, out_channels, 3, cfg, true)?,
            padding,
        })
    }

    /// `(B, C, H, W) -> (B, C_out, H', W')`: `H' = ceil(H / 2)` in the UNet
    /// (padding 1), `floor(H / 2)` in the VAE (`H + 1` after the one-sided pad).
    pub fn forward(&self, x: &Var) -> Result<Var> {
        if self.padding == 0 {
            let padded = x.pad(&[(0, 1), (0, 1)], 0.0)?;
            return Ok(self.conv.forward(&padded)?);
        }
        Ok(self.conv.forward(x)?)
    }
}

/// Nearest-neighbour upsampling then a 3x3 conv named `conv`.
#[derive(Clone, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    /// `vb.conv: (out, in, 3, 3)`, padding 1.
    pub fn new(vb: VarBuilder, in_channels: usize, out_channels: usize) -> Result<Self> {
        Ok(Upsample2D {
            conv: Conv2d::new(
                vb.pp("conv"),
                in_channels,
                out_channels,
                3,
                Conv2dConfig::padding(1),
                true,
            )?,
        })
    }

    /// `(B, C, H, W) -> (B, C_out, 2H, 2W)`, or `(B, C_out, h, w)` with
    /// `output_size = Some((h, w))` (the UNet passes the skip's size when the latent
    /// is not a multiple of `2^levels`).
    pub fn forward(&self, x: &Var, output_size: Option<(usize, usize)>) -> Result<Var> {
        let up = match output_size {
            Some((h, w)) => x.upsample_nearest2d(h, w)?,
            None => x.upsample_nearest2d_scale(2)?,
        };
        Ok(self.conv.forward(&up)?)
    }
}
