//! The two backwards of 2-d convolution, as im2col / col2im + GEMM (used by the
//! autodiff crate; introduced with the autodiff lesson, after the convolutions one).
//!
//! With `col: (K, H'*W')` the unfold of one image and group (`K = C/groups*kh*kw`,
//! see [`crate::ops::conv`]) the forward is `y_g (O/groups, H'*W') = W_g (O/groups, K)
//! col`. Given the output gradient `dy: (N, O, H', W')`:
//!
//! - `conv2d_backward_input`: `dcol = W_g^T dy_g: (K, H'*W')`, then "col2im" adds
//!   each column entry back onto the input pixel it was read from (padding entries
//!   are dropped) -> `dx: (N, C, H, W)`. This is the transposed convolution.
//! - `conv2d_backward_weight`: `dW_g = sum over images of dy_g col^T: (O/groups, K)`
//!   -> `dW: (O, C/groups, kh, kw)`.
//!
//! Both walk the output pixels in column tiles of about a megabyte of `col`, like
//! the forward, and the input gradient runs (image, group) blocks in parallel.
//! The input size must be given: with a stride, several input sizes give the same
//! output size. The bias gradient is just `dy.sum(&[0, 2, 3])`. Batches of small
//! images take the whole-batch GEMMs of [`crate::ops::conv_nhwc`] and
//! [`crate::ops::conv_batched`] instead, as the forward does.
//!
//! ```
//! use tensor::Tensor;
//! // y = conv(x, w) with a 1x1 input channel, 2x2 kernel of ones, 3x3 input.
//! let dy = Tensor::ones([1, 1, 2, 2]);
//! let w = Tensor::ones([1, 1, 2, 2]);
//! let dx = dy.conv2d_backward_input(&w, (3, 3), (1, 1), (0, 0), (1, 1), 1).unwrap();
//! // each input pixel counts the output windows that cover it
//! assert_eq!(dx.to_vec().unwrap(), vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
//! let x = Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap();
//! let dw = x.conv2d_backward_weight(&dy, (2, 2), (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(dw.to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::matmul::kernels::Kernel;
use crate::matmul::{gemm, MatRef};
use crate::ops::conv::{contiguous_data, Conv2dGeom};
use crate::ops::conv_im2col::{im2col, valid_range};
use crate::ops::{conv_batched, conv_nhwc};
use crate::tensor::Tensor;

/// Floats of one im2col tile (1 MiB), as in the forward.
const COL_TILE_FLOATS: usize = 1 << 18;

/// Output pixels per tile for patches of length `k`.
fn tile_len(k: usize, ohw: usize) -> usize {
    (COL_TILE_FLOATS / k.max(1)).max(64).min(ohw).max(1)
}

/// Check that `grad_out` is the `(N, O, H', W')` output of geometry `g`.
fn check_grad_out(op: &'static str, grad_out: &[usize], g: &Conv2dGeom) -> Result<()> {
    if grad_out != [g.n, g.o, g.oh, g.ow] {
        return Err(TensorError::invalid(
            op,
            format!(
                "grad_out has shape {grad_out:?}, but the convolution of an input \
                 ({}, {}, {}, {}) gives ({}, {}, {}, {})",
                g.n, g.c, g.h, g.w, g.n, g.o, g.oh, g.ow
            ),
        ));
    }
    Ok(())
}

/// A `rows x cols` row-major matrix at `offset` of `data` with row stride `ld`.
fn mat(data: &[f32], offset: usize, rows: usize, cols: usize, ld: usize) -> MatRef<'_> {
    MatRef {
        data,
        offset,
        rows,
        cols,
        row_stride: ld,
        col_stride: 1,
    }
}

impl Tensor {
    /// Gradient of `conv2d` with respect to its input: `self` is `dy: (N, O, H', W')`,
    /// `weight: (O, C/groups, kh, kw)`, `input_hw = (H, W)` -> `dx: (N, C, H, W)`.
    pub fn conv2d_backward_input(
        &self,
        weight: &Tensor,
        input_hw: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        let op = "conv2d_backward_input";
        let (n, cg) = match (self.dims(), weight.dims()) {
            (&[n, _, _, _], &[_, cg, _, _]) => (n, cg),
            _ => {
                return Err(TensorError::invalid(
                    op,
                    format!(
                        "grad_out must be (N, O, H', W') and weight (O, C/groups, kh, kw), \
                         got {:?} and {:?}",
                        self.dims(),
                        weight.dims()
                    ),
                ))
            }
        };
        let input = [n, cg * groups, input_hw.0, input_hw.1];
        let g = Conv2dGeom::new(
            op,
            &input,
            weight.dims(),
            None,
            stride,
            padding,
            dilation,
            groups,
        )?;
        check_grad_out(op, self.dims(), &g)?;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() || weight.is_gpu() {
            return crate::wgpu::conv_backward::backward_input(self, weight, &g);
        }
        let dy = self.contiguous()?;
        let w = weight.contiguous()?;
        let (dy, w) = (contiguous_data(&dy)?, contiguous_data(&w)?);
        if conv_batched::use_batched(&g) {
            let dx = if conv_nhwc::takes(&g) {
                conv_nhwc::backward_input(Kernel::detect(), dy, w, &g)
            } else {
                conv_batched::backward_input(Kernel::detect(), dy, w, &g)
            };
            return Tensor::from_vec(dx, input.to_vec());
        }
        let (k, ohw, block) = (g.k(), g.oh * g.ow, g.cg * g.h * g.w);
        let mut dx = vec![0.0f32; g.n * g.c * g.h * g.w];
        if block > 0 && k > 0 && ohw > 0 && g.og > 0 {
            let tile = tile_len(k, ohw);
            dx.par_chunks_mut(block).enumerate().for_each(|(idx, dst)| {
                let (ni, gi) = (idx / g.groups, idx % g.groups);
                // W_g^T: (K, O/groups), read through swapped strides.
                let wt = mat(w, gi * g.og * k, g.og, k, k).t();
                let dy_off = (ni * g.o + gi * g.og) * ohw;
                let mut col = vec![0.0f32; k * tile];
                for p0 in (0..ohw).step_by(tile) {
                    let len = tile.min(ohw - p0);
                    let col = &mut col[..k * len];
                    gemm(wt, mat(dy, dy_off + p0, g.og, len, ohw), col);
                    col2im_add(col, &g, p0, len, dst);
                }
            });
        }
        Tensor::from_vec(dx, input.to_vec())
    }

    /// Gradient of `conv2d` with respect to its weight: `self` is the input
    /// `x: (N, C, H, W)`, `grad_out` is `dy: (N, O, H', W')`, `kernel = (kh, kw)` ->
    /// `dW: (O, C/groups, kh, kw)`.
    pub fn conv2d_backward_weight(
        &self,
        grad_out: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        let op = "conv2d_backward_weight";
        let (Some(&c), Some(&o)) = (self.dims().get(1), grad_out.dims().get(1)) else {
            return Err(TensorError::invalid(
                op,
                format!(
                    "input must be (N, C, H, W) and grad_out (N, O, H', W'), got {:?} and {:?}",
                    self.dims(),
                    grad_out.dims()
                ),
            ));
        };
        if groups == 0 || c % groups != 0 {
            return Err(TensorError::invalid(
                op,
                format!("{c} input channels are not divisible into {groups} groups"),
            ));
        }
        let wdims = [o, c / groups, kernel.0, kernel.1];
        let g = Conv2dGeom::new(
            op,
            self.dims(),
            &wdims,
            None,
            stride,
            padding,
            dilation,
            groups,
        )?;
        check_grad_out(op, grad_out.dims(), &g)?;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() || grad_out.is_gpu() {
            return crate::wgpu::conv_backward::backward_weight(self, grad_out, &g);
        }
        let x = self.contiguous()?;
        let dy = grad_out.contiguous()?;
        let (x, dy) = (contiguous_data(&x)?, contiguous_data(&dy)?);
        if conv_batched::use_batched(&g) {
            let dw = if conv_nhwc::takes(&g) {
                conv_nhwc::backward_weight(Kernel::detect(), x, dy, &g)
            } else {
                conv_batched::backward_weight(Kernel::detect(), x, dy, &g)
            };
            return Tensor::from_vec(dw, wdims.to_vec());
        }
        let (k, ohw) = (g.k(), g.oh * g.ow);
        let mut dw = vec![0.0f32; g.o * k];
        if g.og > 0 && k > 0 && ohw > 0 {
            let tile = tile_len(k, ohw);
            dw.par_chunks_mut(g.og * k)
                .enumerate()
                .for_each(|(gi, dst)| {
                    let mut col = vec![0.0f32; k * tile];
                    let mut tmp = vec![0.0f32; g.og * k];
                    for ni in 0..g.n {
                        let x_off = (ni * g.c + gi * g.cg) * g.h * g.w;
                        let dy_off = (ni * g.o + gi * g.og) * ohw;
                        for p0 in (0..ohw).step_by(tile) {
                            let len = tile.min(ohw - p0);
                            let col = &mut col[..k * len];
                            im2col(x, x_off, &g, p0, len, col);
                            // dy_g[:, p0..p0+len] (og, len) @ col^T (len, K)
                            gemm(
                                mat(dy, dy_off + p0, g.og, len, ohw),
                                mat(col, 0, k, len, len).t(),
                                &mut tmp,
                            );
                            dst.iter_mut().zip(&tmp).for_each(|(d, &t)| *d += t);
                        }
                    }
                });
        }
        Tensor::from_vec(dw, wdims.to_vec())
    }
}

/// Add the columns `p0..p0+len` of `col: (C/groups*kh*kw, len)` onto the input
/// pixels they were unfolded from; `dx` is one image and group, `(C/groups, H, W)`.
/// The inverse of [`im2col`]'s gather: reads of padding are dropped.
fn col2im_add(col: &[f32], g: &Conv2dGeom, p0: usize, len: usize, dx: &mut [f32]) {
    let (h, w, ow) = (g.h as isize, g.w, g.ow);
    let mut row = 0;
    for ci in 0..g.cg {
        let plane = ci * g.h * g.w;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let src = &col[row * len..(row + 1) * len];
                row += 1;
                let shift = (kx * g.dw) as isize - g.pw as isize;
                let (lo, hi) = valid_range(shift, g.sw, w, ow);
                let (mut p, mut d) = (p0, 0);
                while d < len {
                    let (oy, ox0) = (p / ow, p % ow);
                    let seg = (ow - ox0).min(len - d);
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                    if (0..h).contains(&iy) {
                        let dst = &mut dx[plane + iy as usize * w..plane + (iy as usize + 1) * w];
                        // Output columns ox0+a..ox0+b read real pixels (ox*sw + shift in 0..w).
                        let a = lo.clamp(ox0, ox0 + seg) - ox0;
                        let b = hi.clamp(ox0, ox0 + seg) - ox0;
                        if a < b {
                            let first = ((ox0 + a) * g.sw) as isize + shift;
                            let vals = &src[d + a..d + b];
                            if g.sw == 1 {
                                let dst = &mut dst[first as usize..first as usize + vals.len()];
                                dst.iter_mut().zip(vals).for_each(|(o, &v)| *o += v);
                            } else {
                                for (j, &v) in vals.iter().enumerate() {
                                    dst[first as usize + j * g.sw] += v;
                                }
                            }
                        }
                    }
                    p += seg;
                    d += seg;
                }
            }
        }
    }
}
