//! `AutoencoderKL`: Stable Diffusion's VAE, images <-> latents 8x smaller per side
//! (`lessons/10-stable-diffusion`; diffusers `models/autoencoders/autoencoder_kl.py`,
//! `DiagonalGaussianDistribution` in `models/autoencoders/vae.py`).
//!
//! - [`AutoencoderKL::encode`]: `x: (B, 3, H, W)` in [-1, 1] -> encoder -> `quant_conv`
//!   -> moments `(B, 2 latent, H / f, W / f)` -> [`DiagonalGaussianDistribution`]
//!   (`mean`, `logvar` clamped to [-30, 20], `std = exp(logvar / 2)`). Pipelines use
//!   `sample(generator) * scaling_factor` (0.18215 for SD 1.x).
//! - [`AutoencoderKL::decode`]: `z: (B, latent, h, w)` (already divided by
//!   `scaling_factor`) -> `post_quant_conv` -> decoder -> `(B, 3, h f, w f)`.
//! - [`AutoencoderKL::decode_tiled`]: diffusers' `tiled_decode` (what `enable_tiling()`
//!   does): the latent is cut into tiles of `sample_size / f` overlapping by a quarter,
//!   each decoded alone, and neighbouring tiles cross-faded over `sample_size / 4`
//!   pixels (`blend_v`, `blend_h`), so memory stays that of one tile.
//! - [`AutoencoderKL::load`]: a safetensors file, also with the old attention names
//!   (`query`/`key`/`value`/`proj_attn`, some as 1x1 conv weights), renamed on load.
//!
//! ```
//! use autodiff::Var;
//! use diffusion::models::vae::DiagonalGaussianDistribution;
//! use tensor::Tensor;
//! // channels: mean 0.5, logvar 50 (clamped to 20)
//! let moments = Var::constant(Tensor::from_vec(vec![0.5, 50.0], [1, 2, 1, 1]).unwrap());
//! let d = DiagonalGaussianDistribution::new(&moments).unwrap();
//! assert_eq!(d.logvar.to_vec().unwrap(), vec![20.0]);
//! assert!((d.std.to_vec().unwrap()[0] - 10f32.exp()).abs() < 1.0);
//! assert_eq!(d.mode().to_vec().unwrap(), vec![0.5]);
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use autodiff::Var;
use nn::{Conv2d, Conv2dConfig, Module, ParamStore, VarBuilder};
use serde::{Deserialize, Serialize};
use tensor::io::SafeTensorsFile;
use tensor::random::TorchGenerator;
use tensor::Tensor;

use crate::config::read_config;
use crate::error::{DiffusionError, Result};
use crate::models::unet_2d_condition::OneOrMany;
use crate::models::vae_blocks::{Decoder, Encoder, VaeLayout};

/// diffusers' `AutoencoderKL` config (`vae/config.json`), with diffusers' defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// Image size the VAE was trained at; sets the tile size of `decode_tiled`.
    pub sample_size: OneOrMany<usize>,
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    pub latents_mean: Option<Vec<f64>>,
    pub latents_std: Option<Vec<f64>>,
    pub force_upcast: bool,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
}

impl Default for AutoencoderKLConfig {
    fn default() -> Self {
        AutoencoderKLConfig {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: OneOrMany::One(32),
            scaling_factor: 0.18215,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

impl AutoencoderKLConfig {
    /// Read `vae/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config(path)
    }

    /// Pixels per latent per side, `2^(levels - 1)` (8 for SD).
    pub fn downscale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    fn validate(&self) -> Result<VaeLayout> {
        let bad = |msg: String| Err(DiffusionError::config(Path::new("vae/config.json"), msg));
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "block_out_channels ({n}), down_block_types ({}) and up_block_types ({}) must have the same non-zero length",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        if let Some(t) = self
            .down_block_types
            .iter()
            .find(|t| *t != "DownEncoderBlock2D")
        {
            return bad(format!("down block type {t:?} is not supported"));
        }
        if let Some(t) = self
            .up_block_types
            .iter()
            .find(|t| *t != "UpDecoderBlock2D")
        {
            return bad(format!("up block type {t:?} is not supported"));
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return bad(format!("act_fn {:?} is not supported", self.act_fn));
        }
        Ok(VaeLayout {
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            latent_channels: self.latent_channels,
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            norm_num_groups: self.norm_num_groups,
            mid_block_add_attention: self.mid_block_add_attention,
        })
    }
}

/// A diagonal Gaussian per latent element: the encoder's posterior.
#[derive(Clone, Debug)]
pub struct DiagonalGaussianDistribution {
    /// `(B, latent, h, w)`.
    pub mean: Var,
    /// Clamped to [-30, 20].
    pub logvar: Var,
    /// `exp(logvar / 2)`.
    pub std: Var,
}

impl DiagonalGaussianDistribution {
    /// From moments `(B, 2 latent, h, w)`: the first half of the channels is the mean.
    pub fn new(moments: &Var) -> Result<Self> {
        let c = moments.dims().get(1).copied().unwrap_or(0);
        if moments.rank() != 4 || !c.is_multiple_of(2) {
            return Err(DiffusionError::invalid(
                "DiagonalGaussianDistribution",
                format!("moments must be (B, 2C, H, W), got {:?}", moments.dims()),
            ));
        }
        let mean = moments.narrow(1, 0, c / 2)?;
        let logvar = moments.narrow(1, c / 2, c / 2)?.clamp(-30.0, 20.0)?;
        let std = logvar.mul_scalar(0.5)?.exp()?;
        Ok(DiagonalGaussianDistribution { mean, logvar, std })
    }

    /// `mean + std * eps` with `eps = torch.randn(mean.shape, generator)`.
    pub fn sample(&self, generator: &mut TorchGenerator) -> Result<Var> {
        let eps = Var::constant(generator.randn(self.mean.dims().to_vec())?);
        Ok(self.mean.add(&self.std.mul(&eps)?)?)
    }

    /// The most likely latent, the mean.
    pub fn mode(&self) -> Var {
        self.mean.clone()
    }

    /// `KL(q || N(0, I))` per batch element: `0.5 sum(mean^2 + var - 1 - logvar)` -> `(B,)`.
    pub fn kl(&self) -> Result<Var> {
        let var = self.logvar.exp()?;
        let t = self
            .mean
            .sqr()?
            .add(&var)?
            .sub(&self.logvar)?
            .add_scalar(-1.0)?;
        Ok(t.sum(&[1, 2, 3], false)?.mul_scalar(0.5)?)
    }
}

/// The variational autoencoder.
#[derive(Clone, Debug)]
pub struct AutoencoderKL {
    config: AutoencoderKLConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Option<Conv2d>,
}

/// Rename an old attention key (`...attentions.0.query.weight` -> `...to_q.weight`).
fn rename_old_key(key: &str) -> Option<String> {
    if !key.contains("attentions.") {
        return None;
    }
    let parts: Vec<&str> = key.split('.').collect();
    let renamed: Vec<&str> = parts
        .iter()
        .map(|p| match *p {
            "query" => "to_q",
            "key" => "to_k",
            "value" => "to_v",
            "proj_attn" => "to_out.0",
            other => other,
        })
        .collect();
    (renamed != parts).then(|| renamed.join("."))
}

impl AutoencoderKL {
    pub fn new(vb: VarBuilder, cfg: &AutoencoderKLConfig) -> Result<Self> {
        let layout = cfg.validate()?;
        let l2 = 2 * cfg.latent_channels;
        let l1 = cfg.latent_channels;
        let one = Conv2dConfig::default();
        let encoder = Encoder::new(vb.pp("encoder"), &layout)?;
        let decoder = Decoder::new(vb.pp("decoder"), &layout)?;
        let quant_conv = match cfg.use_quant_conv {
            true => Some(Conv2d::new(vb.pp("quant_conv"), l2, l2, 1, one, true)?),
            false => None,
        };
        let post_quant_conv = match cfg.use_post_quant_conv {
            true => Some(Conv2d::new(vb.pp("post_quant_conv"), l1, l1, 1, one, true)?),
            false => None,
        };
        Ok(AutoencoderKL {
            config: cfg.clone(),
            encoder,
            decoder,
            quant_conv,
            post_quant_conv,
        })
    }

    /// Load a safetensors file strictly (every key used, shapes checked). Old
    /// attention names are renamed, and `(out, in, 1, 1)` q/k/v/out weights reshaped
    /// to `(out, in)`.
    pub fn load(store: &ParamStore, path: &Path, cfg: &AutoencoderKLConfig) -> Result<Self> {
        let file = SafeTensorsFile::open(path)?;
        let has_old = file.names().iter().any(|k| rename_old_key(k).is_some());
        let vb = if has_old {
            let mut map = BTreeMap::new();
            for (k, t) in file.load_all()? {
                match rename_old_key(&k) {
                    Some(new) => {
                        let t = match *t.dims() {
                            [o, i, 1, 1] if new.ends_with(".weight") => t.reshape([o, i])?,
                            _ => t,
                        };
                        map.insert(new, t);
                    }
                    None => {
                        map.insert(k, t);
                    }
                }
            }
            VarBuilder::from_tensors(store, map, path.display().to_string())
        } else {
            drop(file);
            VarBuilder::from_safetensors(store, path)?
        };
        let vae = Self::new(vb.clone(), cfg)?;
        vb.finish()?;
        Ok(vae)
    }

    /// Load a diffusers `vae/` folder: `config.json` + `diffusion_pytorch_model.safetensors`.
    pub fn from_pretrained(store: &ParamStore, dir: &Path) -> Result<Self> {
        let cfg = AutoencoderKLConfig::from_file(&dir.join("config.json"))?;
        Self::load(
            store,
            &dir.join("diffusion_pytorch_model.safetensors"),
            &cfg,
        )
    }

    /// The config the model was built from.
    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    /// `x: (B, C_in, H, W)` -> the posterior over latents `(B, latent, H / f, W / f)`.
    pub fn encode(&self, x: &Var) -> Result<DiagonalGaussianDistribution> {
        let h = self.encoder.forward(x)?;
        let h = match &self.quant_conv {
            Some(q) => q.forward(&h)?,
            None => h,
        };
        DiagonalGaussianDistribution::new(&h)
    }

    /// `z: (B, latent, h, w) -> (B, C_out, h f, w f)`.
    pub fn decode(&self, z: &Var) -> Result<Var> {
        let z = match &self.post_quant_conv {
            Some(q) => q.forward(z)?,
            None => z.clone(),
        };
        self.decoder.forward(&z)
    }

    /// `(tile_sample, tile_latent)`: tile sizes in pixels and latents, from `sample_size`.
    pub fn tile_sizes(&self) -> (usize, usize) {
        let s = match &self.config.sample_size {
            OneOrMany::One(s) => *s,
            OneOrMany::Many(v) => v.first().copied().unwrap_or(0),
        };
        (s, s / self.config.downscale_factor())
    }

    /// Decode in overlapping tiles (diffusers' `tiled_decode` as `enable_tiling()`
    /// uses it: a latent no larger than one tile is decoded whole). Same shapes as
    /// [`AutoencoderKL::decode`].
    pub fn decode_tiled(&self, z: &Var) -> Result<Var> {
        let (tile_sample, tile_latent) = self.tile_sizes();
        let [_, _, h, w] = *z.dims() else {
            return Err(DiffusionError::invalid(
                "decode_tiled",
                format!("z must be (B, C, h, w), got {:?}", z.dims()),
            ));
        };
        if h <= tile_latent && w <= tile_latent {
            return self.decode(z);
        }
        let overlap = (tile_latent as f64 * 0.75) as usize;
        let blend_extent = (tile_sample as f64 * 0.25) as usize;
        let row_limit = tile_sample - blend_extent;
        if overlap == 0 || row_limit == 0 {
            return Err(DiffusionError::invalid(
                "decode_tiled",
                format!("sample_size {tile_sample} is too small to tile"),
            ));
        }
        let mut rows: Vec<Vec<Var>> = Vec::new();
        for i in (0..h).step_by(overlap) {
            let mut row = Vec::new();
            for j in (0..w).step_by(overlap) {
                let tile =
                    z.narrow(2, i, tile_latent.min(h - i))?
                        .narrow(3, j, tile_latent.min(w - j))?;
                row.push(self.decode(&tile)?);
            }
            rows.push(row);
        }
        // Blend in place, in diffusers' order: a tile is blended with its (already
        // blended) upper and left neighbours.
        for i in 0..rows.len() {
            for j in 0..rows[i].len() {
                let mut tile = rows[i][j].clone();
                if i > 0 {
                    tile = blend(&rows[i - 1][j], &tile, blend_extent, 2)?;
                }
                if j > 0 {
                    tile = blend(&rows[i][j - 1], &tile, blend_extent, 3)?;
                }
                rows[i][j] = tile;
            }
        }
        let mut out_rows = Vec::with_capacity(rows.len());
        for row in &rows {
            let cropped = row
                .iter()
                .map(|t| {
                    let (th, tw) = (t.dims()[2], t.dims()[3]);
                    Ok(t.narrow(2, 0, row_limit.min(th))?
                        .narrow(3, 0, row_limit.min(tw))?)
                })
                .collect::<Result<Vec<Var>>>()?;
            out_rows.push(Var::cat(&cropped.iter().collect::<Vec<_>>(), 3)?);
        }
        Ok(Var::cat(&out_rows.iter().collect::<Vec<_>>(), 2)?)
    }
}

/// diffusers' `blend_v` (`dim = 2`) / `blend_h` (`dim = 3`): the first `extent` rows
/// (columns) of `b` fade in from the last `extent` of `a`:
/// `b[y] = a[-extent + y] (1 - y / extent) + b[y] (y / extent)`.
fn blend(a: &Var, b: &Var, extent: usize, dim: usize) -> Result<Var> {
    let e = extent.min(a.dims()[dim]).min(b.dims()[dim]);
    if e == 0 {
        return Ok(b.clone());
    }
    let mut shape = vec![1usize; 4];
    shape[dim] = e;
    let w: Vec<f32> = (0..e).map(|y| (y as f64 / e as f64) as f32).collect();
    let one_minus: Vec<f32> = (0..e).map(|y| (1.0 - y as f64 / e as f64) as f32).collect();
    let w = Var::constant(Tensor::from_vec(w, shape.clone())?);
    let one_minus = Var::constant(Tensor::from_vec(one_minus, shape)?);
    let d = dim as isize;
    let a_tail = a.narrow(d, a.dims()[dim] - e, e)?;
    let b_head = b.narrow(d, 0, e)?;
    let mixed = a_tail.mul(&one_minus)?.add(&b_head.mul(&w)?)?;
    let rest = b.narrow(d, e, b.dims()[dim] - e)?;
    Ok(Var::cat(&[&mixed, &rest], d)?)
}
