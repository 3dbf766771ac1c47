//! Matrix multiply and its backward.
//!
//! For `C = A B` with `A: (m, k)`, `B: (k, n)` and upstream gradient `G: (m, n)`:
//! `dA = G B^T: (m, k)` and `dB = A^T G: (k, n)`. `matmul` follows `torch.matmul`:
//! batch dims broadcast (`(B, T, k) @ (k, n)`), so a gradient computed per batch
//! entry is summed back over the batch dims its operand was broadcast along
//! ([`crate::sum_to()`]); a 1-D operand is a row (left) or column (right) vector.
//! When `B` is one matrix shared by a whole batch (a linear layer), `dB` folds the
//! batch into the rows instead: `A: (B*T, k)^T @ G: (B*T, n)`, one GEMM.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let a = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2]).unwrap());
//! let b = Var::leaf(Tensor::from_vec(vec![1.0, 0.0, 1.0, 1.0], [2, 2]).unwrap());
//! let g = a.matmul(&b).unwrap().sum_all().unwrap().backward().unwrap();
//! // dA = ones(2, 2) B^T holds B's row sums; dB = A^T ones(2, 2) holds A's column sums
//! assert_eq!(g.get(&a).unwrap().to_vec().unwrap(), vec![1.0, 2.0, 1.0, 2.0]);
//! assert_eq!(g.get(&b).unwrap().to_vec().unwrap(), vec![4.0, 4.0, 6.0, 6.0]);
//! ```

use tensor::{Shape, Tensor};

use crate::error::Result;
use crate::sum_to::sum_to;
use crate::var::{grad_if, record, Var};

impl Var {
    /// Matrix product with `torch.matmul` semantics (batched, broadcast, vectors).
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = a.matmul(&b)?;
        Ok(record("matmul", y, &[self, rhs], move |g, need| {
            matmul_backward(&a, &b, g, need)
        }))
    }
}

fn matmul_backward(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    // Vectors as matrices: (k) -> (1, k) on the left, (k) -> (k, 1) on the right.
    let a2 = if a.rank() == 1 {
        a.unsqueeze(0)?
    } else {
        a.clone()
    };
    let b2 = if b.rank() == 1 {
        b.unsqueeze(1)?
    } else {
        b.clone()
    };
    let (ra, rb) = (a2.rank(), b2.rank());
    let batch = Shape::broadcast(
        "matmul_backward",
        &Shape::from(&a2.dims()[..ra - 2]),
        &Shape::from(&b2.dims()[..rb - 2]),
    )?;
    let (m, k, n) = (a2.dims()[ra - 2], a2.dims()[ra - 1], b2.dims()[rb - 1]);
    let mut g_dims = batch.dims().to_vec();
    g_dims.extend([m, n]);
    let g2 = g.reshape(g_dims)?;
    let ga = grad_if(need[0], || -> Result<Tensor> {
        let full = g2.matmul(&b2.t()?)?; // (batch, m, k)
        Ok(sum_to(&full, a2.dims())?.reshape(a.dims().to_vec())?)
    })?;
    let gb = grad_if(need[1], || -> Result<Tensor> {
        let gb2 = if rb == 2 && ra > 2 {
            // One rhs matrix for the whole batch: fold the batch into the rows.
            let rows = batch.numel() * m;
            let a_rows = a2.reshape([rows, k])?;
            a_rows.t()?.matmul(&g2.reshape([rows, n])?)?
        } else {
            sum_to(&a2.t()?.matmul(&g2)?, b2.dims())?
        };
        Ok(gb2.reshape(b.dims().to_vec())?)
    })?;
    Ok(vec![ga, gb])
}
