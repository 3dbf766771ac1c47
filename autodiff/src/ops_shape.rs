//! Views and their backwards. A view moves no numbers, so its backward moves the
//! gradient back the same way:
//!
//! - `reshape`, `flatten`, `squeeze`, `unsqueeze`: reshape the gradient to the
//!   input's shape (`(2, 3) -> (6,)` backward is `(6,) -> (2, 3)`);
//! - `permute(p)`: permute by the inverse of `p`; `transpose(a, b)` by itself;
//! - `narrow(dim, start, len)`: pad the gradient with zeros back to the full size
//!   (the elements left out got no gradient);
//! - `broadcast_as(shape)`: sum over the broadcast dims ([`crate::sum_to()`]);
//! - `contiguous`: the identity.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([2, 3]).unwrap());
//! let y = x.t().unwrap().narrow(0, 1, 2).unwrap();          // (2, 2): x[:, 1:]^T
//! let w = Var::constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2]).unwrap());
//! let g = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.0, 1.0, 3.0, 0.0, 2.0, 4.0]);
//! ```

use tensor::shape::resolve_dim;
use tensor::{Shape, Tensor};

use crate::error::Result;
use crate::sum_to::sum_to;
use crate::var::{grad_if, record, Var};

impl Var {
    /// A view-like op `op` with value `y` whose backward reshapes to the input shape.
    fn reshape_like(&self, op: &'static str, y: Tensor) -> Var {
        let in_dims = self.dims().to_vec();
        record(op, y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.reshape(in_dims.clone()))?])
        })
    }

    /// Same elements in a new shape (`torch.reshape`).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Var> {
        let y = self.value().reshape(shape)?;
        Ok(self.reshape_like("reshape", y))
    }
    /// Merge dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Var> {
        let y = self.value().flatten(start, end)?;
        Ok(self.reshape_like("flatten", y))
    }
    /// Remove a size-1 dim.
    pub fn squeeze(&self, dim: isize) -> Result<Var> {
        let y = self.value().squeeze(dim)?;
        Ok(self.reshape_like("squeeze", y))
    }
    /// Insert a size-1 dim.
    pub fn unsqueeze(&self, dim: isize) -> Result<Var> {
        let y = self.value().unsqueeze(dim)?;
        Ok(self.reshape_like("unsqueeze", y))
    }

    /// Reorder dims: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Var> {
        let y = self.value().permute(perm)?;
        let mut inv = vec![0usize; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(record("permute", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.permute(&inv))?])
        }))
    }

    /// Swap two dims.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Var> {
        let y = self.value().transpose(d0, d1)?;
        Ok(record("transpose", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.transpose(d0, d1))?])
        }))
    }

    /// Swap the last two dims.
    pub fn t(&self) -> Result<Var> {
        let y = self.value().t()?;
        Ok(record("t", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.t())?])
        }))
    }

    /// Keep `len` entries of `dim` from `start` (slicing `x[.., start:start+len, ..]`).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Var> {
        let y = self.value().narrow(dim, start, len)?;
        let in_dims = self.dims().to_vec();
        let d = resolve_dim("narrow", dim, in_dims.len())?;
        // Pads run from the last dim leftwards (as torch's F.pad); only `d` is padded.
        let rank = in_dims.len();
        let mut pads = vec![(0usize, 0usize); rank - d];
        pads[rank - 1 - d] = (start, in_dims[d] - start - len);
        Ok(record("narrow", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.pad(&pads, 0.0))?])
        }))
    }

    /// Broadcast to `shape` (NumPy rules).
    pub fn broadcast_as(&self, shape: impl Into<Shape>) -> Result<Var> {
        let y = self.value().broadcast_as(shape)?;
        let in_dims = self.dims().to_vec();
        Ok(record("broadcast_as", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || sum_to(g, &in_dims))?])
        }))
    }

    /// The same values, contiguous in memory.
    pub fn contiguous(&self) -> Result<Var> {
        let y = self.value().contiguous()?;
        Ok(record("contiguous", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                Ok::<_, tensor::TensorError>(g.clone())
            })?])
        }))
    }
}
