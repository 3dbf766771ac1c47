//! Reverse-mode automatic differentiation over `tensor` ops.
//!
//! Status: not written yet. This crate is built by the issue "Autodiff, nn and
//! training"; until then it only re-exports the tensor type it will wrap, so the
//! workspace's one-way dependency chain (tensor <- autodiff <- nn <- diffusion) exists.

pub use tensor::Tensor;
