//! A small UNet that predicts the noise `eps` in `x_t`, built from the diffusion
//! library's own blocks (`diffusion/src/models/{resnet,embeddings}.rs`), the same
//! `ResnetBlock2D`, `Downsample2D`, `Upsample2D`, `Timesteps` and `TimestepEmbedding`
//! that Stable Diffusion's UNet is made of, without the attention and text parts:
//!
//! ```text
//! t (B,) -sinusoids(32)-> linear, SiLU, linear -> temb (B, 128)
//! x (B,1,28,28) -conv_in-> (B,c0,28,28) -res(temb)-> skip0
//!   -down-> (B,c0,14,14) -res(temb)-> (B,c1,14,14) = skip1 -down-> (B,c1,7,7)
//!   -mid res(temb)-> (B,c1,7,7)
//!   -up-> (B,c1,14,14) ++ skip1 -res(temb)-> (B,c1,14,14)
//!   -up-> (B,c0,28,28) ++ skip0 -res(temb)-> (B,c0,28,28) -GN,SiLU,conv_out-> (B,1,28,28)
//! ```

use autodiff::Var;
use diffusion::models::embeddings::{TimestepEmbedding, Timesteps};
use diffusion::models::resnet::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};
use diffusion::Result;
use nn::{Conv2d, Conv2dConfig, GroupNorm, Module, ParamStore, VarBuilder};
use tensor::random::WichmannHill;

/// Sizes of the denoiser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenoiserConfig {
    /// Channels at 28x28 and at 14x14 / 7x7.
    pub channels: [usize; 2],
    /// Sinusoid width and time-embedding width.
    pub time_proj: usize,
    pub time_embed: usize,
    /// GroupNorm groups.
    pub groups: usize,
}

impl Default for DenoiserConfig {
    fn default() -> Self {
        DenoiserConfig {
            channels: [16, 32],
            time_proj: 32,
            time_embed: 128,
            groups: 8,
        }
    }
}

/// The eps-prediction network.
pub struct Denoiser {
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    conv_in: Conv2d,
    down0: ResnetBlock2D,
    downsample0: Downsample2D,
    down1: ResnetBlock2D,
    downsample1: Downsample2D,
    mid: ResnetBlock2D,
    upsample1: Upsample2D,
    up1: ResnetBlock2D,
    upsample0: Upsample2D,
    up0: ResnetBlock2D,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Denoiser {
    pub fn new(vb: VarBuilder, cfg: DenoiserConfig) -> Result<Denoiser> {
        let [c0, c1] = cfg.channels;
        let res = |vb: VarBuilder, cin: usize, cout: usize| {
            let rc = ResnetBlock2DConfig {
                temb_channels: Some(cfg.time_embed),
                ..ResnetBlock2DConfig::new(cin, cout, cfg.groups, 1e-5)
            };
            ResnetBlock2D::new(vb, &rc)
        };
        let same = Conv2dConfig::padding(1);
        Ok(Denoiser {
            time_proj: Timesteps::new(cfg.time_proj, true, 0.0),
            time_embedding: TimestepEmbedding::new(
                vb.pp("time_embedding"),
                cfg.time_proj,
                cfg.time_embed,
            )?,
            conv_in: Conv2d::new(vb.pp("conv_in"), 1, c0, 3, same, true)?,
            down0: res(vb.pp("down0"), c0, c0)?,
            downsample0: Downsample2D::new(vb.pp("downsample0"), c0, c0, 1)?,
            down1: res(vb.pp("down1"), c0, c1)?,
            downsample1: Downsample2D::new(vb.pp("downsample1"), c1, c1, 1)?,
            mid: res(vb.pp("mid"), c1, c1)?,
            upsample1: Upsample2D::new(vb.pp("upsample1"), c1, c1)?,
            up1: res(vb.pp("up1"), 2 * c1, c1)?,
            upsample0: Upsample2D::new(vb.pp("upsample0"), c1, c0)?,
            up0: res(vb.pp("up0"), 2 * c0, c0)?,
            norm_out: GroupNorm::new(vb.pp("norm_out"), cfg.groups, c0, 1e-5)?,
            conv_out: Conv2d::new(vb.pp("conv_out"), c0, 1, 3, same, true)?,
        })
    }

    /// `x: (B, 1, 28, 28)`, one timestep per batch element -> predicted eps (B, 1, 28, 28).
    pub fn forward(&self, x: &Var, t: &[f64]) -> Result<Var> {
        let temb = self.time_embedding.forward(&self.time_proj.forward(t)?)?;
        let temb = Some(&temb);
        let h = self.conv_in.forward(x)?;
        let skip0 = self.down0.forward(&h, temb)?;
        let h = self.downsample0.forward(&skip0)?;
        let skip1 = self.down1.forward(&h, temb)?;
        let h = self.downsample1.forward(&skip1)?;
        let h = self.mid.forward(&h, temb)?;
        let h = self.upsample1.forward(&h, None)?;
        let h = self.up1.forward(&Var::cat(&[&h, &skip1], 1)?, temb)?;
        let h = self.upsample0.forward(&h, None)?;
        let h = self.up0.forward(&Var::cat(&[&h, &skip0], 1)?, temb)?;
        let h = self.norm_out.forward(&h)?.silu()?;
        Ok(self.conv_out.forward(&h)?)
    }
}

/// A fresh denoiser with weights from `WichmannHill::seed(seed)`.
pub fn build(seed: u64, cfg: DenoiserConfig) -> Result<(ParamStore, Denoiser)> {
    let store = ParamStore::new();
    let d = Denoiser::new(VarBuilder::from_init(&store, WichmannHill::seed(seed)), cfg)?;
    Ok((store, d))
}
