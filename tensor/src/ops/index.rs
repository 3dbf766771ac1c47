//! Indexing by lists of positions (introduced in the tensors lesson; CLIP's token and
//! position embeddings are `embedding`).
//!
//! - `index_select(dim, &[i, ..])`: keep the listed entries of `dim`, in that order
//!   (repeats allowed): `(.., n, ..)` -> `(.., len, ..)`.
//! - `gather(dim, &index)`: `out[i][j][k] = self[i][index[i][j][k]][k]` for `dim = 1`;
//!   `out` has `index`'s shape, whose other dims may not exceed `self`'s. The index
//!   tensor holds integral f32 values (f32 is the one dtype).
//! - `Tensor::embedding(weight (V, D), ids)`: the rows of `weight` named by `ids`,
//!   `(len, D)`, or `(*shape, D)` with `embedding_with_shape`.
//!
//! ```
//! use tensor::Tensor;
//! let w = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([3, 2]).unwrap();
//! let e = Tensor::embedding(&w, &[2, 0, 2]).unwrap();
//! assert_eq!(e.to_vec().unwrap(), vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
//! let idx = Tensor::from_vec(vec![1.0, 0.0, 0.0], [3, 1]).unwrap();
//! assert_eq!(w.gather(1, &idx).unwrap().to_vec().unwrap(), vec![1.0, 2.0, 4.0]);
//! ```

use crate::error::{Result, TensorError};
use crate::ops::conv::contiguous_data;
use crate::shape::resolve_dim;
use crate::tensor::Tensor;

impl Tensor {
    /// The entries `indices` of `dim`, in order (`torch.index_select`).
    pub fn index_select(&self, dim: isize, indices: &[usize]) -> Result<Tensor> {
        let op = "index_select";
        let d = resolve_dim(op, dim, self.rank())?;
        let dims = self.dims();
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
        if self.is_gpu() {
            return crate::wgpu::layers::index_select(self, d, indices);
        }
        let outer: usize = dims[..d].iter().product();
        let inner: usize = dims[d + 1..].iter().product();
        let x = self.contiguous()?;
        let data = contiguous_data(&x)?;
        let mut out = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in indices {
                let start = (o * size + i) * inner;
                out.extend_from_slice(&data[start..start + inner]);
            }
        }
        let mut out_dims = dims.to_vec();
        out_dims[d] = indices.len();
        Tensor::from_vec(out, out_dims)
    }

    /// Gather along `dim` by an index tensor of integral values (`torch.gather`):
    /// `out` has `index`'s shape; `index.dims()[k] <= self.dims()[k]` for `k != dim`.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        let op = "gather";
        let rank = self.rank();
        let d = resolve_dim(op, dim, rank)?;
        let fits = index.rank() == rank
            && index
                .dims()
                .iter()
                .zip(self.dims())
                .enumerate()
                .all(|(k, (i, s))| k == d || i <= s);
        if !fits {
            return Err(TensorError::invalid(
                op,
                format!(
                    "index {:?} must have the rank of input {:?} and no larger size outside dim {d}",
                    index.dims(),
                    self.dims()
                ),
            ));
        }
        let size = self.dims()[d];
        let ids = index.to_vec()?;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            // Check every value here (the kernel trusts them), then gather there.
            let mut pos = vec![0usize; rank];
            for &v in &ids {
                integral_index(op, v, &pos, size, d)?;
                next_position(&mut pos, index.dims());
            }
            return crate::wgpu::index::gather(self, d, index);
        }
        let data = self.cpu_storage()?;
        let strides = self.strides();
        let idims = index.dims();
        let mut pos = vec![0usize; rank];
        let mut out = Vec::with_capacity(ids.len());
        for &v in &ids {
            let i = integral_index(op, v, &pos, size, d)?;
            let off = self.layout().offset()
                + pos
                    .iter()
                    .zip(strides)
                    .enumerate()
                    .map(|(k, (&p, &s))| if k == d { i * s } else { p * s })
                    .sum::<usize>();
            out.push(data[off]);
            next_position(&mut pos, idims);
        }
        Tensor::from_vec(out, idims.to_vec())
    }

    /// Look up rows of `weight: (V, D)`: `ids` of length `len` -> `(len, D)`
    /// (`torch.nn.functional.embedding`).
    pub fn embedding(weight: &Tensor, ids: &[usize]) -> Result<Tensor> {
        Tensor::embedding_with_shape(weight, ids, &[ids.len()])
    }

    /// [`Tensor::embedding`] for ids laid out in `shape` (row-major):
    /// -> `(*shape, D)`, e.g. token ids `(B, 77)` -> `(B, 77, D)`.
    pub fn embedding_with_shape(weight: &Tensor, ids: &[usize], shape: &[usize]) -> Result<Tensor> {
        let op = "embedding";
        let &[vocab, width] = weight.dims() else {
            return Err(TensorError::invalid(
                op,
                format!("weight must be (vocab, dim), got {:?}", weight.dims()),
            ));
        };
        if shape.iter().product::<usize>() != ids.len() {
            return Err(TensorError::ElementCount {
                op,
                shape: shape.to_vec(),
                expected: shape.iter().product(),
                got: ids.len(),
            });
        }
        if let Some(&bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(TensorError::invalid(
                op,
                format!(
                    "id {bad} is out of range for a vocabulary of {vocab} (weight {:?})",
                    weight.dims()
                ),
            ));
        }
        #[cfg(feature = "wgpu")]
        if weight.is_gpu() {
            let mut dims = shape.to_vec();
            dims.push(width);
            return crate::wgpu::layers::index_select(weight, 0, ids)?.reshape(dims);
        }
        let w = weight.contiguous()?;
        let data = contiguous_data(&w)?;
        let mut out = Vec::with_capacity(ids.len() * width);
        for &i in ids {
            out.extend_from_slice(&data[i * width..(i + 1) * width]);
        }
        let mut dims = shape.to_vec();
        dims.push(width);
        Tensor::from_vec(out, dims)
    }
}

/// Step the row-major multi-index `pos` within `dims` (wrapping to zeros at the end).
fn next_position(pos: &mut [usize], dims: &[usize]) {
    for k in (0..pos.len()).rev() {
        pos[k] += 1;
        if pos[k] < dims[k] {
            return;
        }
        pos[k] = 0;
    }
}

/// An f32 index value as a position in `0..size`, or an error naming where it sat.
fn integral_index(
    op: &'static str,
    v: f32,
    pos: &[usize],
    size: usize,
    dim: usize,
) -> Result<usize> {
    if !v.is_finite() || v.fract() != 0.0 || v < 0.0 {
        return Err(TensorError::invalid(
            op,
            format!("index value {v} at {pos:?} is not a non-negative integer"),
        ));
    }
    if v >= size as f32 {
        return Err(TensorError::invalid(
            op,
            format!("index value {v} at {pos:?} is out of range for dim {dim} of size {size}"),
        ));
    }
    Ok(v as usize)
}
