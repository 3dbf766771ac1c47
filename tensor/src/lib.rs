//! A strided CPU tensor written from scratch: shapes and layouts, zero-copy views,
//! elementwise ops with NumPy broadcasting, reductions, matmul (a ladder from naive
//! loops to packed SIMD), convolutions and norms, random number generators, and
//! safetensors / PNG I/O.
//!
//! Each module names the lesson (`lessons/NN-*`) that builds its idea from scratch.

pub mod data;
pub mod error;
pub mod io;
pub mod layout;
pub mod matmul;
pub mod ops;
pub mod random;
pub mod shape;
pub mod storage;
pub mod tensor;

pub use error::{Result, TensorError};
pub use layout::{Layout, StridedIndex};
pub use random::Rng;
pub use shape::Shape;
pub use storage::Storage;
pub use tensor::Tensor;

/// The root README's tour, compiled and run as a doctest so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeTour;
