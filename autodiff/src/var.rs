//! `Var`: a tensor value that remembers how it was computed.
//!
//! A `Var` is a cheap clone (an `Arc`) of a node holding a [`Tensor`] value, a
//! unique [`VarId`], whether it requires grad, and, for the result of an op, a
//! [`GradFn`]: the op's name, its input `Var`s and a backward closure that maps the
//! gradient of the output to the gradients of the inputs. Leaves (`Var::leaf`,
//! parameters) and constants (`Var::constant`, data) have no `GradFn`; an op whose
//! inputs are all constants, or that runs under [`crate::no_grad`], returns a
//! constant too. The graph is immutable: backward reads it and never writes into
//! it, so the same graph may be differentiated twice. Introduced in
//! `lessons/04-backprop` (the course's "backward pass from scratch" notebook).
//!
//! Dropping a deep graph is iterative (see `Drop for Node`), so a chain of a
//! million ops frees without recursion.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap());
//! let c = Var::constant(Tensor::from_vec(vec![3.0, 4.0], [2]).unwrap());
//! let y = x.mul(&c).unwrap();
//! assert!(x.is_leaf() && x.requires_grad());
//! assert_eq!(y.op_name(), Some("mul"));
//! assert_eq!(y.value().to_vec().unwrap(), vec![3.0, 8.0]);
//! assert!(!c.mul(&c).unwrap().requires_grad()); // constants in, constant out
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tensor::{Shape, Tensor};

use crate::error::{AutodiffError, Result};
use crate::grad_mode::is_grad_enabled;

/// A process-wide unique identity of a [`Var`] (kept by [`Var::update`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(u64);

impl VarId {
    fn fresh() -> VarId {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        VarId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Maps the gradient of an op's output to one gradient per input: `need[i]` says
/// whether input `i` requires grad (others may get `None`). Every returned gradient
/// must have its input's shape (checked by backward).
pub type BackwardFn =
    Box<dyn Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static>;

/// How an op's output was made: the op, its inputs and its backward.
pub struct GradFn {
    pub op: &'static str,
    pub inputs: Vec<Var>,
    pub backward: BackwardFn,
}

struct Node {
    id: VarId,
    value: Tensor,
    requires_grad: bool,
    grad_fn: Option<GradFn>,
}

impl Drop for Node {
    // The default drop would recurse once per node of a chain (each node owns its
    // inputs) and overflow the stack on deep graphs. Instead, take the inputs out
    // and free the nodes this one held last, from an explicit stack.
    fn drop(&mut self) {
        let Some(grad_fn) = self.grad_fn.take() else {
            return;
        };
        let mut stack = grad_fn.inputs;
        drop(grad_fn.backward);
        while let Some(var) = stack.pop() {
            if let Some(mut node) = Arc::into_inner(var.0) {
                if let Some(g) = node.grad_fn.take() {
                    stack.extend(g.inputs);
                }
            }
        }
    }
}

/// A tensor value in a differentiable computation (like a torch tensor with its
/// `grad_fn`). Cloning is cheap and shares the node.
#[derive(Clone)]
pub struct Var(Arc<Node>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var(id={}, op={}, requires_grad={}, value={:?})",
            self.0.id.0,
            self.op_name().unwrap_or("leaf"),
            self.0.requires_grad,
            self.0.value
        )
    }
}

impl Var {
    fn new(value: Tensor, requires_grad: bool, grad_fn: Option<GradFn>) -> Var {
        Var(Arc::new(Node {
            id: VarId::fresh(),
            value,
            requires_grad,
            grad_fn,
        }))
    }

    /// A leaf that requires grad: a parameter or an input to differentiate by.
    pub fn leaf(value: Tensor) -> Var {
        Var::new(value, true, None)
    }

    /// A leaf that does not require grad: data, masks, targets.
    pub fn constant(value: Tensor) -> Var {
        Var::new(value, false, None)
    }

    /// A new leaf with this leaf's id and `value` of the same shape: an optimizer
    /// step. Optimizer state and [`crate::Grads`] keyed by [`VarId`] stay valid; use
    /// the new `Var` (not the old one) in later graphs.
    pub fn update(&self, value: Tensor) -> Result<Var> {
        if !self.is_leaf() {
            return Err(AutodiffError::invalid(
                "update",
                format!(
                    "only leaves can be updated; this Var is the output of {}",
                    self.op_name().unwrap_or("?")
                ),
            ));
        }
        if value.dims() != self.dims() {
            return Err(tensor::TensorError::ShapeMismatch {
                op: "update",
                lhs: self.dims().to_vec(),
                rhs: value.dims().to_vec(),
            }
            .into());
        }
        Ok(Var(Arc::new(Node {
            id: self.0.id,
            value,
            requires_grad: self.0.requires_grad,
            grad_fn: None,
        })))
    }

    /// The same value as a constant: gradients stop here (`tensor.detach()`).
    pub fn detach(&self) -> Var {
        Var::constant(self.0.value.clone())
    }

    /// The record of the op that made this value; `None` for leaves and constants.
    pub fn grad_fn(&self) -> Option<&GradFn> {
        self.0.grad_fn.as_ref()
    }

    /// The inputs of the op that made this value (empty for leaves and constants).
    pub fn inputs(&self) -> &[Var] {
        self.0.grad_fn.as_ref().map_or(&[], |g| &g.inputs)
    }

    /// The name of the op that made this value; `None` for leaves and constants.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.grad_fn.as_ref().map(|g| g.op)
    }

    pub fn id(&self) -> VarId {
        self.0.id
    }
    pub fn value(&self) -> &Tensor {
        &self.0.value
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    /// No recorded op: a leaf or a constant.
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }
    pub fn shape(&self) -> &Shape {
        self.0.value.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.0.value.dims()
    }
    pub fn rank(&self) -> usize {
        self.0.value.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.value.numel()
    }
    /// The value's elements in row-major order.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        Ok(self.0.value.to_vec()?)
    }
    /// The value of a one-element Var.
    pub fn to_scalar(&self) -> Result<f32> {
        Ok(self.0.value.to_scalar()?)
    }
}

/// Whether an op on `inputs` records a node now: grad mode is on and some input
/// requires grad. Ops may check it to skip saving tensors for backward.
pub fn is_recording(inputs: &[&Var]) -> bool {
    is_grad_enabled() && inputs.iter().any(|v| v.requires_grad())
}

/// The output of op `op` with value `value`: a recorded node when
/// [`is_recording`]`(inputs)`, else a constant (and `backward` is dropped unused).
pub fn record(
    op: &'static str,
    value: Tensor,
    inputs: &[&Var],
    backward: impl Fn(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Var {
    if !is_recording(inputs) {
        return Var::constant(value);
    }
    Var::new(
        value,
        true,
        Some(GradFn {
            op,
            inputs: inputs.iter().map(|&v| v.clone()).collect(),
            backward: Box::new(backward),
        }),
    )
}

/// `Some(f())` when `need`, else `None`: one input's gradient in a backward closure.
pub fn grad_if<E: Into<AutodiffError>>(
    need: bool,
    f: impl FnOnce() -> std::result::Result<Tensor, E>,
) -> Result<Option<Tensor>> {
    if need {
        f().map(Some).map_err(Into::into)
    } else {
        Ok(None)
    }
}
