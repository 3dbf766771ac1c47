//! The VAE's encoder and decoder (`lessons/10-stable-diffusion`; diffusers
//! `models/autoencoders/vae.py` `Encoder`, `Decoder`, and from
//! `models/unets/unet_2d_blocks.py` `DownEncoderBlock2D`, `UpDecoderBlock2D`,
//! `UNetMidBlock2D`, with the mid-block `Attention` of `models/attention_processor.py`).
//!
//! - [`Encoder`]: `x: (B, 3, H, W)` -> `conv_in` -> down blocks (`layers` resnets, then a
//!   stride-2 conv with one-sided padding, except the last) -> mid block -> GroupNorm,
//!   SiLU, `conv_out` -> `(B, 2 * latent, H / f, W / f)` (mean and log-variance),
//!   `f = 2^(levels - 1)`.
//! - [`Decoder`]: `z: (B, latent, h, w)` -> `conv_in` -> mid block -> up blocks
//!   (`layers + 1` resnets, then nearest x2 + conv, except the last) -> GroupNorm,
//!   SiLU, `conv_out` -> `(B, 3, h f, w f)`.
//! - [`UNetMidBlock2D`]: resnet, [`VaeAttention`], resnet.
//! - [`VaeAttention`]: single-head self-attention over the `H W` pixels with its own
//!   GroupNorm and a residual: `x + to_out(attn(group_norm(x)))`, q/k/v with biases.
//!
//! Every GroupNorm here uses eps 1e-6; there is no time embedding.
//!
//! ```
//! use autodiff::Var;
//! use diffusion::models::vae_blocks::{Decoder, VaeLayout};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let layout = VaeLayout { in_channels: 3, out_channels: 3, latent_channels: 4, block_out_channels: vec![8, 16], layers_per_block: 1, norm_num_groups: 4, mid_block_add_attention: true };
//! let store = ParamStore::new();
//! let dec = Decoder::new(VarBuilder::from_init(&store, WichmannHill::seed(1)), &layout).unwrap();
//! let img = dec.forward(&Var::constant(Tensor::ones([1, 4, 3, 5]))).unwrap();
//! assert_eq!(img.dims(), &[1, 3, 6, 10]);
//! ```

use autodiff::Var;
use nn::{
    AttentionConfig, AttentionNames, Conv2d, Conv2dConfig, GroupNorm, Module, MultiHeadAttention,
    VarBuilder,
};

use crate::error::{DiffusionError, Result};
use crate::models::resnet::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};

const EPS: f64 = 1e-6;

/// The sizes the encoder and decoder share (from `AutoencoderKLConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct VaeLayout {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub mid_block_add_attention: bool,
}

impl VaeLayout {
    fn check(&self) -> Result<()> {
        if self.block_out_channels.is_empty() || self.layers_per_block == 0 {
            return Err(DiffusionError::invalid(
                "AutoencoderKL",
                format!("needs at least one block and one layer per block, got {self:?}"),
            ));
        }
        Ok(())
    }
}

fn resnet(vb: VarBuilder, cin: usize, cout: usize, groups: usize) -> Result<ResnetBlock2D> {
    ResnetBlock2D::new(vb, &ResnetBlock2DConfig::new(cin, cout, groups, EPS))
}

/// The VAE mid block's single-head attention with GroupNorm and residual.
#[derive(Clone, Debug)]
pub struct VaeAttention {
    pub group_norm: GroupNorm,
    pub attn: MultiHeadAttention,
}

impl VaeAttention {
    /// `vb.group_norm`, `vb.to_q/to_k/to_v` (with bias), `vb.to_out.0`; one head of `channels`.
    pub fn new(vb: VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        let cfg = AttentionConfig {
            query_dim: channels,
            context_dim: None,
            heads: 1,
            head_dim: channels,
            qkv_bias: true,
            out_bias: true,
            names: AttentionNames::DIFFUSERS,
        };
        Ok(VaeAttention {
            group_norm: GroupNorm::new(vb.pp("group_norm"), groups, channels, EPS)?,
            attn: MultiHeadAttention::new(vb, cfg)?,
        })
    }

    /// `(B, C, H, W) -> (B, C, H, W)`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let [b, c, h, w] = *x.dims() else {
            return Err(DiffusionError::invalid(
                "VaeAttention",
                format!("expected (B, C, H, W), got {:?}", x.dims()),
            ));
        };
        let tokens = self
            .group_norm
            .forward(x)?
            .reshape([b, c, h * w])?
            .transpose(1, 2)?;
        let out = self.attn.forward_with(&tokens, None, None)?; // (B, H W, C)
        let out = out.transpose(1, 2)?.reshape([b, c, h, w])?;
        Ok(out.add(x)?)
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Clone, Debug)]
pub struct UNetMidBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub attention: Option<VaeAttention>,
}

impl UNetMidBlock2D {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        groups: usize,
        add_attention: bool,
    ) -> Result<Self> {
        let attention = if add_attention {
            Some(VaeAttention::new(
                vb.pp("attentions").pp(0),
                channels,
                groups,
            )?)
        } else {
            None
        };
        Ok(UNetMidBlock2D {
            resnets: vec![
                resnet(vb.pp("resnets").pp(0), channels, channels, groups)?,
                resnet(vb.pp("resnets").pp(1), channels, channels, groups)?,
            ],
            attention,
        })
    }

    /// `(B, C, H, W) -> (B, C, H, W)`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = self.resnets[0].forward(x, None)?;
        if let Some(a) = &self.attention {
            h = a.forward(&h)?;
        }
        self.resnets[1].forward(&h, None)
    }
}

/// `DownEncoderBlock2D`: resnets then an optional one-sided-padding downsampler.
#[derive(Clone, Debug)]
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsampler: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    /// `(B, C, H, W) -> (B, C_out, H / 2, W / 2)` (or the same size for the last block).
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for r in &self.resnets {
            h = r.forward(&h, None)?;
        }
        match &self.downsampler {
            Some(d) => d.forward(&h),
            None => Ok(h),
        }
    }
}

/// `UpDecoderBlock2D`: resnets then an optional x2 upsampler.
#[derive(Clone, Debug)]
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsampler: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    /// `(B, C, H, W) -> (B, C_out, 2H, 2W)` (or the same size for the last block).
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for r in &self.resnets {
            h = r.forward(&h, None)?;
        }
        match &self.upsampler {
            Some(u) => u.forward(&h, None),
            None => Ok(h),
        }
    }
}

/// Image -> moments (mean and log-variance stacked on channels).
#[derive(Clone, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    /// `vb` is the `encoder` prefix.
    pub fn new(vb: VarBuilder, l: &VaeLayout) -> Result<Self> {
        l.check()?;
        let boc = &l.block_out_channels;
        let g = l.norm_num_groups;
        let same = Conv2dConfig::padding(1);
        let conv_in = Conv2d::new(vb.pp("conv_in"), l.in_channels, boc[0], 3, same, true)?;
        let mut down_blocks = Vec::with_capacity(boc.len());
        let mut out = boc[0];
        for (i, &c) in boc.iter().enumerate() {
            let (cin, vbb) = (out, vb.pp("down_blocks").pp(i));
            out = c;
            let resnets = (0..l.layers_per_block)
                .map(|j| resnet(vbb.pp("resnets").pp(j), if j == 0 { cin } else { c }, c, g))
                .collect::<Result<Vec<_>>>()?;
            let downsampler = if i + 1 < boc.len() {
                Some(Downsample2D::new(vbb.pp("downsamplers").pp(0), c, c, 0)?)
            } else {
                None
            };
            down_blocks.push(DownEncoderBlock2D {
                resnets,
                downsampler,
            });
        }
        let last = out;
        Ok(Encoder {
            conv_in,
            down_blocks,
            mid_block: UNetMidBlock2D::new(vb.pp("mid_block"), last, g, l.mid_block_add_attention)?,
            conv_norm_out: GroupNorm::new(vb.pp("conv_norm_out"), g, last, EPS)?,
            conv_out: Conv2d::new(
                vb.pp("conv_out"),
                last,
                2 * l.latent_channels,
                3,
                same,
                true,
            )?,
        })
    }

    /// `(B, C_in, H, W) -> (B, 2 latent, H / f, W / f)`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = self.conv_in.forward(x)?;
        for b in &self.down_blocks {
            h = b.forward(&h)?;
        }
        let h = self.mid_block.forward(&h)?;
        let h = self.conv_norm_out.forward(&h)?.silu()?;
        Ok(self.conv_out.forward(&h)?)
    }
}

/// Latents -> image.
#[derive(Clone, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    /// `vb` is the `decoder` prefix.
    pub fn new(vb: VarBuilder, l: &VaeLayout) -> Result<Self> {
        l.check()?;
        let rev: Vec<usize> = l.block_out_channels.iter().rev().copied().collect();
        let g = l.norm_num_groups;
        let same = Conv2dConfig::padding(1);
        let conv_in = Conv2d::new(vb.pp("conv_in"), l.latent_channels, rev[0], 3, same, true)?;
        let mid_block =
            UNetMidBlock2D::new(vb.pp("mid_block"), rev[0], g, l.mid_block_add_attention)?;
        let mut up_blocks = Vec::with_capacity(rev.len());
        let mut out = rev[0];
        for (i, &c) in rev.iter().enumerate() {
            let (cin, vbb) = (out, vb.pp("up_blocks").pp(i));
            out = c;
            let resnets = (0..=l.layers_per_block)
                .map(|j| resnet(vbb.pp("resnets").pp(j), if j == 0 { cin } else { c }, c, g))
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i + 1 < rev.len() {
                Some(Upsample2D::new(vbb.pp("upsamplers").pp(0), c, c)?)
            } else {
                None
            };
            up_blocks.push(UpDecoderBlock2D { resnets, upsampler });
        }
        Ok(Decoder {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::new(vb.pp("conv_norm_out"), g, out, EPS)?,
            conv_out: Conv2d::new(vb.pp("conv_out"), out, l.out_channels, 3, same, true)?,
        })
    }

    /// `(B, latent, h, w) -> (B, C_out, h f, w f)`.
    pub fn forward(&self, z: &Var) -> Result<Var> {
        let h = self.conv_in.forward(z)?;
        let mut h = self.mid_block.forward(&h)?;
        for b in &self.up_blocks {
            h = b.forward(&h)?;
        }
        let h = self.conv_norm_out.forward(&h)?.silu()?;
        Ok(self.conv_out.forward(&h)?)
    }
}
