//! Grad mode: a thread-local switch that turns recording off for inference.
//!
//! Inside [`no_grad`] (or while a [`NoGradGuard`] lives) every op computes its value
//! and returns a constant [`crate::Var`]: no node, no saved tensors, no backward.
//! The switch is per thread, like `torch.no_grad()`, and nests: leaving the inner
//! scope restores whatever the outer one had, also when the closure panics.
//!
//! ```
//! use autodiff::{no_grad, Var};
//! use tensor::Tensor;
//! let w = Var::leaf(Tensor::from_vec(vec![2.0, 3.0], [2]).unwrap());
//! let y = no_grad(|| w.mul(&w)).unwrap();
//! assert!(!y.requires_grad());                       // nothing was recorded
//! assert_eq!(y.value().to_vec().unwrap(), vec![4.0, 9.0]);
//! assert!(w.mul(&w).unwrap().requires_grad());       // recording is back on
//! ```

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record a graph right now.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Run `f` with recording off on this thread (`with torch.no_grad():`).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Turns recording off on this thread until dropped, then restores the previous state.
#[must_use = "recording is only off while the guard lives"]
pub struct NoGradGuard {
    previous: bool,
    // Not Send: the guard must be dropped on the thread whose flag it changed.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl NoGradGuard {
    /// Switch recording off; it comes back (if it was on) when the guard drops.
    pub fn new() -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard {
            previous,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}
