//! Lookups by position and their backwards: the gradient of a row that was read is
//! added back at the row it came from (a scatter-add, [`tensor::Tensor::index_add`]);
//! a row read twice gets both gradients, a row never read gets zero.
//!
//! - `Var::embedding(weight (V, D), ids)`: `(len, D)`; `embedding_with_shape` gives
//!   `(*shape, D)` (token ids `(B, 77)` -> `(B, 77, D)`, CLIP's embeddings).
//! - `index_select(dim, indices)`: `(.., n, ..)` -> `(.., len, ..)`.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let w = Var::leaf(Tensor::zeros([3, 2]));
//! let e = Var::embedding(&w, &[2, 0, 2]).unwrap();             // rows 2, 0, 2
//! let g = e.sum_all().unwrap().backward().unwrap();
//! assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
//! ```

use tensor::shape::resolve_dim;
use tensor::Tensor;

use crate::error::Result;
use crate::var::{grad_if, record, Var};

impl Var {
    /// Rows of `weight: (V, D)` named by `ids` -> `(len, D)` (`F.embedding`).
    pub fn embedding(weight: &Var, ids: &[usize]) -> Result<Var> {
        Var::embedding_with_shape(weight, ids, &[ids.len()])
    }

    /// [`Var::embedding`] for ids laid out in `shape` -> `(*shape, D)`.
    pub fn embedding_with_shape(weight: &Var, ids: &[usize], shape: &[usize]) -> Result<Var> {
        let y = Tensor::embedding_with_shape(weight.value(), ids, shape)?;
        let w_dims = weight.dims().to_vec();
        let ids = ids.to_vec();
        Ok(record("embedding", y, &[weight], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                let rows = g.reshape([ids.len(), w_dims[1]])?;
                Tensor::zeros(w_dims.clone()).index_add(0, &ids, &rows)
            })?])
        }))
    }

    /// The entries `indices` of `dim`, in order (`torch.index_select`).
    pub fn index_select(&self, dim: isize, indices: &[usize]) -> Result<Var> {
        let y = self.value().index_select(dim, indices)?;
        let d = resolve_dim("index_select", dim, self.rank())? as isize;
        let in_dims = self.dims().to_vec();
        let indices = indices.to_vec();
        Ok(record("index_select", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                Tensor::zeros(in_dims.clone()).index_add(d, &indices, g)
            })?])
        }))
    }
}
