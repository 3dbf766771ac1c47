//! Reverse-mode automatic differentiation over `tensor` ops (`lessons/04-backprop`:
//! the course's backward pass written by hand, then made automatic).
//!
//! A [`Var`] wraps a [`Tensor`] value. Leaves are made with [`Var::leaf`] (requires
//! grad: parameters, inputs to differentiate by) or [`Var::constant`] (data). Every
//! op on `Var`s has the tensor method's PyTorch name and returns `Result<Var>`; it
//! computes its value with the tensor crate and records a node holding its inputs
//! and a backward closure (with the tensors it saved). [`Var::backward`] walks the
//! nodes in reverse topological order, iteratively, freeing each gradient once
//! it has been passed on, and returns [`Grads`]: the gradient of each leaf, looked
//! up by the leaf (`grads.get(&w)`), so optimizers read gradients without
//! mutating parameters. [`no_grad`] turns recording off for inference.
//!
//! The ops, by file (each file's docs give the shapes and the derivative):
//!
//! - `ops_elementwise`: `add sub mul div pow` (broadcasting; gradients summed back to
//!   each operand's shape by [`sum_to()`]), `add_scalar mul_scalar affine powf`, `neg
//!   exp log sqrt tanh sigmoid silu gelu quick_gelu relu abs sqr recip sin cos`;
//! - `ops_reduce`: `sum mean max min var std` over any dims (keepdim or not);
//! - `ops_linalg`: `matmul` (batched, broadcast, vectors);
//! - `ops_attention`: `softmax log_softmax scaled_dot_product_attention`;
//! - `ops_norm`: `group_norm layer_norm`; `ops_conv`: `conv2d`;
//! - `ops_shape`: `reshape flatten squeeze unsqueeze permute transpose t narrow
//!   broadcast_as contiguous`;
//! - `ops_concat`: `cat stack chunk split pad upsample_nearest2d`;
//! - `ops_index`: `embedding index_select`.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! // d/dx sum(x * x) = 2x
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, -2.0, 0.5], [3]).unwrap());
//! let loss = x.mul(&x).unwrap().sum_all().unwrap();
//! assert_eq!(loss.to_scalar().unwrap(), 5.25);
//! let grads = loss.backward().unwrap();
//! assert_eq!(grads.get(&x).unwrap().to_vec().unwrap(), vec![2.0, -4.0, 1.0]);
//! ```

pub mod backward;
pub mod error;
pub mod grad_mode;
pub mod ops_attention;
pub mod ops_concat;
pub mod ops_conv;
pub mod ops_elementwise;
pub mod ops_index;
pub mod ops_linalg;
pub mod ops_norm;
pub mod ops_reduce;
pub mod ops_shape;
pub mod sum_to;
pub mod var;

pub use backward::{BackwardStats, Grads};
pub use error::{AutodiffError, Result};
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use sum_to::sum_to;
pub use tensor::Tensor;
pub use var::{grad_if, is_recording, record, BackwardFn, GradFn, Var, VarId};
