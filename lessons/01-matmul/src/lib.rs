//! Lesson 01: a matrix from scratch, and matrix multiplication from three loops to
//! packed SIMD on every core. See `README.md` for the story and the numbered claims,
//! `tests/claims.rs` for their checks, and `src/main.rs` for the timing table.
//!
//! ```
//! use lesson_01_matmul::{matmul_loops, matmul_simd, Matrix};
//! let a = Matrix::from_rows(vec![vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
//! let b = Matrix::from_rows(vec![vec![5.0, 6.0], vec![7.0, 8.0]]).unwrap();
//! let c = matmul_loops(&a, &b).unwrap();
//! assert_eq!(c[(1, 0)], 43.0); // 3*5 + 4*7
//! assert_eq!(matmul_simd(&a, &b).unwrap(), c);
//! ```

pub mod einsum;
pub mod ladder;
pub mod matrix;

pub use einsum::{einsum, EinsumOut};
pub use ladder::{
    broadcast_mul, dot, matmul_blocked, matmul_broadcast, matmul_einsum, matmul_elementwise,
    matmul_loops, matmul_parallel, matmul_simd, matmul_tensor, matmul_with, sum_rows, Rung,
    LIBRARY_RUNGS,
};
pub use matrix::Matrix;
