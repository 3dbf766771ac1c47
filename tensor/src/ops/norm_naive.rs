//! Normalisation layers, the plain reference versions (the UNet lesson): the twins
//! that [`super::norm`]'s fused, vectorised kernels are tested against.
//!
//! Same contract as [`Tensor::group_norm`] / [`Tensor::layer_norm`]: subtract the mean,
//! divide by `sqrt(var + eps)` (biased variance, as PyTorch), then the optional
//! per-channel `weight` and `bias`. `group_norm_naive(G, ..)`: `x: (N, C, *)`;
//! `layer_norm_naive(&normalized_shape, ..)`: `x: (*, *normalized_shape)`.
//!
//! Everything here is f64 and scalar: statistics two-pass (mean first, then the mean
//! squared deviation), and every output `((x - mean) * rstd * w + b)` computed in f64
//! and rounded once, so these are as exact as f32 outputs can be.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [1, 4]).unwrap();
//! let y = x.layer_norm_naive(&[4], None, None, 0.0).unwrap().to_vec().unwrap();
//! // mean 2.5, var 1.25: (x - 2.5) / sqrt(1.25)
//! let want = [-1.3416408, -0.4472136, 0.4472136, 1.3416408];
//! assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
//! let g = x.reshape([1, 4, 1]).unwrap().group_norm_naive(2, None, None, 0.0).unwrap();
//! assert_eq!(g.to_vec().unwrap(), vec![-1.0, 1.0, -1.0, 1.0]);
//! ```

use rayon::prelude::*;

use crate::error::Result;
use crate::ops::norm::{check_group_norm, check_layer_norm, contiguous_data};
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

impl Tensor {
    /// [`Tensor::group_norm`] in scalar f64: the reference twin.
    pub fn group_norm_naive(
        &self,
        num_groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let (w, b, c, spatial) = check_group_norm(self, num_groups, weight, bias, eps)?;
        let w = w.as_ref().map(contiguous_data).transpose()?;
        let b = b.as_ref().map(contiguous_data).transpose()?;
        let cg = c / num_groups;
        let block = cg * spatial;
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let mut out = vec![0.0f32; data.len()];
        if block == 0 {
            return Tensor::from_vec(out, x.dims().to_vec());
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
        Tensor::from_vec(out, x.dims().to_vec())
    }

    /// [`Tensor::layer_norm`] in scalar f64: the reference twin.
    pub fn layer_norm_naive(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let (w, b, row) = check_layer_norm(self, normalized_shape, weight, bias, eps)?;
        let w = w.as_ref().map(contiguous_data).transpose()?;
        let b = b.as_ref().map(contiguous_data).transpose()?;
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let mut out = vec![0.0f32; data.len()];
        if row == 0 {
            return Tensor::from_vec(out, x.dims().to_vec());
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
        Tensor::from_vec(out, x.dims().to_vec())
    }
}
