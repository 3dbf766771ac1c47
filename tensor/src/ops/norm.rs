//! Normalisation layers, forward, fused and vectorised (introduced in the UNet
//! lesson: every ResNet block opens with a GroupNorm followed by SiLU, every
//! transformer block with LayerNorms). The scalar f64 twins in
//! [`super::norm_naive`] are the reference they are tested against.
//!
//! Both subtract a mean and divide by `sqrt(var + eps)` (biased variance, as
//! PyTorch), then apply an optional per-channel scale `weight` and shift `bias`:
//!
//! - `group_norm(G, weight, bias, eps)`: `x: (N, C, *)`, channels split into `G`
//!   groups of `C/G`; statistics over each (sample, group); `weight, bias: (C,)`.
//!   `group_norm_silu` applies SiLU in the same pass (SD's ResnetBlock2D order).
//! - `layer_norm(&normalized_shape, weight, bias, eps)`: statistics over the trailing
//!   dims equal to `normalized_shape`; `weight, bias: normalized_shape`.
//!
//! How it is fast and still exact: a group (a contiguous block of `C/G * H * W`
//! floats, 160 KB for SD's `(2, 320, 64, 64)`) is read from memory once and stays in
//! L2 for the statistics (mean, then the mean squared deviation, both summed in f64
//! over 16 lanes) and for the output pass. The output pass is f32 SIMD
//! ([`vmath::act_slice`] with [`Pre::Norm`]): the f64 mean is carried as two floats
//! `hi + lo`, and `(x - hi) - lo` is exact to f32 rounding even when `x` sits far from
//! zero (`x - hi` is exact when `x` and `hi` are close), so a large common offset
//! cancels nothing away. The activation, if any, runs on the lanes before they are
//! stored, so the fused op writes memory once.
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
//! // Fused SiLU: silu(1) = 0.7310586, silu(-1) = -0.26894143.
//! let s = x.reshape([1, 4, 1]).unwrap().group_norm_silu(2, None, None, 0.0).unwrap();
//! let s = s.to_vec().unwrap();
//! assert!((s[0] + 0.268_941_43).abs() < 1e-7 && (s[1] - 0.731_058_6).abs() < 1e-7);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::ops::unary::UnaryOp;
use crate::ops::vmath::{self, Pre, Simd, SimdFn};
use crate::tensor::Tensor;

/// Elements per rayon task, so tiny rows are not scheduled one by one.
const MIN_TASK: usize = 1 << 14;

/// The data of a contiguous tensor.
pub(crate) fn contiguous_data(t: &Tensor) -> Result<&[f32]> {
    t.contiguous_slice()?.ok_or_else(|| {
        TensorError::invalid("norm", format!("tensor {:?} is not contiguous", t.dims()))
    })
}

/// The contiguous form of an optional affine parameter that must have `dims`.
pub(crate) fn affine(
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

/// Check the arguments of a group norm of `x`; returns the contiguous weight and
/// bias, the channel count and the spatial size.
#[allow(clippy::type_complexity)]
pub(crate) fn check_group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<(Option<Tensor>, Option<Tensor>, usize, usize)> {
    let op = "group_norm";
    check_eps(op, eps)?;
    let dims = x.dims();
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
            format!("{c} channels of input {dims:?} are not divisible into {num_groups} groups"),
        ));
    }
    let w = affine(op, "weight", weight, &[c])?;
    let b = affine(op, "bias", bias, &[c])?;
    Ok((w, b, c, dims[2..].iter().product()))
}

/// Check the arguments of a layer norm of `x`; returns the contiguous weight and
/// bias and the row length.
pub(crate) fn check_layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<(Option<Tensor>, Option<Tensor>, usize)> {
    let op = "layer_norm";
    check_eps(op, eps)?;
    let dims = x.dims();
    let k = normalized_shape.len();
    if k == 0 || k > dims.len() || dims[dims.len() - k..] != *normalized_shape {
        return Err(TensorError::invalid(
            op,
            format!(
                "normalized_shape {normalized_shape:?} is not a non-empty suffix of input {dims:?}"
            ),
        ));
    }
    let w = affine(op, "weight", weight, normalized_shape)?;
    let b = affine(op, "bias", bias, normalized_shape)?;
    Ok((w, b, normalized_shape.iter().product()))
}

pub(crate) fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(TensorError::invalid(
            op,
            format!("eps must be finite and >= 0, got {eps}"),
        ))
    }
}

/// Mean and variance (biased) of `xs`, two passes, summed in f64 over 16 lanes.
struct Moments<'a>(&'a [f32]);

impl SimdFn for Moments<'_> {
    type Out = (f64, f64);
    #[inline(always)]
    fn call<S: Simd>(self, _: S) -> (f64, f64) {
        let xs = self.0;
        let n = xs.len().max(1) as f64;
        let mut lanes = [0.0f64; 16];
        let mut chunks = xs.chunks_exact(16);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += v as f64;
            }
        }
        let rest: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
        let mean = (lanes.iter().sum::<f64>() + rest) / n;
        let mut lanes = [0.0f64; 16];
        let mut chunks = xs.chunks_exact(16);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                let d = v as f64 - mean;
                *l += d * d;
            }
        }
        let rest: f64 = chunks
            .remainder()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum();
        (mean, (lanes.iter().sum::<f64>() + rest) / n)
    }
}

/// `(hi, lo, rstd)`: the f64 mean as two floats and `1 / sqrt(var + eps)`.
fn stats(xs: &[f32], eps: f64) -> (f32, f32, f64) {
    let (mean, var) = vmath::dispatch(Moments(xs));
    let hi = mean as f32;
    (hi, (mean - hi as f64) as f32, 1.0 / (var + eps).sqrt())
}

fn group_norm_impl(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    act: Option<UnaryOp>,
) -> Result<Tensor> {
    let (w, b, c, spatial) = check_group_norm(x, num_groups, weight, bias, eps)?;
    let w = w.as_ref().map(contiguous_data).transpose()?;
    let b = b.as_ref().map(contiguous_data).transpose()?;
    let cg = c / num_groups;
    let block = cg * spatial;
    let x = x.contiguous()?;
    let data = contiguous_data(&x)?;
    let mut out = vec![0.0f32; data.len()];
    if block == 0 {
        return Tensor::from_vec(out, x.dims().to_vec());
    }
    let one_group = |idx: usize, dst: &mut [f32], src: &[f32]| {
        let (hi, lo, rstd) = stats(src, eps);
        let c0 = (idx % num_groups) * cg;
        for (ci, (d, s)) in dst.chunks_mut(spatial).zip(src.chunks(spatial)).enumerate() {
            let pre = Pre::Norm {
                hi,
                lo,
                scale: (rstd * w.map_or(1.0, |w| w[c0 + ci] as f64)) as f32,
                shift: b.map_or(0.0, |b| b[c0 + ci]),
            };
            vmath::act_slice(act, pre, s, d);
        }
    };
    if data.len() >= MIN_TASK && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(block)
            .zip(data.par_chunks(block))
            .enumerate()
            .with_min_len(MIN_TASK.div_ceil(block))
            .for_each(|(idx, (dst, src))| one_group(idx, dst, src));
    } else {
        for (idx, (dst, src)) in out.chunks_mut(block).zip(data.chunks(block)).enumerate() {
            one_group(idx, dst, src);
        }
    }
    Tensor::from_vec(out, x.dims().to_vec())
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
        group_norm_impl(self, num_groups, weight, bias, eps, None)
    }

    /// `silu(group_norm(x))` in one pass over memory (the opening of SD's
    /// ResnetBlock2D): `(N, C, *)` -> same.
    pub fn group_norm_silu(
        &self,
        num_groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        group_norm_impl(self, num_groups, weight, bias, eps, Some(UnaryOp::Silu))
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
        let (w, b, row) = check_layer_norm(self, normalized_shape, weight, bias, eps)?;
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let mut out = vec![0.0f32; data.len()];
        if row == 0 {
            return Tensor::from_vec(out, x.dims().to_vec());
        }
        let ones;
        let w = match &w {
            Some(w) => contiguous_data(w)?,
            None => {
                ones = vec![1.0f32; row];
                &ones
            }
        };
        let zeros;
        let b = match &b {
            Some(b) => contiguous_data(b)?,
            None => {
                zeros = vec![0.0f32; row];
                &zeros
            }
        };
        let one_row = |dst: &mut [f32], src: &[f32]| {
            let (hi, lo, rstd) = stats(src, eps);
            let pre = Pre::NormAffine {
                hi,
                lo,
                rstd: rstd as f32,
                weight: w,
                bias: b,
            };
            vmath::act_slice(None, pre, src, dst);
        };
        if data.len() >= MIN_TASK && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(row)
                .zip(data.par_chunks(row))
                .with_min_len(MIN_TASK.div_ceil(row))
                .for_each(|(dst, src)| one_row(dst, src));
        } else {
            for (dst, src) in out.chunks_mut(row).zip(data.chunks(row)) {
                one_row(dst, src);
            }
        }
        Tensor::from_vec(out, x.dims().to_vec())
    }
}
