//! Scatter-add along a dim (the backward of `index_select` and `embedding`, used by
//! the autodiff crate; introduced with the autodiff lesson).
//!
//! `out = self.index_add(dim, indices, source)`: a copy of `self` where
//! `out[.., indices[i], ..] += source[.., i, ..]` for every `i` along `dim`.
//! `self: (.., n, ..)`, `source: (.., indices.len(), ..)` with the other dims equal.
//! Repeated indices add up, which is what makes it the adjoint of `index_select`:
//! a row read twice gets both gradients (as `torch.index_add`).
//!
//! ```
//! use tensor::Tensor;
//! let zeros = Tensor::zeros([3, 2]);
//! let src = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2]).unwrap();
//! let out = zeros.index_add(0, &[2, 0, 2], &src).unwrap();
//! assert_eq!(out.to_vec().unwrap(), vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
//! ```

use crate::error::{Result, TensorError};
use crate::ops::conv::contiguous_data;
use crate::shape::resolve_dim;
use crate::tensor::Tensor;

impl Tensor {
    /// `self` with `source`'s entries along `dim` added at `indices` (`torch.index_add`).
    pub fn index_add(&self, dim: isize, indices: &[usize], source: &Tensor) -> Result<Tensor> {
        let op = "index_add";
        let d = resolve_dim(op, dim, self.rank())?;
        let dims = self.dims();
        let mut want = dims.to_vec();
        want[d] = indices.len();
        if source.dims() != want.as_slice() {
            return Err(TensorError::invalid(
                op,
                format!(
                    "source must have shape {want:?} ({} indices along dim {d} of {dims:?}), got {:?}",
                    indices.len(),
                    source.dims()
                ),
            ));
        }
        let size = dims[d];
        if let Some(&bad) = indices.iter().find(|&&i| i >= size) {
            return Err(TensorError::IndexOutOfRange {
                op,
                index: bad,
                dim: d,
                size,
            });
        }
        #[cfg(feature = "wgpu")]
        if self.is_gpu() || source.is_gpu() {
            return crate::wgpu::index::index_add(self, d, indices, source);
        }
        let outer: usize = dims[..d].iter().product();
        let inner: usize = dims[d + 1..].iter().product();
        let mut out = self.to_vec()?;
        let src = source.contiguous()?;
        let src = contiguous_data(&src)?;
        if inner > 0 {
            for o in 0..outer {
                for (i, &idx) in indices.iter().enumerate() {
                    let s = (o * indices.len() + i) * inner;
                    let t = (o * size + idx) * inner;
                    for (v, &x) in out[t..t + inner].iter_mut().zip(&src[s..s + inner]) {
                        *v += x;
                    }
                }
            }
        }
        Tensor::from_vec(out, dims.to_vec())
    }
}
