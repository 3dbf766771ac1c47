//! 2-d convolution as explicit im2col + matrix multiply: the middle rung of the
//! convolutions lesson, between the direct loops ([`crate::ops::conv_naive`]) and
//! implicit GEMM ([`crate::ops::conv`], which packs the patches straight into the
//! micro-kernel's layout and is what `conv2d` runs).
//!
//! Every output pixel is a dot product of a weight row `(C/groups * kh * kw)` with
//! the input patch under the kernel. Unfolding the patches into the columns of
//! `col: (C/groups*kh*kw, H'*W')` ("im2col") turns the convolution of one image and
//! group into one GEMM: `out_g (O/groups, H'*W') = W_g (O/groups, K) * col (K, H'*W')`.
//! The output pixels are cut into column tiles so that a tile of `col` stays around
//! a megabyte (the full unfold of a 512x512 image with 128 channels would be 1.2 GB),
//! and (image, group, tile) jobs run in parallel with rayon. A 1x1 convolution with
//! stride 1 and no padding skips im2col: the input already is `col`.
//!
//! Shapes as [`Tensor::conv2d`]: `x: (N, C, H, W)`, `weight: (O, C/groups, kh, kw)`,
//! `bias: (O,)` -> `(N, O, H', W')`.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap();
//! let w = Tensor::ones([1, 1, 2, 2]);
//! let y = x.conv2d_im2col(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0]);
//! ```

use rayon::prelude::*;

use crate::error::Result;
use crate::matmul::{gemm, MatRef};
use crate::ops::conv::{run_conv2d, Conv2dGeom};
use crate::tensor::Tensor;

/// Floats of one im2col tile we aim for (1 MiB): big enough for GEMM to amortise
/// packing the weights, small enough to stay in cache.
const COL_TILE_FLOATS: usize = 1 << 18;
/// Fewest output pixels in a tile.
const MIN_TILE: usize = 64;

impl Tensor {
    /// 2-d convolution by explicit im2col tiles + [`gemm`]; same arguments, shapes
    /// and errors as [`Tensor::conv2d`] (which is faster and uses less memory).
    pub fn conv2d_im2col(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        run_conv2d(
            "conv2d_im2col",
            self,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            im2col_gemm,
        )
    }
}

/// The convolution on contiguous buffers; returns the (N, O, H', W') data.
fn im2col_gemm(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &Conv2dGeom) -> Vec<f32> {
    let ohw = g.oh * g.ow;
    let k = g.k();
    let mut out = vec![0.0f32; g.n * g.o * ohw];
    let block_len = g.og * ohw;
    if block_len == 0 {
        return out;
    }
    let jobs = g.n * g.groups;
    let tile = tile_size(k, ohw, jobs, g.pointwise());
    out.par_chunks_mut(block_len)
        .enumerate()
        .for_each(|(idx, block)| {
            let (n, gi) = (idx / g.groups, idx % g.groups);
            if k > 0 {
                conv_block(x, wt, g, n, gi, tile, block);
            }
            if let Some(b) = bias {
                for (row, &bv) in block.chunks_mut(ohw).zip(&b[gi * g.og..]) {
                    row.iter_mut().for_each(|v| *v += bv);
                }
            }
        });
    out
}

/// Output pixels per tile: whole image when the unfold is small and there are
/// enough (image, group) jobs for the threads, else tiles of about
/// `COL_TILE_FLOATS / k` pixels, more of them when the threads need work.
fn tile_size(k: usize, ohw: usize, jobs: usize, pointwise: bool) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let mut tile = if pointwise {
        ohw
    } else {
        (COL_TILE_FLOATS / k.max(1)).max(MIN_TILE)
    };
    if jobs < threads {
        let want_tiles = threads.div_ceil(jobs.max(1));
        tile = tile.min(ohw.div_ceil(want_tiles).max(MIN_TILE));
    }
    // Even tiles: the same count, spread evenly.
    let ntiles = ohw.div_ceil(tile.max(1)).max(1);
    ohw.div_ceil(ntiles).max(1)
}

/// One (image `n`, group `gi`) block of the output: `block: (O/groups, H'*W')`.
fn conv_block(
    x: &[f32],
    wt: &[f32],
    g: &Conv2dGeom,
    n: usize,
    gi: usize,
    tile: usize,
    block: &mut [f32],
) {
    let ohw = g.oh * g.ow;
    let k = g.k();
    let a = MatRef {
        data: wt,
        offset: gi * g.og * k,
        rows: g.og,
        cols: k,
        row_stride: k,
        col_stride: 1,
    };
    let x_off = (n * g.c + gi * g.cg) * g.h * g.w;
    // Columns p0..p0+len of the unfolded input, as a (k, len) matrix.
    let cols_of = |p0: usize, len: usize, buf: &mut Vec<f32>| {
        buf.resize(k * len, 0.0);
        im2col(x, x_off, g, p0, len, buf);
    };
    if tile >= ohw {
        if g.pointwise() {
            let b = MatRef {
                data: x,
                offset: x_off,
                rows: k,
                cols: ohw,
                row_stride: ohw,
                col_stride: 1,
            };
            gemm(a, b, block);
        } else {
            let mut col = Vec::new();
            cols_of(0, ohw, &mut col);
            gemm(a, full(&col, k, ohw), block);
        }
        return;
    }
    let starts: Vec<usize> = (0..ohw).step_by(tile).collect();
    let tiles: Vec<Vec<f32>> = starts
        .par_iter()
        .map_init(Vec::new, |col, &p0| {
            let len = tile.min(ohw - p0);
            let mut tmp = vec![0.0f32; g.og * len];
            if g.pointwise() {
                let b = MatRef {
                    data: x,
                    offset: x_off + p0,
                    rows: k,
                    cols: len,
                    row_stride: ohw,
                    col_stride: 1,
                };
                gemm(a, b, &mut tmp);
            } else {
                cols_of(p0, len, col);
                gemm(a, full(col, k, len), &mut tmp);
            }
            tmp
        })
        .collect();
    for (&p0, tmp) in starts.iter().zip(&tiles) {
        let len = tile.min(ohw - p0);
        for (row, src) in block.chunks_mut(ohw).zip(tmp.chunks(len)) {
            row[p0..p0 + len].copy_from_slice(src);
        }
    }
}

/// A contiguous row-major `rows x cols` matrix over `data`.
fn full(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef {
        data,
        offset: 0,
        rows,
        cols,
        row_stride: cols,
        col_stride: 1,
    }
}

/// Unfold output pixels `p0..p0+len` (row-major over (H', W')) of one image and
/// group into `col: (C/groups*kh*kw, len)`; padding reads as 0.
pub(crate) fn im2col(
    x: &[f32],
    x_off: usize,
    g: &Conv2dGeom,
    p0: usize,
    len: usize,
    col: &mut [f32],
) {
    let (h, w, ow) = (g.h, g.w, g.ow);
    let mut row = 0;
    for ci in 0..g.cg {
        let plane = x_off + ci * h * w;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut col[row * len..(row + 1) * len];
                row += 1;
                // Input column of output column ox is ox*sw + shift.
                let shift = (kx * g.dw) as isize - g.pw as isize;
                let (lo, hi) = valid_range(shift, g.sw, w, ow);
                let mut p = p0;
                let mut d = 0;
                while d < len {
                    let (oy, ox0) = (p / ow, p % ow);
                    let seg = (ow - ox0).min(len - d);
                    let out = &mut dst[d..d + seg];
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                    if iy < 0 || iy >= h as isize {
                        out.fill(0.0);
                    } else {
                        let src = &x[plane + iy as usize * w..plane + (iy as usize + 1) * w];
                        fill_row(out, src, ox0, lo, hi, shift, g.sw);
                    }
                    p += seg;
                    d += seg;
                }
            }
        }
    }
}

/// Output columns `lo..hi` whose input column `ox*stride + shift` lies in `0..w`.
pub(crate) fn valid_range(shift: isize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
    let hi = if (w as isize) <= shift {
        0
    } else {
        (w as isize - shift + s - 1) / s
    };
    let lo = (lo as usize).min(ow);
    (lo, (hi as usize).clamp(lo, ow))
}

/// `out[j] = src[(ox0 + j)*stride + shift]` inside `lo..hi`, else 0.
fn fill_row(
    out: &mut [f32],
    src: &[f32],
    ox0: usize,
    lo: usize,
    hi: usize,
    shift: isize,
    stride: usize,
) {
    let end = ox0 + out.len();
    let (a, b) = (lo.clamp(ox0, end), hi.clamp(ox0, end));
    if a >= b {
        out.fill(0.0);
        return;
    }
    out[..a - ox0].fill(0.0);
    out[b - ox0..].fill(0.0);
    let first = (a * stride) as isize + shift;
    let first = first as usize;
    let dst = &mut out[a - ox0..b - ox0];
    if stride == 1 {
        dst.copy_from_slice(&src[first..first + dst.len()]);
    } else {
        for (j, v) in dst.iter_mut().enumerate() {
            *v = src[first + j * stride];
        }
    }
}
