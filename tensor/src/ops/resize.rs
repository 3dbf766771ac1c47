//! Resizing: nearest-neighbour upsampling and padding (introduced with the UNet
//! lesson: its up blocks upsample by 2 before a conv, the VAE encoder pads before a
//! stride-2 conv).
//!
//! - `upsample_nearest2d(out_h, out_w)`: `(N, C, H, W)` or `(C, H, W)` ->
//!   `(.., out_h, out_w)`, output row `y` reads input row `floor(y * H / out_h)`
//!   (PyTorch's `'nearest'` rule, computed in f32 like PyTorch).
//! - `pad(&[(before, after), ..], value)`: pairs start at the *last* dim and move
//!   left, as `torch.nn.functional.pad`; `pad_with` also does reflect and replicate.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]).unwrap();
//! let up = x.upsample_nearest2d_scale(2).unwrap();
//! assert_eq!(up.dims(), &[1, 1, 4, 4]);
//! assert_eq!(up.to_vec().unwrap()[..8], [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
//! let p = Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap().pad(&[(1, 2)], 0.0).unwrap();
//! assert_eq!(p.to_vec().unwrap(), vec![0.0, 1.0, 2.0, 0.0, 0.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::ops::conv::contiguous_data;
use crate::ops::pool::planes_hw;
use crate::tensor::Tensor;

/// How [`Tensor::pad_with`] fills the new border.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// Every new element is this value (`mode='constant'`).
    Constant(f32),
    /// Mirror without repeating the edge: `[1, 2, 3]` padded by 2 on the left reads
    /// `[3, 2, 1, 2, 3]` (`mode='reflect'`; each pad must be smaller than the dim).
    Reflect,
    /// Repeat the edge element (`mode='replicate'`).
    Replicate,
}

/// PyTorch's nearest source index for output index `dst`.
fn nearest_index(dst: usize, input: usize, output: usize) -> usize {
    if output == input {
        dst
    } else if output == 2 * input {
        dst >> 1
    } else {
        let scale = input as f32 / output as f32;
        ((dst as f32 * scale).floor() as usize).min(input - 1)
    }
}

impl Tensor {
    /// Nearest-neighbour upsampling (or downsampling) of the last two dims to
    /// `(out_h, out_w)`, as `F.interpolate(x, size=(out_h, out_w), mode='nearest')`.
    pub fn upsample_nearest2d(&self, out_h: usize, out_w: usize) -> Result<Tensor> {
        let op = "upsample_nearest2d";
        let (planes, h, w) = planes_hw(op, self.dims())?;
        if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
            return Err(TensorError::invalid(
                op,
                format!(
                    "input {:?} and output size ({out_h}, {out_w}) must have non-empty spatial dims",
                    self.dims()
                ),
            ));
        }
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::layers::upsample_nearest2d(self, out_h, out_w);
        }
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let cols: Vec<usize> = (0..out_w).map(|j| nearest_index(j, w, out_w)).collect();
        let mut out = vec![0.0f32; planes * out_h * out_w];
        if !out.is_empty() {
            out.par_chunks_mut(out_h * out_w)
                .zip(data.par_chunks(h * w))
                .for_each(|(dst, plane)| {
                    for (y, row) in dst.chunks_mut(out_w).enumerate() {
                        let src = &plane[nearest_index(y, h, out_h) * w..][..w];
                        for (v, &j) in row.iter_mut().zip(&cols) {
                            *v = src[j];
                        }
                    }
                });
        }
        let mut dims = self.dims().to_vec();
        let r = dims.len();
        dims[r - 2] = out_h;
        dims[r - 1] = out_w;
        Tensor::from_vec(out, dims)
    }

    /// Nearest upsampling by an integer factor: `(.., H, W)` -> `(.., H*f, W*f)`
    /// (`F.interpolate(x, scale_factor=f, mode='nearest')`).
    pub fn upsample_nearest2d_scale(&self, factor: usize) -> Result<Tensor> {
        let (_, h, w) = planes_hw("upsample_nearest2d_scale", self.dims())?;
        if factor == 0 {
            return Err(TensorError::invalid(
                "upsample_nearest2d_scale",
                "scale factor must be at least 1, got 0",
            ));
        }
        self.upsample_nearest2d(h * factor, w * factor)
    }

    /// Constant padding: `pads[0]` is `(before, after)` for the last dim, `pads[1]` for
    /// the one before it, and so on (`F.pad(x, (l, r, t, b), value=v)` is
    /// `x.pad(&[(l, r), (t, b)], v)`).
    pub fn pad(&self, pads: &[(usize, usize)], value: f32) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() && pads.len() <= self.rank() {
            return crate::wgpu::layers::pad(self, pads, value);
        }
        self.pad_with(pads, PadMode::Constant(value))
    }

    /// Padding with a [`PadMode`]; `pads` as in [`Tensor::pad`].
    pub fn pad_with(&self, pads: &[(usize, usize)], mode: PadMode) -> Result<Tensor> {
        let op = "pad";
        let dims = self.dims();
        let rank = dims.len();
        if pads.len() > rank {
            return Err(TensorError::invalid(
                op,
                format!(
                    "{} (before, after) pairs for a tensor of shape {dims:?}",
                    pads.len()
                ),
            ));
        }
        // Source index (or None for the constant) of every output index, per dim.
        let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(rank);
        for (d, &n) in dims.iter().enumerate() {
            let (before, after) = if rank - 1 - d < pads.len() {
                pads[rank - 1 - d]
            } else {
                (0, 0)
            };
            let check = |ok: bool, what: &str| {
                if ok {
                    Ok(())
                } else {
                    Err(TensorError::invalid(
                        op,
                        format!(
                            "{what}: padding ({before}, {after}) of dim {d} (size {n}) in {dims:?}"
                        ),
                    ))
                }
            };
            match mode {
                PadMode::Reflect => check(
                    (before == 0 && after == 0) || (before < n && after < n),
                    "reflect needs each pad smaller than the dim",
                )?,
                PadMode::Replicate => check(
                    (before == 0 && after == 0) || n > 0,
                    "replicate needs a non-empty dim",
                )?,
                PadMode::Constant(_) => {}
            }
            let map = (0..before + n + after)
                .map(|i| {
                    let j = i as isize - before as isize;
                    let last = n as isize - 1;
                    match mode {
                        PadMode::Constant(_) => (0..n as isize).contains(&j).then_some(j as usize),
                        PadMode::Replicate => Some(j.clamp(0, last) as usize),
                        PadMode::Reflect => {
                            let r = if j < 0 {
                                -j
                            } else if j > last {
                                2 * last - j
                            } else {
                                j
                            };
                            Some(r as usize)
                        }
                    }
                })
                .collect();
            maps.push(map);
        }
        let fill = match mode {
            PadMode::Constant(v) => v,
            _ => 0.0,
        };
        let out_dims: Vec<usize> = maps.iter().map(Vec::len).collect();
        if rank == 0 {
            return Ok(self.clone());
        }
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return match mode {
                PadMode::Constant(v) => crate::wgpu::layers::pad(self, pads, v),
                _ => crate::wgpu::layers::pad_edge(self, pads, mode == PadMode::Reflect),
            };
        }
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let strides = x.shape().contiguous_strides();
        let out_numel: usize = out_dims.iter().product();
        let row_len = out_dims[rank - 1];
        let mut out = vec![fill; out_numel];
        if out_numel == 0 {
            return Tensor::from_vec(out, out_dims);
        }
        let last = &maps[rank - 1];
        let mut idx = vec![0usize; rank - 1];
        for row in out.chunks_mut(row_len) {
            // Storage offset of this output row's source row, if it has one.
            let base = idx.iter().enumerate().try_fold(0usize, |acc, (d, &i)| {
                maps[d][i].map(|s| acc + s * strides[d])
            });
            if let Some(base) = base {
                for (v, m) in row.iter_mut().zip(last) {
                    if let Some(s) = m {
                        *v = data[base + s];
                    }
                }
            }
            for d in (0..rank - 1).rev() {
                idx[d] += 1;
                if idx[d] < out_dims[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Tensor::from_vec(out, out_dims)
    }
}
