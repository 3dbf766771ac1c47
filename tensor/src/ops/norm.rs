//! Normalisation layers, forward (introduced in the UNet lesson: every ResNet block
//! opens with a GroupNorm, every transformer block with LayerNorms).
//!
//! Both subtract a mean and divide by `sqrt(var + eps)` (biased variance, as
//! PyTorch), then apply an optional per-channel scale `weight` and shift `bias`:
//!
//! - `group_norm(G, weight, bias, eps)`: `x: (N, C, *)`, channels split into `G`
//!   groups of `C/G`; statistics over each (sample, group); `weight, bias: (C,)`.
//! - `layer_norm(&normalized_shape, weight, bias, eps)`: statistics over the trailing
//!   dims equal to `normalized_shape`; `weight, bias: normalized_shape`.
//!
//! Statistics are two-pass in f64 (mean first, then the mean squared deviation) and
//! `x - mean` is taken in f64 too, so a large common offset does not cancel the
//! variance or the normalised values away.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [1, 4]).unwrap();
//! let y = x.layer_norm(&[4], None, None, 0.0).unwrap().to_vec().unwrap();
//! // mean 2.5, var 1.25: (x - 2.5) / sqrt(1.25)
//! let want = [-1.3416408, -0.4472136, 0.4472136, 1.3416408];
//! assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
//! let g = x.reshape([1, 4, 1]).unwrap().group_norm(2, None, None, 0.0).unwrap();
//! assert_eq!(g.to_vec().unwrap(), vec![-1.0, 1.0, -1.0, 1.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::ops::conv::contiguous_data;
use crate::tensor::Tensor;

/// Elements per rayon task, so tiny rows are not scheduled one by one.
const MIN_TASK: usize = 1 << 14;

/// Mean and `1 / sqrt(var + eps)` of `xs`, two-pass in f64.
fn moments(xs: &[f32], eps: f64) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// The contiguous data of an optional affine parameter that must have `dims`.
fn affine(
    op: &'static str,
    what: &str,
    t: Option<&Tensor>,
    dims: &[usize],
) -> Result<Option<Tensor>> {
    match t {
        None => Ok(None),
        Some(t) if t.dims() == dims => Ok(Some(t.contiguous()?)),
        Some(t) => Err(TensorError::invalid(
            op,
            format!("{what} must have shape {dims:?}, got {:?}", t.dims()),
        )),
    }
}

fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(TensorError::invalid(
            op,
            format!("eps must be finite and >= 0, got {eps}"),
        ))
    }
}

impl Tensor {
    /// Group normalisation (`torch.nn.functional.group_norm`): `(N, C, *)` -> same.
    pub fn group_norm(
        &self,
        num_groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let op = "group_norm";
        check_eps(op, eps)?;
        let dims = self.dims();
        if dims.len() < 2 {
            return Err(TensorError::invalid(
                op,
                format!("input must be (N, C, *), got {dims:?}"),
            ));
        }
        let c = dims[1];
        if c.checked_rem(num_groups) != Some(0) {
            return Err(TensorError::invalid(
                op,
                format!(
                    "{c} channels of input {dims:?} are not divisible into {num_groups} groups"
                ),
            ));
        }
        let w = affine(op, "weight", weight, &[c])?;
        let b = affine(op, "bias", bias, &[c])?;
        let w = w.as_ref().map(contiguous_data).transpose()?;
        let b = b.as_ref().map(contiguous_data).transpose()?;
        let spatial: usize = dims[2..].iter().product();
        let cg = c / num_groups;
        let block = cg * spatial;
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let mut out = vec![0.0f32; data.len()];
        if block == 0 {
            return Tensor::from_vec(out, dims.to_vec());
        }
        out.par_chunks_mut(block)
            .zip(data.par_chunks(block))
            .enumerate()
            .with_min_len(MIN_TASK.div_ceil(block))
            .for_each(|(idx, (dst, src))| {
                let (mean, rstd) = moments(src, eps);
                let c0 = (idx % num_groups) * cg;
                for (ci, (d, s)) in dst.chunks_mut(spatial).zip(src.chunks(spatial)).enumerate() {
                    let scale = rstd * w.map_or(1.0, |w| w[c0 + ci] as f64);
                    let shift = b.map_or(0.0, |b| b[c0 + ci] as f64);
                    for (o, &v) in d.iter_mut().zip(s) {
                        *o = ((v as f64 - mean) * scale + shift) as f32;
                    }
                }
            });
        Tensor::from_vec(out, dims.to_vec())
    }

    /// Layer normalisation over the trailing `normalized_shape` dims
    /// (`torch.nn.functional.layer_norm`): `(*, *normalized_shape)` -> same.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let op = "layer_norm";
        check_eps(op, eps)?;
        let dims = self.dims();
        let k = normalized_shape.len();
        if k == 0 || k > dims.len() || dims[dims.len() - k..] != *normalized_shape {
            return Err(TensorError::invalid(
                op,
                format!("normalized_shape {normalized_shape:?} is not a non-empty suffix of input {dims:?}"),
            ));
        }
        let w = affine(op, "weight", weight, normalized_shape)?;
        let b = affine(op, "bias", bias, normalized_shape)?;
        let w = w.as_ref().map(contiguous_data).transpose()?;
        let b = b.as_ref().map(contiguous_data).transpose()?;
        let row: usize = normalized_shape.iter().product();
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let mut out = vec![0.0f32; data.len()];
        if row == 0 {
            return Tensor::from_vec(out, dims.to_vec());
        }
        out.par_chunks_mut(row)
            .zip(data.par_chunks(row))
            .with_min_len(MIN_TASK.div_ceil(row))
            .for_each(|(dst, src)| {
                let (mean, rstd) = moments(src, eps);
                for (i, (o, &v)) in dst.iter_mut().zip(src).enumerate() {
                    let scale = w.map_or(1.0, |w| w[i] as f64);
                    let shift = b.map_or(0.0, |b| b[i] as f64);
                    *o = ((v as f64 - mean) * rstd * scale + shift) as f32;
                }
            });
        Tensor::from_vec(out, dims.to_vec())
    }
}
