//! `Tensor::matmul`: batched matrix multiply with broadcast batch dims, as
//! `torch.matmul` (lesson `lessons/01-matmul`).
//!
//! Shapes (`..` are batch dims, broadcast by NumPy rules):
//! - `(k) @ (k)` -> `()`: a dot product;
//! - `(m, k) @ (k, n)` -> `(m, n)`;
//! - `(k) @ (.., k, n)` -> `(.., n)`: a 1 is put in front of the vector, then removed;
//! - `(.., m, k) @ (k)` -> `(.., m)`: a 1 is put after the vector, then removed;
//! - `(.., m, k) @ (.., k, n)` -> `(broadcast(..), m, n)`.
//!
//! No operand is copied: each matrix of a batch is handed to [`gemm`] as a
//! [`MatRef`] with the tensor's own strides and an offset computed from its batch
//! index (a broadcast batch dim has stride 0, so the same matrix is read again).
//! When every batch shares one rhs matrix and the lhs batch steps through memory as
//! one long matrix (a linear layer: `(B, T, C) @ (C, N)`), the whole batch is a
//! single `(B*T) x C` gemm, so B is packed once. Small matrices in a big batch are
//! spread over threads one matrix each.
//!
//! ```
//! use tensor::Tensor;
//! let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap();
//! let b = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2]).unwrap();
//! let c = a.matmul(&b).unwrap();
//! assert_eq!(c.dims(), &[2, 2]);
//! assert_eq!(c.to_vec().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);
//! // A batch of 4 against one matrix: the matrix is broadcast, not copied.
//! let x = Tensor::ones([4, 5, 2]);
//! assert_eq!(x.matmul(&a).unwrap().dims(), &[4, 5, 3]);
//! ```

use rayon::prelude::*;

use super::{check_gemm, gemm, MatRef};
use crate::error::{Result, TensorError};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Batch sizes at or above this spread whole matrices over threads when each matrix
/// is small (large matrices already use every thread inside [`gemm`]).
const PAR_BATCH_WORK: usize = 64 * 64 * 64;

impl Tensor {
    /// Matrix product with `torch.matmul` semantics: 1-D operands are treated as a row
    /// (left) or column (right) vector, and the leading batch dims broadcast.
    ///
    /// `(.., m, k) @ (.., k, n) -> (broadcast(..), m, n)`; errors when an operand has
    /// rank 0, the inner dims differ, or the batch dims do not broadcast.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (l_dims, r_dims) = (self.dims().to_vec(), rhs.dims().to_vec());
        if self.rank() == 0 || rhs.rank() == 0 {
            return Err(TensorError::invalid(
                "matmul",
                format!("both operands need at least 1 dim, got shapes {l_dims:?} and {r_dims:?}"),
            ));
        }
        // Vectors become 1-row / 1-column matrices; the added dims are dropped at the end.
        let lhs_vec = self.rank() == 1;
        let rhs_vec = rhs.rank() == 1;
        let lhs = if lhs_vec {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let rhs = if rhs_vec {
            rhs.unsqueeze(1)?
        } else {
            rhs.clone()
        };

        let (lr, rr) = (lhs.rank(), rhs.rank());
        let (m, k) = (lhs.dims()[lr - 2], lhs.dims()[lr - 1]);
        let (k2, n) = (rhs.dims()[rr - 2], rhs.dims()[rr - 1]);
        if k != k2 {
            return Err(TensorError::invalid(
                "matmul",
                format!(
                    "inner dimensions differ: {l_dims:?} @ {r_dims:?} multiplies a {m} x {k} \
                     by a {k2} x {n} matrix ({k} != {k2})"
                ),
            ));
        }
        let batch = Shape::broadcast(
            "matmul",
            &Shape::from(&lhs.dims()[..lr - 2]),
            &Shape::from(&rhs.dims()[..rr - 2]),
        )
        .map_err(|_| TensorError::Broadcast {
            op: "matmul (batch dims)",
            lhs: l_dims.clone(),
            rhs: r_dims.clone(),
        })?;
        let mut lhs_full = batch.dims().to_vec();
        lhs_full.extend([m, k]);
        let mut rhs_full = batch.dims().to_vec();
        rhs_full.extend([k, n]);
        let lhs = lhs.broadcast_as(lhs_full)?;
        let rhs = rhs.broadcast_as(rhs_full)?;

        let mut out_dims = batch.dims().to_vec();
        out_dims.extend([m, n]);
        let batches = batch.numel();
        #[cfg(feature = "wgpu")]
        if lhs.is_gpu() || rhs.is_gpu() {
            let mut dims = out_dims;
            if rhs_vec {
                dims.remove(dims.len() - 1);
            }
            if lhs_vec {
                dims.remove(dims.len() - if rhs_vec { 1 } else { 2 });
            }
            return crate::wgpu::matmul::matmul(&lhs, &rhs)?.reshape(dims);
        }
        let mut out = vec![0.0f32; batches * m * n];
        let rhs_shared = rhs.dims()[..batch.rank()]
            .iter()
            .zip(rhs.strides())
            .all(|(&d, &s)| d == 1 || s == 0);
        if !out.is_empty() && batches > 1 && rhs_shared {
            // Every batch shares one rhs matrix (a linear layer: (B, T, C) @ (C, N)).
            // When lhs's batch and row dims step through memory as a single dim, the
            // whole batch is one (batches * m) x k matrix: one gemm, B packed once.
            let lr_full = lhs.rank();
            if let Some(row_stride) =
                merged_stride(&lhs.dims()[..lr_full - 1], &lhs.strides()[..lr_full - 1])
            {
                let a = MatRef {
                    data: lhs.cpu_storage()?,
                    offset: lhs.layout().offset(),
                    rows: batches * m,
                    cols: k,
                    row_stride,
                    col_stride: lhs.strides()[lr_full - 1],
                };
                let b = batch_mats(&rhs)?[0];
                check_gemm(&a, &b, out.len())?;
                gemm(a, b, &mut out);
                return finish(out, out_dims, lhs_vec, rhs_vec);
            }
        }
        if !out.is_empty() {
            let l_mats = batch_mats(&lhs)?;
            let r_mats = batch_mats(&rhs)?;
            for (l, r) in l_mats.iter().zip(&r_mats) {
                check_gemm(l, r, m * n)?;
            }
            let work = m * n * k;
            if batches > 1 && work < PAR_BATCH_WORK && rayon::current_num_threads() > 1 {
                out.par_chunks_mut(m * n)
                    .zip(l_mats.par_iter().zip(&r_mats))
                    .for_each(|(c, (l, r))| gemm(*l, *r, c));
            } else {
                for (c, (l, r)) in out.chunks_mut(m * n).zip(l_mats.iter().zip(&r_mats)) {
                    gemm(*l, *r, c);
                }
            }
        }
        finish(out, out_dims, lhs_vec, rhs_vec)
    }
}

/// The output tensor, without the dims that stood in for vector operands.
fn finish(out: Vec<f32>, mut dims: Vec<usize>, lhs_vec: bool, rhs_vec: bool) -> Result<Tensor> {
    if rhs_vec {
        dims.remove(dims.len() - 1);
    }
    if lhs_vec {
        dims.remove(dims.len() - if rhs_vec { 1 } else { 2 });
    }
    Tensor::from_vec(out, dims)
}

/// The single stride that walks all of `dims` in row-major order, if there is one
/// (each dim's stride is the next one's stride times its size; size-1 dims are
/// skipped, as any stride serves them).
fn merged_stride(dims: &[usize], strides: &[usize]) -> Option<usize> {
    let kept: Vec<(usize, usize)> = dims
        .iter()
        .zip(strides)
        .filter(|(&d, _)| d != 1)
        .map(|(&d, &s)| (d, s))
        .collect();
    let ok = kept
        .windows(2)
        .all(|w| Some(w[0].1) == w[1].1.checked_mul(w[1].0));
    ok.then(|| kept.last().map_or(0, |&(_, s)| s))
}

/// One [`MatRef`] per matrix of a `(.., rows, cols)` tensor, in row-major batch order,
/// each with the tensor's strides and its own offset.
fn batch_mats(t: &Tensor) -> Result<Vec<MatRef<'_>>> {
    let data = t.cpu_storage()?;
    let layout = t.layout();
    let r = layout.rank();
    let (dims, strides) = (layout.dims(), layout.strides());
    let (rows, cols) = (dims[r - 2], dims[r - 1]);
    let (row_stride, col_stride) = (strides[r - 2], strides[r - 1]);
    let batch_dims = &dims[..r - 2];
    let batch_strides = &strides[..r - 2];
    let count: usize = batch_dims.iter().product();
    let mut mats = Vec::with_capacity(count);
    let mut index = vec![0usize; batch_dims.len()];
    for _ in 0..count {
        let offset = layout.offset()
            + index
                .iter()
                .zip(batch_strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        mats.push(MatRef {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        });
        // Odometer step over the batch dims, last dim fastest.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < batch_dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(mats)
}
