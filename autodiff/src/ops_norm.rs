//! Group and layer normalisation and their backwards.
//!
//! Both normalise groups of elements: `xhat = (x - mean) * rstd` with
//! `rstd = 1 / sqrt(var + eps)` (biased variance), then `y = xhat * w + b` per
//! channel. With `gy = dy * w` (the gradient reaching `xhat`), the standard result
//! for each group of `M` elements is
//!
//! `dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat))`
//!
//! (the two means remove the parts of `gy` that would only move the group's mean or
//! scale, which normalisation undoes), `dw = sum(dy * xhat)` and `db = sum(dy)` over
//! everything but the channel. The forward uses the tensor crate's kernels; the
//! backward is composed of tensor ops and recomputes `xhat` from the saved input.
//!
//! - `group_norm(G, w, b, eps)`: `x: (N, C, *)`, groups of `C/G` channels, `w, b: (C,)`;
//! - `layer_norm(shape, w, b, eps)`: `x: (*, *shape)`, groups are the trailing
//!   `shape` dims, `w, b: shape`.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, 3.0], [1, 2]).unwrap());
//! let w = Var::leaf(Tensor::from_vec(vec![1.0, 1.0], [2]).unwrap());
//! let y = x.layer_norm(&[2], Some(&w), None, 0.0).unwrap();       // (-1, 1)
//! let g = y.sum_all().unwrap().backward().unwrap();
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.0, 0.0]); // sum is always 0
//! assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![-1.0, 1.0]); // xhat
//! ```

use tensor::{Result as TResult, Tensor};

use crate::error::Result;
use crate::sum_to::sum_to;
use crate::var::{grad_if, record, Var};

/// `(xhat, rstd)` of `x` with statistics over `axes` (kept as size 1).
fn normalise(x: &Tensor, axes: &[isize], eps: f64) -> TResult<(Tensor, Tensor)> {
    let centred = x.sub(&x.mean(axes, true)?)?;
    let var = centred.sqr()?.mean(axes, true)?;
    let rstd = var.add_scalar(eps as f32)?.powf(-0.5)?;
    Ok((centred.mul(&rstd)?, rstd))
}

/// `rstd * (gy - mean(gy) - xhat * mean(gy * xhat))`, means over `axes`.
fn norm_input_grad(gy: &Tensor, xhat: &Tensor, rstd: &Tensor, axes: &[isize]) -> TResult<Tensor> {
    let m1 = gy.mean(axes, true)?;
    let m2 = gy.mul(xhat)?.mean(axes, true)?;
    gy.sub(&m1)?.sub(&xhat.mul(&m2)?)?.mul(rstd)
}

impl Var {
    /// Layer normalisation over the trailing `normalized_shape` dims
    /// (`torch.nn.functional.layer_norm`).
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Var>,
        bias: Option<&Var>,
        eps: f64,
    ) -> Result<Var> {
        let x = self.value().clone();
        let w = weight.map(|w| w.value().clone());
        let y = x.layer_norm(normalized_shape, w.as_ref(), bias.map(Var::value), eps)?;
        let rank = x.rank();
        let axes: Vec<isize> = (rank - normalized_shape.len()..rank)
            .map(|d| d as isize)
            .collect();
        let shape = normalized_shape.to_vec();
        let (has_w, has_b) = (weight.is_some(), bias.is_some());
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        Ok(record("layer_norm", y, &inputs, move |g, need| {
            let (xhat, rstd) = normalise(&x, &axes, eps)?;
            let gy = match &w {
                Some(w) => g.mul(w)?,
                None => g.clone(),
            };
            let mut grads = vec![grad_if(need[0], || {
                norm_input_grad(&gy, &xhat, &rstd, &axes)
            })?];
            if has_w {
                grads.push(grad_if(need[1], || sum_to(&g.mul(&xhat)?, &shape))?);
            }
            if has_b {
                grads.push(grad_if(need[grads.len()], || sum_to(g, &shape))?);
            }
            Ok(grads)
        }))
    }

    /// Group normalisation (`torch.nn.functional.group_norm`): `(N, C, *)` -> same.
    pub fn group_norm(
        &self,
        num_groups: usize,
        weight: Option<&Var>,
        bias: Option<&Var>,
        eps: f64,
    ) -> Result<Var> {
        let x = self.value().clone();
        let w = weight.map(|w| w.value().clone());
        let y = x.group_norm(num_groups, w.as_ref(), bias.map(Var::value), eps)?;
        // The forward checked (N, C, *) with C divisible by num_groups.
        let dims = x.dims().to_vec();
        let (n, c) = (dims[0], dims[1]);
        let spatial: usize = dims[2..].iter().product();
        let grouped = [n, num_groups, c / num_groups * spatial];
        let per_channel = [n, c, spatial];
        let (has_w, has_b) = (weight.is_some(), bias.is_some());
        let mut inputs = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        Ok(record("group_norm", y, &inputs, move |g, need| {
            let (xhat, rstd) = normalise(&x.reshape(grouped)?, &[2], eps)?;
            let gc = g.reshape(per_channel)?; // (N, C, S)
            let gy = match &w {
                Some(w) => gc.mul(&w.reshape([c, 1])?)?,
                None => gc.clone(),
            };
            let mut grads = vec![grad_if(need[0], || {
                norm_input_grad(&gy.reshape(grouped)?, &xhat, &rstd, &[2])?.reshape(dims.clone())
            })?];
            if has_w {
                grads.push(grad_if(need[1], || {
                    gc.mul(&xhat.reshape(per_channel)?)?.sum(&[0, 2], false)
                })?);
            }
            if has_b {
                grads.push(grad_if(need[grads.len()], || gc.sum(&[0, 2], false))?);
            }
            Ok(grads)
        }))
    }
}
