//! Joining and splitting along a dim (introduced in the tensors lesson; the UNet's
//! skip connections `cat` along channels, attention `chunk`s q/k/v and GEGLU halves).
//!
//! - `Tensor::cat(&[a, b], dim)`: shapes equal except along `dim`, which adds up.
//! - `Tensor::stack(&[a, b], dim)`: equal shapes, a new dim of size `len` at `dim`.
//! - `chunk(n, dim)` and `split(size, dim)`: zero-copy views (via `narrow`) with
//!   PyTorch's sizing: `chunk` uses pieces of `ceil(size / n)` and may return fewer
//!   than `n`; `split` gives pieces of `size` with a shorter last one.
//!
//! ```
//! use tensor::Tensor;
//! let a = Tensor::from_vec(vec![1.0, 2.0], [1, 2]).unwrap();
//! let b = Tensor::from_vec(vec![3.0, 4.0], [1, 2]).unwrap();
//! let c = Tensor::cat(&[&a, &b], 0).unwrap();
//! assert_eq!((c.dims(), c.to_vec().unwrap()), (&[2, 2][..], vec![1.0, 2.0, 3.0, 4.0]));
//! let s = Tensor::stack(&[&a, &b], -1).unwrap();
//! assert_eq!((s.dims(), s.to_vec().unwrap()), (&[1, 2, 2][..], vec![1.0, 3.0, 2.0, 4.0]));
//! let parts = Tensor::arange(0.0, 5.0, 1.0).unwrap().chunk(2, 0).unwrap();
//! assert_eq!(parts[1].to_vec().unwrap(), vec![3.0, 4.0]);
//! ```

use std::borrow::Borrow;

use crate::error::{Result, TensorError};
use crate::shape::resolve_dim;
use crate::tensor::Tensor;

impl Tensor {
    /// Concatenate along `dim` (`torch.cat`). Accepts `&[Tensor]` or `&[&Tensor]`.
    pub fn cat<T: Borrow<Tensor>>(tensors: &[T], dim: isize) -> Result<Tensor> {
        let op = "cat";
        let first = match tensors.first() {
            Some(t) => t.borrow(),
            None => return Err(TensorError::invalid(op, "needs at least one tensor")),
        };
        let rank = first.rank();
        if rank == 0 {
            return Err(TensorError::invalid(
                op,
                "cannot concatenate rank-0 tensors",
            ));
        }
        let d = resolve_dim(op, dim, rank)?;
        let mut out_dims = first.dims().to_vec();
        out_dims[d] = 0;
        for t in tensors {
            let t = t.borrow();
            let same_rest = t.rank() == rank
                && t.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !same_rest {
                return Err(TensorError::invalid(
                    op,
                    format!(
                        "shapes must match except in dim {d}: {:?} vs {:?}",
                        first.dims(),
                        t.dims()
                    ),
                ));
            }
            out_dims[d] += t.dims()[d];
        }
        #[cfg(feature = "wgpu")]
        if tensors.iter().any(|t| t.borrow().is_gpu()) {
            let refs: Vec<&Tensor> = tensors.iter().map(|t| t.borrow()).collect();
            return crate::wgpu::layers::cat(&refs, d, out_dims);
        }
        let outer: usize = out_dims[..d].iter().product();
        let inner: usize = out_dims[d + 1..].iter().product();
        let parts = tensors
            .iter()
            .map(|t| t.borrow().contiguous())
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(outer * out_dims[d] * inner);
        for o in 0..outer {
            for p in &parts {
                let block = p.dims()[d] * inner;
                let data = crate::ops::conv::contiguous_data(p)?;
                out.extend_from_slice(&data[o * block..(o + 1) * block]);
            }
        }
        Tensor::from_vec(out, out_dims)
    }

    /// Stack equal-shaped tensors along a new dim (`torch.stack`); `dim` may be
    /// `-1` or `rank` for a new last dim.
    pub fn stack<T: Borrow<Tensor>>(tensors: &[T], dim: isize) -> Result<Tensor> {
        let op = "stack";
        let first = match tensors.first() {
            Some(t) => t.borrow(),
            None => return Err(TensorError::invalid(op, "needs at least one tensor")),
        };
        let d = resolve_dim(op, dim, first.rank() + 1)?;
        let views = tensors
            .iter()
            .map(|t| {
                let t = t.borrow();
                if t.dims() != first.dims() {
                    return Err(TensorError::ShapeMismatch {
                        op,
                        lhs: first.dims().to_vec(),
                        rhs: t.dims().to_vec(),
                    });
                }
                t.unsqueeze(d as isize)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&views, d as isize)
    }

    /// Split into `chunks` views along `dim`, each `ceil(size / chunks)` long except
    /// a shorter last one (`torch.chunk`; may return fewer than `chunks` pieces;
    /// an empty dim gives `chunks` empty pieces).
    pub fn chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = resolve_dim("chunk", dim, self.rank())?;
        if chunks == 0 {
            return Err(TensorError::invalid(
                "chunk",
                "chunks must be at least 1, got 0",
            ));
        }
        let size = self.dims()[d];
        if size == 0 {
            return (0..chunks).map(|_| self.narrow(d as isize, 0, 0)).collect();
        }
        self.split(size.div_ceil(chunks), dim)
    }

    /// Split into views of `split_size` along `dim`; the last may be shorter
    /// (`torch.split` with an int).
    pub fn split(&self, split_size: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = resolve_dim("split", dim, self.rank())?;
        let size = self.dims()[d];
        if split_size == 0 && size != 0 {
            return Err(TensorError::invalid(
                "split",
                format!(
                    "split_size 0 cannot split dim {d} of size {size} in {:?}",
                    self.dims()
                ),
            ));
        }
        if size == 0 {
            return Ok(vec![self.clone()]);
        }
        (0..size)
            .step_by(split_size)
            .map(|start| self.narrow(d as isize, start, split_size.min(size - start)))
            .collect()
    }

    /// Split into views of the given sizes along `dim`; they must add up to the dim
    /// (`torch.split` with a list).
    pub fn split_with_sizes(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        let d = resolve_dim("split_with_sizes", dim, self.rank())?;
        let total: usize = sizes.iter().sum();
        if total != self.dims()[d] {
            return Err(TensorError::invalid(
                "split_with_sizes",
                format!(
                    "sizes {sizes:?} add up to {total}, not dim {d} of size {} in {:?}",
                    self.dims()[d],
                    self.dims()
                ),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let v = self.narrow(d as isize, start, len);
                start += len;
                v
            })
            .collect()
    }
}
