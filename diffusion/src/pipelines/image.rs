//! Images and masks going into a pipeline, as diffusers' `VaeImageProcessor` prepares
//! them: images in [-1, 1] as (1, C, H, W); masks made grey, binarised at 0.5
//! (`mask >= 0.5` is repainted) as (1, 1, H, W).
//!
//! The VAE of SD takes RGB; a grey image (Fashion-MNIST) is repeated to three
//! channels, and an RGB image given to a one-channel VAE is made grey with the
//! ITU-R 601 weights PIL uses for `convert("L")`.
//!
//! ```
//! use diffusion::pipelines::image::binarize_mask;
//! use diffusion::Tensor;
//! let m = Tensor::from_vec(vec![0.2, 0.5, 0.7, 0.0], [1, 2, 2]).unwrap();
//! let b = binarize_mask(&m, 2, 2).unwrap();
//! assert_eq!(b.dims(), &[1, 1, 2, 2]);
//! assert_eq!(b.to_vec().unwrap(), vec![0.0, 1.0, 1.0, 0.0]);
//! ```

use tensor::Tensor;

use crate::error::{DiffusionError, Result};

/// PIL's `convert("L")` weights (ITU-R 601-2 luma).
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// A mask (H, W), (C, H, W) or (1, C, H, W) in [0, 1] to (1, 1, H, W) of 0 and 1;
/// several channels are made grey first. Its size must be (h, w).
pub fn binarize_mask(mask: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let m = match mask.rank() {
        2 => mask.unsqueeze(0)?.unsqueeze(0)?,
        3 => mask.unsqueeze(0)?,
        _ => mask.clone(),
    };
    let d = m.dims().to_vec();
    if d.len() != 4 || d[0] != 1 || d[2] != h || d[3] != w {
        return Err(DiffusionError::invalid(
            "mask",
            format!(
                "the mask has shape {:?}; it must be {w}x{h}, the image's size",
                mask.dims()
            ),
        ));
    }
    let grey = match_channels(&m, 1)?;
    let v: Vec<f32> = grey
        .to_vec()?
        .into_iter()
        .map(|x| if x >= 0.5 { 1.0 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(v, [1, 1, h, w])?)
}

/// Convert (N, C, H, W) to `channels` channels: 1 -> 3 repeats, 3 -> 1 takes luma.
pub fn match_channels(img: &Tensor, channels: usize) -> Result<Tensor> {
    let c = img.dims().get(1).copied().unwrap_or(0);
    if c == channels {
        return Ok(img.clone());
    }
    match (c, channels) {
        (1, n) => {
            let mut dims = img.dims().to_vec();
            dims[1] = n;
            Ok(img.broadcast_as(dims)?.contiguous()?)
        }
        (3, 1) => {
            let parts = img.chunk(3, 1)?;
            let mut acc = parts[0].mul_scalar(LUMA[0])?;
            for (p, wgt) in parts.iter().zip(LUMA).skip(1) {
                acc = acc.add(&p.mul_scalar(wgt)?)?;
            }
            Ok(acc)
        }
        _ => Err(DiffusionError::invalid(
            "image",
            format!("cannot convert an image of {c} channels to {channels}"),
        )),
    }
}
