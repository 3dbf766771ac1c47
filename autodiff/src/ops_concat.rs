//! Joining, splitting, padding and upsampling, and their backwards.
//!
//! - `Var::cat(&[a, b], dim)`: the gradient is cut back into pieces with `narrow`;
//!   `Var::stack` is `unsqueeze` + `cat`; `chunk` / `split` are `narrow`s.
//! - `pad(&[(before, after), ..], value)` (pairs from the last dim leftwards, as
//!   `F.pad`): the gradient is narrowed back to the unpadded middle.
//! - `upsample_nearest2d(out_h, out_w)`: `(N, C, H, W) -> (N, C, out_h, out_w)`;
//!   every output pixel copies one input pixel, so an input pixel's gradient is the
//!   sum over the output pixels that copied it (for a factor of 2, a sum over 2x2
//!   blocks). The source of each output row and column is found by upsampling the
//!   row and column indices themselves, so forward and backward share one rule.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, 2.0], [1, 1, 1, 2]).unwrap());
//! let up = x.upsample_nearest2d(2, 4).unwrap();                 // (1, 1, 2, 4)
//! let w = Var::constant(Tensor::arange(0.0, 8.0, 1.0).unwrap().reshape([1, 1, 2, 4]).unwrap());
//! let g = up.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
//! // x[0] was copied to outputs 0, 1, 4, 5; x[1] to 2, 3, 6, 7
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![10.0, 18.0]);
//! ```

use tensor::shape::resolve_dim;
use tensor::{Tensor, TensorError};

use crate::error::{AutodiffError, Result};
use crate::var::{grad_if, record, Var};

impl Var {
    /// Concatenate along `dim` (`torch.cat`).
    pub fn cat(vars: &[&Var], dim: isize) -> Result<Var> {
        let values: Vec<&Tensor> = vars.iter().map(|v| v.value()).collect();
        let y = Tensor::cat(&values, dim)?;
        let d = resolve_dim("cat", dim, y.rank())?;
        let sizes: Vec<usize> = vars.iter().map(|v| v.dims()[d]).collect();
        Ok(record("cat", y, vars, move |g, need| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(sizes.len());
            for (&len, &nd) in sizes.iter().zip(need) {
                grads.push(grad_if(nd, || g.narrow(d as isize, start, len))?);
                start += len;
            }
            Ok(grads)
        }))
    }

    /// Stack equal shapes along a new dim `dim` (`torch.stack`).
    pub fn stack(vars: &[&Var], dim: isize) -> Result<Var> {
        let Some(first) = vars.first() else {
            return Err(AutodiffError::invalid("stack", "needs at least one Var"));
        };
        let d = resolve_dim("stack", dim, first.rank() + 1)? as isize;
        let parts = vars
            .iter()
            .map(|v| v.unsqueeze(d))
            .collect::<Result<Vec<_>>>()?;
        Var::cat(&parts.iter().collect::<Vec<_>>(), d)
    }

    /// Pieces of `ceil(size / chunks)` along `dim` (`torch.chunk`).
    pub fn chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Var>> {
        let d = resolve_dim("chunk", dim, self.rank())?;
        if chunks == 0 {
            return Err(AutodiffError::invalid("chunk", "chunks must be at least 1"));
        }
        let size = self.dims()[d];
        self.split(size.div_ceil(chunks).max(1), dim)
    }

    /// Pieces of `split_size` along `dim`, the last one shorter (`torch.split`).
    pub fn split(&self, split_size: usize, dim: isize) -> Result<Vec<Var>> {
        let d = resolve_dim("split", dim, self.rank())?;
        if split_size == 0 {
            return Err(AutodiffError::invalid(
                "split",
                "split_size must be at least 1",
            ));
        }
        let size = self.dims()[d];
        (0..size)
            .step_by(split_size)
            .map(|s| self.narrow(dim, s, split_size.min(size - s)))
            .collect()
    }

    /// Constant padding; `pads[0]` is `(before, after)` for the last dim, `pads[1]`
    /// for the one before it (`F.pad(x, (l, r, t, b), value=v)`).
    pub fn pad(&self, pads: &[(usize, usize)], value: f32) -> Result<Var> {
        let y = self.value().pad(pads, value)?;
        let pads = pads.to_vec();
        let in_dims = self.dims().to_vec();
        Ok(record("pad", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                let rank = in_dims.len();
                let mut out = g.clone();
                for (i, &(before, _)) in pads.iter().enumerate() {
                    let d = rank - 1 - i;
                    out = out.narrow(d as isize, before, in_dims[d])?;
                }
                Ok::<_, TensorError>(out)
            })?])
        }))
    }

    /// Nearest-neighbour resize of the last two dims (`F.interpolate(mode='nearest')`):
    /// `(N, C, H, W)` or `(C, H, W)` -> `(.., out_h, out_w)`.
    pub fn upsample_nearest2d(&self, out_h: usize, out_w: usize) -> Result<Var> {
        let y = self.value().upsample_nearest2d(out_h, out_w)?;
        let in_dims = self.dims().to_vec();
        Ok(record("upsample_nearest2d", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || upsample_backward(g, &in_dims))?])
        }))
    }

    /// Nearest upsampling by an integer factor: `(.., H, W)` -> `(.., H*f, W*f)`.
    pub fn upsample_nearest2d_scale(&self, factor: usize) -> Result<Var> {
        let r = self.rank();
        if r < 2 {
            return Err(TensorError::invalid(
                "upsample_nearest2d_scale",
                format!(
                    "input must be (N, C, H, W) or (C, H, W), got {:?}",
                    self.dims()
                ),
            )
            .into());
        }
        let (h, w) = (self.dims()[r - 2], self.dims()[r - 1]);
        self.upsample_nearest2d(h * factor, w * factor)
    }
}

/// Source index of every output index along one axis of size `n` resized to `out`:
/// the forward's own rule applied to the indices `0..n`.
fn source_indices(n: usize, out: usize, rows: bool) -> tensor::Result<Vec<usize>> {
    let idx = Tensor::arange(0.0, n as f32, 1.0)?;
    let src = if rows {
        idx.reshape([1, n, 1])?.upsample_nearest2d(out, 1)?
    } else {
        idx.reshape([1, 1, n])?.upsample_nearest2d(1, out)?
    };
    Ok(src.to_vec()?.into_iter().map(|v| v as usize).collect())
}

/// Sum the gradient of each output pixel into the input pixel it copied.
fn upsample_backward(g: &Tensor, in_dims: &[usize]) -> tensor::Result<Tensor> {
    let r = in_dims.len();
    let (h, w) = (in_dims[r - 2], in_dims[r - 1]);
    let gd = g.dims();
    let (oh, ow) = (gd[r - 2], gd[r - 1]);
    let (rows, cols) = (source_indices(h, oh, true)?, source_indices(w, ow, false)?);
    let gv = g.to_vec()?;
    let mut dx = vec![0.0f32; in_dims.iter().product()];
    if h * w > 0 && oh * ow > 0 {
        for (plane, dst) in gv.chunks(oh * ow).zip(dx.chunks_mut(h * w)) {
            for (y, grow) in plane.chunks(ow).enumerate() {
                let drow = &mut dst[rows[y] * w..(rows[y] + 1) * w];
                for (&v, &c) in grow.iter().zip(&cols) {
                    drow[c] += v;
                }
            }
        }
    }
    Tensor::from_vec(dx, in_dims.to_vec())
}
