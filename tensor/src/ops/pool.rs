//! 2-d pooling: average and max over sliding windows of each channel plane
//! (introduced in the convolutions lesson, next to conv2d).
//!
//! `x: (N, C, H, W)` or `(C, H, W)` -> `(N, C, H', W')` with
//! `H' = (H + 2*ph - kh) / sh + 1` (floor, PyTorch's `ceil_mode=False`).
//! Padding must be at most half the kernel, as PyTorch requires. `avg_pool2d`
//! counts padded zeros in the divisor (`count_include_pad=True`, the default), so
//! every window divides by `kh * kw`; `max_pool2d` ignores padding and propagates NaN.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 16.0, 1.0).unwrap().reshape([1, 1, 4, 4]).unwrap();
//! let avg = x.avg_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
//! assert_eq!(avg.to_vec().unwrap(), vec![2.5, 4.5, 10.5, 12.5]);
//! let max = x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
//! assert_eq!(max.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::ops::conv::contiguous_data;
use crate::tensor::Tensor;

/// Split `(.., H, W)` into (number of H x W planes, H, W); rank must be 3 or 4.
pub(crate) fn planes_hw(op: &'static str, dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        [lead @ .., h, w] if dims.len() == 3 || dims.len() == 4 => {
            Ok((lead.iter().product(), *h, *w))
        }
        _ => Err(TensorError::invalid(
            op,
            format!("input must be (N, C, H, W) or (C, H, W), got {dims:?}"),
        )),
    }
}

/// Validated window geometry for one pooling call.
#[derive(Clone, Copy)]
pub(crate) struct Pool {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Pool {
    fn new(
        op: &'static str,
        dims: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<(usize, Pool)> {
        let (planes, h, w) = planes_hw(op, dims)?;
        let bad = |msg: String| Err(TensorError::invalid(op, msg));
        if h == 0 || w == 0 {
            return bad(format!("input {dims:?} has an empty spatial dim"));
        }
        if kernel.0 == 0 || kernel.1 == 0 {
            return bad(format!("kernel must be positive, got {kernel:?}"));
        }
        if stride.0 == 0 || stride.1 == 0 {
            return bad(format!("stride must be positive, got {stride:?}"));
        }
        if padding.0 > kernel.0 / 2 || padding.1 > kernel.1 / 2 {
            return bad(format!(
                "padding {padding:?} must be at most half of kernel {kernel:?}"
            ));
        }
        let (hp, wp) = (h + 2 * padding.0, w + 2 * padding.1);
        if kernel.0 > hp || kernel.1 > wp {
            return bad(format!(
                "kernel {kernel:?} is larger than the padded input ({hp}, {wp}) of {dims:?}"
            ));
        }
        let p = Pool {
            h,
            w,
            kh: kernel.0,
            kw: kernel.1,
            sh: stride.0,
            sw: stride.1,
            ph: padding.0,
            pw: padding.1,
            oh: (hp - kernel.0) / stride.0 + 1,
            ow: (wp - kernel.1) / stride.1 + 1,
        };
        Ok((planes, p))
    }

    /// Input rows and columns under output pixel (y, x), clipped to the input.
    fn window(&self, y: usize, x: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let clip = |o: usize, s: usize, p: usize, k: usize, n: usize| {
            let start = (o * s).saturating_sub(p);
            let end = (o * s + k).saturating_sub(p).min(n);
            start..end
        };
        (
            clip(y, self.sh, self.ph, self.kh, self.h),
            clip(x, self.sw, self.pw, self.kw, self.w),
        )
    }

    /// Run `f(plane, window rows, window cols) -> value` for every output pixel.
    fn run(
        &self,
        x: &Tensor,
        planes: usize,
        f: impl Fn(&[f32], std::ops::Range<usize>, std::ops::Range<usize>) -> f32 + Sync,
    ) -> Result<Vec<f32>> {
        let x = x.contiguous()?;
        let data = contiguous_data(&x)?;
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        let mut out = vec![0.0f32; planes * ohw];
        if ohw == 0 || hw == 0 {
            return Ok(out);
        }
        out.par_chunks_mut(ohw)
            .zip(data.par_chunks(hw))
            .for_each(|(dst, plane)| {
                for (i, v) in dst.iter_mut().enumerate() {
                    let (rows, cols) = self.window(i / self.ow, i % self.ow);
                    *v = f(plane, rows, cols);
                }
            });
        Ok(out)
    }

    pub(crate) fn out_dims(&self, dims: &[usize]) -> Vec<usize> {
        let mut d = dims.to_vec();
        let r = d.len();
        d[r - 2] = self.oh;
        d[r - 1] = self.ow;
        d
    }
}

impl Tensor {
    /// Average pooling (`torch.nn.functional.avg_pool2d` with `count_include_pad=True`,
    /// `ceil_mode=False`): `(N, C, H, W)` -> `(N, C, H', W')`.
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let (planes, p) = Pool::new("avg_pool2d", self.dims(), kernel, stride, padding)?;
        let inv = 1.0 / (p.kh * p.kw) as f32;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::pool2d::pool2d(self, "avg_pool2d", &p, planes);
        }
        let out = p.run(self, planes, |plane, rows, cols| {
            let mut acc = 0.0f32;
            for r in rows {
                acc += plane[r * p.w + cols.start..r * p.w + cols.end]
                    .iter()
                    .sum::<f32>();
            }
            acc * inv
        })?;
        Tensor::from_vec(out, p.out_dims(self.dims()))
    }

    /// Max pooling (`torch.nn.functional.max_pool2d`, `ceil_mode=False`, no
    /// dilation): `(N, C, H, W)` -> `(N, C, H', W')`. Padding never wins; NaN does.
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let (planes, p) = Pool::new("max_pool2d", self.dims(), kernel, stride, padding)?;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::pool2d::pool2d(self, "max_pool2d", &p, planes);
        }
        let out = p.run(self, planes, |plane, rows, cols| {
            let mut m = f32::NEG_INFINITY;
            for r in rows {
                for &v in &plane[r * p.w + cols.start..r * p.w + cols.end] {
                    if v > m || v.is_nan() {
                        m = v;
                    }
                }
            }
            m
        })?;
        Tensor::from_vec(out, p.out_dims(self.dims()))
    }
}
