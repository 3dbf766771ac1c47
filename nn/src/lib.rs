//! Modules, named parameters, initialisers, losses, optimizers and the training loop.
//!
//! Status: not written yet (issue "Autodiff, nn and training"). The crate exists so
//! the workspace layout and dependency direction are in place from the start.

pub use autodiff::Tensor;
