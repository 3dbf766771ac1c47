//! A strided CPU tensor written from scratch: shapes and layouts, zero-copy views,
//! elementwise ops with NumPy broadcasting, reductions, matmul (a ladder from naive
//! loops to packed SIMD), convolutions and norms, random number generators, and
//! safetensors / PNG I/O, and (cargo feature `wgpu`, on by default) the same ops on a
//! GPU through WGSL compute shaders.
//!
//! Each module names the lesson (`lessons/NN-*`) that builds its idea from scratch.

pub mod data;
pub mod device;
pub mod error;
pub mod io;
pub mod layout;
pub mod matmul;
pub mod ops;
pub mod random;
pub mod shape;
pub mod storage;
pub mod tensor;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use device::Device;
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

/// Helpers shared by the crate's own unit tests (the integration tests share
/// `tests/common/`).
#[cfg(test)]
pub(crate) mod test_util {
    /// `n` values uniform in [-1, 1) from a 64-bit LCG, so a failure reproduces from
    /// its seed.
    pub fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }
}
