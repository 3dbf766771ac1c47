//! Reductions and their backwards: `x: (2, 3, 4).sum(&[0, 2], false) -> (3,)`.
//!
//! - `sum`: every element fed the sum once, so the gradient is the output gradient
//!   put back at keepdim shape `(1, 3, 1)` and broadcast to `(2, 3, 4)`.
//! - `mean`: the same divided by the count.
//! - `max` / `min`: the whole gradient goes to the position of the extreme, the
//!   first one in row-major order over the reduced dims when there are ties (as
//!   `torch.max(dim)` and its `argmax`; NaN counts as the extreme, as in forward).
//! - `var(correction)`: `2 (x - mean) / (N - correction)` times the gradient.
//!
//! An empty `dims` reduces every dim, as in the tensor crate.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, 5.0, 5.0, 2.0], [2, 2]).unwrap());
//! let g = x.max(&[1], false).unwrap().sum_all().unwrap().backward().unwrap();
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.0, 1.0, 1.0, 0.0]);
//! let g = x.mean(&[], false).unwrap().backward().unwrap();
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.25; 4]);
//! ```

use tensor::shape::resolve_dim;
use tensor::Tensor;

use crate::error::Result;
use crate::var::{grad_if, record, Var};

/// Which dims `dims` reduces (empty = all), as a mask over `rank` dims.
fn reduced_mask(op: &'static str, rank: usize, dims: &[isize]) -> Result<Vec<bool>> {
    let mut mask = vec![dims.is_empty(); rank];
    for &d in dims {
        mask[resolve_dim(op, d, rank)?] = true;
    }
    Ok(mask)
}

/// `dims` with the reduced ones set to 1.
fn keepdim_dims(dims: &[usize], mask: &[bool]) -> Vec<usize> {
    dims.iter()
        .zip(mask)
        .map(|(&d, &m)| if m { 1 } else { d })
        .collect()
}

/// The output gradient broadcast back over the reduced dims of `in_dims`.
fn expand_back(g: &Tensor, in_dims: &[usize], mask: &[bool]) -> tensor::Result<Tensor> {
    g.reshape(keepdim_dims(in_dims, mask))?
        .broadcast_as(in_dims.to_vec())
}

impl Var {
    /// Sum over `dims` (empty = all), optionally keeping them with size 1.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let mask = reduced_mask("sum", self.rank(), dims)?;
        let y = self.value().sum(dims, keepdim)?;
        let in_dims = self.dims().to_vec();
        Ok(record("sum", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || expand_back(g, &in_dims, &mask))?])
        }))
    }

    /// Mean over `dims` (empty = all).
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let mask = reduced_mask("mean", self.rank(), dims)?;
        let y = self.value().mean(dims, keepdim)?;
        let in_dims = self.dims().to_vec();
        let count: usize = in_dims
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&d, _)| d)
            .product();
        let scale = 1.0 / count as f32;
        Ok(record("mean", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                expand_back(&g.mul_scalar(scale)?, &in_dims, &mask)
            })?])
        }))
    }

    /// Sum of every element, rank 0.
    pub fn sum_all(&self) -> Result<Var> {
        self.sum(&[], false)
    }
    /// Mean of every element, rank 0.
    pub fn mean_all(&self) -> Result<Var> {
        self.mean(&[], false)
    }
    /// Sum over one dim, keeping it with size 1.
    pub fn sum_keepdim(&self, dim: isize) -> Result<Var> {
        self.sum(&[dim], true)
    }
    /// Mean over one dim, keeping it with size 1.
    pub fn mean_keepdim(&self, dim: isize) -> Result<Var> {
        self.mean(&[dim], true)
    }

    /// Max over `dims` (values, as `torch.amax`); the gradient goes to the first max.
    pub fn max(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        self.extreme("max", dims, keepdim)
    }
    /// Min over `dims`; the gradient goes to the first min.
    pub fn min(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        self.extreme("min", dims, keepdim)
    }

    fn extreme(&self, op: &'static str, dims: &[isize], keepdim: bool) -> Result<Var> {
        let mask = reduced_mask(op, self.rank(), dims)?;
        let x = self.value().clone();
        let y = if op == "max" {
            x.max(dims, keepdim)?
        } else {
            x.min(dims, keepdim)?
        };
        let saved_y = y.clone();
        Ok(record(op, y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                scatter_to_first(&x, &saved_y, g, &mask)
            })?])
        }))
    }

    /// Variance over `dims`: `sum((x - mean)^2) / (N - correction)`.
    pub fn var(&self, dims: &[isize], correction: usize, keepdim: bool) -> Result<Var> {
        let mask = reduced_mask("var", self.rank(), dims)?;
        let x = self.value().clone();
        let y = x.var(dims, correction, keepdim)?;
        let in_dims = self.dims().to_vec();
        let count: usize = in_dims
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&d, _)| d)
            .product();
        let scale = 2.0 / count.saturating_sub(correction) as f32;
        let axes: Vec<isize> = dims.to_vec();
        Ok(record("var", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                let centred = x.sub(&x.mean(&axes, true)?)?;
                let g = g.reshape(keepdim_dims(&in_dims, &mask))?;
                centred.mul(&g)?.mul_scalar(scale)
            })?])
        }))
    }

    /// Standard deviation: `sqrt(var)`.
    pub fn std(&self, dims: &[isize], correction: usize, keepdim: bool) -> Result<Var> {
        self.var(dims, correction, keepdim)?.sqrt()
    }
}

/// The gradient of a max/min: `g` (one value per kept position) placed at the first
/// element of each reduced group of `x` equal to the extreme `y` (or the first NaN
/// when the extreme is NaN), zero elsewhere.
fn scatter_to_first(x: &Tensor, y: &Tensor, g: &Tensor, mask: &[bool]) -> tensor::Result<Tensor> {
    // Permute x to (kept dims.., reduced dims..): each row is one reduced group, and
    // rows come in the order of the kept positions (the order of y and g).
    let rank = mask.len();
    let kept = (0..rank).filter(|&d| !mask[d]);
    let perm: Vec<usize> = kept.chain((0..rank).filter(|&d| mask[d])).collect();
    let xp = x.permute(&perm)?;
    let xv = xp.to_vec()?;
    let (yv, gv) = (y.to_vec()?, g.to_vec()?);
    let row = if yv.is_empty() {
        0
    } else {
        xv.len() / yv.len()
    };
    let mut out = vec![0.0f32; xv.len()];
    for (k, (src, dst)) in xv
        .chunks(row.max(1))
        .zip(out.chunks_mut(row.max(1)))
        .enumerate()
    {
        let target = yv[k];
        let hit = src
            .iter()
            .position(|&v| v == target || (target.is_nan() && v.is_nan()));
        if let Some(j) = hit {
            dst[j] = gv[k];
        }
    }
    let mut inv = vec![0usize; rank];
    for (j, &p) in perm.iter().enumerate() {
        inv[p] = j;
    }
    Tensor::from_vec(out, xp.dims().to_vec())?.permute(&inv)
}
