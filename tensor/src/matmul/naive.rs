//! Rung 1 of the matmul ladder: the textbook triple loop (lesson `lessons/01-matmul`).
//!
//! `c[i][j] = sum_p a[i][p] * b[p][j]`, loops in the order `i, j, p`. Every other rung
//! is tested against this one. It is slow for two reasons the next rungs fix: the
//! inner loop walks a *column* of B (a stride of a whole row between reads, so nearly
//! every read misses the cache for large n), and it does one multiply-add at a time.
//!
//! Shapes: A (m x k), B (k x n) through [`MatRef`]s with any strides; C contiguous
//! (m x n), overwritten.
//!
//! ```
//! use tensor::matmul::{naive, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! let mut c = [0.0; 4];
//! naive::gemm(
//!     MatRef::row_major(&a, 2, 2).unwrap(),
//!     MatRef::row_major(&b, 2, 2).unwrap(),
//!     &mut c,
//! );
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

use super::MatRef;

/// C = A * B by the triple loop `i, j, p`. Contract as [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a.at(i, p) * b.at(p, j);
            }
            c[i * n + j] = acc;
        }
    }
}
