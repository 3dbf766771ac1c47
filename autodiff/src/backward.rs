//! Backward: walk the graph from an output to its leaves, applying each op's
//! backward closure to the gradient of its output (the chain rule, in reverse).
//!
//! 1. Order: an iterative depth-first search from the output (an explicit stack,
//!    no recursion, so a chain of a million ops is fine) lists the nodes that
//!    require grad in post-order; reversed, every node comes before its inputs.
//! 2. Propagate: walk that order keeping one pending gradient per node. A node's
//!    gradient is complete when it is reached, because all its consumers came
//!    first; it is taken out of the pending map, handed to the op's backward, and
//!    dropped. Input gradients are summed into their pending entries (a value used
//!    twice gets both contributions). Only leaves keep their gradient, in [`Grads`].
//!
//! [`BackwardStats::peak_live_grads`] reports the most gradients held at once, which
//! shows the freeing: a chain of any length never holds more than one.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![1.0, -2.0, 3.0], [3]).unwrap());
//! let loss = x.mul(&x).unwrap().sum_all().unwrap();       // sum(x^2)
//! let grads = loss.backward().unwrap();
//! assert_eq!(grads.get(&x).unwrap().to_vec().unwrap(), vec![2.0, -4.0, 6.0]); // 2x
//! ```

use std::collections::{HashMap, HashSet};

use tensor::Tensor;

use crate::error::{AutodiffError, Result};
use crate::var::{Var, VarId};

/// Gradients of the leaves an output depends on, keyed by the leaves' ids.
#[derive(Debug, Default)]
pub struct Grads {
    map: HashMap<VarId, Tensor>,
    stats: BackwardStats,
}

/// What one backward pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardStats {
    /// Nodes that require grad reached from the output (ops and leaves).
    pub nodes: usize,
    /// The most gradients held at once (pending ones of ops, not counting leaves'
    /// finished gradients): stays small when consumed gradients are freed.
    pub peak_live_grads: usize,
}

impl Grads {
    /// The gradient of `var` (a leaf that requires grad), contiguous, of its shape;
    /// `None` if the output does not depend on it.
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        self.map.get(&var.id())
    }
    /// The gradient of the leaf with id `id`.
    pub fn get_id(&self, id: VarId) -> Option<&Tensor> {
        self.map.get(&id)
    }
    /// Take the gradient of `var` out.
    pub fn remove(&mut self, var: &Var) -> Option<Tensor> {
        self.map.remove(&var.id())
    }
    /// Set (or replace) the gradient of the leaf with id `id`, returning the old one:
    /// gradient clipping and scaling write their results back here.
    pub fn insert(&mut self, id: VarId, grad: Tensor) -> Option<Tensor> {
        self.map.insert(id, grad)
    }
    /// Number of leaves with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Every (leaf id, gradient) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (VarId, &Tensor)> {
        self.map.iter().map(|(&k, v)| (k, v))
    }
    pub fn stats(&self) -> BackwardStats {
        self.stats
    }
}

impl Var {
    /// Gradients of this one-element output with respect to every leaf it depends
    /// on (`loss.backward()`, seeded with 1).
    pub fn backward(&self) -> Result<Grads> {
        if self.numel() != 1 {
            return Err(AutodiffError::NonScalarBackward {
                shape: self.dims().to_vec(),
            });
        }
        self.backward_with_grad(&Tensor::ones(self.shape().clone()))
    }

    /// Backward seeded with `grad`, the gradient of some scalar with respect to this
    /// output (same shape): gives vector-Jacobian products.
    pub fn backward_with_grad(&self, grad: &Tensor) -> Result<Grads> {
        if grad.dims() != self.dims() {
            return Err(AutodiffError::SeedShape {
                seed: grad.dims().to_vec(),
                output: self.dims().to_vec(),
            });
        }
        if !self.requires_grad() {
            return Err(AutodiffError::NoGraph {
                shape: self.dims().to_vec(),
            });
        }
        let order = topo_order(self);
        let mut stats = BackwardStats {
            nodes: order.len(),
            peak_live_grads: 1,
        };
        let mut pending: HashMap<VarId, Tensor> = HashMap::new();
        pending.insert(self.id(), grad.clone());
        let mut leaves: HashMap<VarId, Tensor> = HashMap::new();
        for var in order.iter().rev() {
            let Some(g) = pending.remove(&var.id()) else {
                continue;
            };
            let Some(grad_fn) = var.grad_fn() else {
                leaves.insert(var.id(), g.contiguous()?);
                continue;
            };
            let need: Vec<bool> = grad_fn.inputs.iter().map(Var::requires_grad).collect();
            let input_grads = (grad_fn.backward)(&g, &need)?;
            drop(g);
            if input_grads.len() != grad_fn.inputs.len() {
                return Err(AutodiffError::invalid(
                    grad_fn.op,
                    format!(
                        "backward gave {} gradients for {} inputs",
                        input_grads.len(),
                        grad_fn.inputs.len()
                    ),
                ));
            }
            for (i, (input, gi)) in grad_fn.inputs.iter().zip(input_grads).enumerate() {
                let Some(gi) = gi.filter(|_| need[i]) else {
                    continue;
                };
                if gi.dims() != input.dims() {
                    return Err(AutodiffError::GradShape {
                        op: grad_fn.op,
                        input: i,
                        got: gi.dims().to_vec(),
                        want: input.dims().to_vec(),
                    });
                }
                let sum = match pending.remove(&input.id()) {
                    Some(acc) => acc.add(&gi)?,
                    None => gi,
                };
                pending.insert(input.id(), sum);
            }
            stats.peak_live_grads = stats.peak_live_grads.max(pending.len());
        }
        Ok(Grads { map: leaves, stats })
    }
}

/// The nodes that require grad reachable from `root`, in post-order (inputs before
/// the ops that use them), by an iterative depth-first search.
fn topo_order(root: &Var) -> Vec<&Var> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    seen.insert(root.id());
    // (node, index of its next input to visit)
    let mut stack: Vec<(&Var, usize)> = vec![(root, 0)];
    while let Some(top) = stack.last_mut() {
        let (var, next) = *top;
        if let Some(input) = var.inputs().get(next) {
            top.1 += 1;
            if input.requires_grad() && seen.insert(input.id()) {
                stack.push((input, 0));
            }
        } else {
            order.push(var);
            stack.pop();
        }
    }
    order
}
