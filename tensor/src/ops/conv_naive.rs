//! The direct convolution: seven nested loops, straight from the definition
//! (the convolutions lesson starts here; [`crate::ops::conv`] is the fast version and
//! is tested against this one, which stays in the tree as the reference).
//!
//! `out[n, o, y, x] = bias[o] + sum_{ci, ky, kx} in[n, g*C/groups + ci, y*sh + ky*dh - ph,
//! x*sw + kx*dw - pw] * weight[o, ci, ky, kx]` where `g = o / (O/groups)` and reads
//! outside the input are 0. Shapes as [`Tensor::conv2d`]. Sums accumulate in f64.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap();
//! let w = Tensor::from_vec(vec![1.0, -1.0], [1, 1, 1, 2]).unwrap();
//! let y = x.conv2d_naive(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![-1.0, -1.0, -1.0, -1.0, -1.0, -1.0]);
//! ```

use crate::error::Result;
use crate::ops::conv::{run_conv2d, Conv2dGeom};
use crate::tensor::Tensor;

impl Tensor {
    /// Reference 2-d convolution by direct loops; same arguments, shapes and errors
    /// as [`Tensor::conv2d`]. Slow: for tests and lessons.
    pub fn conv2d_naive(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        run_conv2d(
            "conv2d_naive",
            self,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            direct_loops,
        )
    }
}

/// The seven loops over contiguous data; returns the (N, O, H', W') output data.
pub(crate) fn direct_loops(x: &[f32], w: &[f32], b: Option<&[f32]>, g: &Conv2dGeom) -> Vec<f32> {
    let mut out = Vec::with_capacity(g.n * g.o * g.oh * g.ow);
    for n in 0..g.n {
        for o in 0..g.o {
            let grp = o / g.og;
            for y in 0..g.oh {
                for xo in 0..g.ow {
                    let mut acc = b.map_or(0.0, |b| b[o] as f64);
                    for ci in 0..g.cg {
                        let c = grp * g.cg + ci;
                        for ky in 0..g.kh {
                            let iy = (y * g.sh + ky * g.dh) as isize - g.ph as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            for kx in 0..g.kw {
                                let ix = (xo * g.sw + kx * g.dw) as isize - g.pw as isize;
                                if ix < 0 || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((o * g.cg + ci) * g.kh + ky) * g.kw + kx;
                                acc += x[xi] as f64 * w[wi] as f64;
                            }
                        }
                    }
                    out.push(acc as f32);
                }
            }
        }
    }
    out
}
