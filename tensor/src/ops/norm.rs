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
//! ([`act_run`] with [`PNorm`], into an output that is never zeroed first): the f64 mean is carried as two floats
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
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crate::ops::act_slice::{act_run, vec_uninit, Act, NoAct, PNorm, PNormAffine, SiluAct};
use crate::ops::vmath::{self, Simd, SimdFn};
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

/// Mean and variance (biased) of `xs`, two passes, summed in f64 over 16 lanes
/// (inlined into the kernels below, so it runs on their vector width).
#[inline(always)]
fn moments(xs: &[f32]) -> (f64, f64) {
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

/// `(hi, lo, rstd)`: the f64 mean as two floats and `1 / sqrt(var + eps)`.
#[inline(always)]
fn stats(xs: &[f32], eps: f64) -> (f32, f32, f64) {
    let (mean, var) = moments(xs);
    let hi = mean as f32;
    (hi, (mean - hi as f64) as f32, 1.0 / (var + eps).sqrt())
}

/// Whole groups of a group norm: `src` and `dst` start at group `g0` (counted over
/// samples and groups) and hold a whole number of `cg * spatial` blocks.
struct Groups<'a, A> {
    src: &'a [f32],
    dst: &'a mut [MaybeUninit<f32>],
    g0: usize,
    num_groups: usize,
    cg: usize,
    spatial: usize,
    w: Option<&'a [f32]>,
    b: Option<&'a [f32]>,
    eps: f64,
    act: PhantomData<A>,
}

impl<A: Act> SimdFn for Groups<'_, A> {
    type Out = ();
    #[inline(always)]
    fn call<S: Simd>(self, s: S) {
        let (cg, spatial) = (self.cg, self.spatial);
        let block = cg * spatial;
        for (k, (dst, src)) in self
            .dst
            .chunks_mut(block)
            .zip(self.src.chunks(block))
            .enumerate()
        {
            let (hi, lo, rstd) = stats(src, self.eps);
            let c0 = ((self.g0 + k) % self.num_groups) * cg;
            for (ci, (d, x)) in dst.chunks_mut(spatial).zip(src.chunks(spatial)).enumerate() {
                let pre = PNorm {
                    hi,
                    lo,
                    scale: (rstd * self.w.map_or(1.0, |w| w[c0 + ci] as f64)) as f32,
                    shift: self.b.map_or(0.0, |b| b[c0 + ci]),
                };
                act_run::<S, A, _, _>(s, pre, x, d);
            }
        }
    }
}

/// Whole rows of a layer norm.
struct Rows<'a> {
    src: &'a [f32],
    dst: &'a mut [MaybeUninit<f32>],
    row: usize,
    w: &'a [f32],
    b: &'a [f32],
    eps: f64,
}

impl SimdFn for Rows<'_> {
    type Out = ();
    #[inline(always)]
    fn call<S: Simd>(self, s: S) {
        for (dst, src) in self.dst.chunks_mut(self.row).zip(self.src.chunks(self.row)) {
            let (hi, lo, rstd) = stats(src, self.eps);
            let pre = PNormAffine {
                hi,
                lo,
                rstd: rstd as f32,
                weight: &self.w[..src.len()],
                bias: &self.b[..src.len()],
            };
            act_run::<S, NoAct, _, _>(s, pre, src, dst);
        }
    }
}

/// Split `n` items of `item` floats into tasks of at least `MIN_TASK` floats.
fn per_task(item: usize) -> usize {
    MIN_TASK.div_ceil(item.max(1)).max(1)
}

/// Group norm followed by the activation `A` (`NoAct` for none).
/// Whether the input or an affine parameter lives on a GPU (the op then runs there).
#[cfg(feature = "wgpu")]
fn any_gpu(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>) -> bool {
    x.is_gpu() || weight.is_some_and(Tensor::is_gpu) || bias.is_some_and(Tensor::is_gpu)
}

fn group_norm_impl<A: Act>(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let (w, b, c, spatial) = check_group_norm(x, num_groups, weight, bias, eps)?;
    #[cfg(feature = "wgpu")]
    if any_gpu(x, weight, bias) {
        let silu = std::any::type_name::<A>() == std::any::type_name::<SiluAct>();
        return crate::wgpu::norm::group_norm(x, num_groups, w.as_ref(), b.as_ref(), eps, silu);
    }
    let w = w.as_ref().map(contiguous_data).transpose()?;
    let b = b.as_ref().map(contiguous_data).transpose()?;
    let cg = c / num_groups;
    let block = cg * spatial;
    let x = x.contiguous()?;
    let data = contiguous_data(&x)?;
    if block == 0 {
        return Tensor::from_vec(vec![0.0; data.len()], x.dims().to_vec());
    }
    let task = per_task(block) * block;
    let run = |g0: usize, src: &[f32], dst: &mut [MaybeUninit<f32>]| {
        vmath::dispatch(Groups::<A> {
            src,
            dst,
            g0,
            num_groups,
            cg,
            spatial,
            w,
            b,
            eps,
            act: PhantomData,
        })
    };
    let fill = |out: &mut [MaybeUninit<f32>]| {
        if data.len() > task && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(task)
                .zip(data.par_chunks(task))
                .enumerate()
                .for_each(|(t, (dst, src))| run(t * (task / block), src, dst));
        } else {
            run(0, data, out);
        }
    };
    // SAFETY: the chunks cover `out` exactly (`data.len()` is a multiple of `block`,
    // and every block is written channel by channel, element by element).
    let out = unsafe { vec_uninit(data.len(), fill) };
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
        group_norm_impl::<NoAct>(self, num_groups, weight, bias, eps)
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
        group_norm_impl::<SiluAct>(self, num_groups, weight, bias, eps)
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
        #[cfg(feature = "wgpu")]
        if any_gpu(self, weight, bias) {
            return crate::wgpu::norm::layer_norm(self, row, w.as_ref(), b.as_ref(), eps);
        }
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        if row == 0 {
            return Tensor::from_vec(vec![0.0; data.len()], x.dims().to_vec());
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
        let task = per_task(row) * row;
        let run = |src: &[f32], dst: &mut [MaybeUninit<f32>]| {
            vmath::dispatch(Rows {
                src,
                dst,
                row,
                w,
                b,
                eps,
            })
        };
        let fill = |out: &mut [MaybeUninit<f32>]| {
            if data.len() > task && rayon::current_num_threads() > 1 {
                out.par_chunks_mut(task)
                    .zip(data.par_chunks(task))
                    .for_each(|(dst, src)| run(src, dst));
            } else {
                run(data, out);
            }
        };
        // SAFETY: the rows cover `out` exactly and each row writes all its elements.
        let out = unsafe { vec_uninit(data.len(), fill) };
        Tensor::from_vec(out, x.dims().to_vec())
    }
}
