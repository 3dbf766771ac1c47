//! PNG images <-> tensors.
//!
//! An image loads as a (C, H, W) f32 tensor in [0, 1]: C = 1 for grayscale, 3 for
//! colour (an alpha channel is dropped), 8-bit samples divided by 255 (16-bit by 65535).
//! Diffusion pipelines work in [-1, 1] ([`load_image_pm1`], `x * 2 - 1`).
//!
//! Saving takes (C, H, W) or (1, C, H, W) with C = 1 or 3 and converts each value as
//! Stable Diffusion pipelines do: `(x / 2 + 0.5)` clamped to [0, 1], times 255, rounded
//! half to even (NumPy's `round`) ([`save_image_pm1`]); [`save_image_unit`] skips the
//! first step for [0, 1] data. A NaN is an error, not a black pixel. Files are written
//! atomically. [`image_grid`] tiles (N, C, H, W) into (C, rows * H, cols * W).
//! Introduced with the Stable Diffusion pipeline in `lessons/03-tensors`.
//!
//! ```
//! use tensor::io::image::{pm1_to_u8, unit_to_u8};
//! assert_eq!(pm1_to_u8(-1.0), 0);
//! assert_eq!(pm1_to_u8(1.0), 255);
//! // 0.5 * 255 = 127.5 is a tie: half to even gives 128; 0.3 * 255 = 76.5 gives 76.
//! assert_eq!(unit_to_u8(0.5), 128);
//! assert_eq!(unit_to_u8(0.3), 76);
//! assert_eq!(pm1_to_u8(7.0), 255); // clamped
//! ```

use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageReader};

use super::atomic::write_atomic;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// A [0, 1] value to a byte: clamp to [0, 1], times 255, round half to even.
pub fn unit_to_u8(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0).round_ties_even() as u8
}

/// A [-1, 1] value to a byte, as diffusers does: `unit_to_u8(x / 2 + 0.5)`.
pub fn pm1_to_u8(x: f32) -> u8 {
    unit_to_u8(x / 2.0 + 0.5)
}

fn map_values(t: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor> {
    let v: Vec<f32> = t.to_vec()?.into_iter().map(f).collect();
    Tensor::from_vec(v, t.shape().clone())
}

/// [0, 1] -> [-1, 1]: `x * 2 - 1`, elementwise.
pub fn unit_to_pm1(t: &Tensor) -> Result<Tensor> {
    map_values(t, |x| x * 2.0 - 1.0)
}

/// [-1, 1] -> [0, 1]: `x / 2 + 0.5`, elementwise (no clamping).
pub fn pm1_to_unit(t: &Tensor) -> Result<Tensor> {
    map_values(t, |x| x / 2.0 + 0.5)
}

/// Load an image file as (C, H, W) f32 in [0, 1]; C = 1 (grayscale) or 3 (RGB).
pub fn load_image(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| TensorError::io(path, source))?;
    let img = reader
        .decode()
        .map_err(|e| TensorError::format(path, format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let color = img.color();
    let channels = if color.has_color() { 3 } else { 1 };
    let sixteen = color.bytes_per_pixel() / color.channel_count() > 1;
    // Interleaved HWC samples as f32 in [0, 1].
    let hwc: Vec<f32> = match (channels, sixteen) {
        (1, false) => img
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 255.0)
            .collect(),
        (1, true) => img
            .to_luma16()
            .into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 65535.0)
            .collect(),
        (_, false) => img
            .to_rgb8()
            .into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 255.0)
            .collect(),
        (_, true) => img
            .to_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 65535.0)
            .collect(),
    };
    let mut chw = vec![0.0f32; hwc.len()];
    for (p, px) in hwc.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            chw[c * h * w + p] = v;
        }
    }
    Tensor::from_vec(chw, [channels, h, w])
}

/// Load an image file as (C, H, W) f32 in [-1, 1] (the diffusion pipelines' range).
pub fn load_image_pm1(path: impl AsRef<Path>) -> Result<Tensor> {
    unit_to_pm1(&load_image(path)?)
}

/// (C, H, W) or (1, C, H, W) with C in {1, 3} -> (C, H, W) dims.
fn image_dims(op: &'static str, t: &Tensor) -> Result<(usize, usize, usize)> {
    let d = t.dims();
    let (c, h, w) = match d {
        [c, h, w] | [1, c, h, w] => (*c, *h, *w),
        _ => {
            return Err(TensorError::invalid(
                op,
                format!("expected an image of shape (C, H, W) or (1, C, H, W), got {d:?}"),
            ))
        }
    };
    if c != 1 && c != 3 {
        return Err(TensorError::invalid(
            op,
            format!("expected 1 (grayscale) or 3 (RGB) channels, got shape {d:?}"),
        ));
    }
    Ok((c, h, w))
}

/// Convert a (C, H, W) or (1, C, H, W) tensor to interleaved HWC bytes.
/// Returns (channels, height, width, bytes). Errors on NaN.
pub fn to_u8_hwc(t: &Tensor, to_u8: fn(f32) -> u8) -> Result<(usize, usize, usize, Vec<u8>)> {
    let (c, h, w) = image_dims("to_u8_hwc", t)?;
    let chw = t.to_vec()?;
    if let Some(i) = chw.iter().position(|v| v.is_nan()) {
        let n = chw.iter().filter(|v| v.is_nan()).count();
        return Err(TensorError::invalid(
            "to_u8_hwc",
            format!(
                "image of shape {:?} has {n} NaN values (first at channel {}, row {}, col {})",
                t.dims(),
                i / (h * w),
                i / w % h,
                i % w
            ),
        ));
    }
    let mut hwc = vec![0u8; chw.len()];
    for (ci, plane) in chw.chunks_exact((h * w).max(1)).enumerate().take(c) {
        for (p, &v) in plane.iter().enumerate() {
            hwc[p * c + ci] = to_u8(v);
        }
    }
    Ok((c, h, w, hwc))
}

fn save_with(path: &Path, t: &Tensor, to_u8: fn(f32) -> u8) -> Result<()> {
    let (c, h, w, bytes) = to_u8_hwc(t, to_u8)
        .map_err(|e| TensorError::format(path, format!("cannot save image: {e}")))?;
    if h == 0 || w == 0 {
        return Err(TensorError::format(
            path,
            format!("cannot save an empty image of shape {:?}", t.dims()),
        ));
    }
    let (wu, hu) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(wu), Ok(hu)) => (wu, hu),
        _ => {
            return Err(TensorError::format(
                path,
                format!("image of shape {:?} is too large for PNG", t.dims()),
            ))
        }
    };
    let color = if c == 1 {
        ExtendedColorType::L8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&bytes, wu, hu, color)
        .map_err(|e| TensorError::format(path, format!("cannot encode PNG: {e}")))?;
    write_atomic(path, &png)
}

/// Save a (C, H, W) or (1, C, H, W) image in [-1, 1] as PNG, converting each value
/// with [`pm1_to_u8`] (Stable Diffusion's output conversion). Written atomically.
pub fn save_image_pm1(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    save_with(path.as_ref(), t, pm1_to_u8)
}

/// Save a (C, H, W) or (1, C, H, W) image in [0, 1] as PNG, converting each value
/// with [`unit_to_u8`]. Written atomically.
pub fn save_image_unit(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    save_with(path.as_ref(), t, unit_to_u8)
}

/// Tile a batch of images (N, C, H, W) into one image (C, rows * H, cols * W), image
/// `i` at grid row `i / cols`, column `i % cols` (as diffusers' `make_image_grid`).
/// Requires N == rows * cols.
pub fn image_grid(images: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    let [n, c, h, w] = match images.dims() {
        &[n, c, h, w] => [n, c, h, w],
        d => {
            return Err(TensorError::invalid(
                "image_grid",
                format!("expected images of shape (N, C, H, W), got {d:?}"),
            ))
        }
    };
    if n != rows * cols {
        return Err(TensorError::invalid(
            "image_grid",
            format!(
                "{n} images do not fill a {rows} x {cols} grid ({} cells)",
                rows * cols
            ),
        ));
    }
    let src = images.to_vec()?;
    let (gh, gw) = (rows * h, cols * w);
    let mut out = vec![0.0f32; c * gh * gw];
    for i in 0..n {
        let (r0, c0) = (i / cols * h, i % cols * w);
        for ch in 0..c {
            for y in 0..h {
                let s = ((i * c + ch) * h + y) * w;
                let d = (ch * gh + r0 + y) * gw + c0;
                out[d..d + w].copy_from_slice(&src[s..s + w]);
            }
        }
    }
    Tensor::from_vec(out, [c, gh, gw])
}
