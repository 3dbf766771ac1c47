//! The training latents: every training image's VAE posterior `(mean, std)`, encoded
//! once and cached as safetensors (`mean`, `std`: `(N, C, h, w)` f32), and clean
//! latents drawn from them, `z0 = scaling_factor * (mean + std * e)`. Shared by the
//! UNet stage ([`super::unet`]) and distillation ([`crate::distill`]).
//!
//! ```
//! use diffusion::train::latents::clean_latents;
//! use diffusion::train::unet::LatentSet;
//! let set = LatentSet { mean: vec![1.0, 2.0], std: vec![0.5, 0.5], labels: vec![3, 4],
//!                       shape: [1, 1, 1], scaling: 2.0 };
//! // z0 = 2 * (2 + 0.5 * 1) for image 1 with e = 1
//! assert_eq!(clean_latents(&set, &[1], &[1.0]).unwrap(), vec![5.0]);
//! ```

use std::path::Path;
use std::time::Instant;

use tensor::data::ImageDataset;
use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::models::AutoencoderKL;
use crate::train::unet::LatentSet;
use crate::train::vae::encode_posteriors;

/// The posteriors of every image of `ds` under `vae`, read from `cache` when it
/// exists, else encoded (250 at a time) and written there.
pub fn latent_set(vae: &AutoencoderKL, ds: &ImageDataset, cache: &Path) -> Result<LatentSet> {
    let scaling = vae.config().scaling_factor as f32;
    let lat = vae.config().latent_channels;
    let f = vae.config().downscale_factor();
    let (h, w) = ((ds.height() + 4) / f, (ds.width() + 4) / f);
    let (mean, std) = if cache.is_file() {
        let t = tensor::io::load(cache)?;
        let get = |k: &str| -> Result<Vec<f32>> {
            match t.get(k) {
                Some(v) => Ok(v.to_vec()?),
                None => Err(DiffusionError::io(cache, format!("no tensor '{k}'"))),
            }
        };
        println!("latents from {}", cache.display());
        (get("mean")?, get("std")?)
    } else {
        let t0 = Instant::now();
        let all: Vec<usize> = (0..ds.len()).collect();
        let (mean, std) = encode_posteriors(vae, ds, &all, 250)?;
        let shape = [ds.len(), lat, h, w];
        let m = Tensor::from_vec(mean.clone(), shape)?;
        let s = Tensor::from_vec(std.clone(), shape)?;
        if let Some(dir) = cache.parent() {
            crate::train::create_dir(dir)?;
        }
        tensor::io::save(cache, [("mean", &m), ("std", &s)], tensor::io::DType::F32)?;
        println!(
            "encoded {} images in {:.1} s",
            ds.len(),
            t0.elapsed().as_secs_f64()
        );
        (mean, std)
    };
    if mean.len() != ds.len() * lat * h * w || std.len() != mean.len() {
        return Err(DiffusionError::io(
            cache,
            format!(
                "holds {} values, expected {} images of {lat}x{h}x{w} (delete it to re-encode)",
                mean.len(),
                ds.len()
            ),
        ));
    }
    Ok(LatentSet {
        mean,
        std,
        labels: ds.labels().to_vec(),
        shape: [lat, h, w],
        scaling,
    })
}

/// Clean latents of images `indices`: `scaling * (mean + std * e)` with `e` the
/// standard normal draws (one latent's worth per index, in order), flattened.
pub fn clean_latents(set: &LatentSet, indices: &[usize], e: &[f32]) -> Result<Vec<f32>> {
    let per: usize = set.shape.iter().product();
    if e.len() != indices.len() * per {
        return Err(DiffusionError::invalid(
            "clean_latents",
            format!("{} draws for {} latents of {per}", e.len(), indices.len()),
        ));
    }
    let mut out = Vec::with_capacity(e.len());
    for (k, &i) in indices.iter().enumerate() {
        let src = i * per;
        let (m, s) = match (set.mean.get(src..src + per), set.std.get(src..src + per)) {
            (Some(m), Some(s)) => (m, s),
            _ => {
                return Err(DiffusionError::invalid(
                    "clean_latents",
                    format!("latent index {i} outside 0..{}", set.len()),
                ))
            }
        };
        let ek = &e[k * per..(k + 1) * per];
        out.extend((0..per).map(|j| set.scaling * (m[j] + s[j] * ek[j])));
    }
    Ok(out)
}
