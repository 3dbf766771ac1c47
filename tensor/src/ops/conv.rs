//! 2-d convolution as im2col + matrix multiply (introduced in the convolutions lesson,
//! which starts from the direct loops kept in [`crate::ops::conv_naive`]).
//!
//! `x: (N, C, H, W)`, `weight: (O, C/groups, kh, kw)`, `bias: (O,)` ->
//! `(N, O, H', W')` with `H' = (H + 2*ph - dh*(kh-1) - 1) / sh + 1` (same for `W'`).
//! An unbatched `(C, H, W)` input gives `(O, H', W')`, as in PyTorch.
//!
//! The idea: every output pixel is a dot product of the weight row
//! `(C/groups * kh * kw)` with the input patch under the kernel. Unfolding the
//! patches into the columns of a matrix `col: (C/groups*kh*kw, H'*W')` ("im2col")
//! turns the whole convolution of one image and group into one GEMM:
//! `out_g (O/groups, H'*W') = W_g (O/groups, K) * col (K, H'*W')`.
//!
//! Speed: the output pixels are cut into column tiles so that a tile of `col`
//! stays around a megabyte (it never materialises the full unfold of a large
//! image), and (image, group, tile) jobs run in parallel with rayon. A 1x1
//! convolution with stride 1 and no padding skips im2col: the input already is `col`.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap();
//! let w = Tensor::ones([1, 1, 2, 2]);
//! let y = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(y.dims(), &[1, 1, 2, 2]);
//! assert_eq!(y.to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::matmul::{gemm, MatRef};
use crate::tensor::Tensor;

/// Floats of one im2col tile we aim for (1 MiB): big enough for GEMM to amortise
/// packing the weights, small enough to stay in cache.
const COL_TILE_FLOATS: usize = 1 << 18;
/// Fewest output pixels in a tile.
const MIN_TILE: usize = 64;

/// The resolved, validated sizes of one conv2d call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv2dGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub groups: usize,
    /// Input channels per group.
    pub cg: usize,
    /// Output channels per group.
    pub og: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Conv2dGeom {
    /// Check shapes and hyper-parameters; `input` must be (N, C, H, W).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        op: &'static str,
        input: &[usize],
        weight: &[usize],
        bias: Option<&[usize]>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Self> {
        let bad = |msg: String| Err(TensorError::invalid(op, msg));
        let &[n, c, h, w] = input else {
            return bad(format!(
                "input must be (N, C, H, W) or (C, H, W), got {input:?}"
            ));
        };
        let &[o, cg, kh, kw] = weight else {
            return bad(format!(
                "weight must be (O, C/groups, kh, kw), got {weight:?}"
            ));
        };
        if groups == 0 {
            return bad("groups must be at least 1, got 0".into());
        }
        if stride.0 == 0 || stride.1 == 0 {
            return bad(format!("stride must be positive, got {stride:?}"));
        }
        if dilation.0 == 0 || dilation.1 == 0 {
            return bad(format!("dilation must be positive, got {dilation:?}"));
        }
        if c % groups != 0 || o % groups != 0 {
            return bad(format!(
                "input channels {c} and output channels {o} must both be divisible by \
                 groups {groups} (input {input:?}, weight {weight:?})"
            ));
        }
        if cg * groups != c {
            return bad(format!(
                "input {input:?} has {c} channels but weight {weight:?} with groups {groups} \
                 expects {} (= {cg} * {groups})",
                cg * groups
            ));
        }
        if kh == 0 || kw == 0 {
            return bad(format!("kernel size must be positive, weight {weight:?}"));
        }
        if let Some(b) = bias {
            if b != [o] {
                return bad(format!(
                    "bias must be ({o},) for weight {weight:?}, got {b:?}"
                ));
            }
        }
        let ekh = dilation.0 * (kh - 1) + 1;
        let ekw = dilation.1 * (kw - 1) + 1;
        let (hp, wp) = (h + 2 * padding.0, w + 2 * padding.1);
        if ekh > hp || ekw > wp {
            return bad(format!(
                "kernel ({kh}, {kw}) with dilation {dilation:?} spans ({ekh}, {ekw}), larger \
                 than the padded input ({hp}, {wp}) (input {input:?}, padding {padding:?})"
            ));
        }
        Ok(Conv2dGeom {
            n,
            c,
            h,
            w,
            o,
            groups,
            cg,
            og: o / groups,
            kh,
            kw,
            sh: stride.0,
            sw: stride.1,
            ph: padding.0,
            pw: padding.1,
            dh: dilation.0,
            dw: dilation.1,
            oh: (hp - ekh) / stride.0 + 1,
            ow: (wp - ekw) / stride.1 + 1,
        })
    }

    /// Length of one unfolded patch: `C/groups * kh * kw`.
    pub fn k(&self) -> usize {
        self.cg * self.kh * self.kw
    }

    /// 1x1 kernel, stride 1, no padding: the input is its own im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

impl Tensor {
    /// 2-d convolution (cross-correlation, as `torch.nn.functional.conv2d`).
    ///
    /// `self: (N, C, H, W)` or `(C, H, W)`, `weight: (O, C/groups, kh, kw)`,
    /// `bias: (O,)` -> `(N, O, H', W')`. Any layout is accepted (non-contiguous
    /// inputs are copied once).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        run_conv2d(
            "conv2d", self, weight, bias, stride, padding, dilation, groups, conv2d_cpu,
        )
    }
}

/// What `conv2d` and `conv2d_naive` share around their loops: an unbatched
/// `(C, H, W)` input gets a batch dim of 1 (removed again from the result), shapes
/// and hyper-parameters are checked into a [`Conv2dGeom`] (errors name `op`), and
/// `kernel` gets the contiguous data of x, weight and bias and returns the
/// `(N, O, H', W')` output data.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_conv2d(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    kernel: impl FnOnce(&[f32], &[f32], Option<&[f32]>, &Conv2dGeom) -> Vec<f32>,
) -> Result<Tensor> {
    let unbatched = x.rank() == 3;
    let x = if unbatched {
        x.unsqueeze(0)?
    } else {
        x.clone()
    };
    let g = Conv2dGeom::new(
        op,
        x.dims(),
        weight.dims(),
        bias.map(|b| b.dims()),
        stride,
        padding,
        dilation,
        groups,
    )?;
    let x = x.contiguous()?;
    let w = weight.contiguous()?;
    let b = bias.map(Tensor::contiguous).transpose()?;
    let out = kernel(
        contiguous_data(&x)?,
        contiguous_data(&w)?,
        b.as_ref().map(contiguous_data).transpose()?,
        &g,
    );
    let y = Tensor::from_vec(out, [g.n, g.o, g.oh, g.ow])?;
    if unbatched {
        y.squeeze(0)
    } else {
        Ok(y)
    }
}

/// The data of a tensor known to be contiguous.
pub(crate) fn contiguous_data(t: &Tensor) -> Result<&[f32]> {
    t.contiguous_slice()?.ok_or_else(|| {
        TensorError::invalid(
            "contiguous_data",
            format!("tensor {:?} is not contiguous", t.dims()),
        )
    })
}

/// The convolution on contiguous buffers; returns the (N, O, H', W') data.
fn conv2d_cpu(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &Conv2dGeom) -> Vec<f32> {
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
fn valid_range(shift: isize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
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
