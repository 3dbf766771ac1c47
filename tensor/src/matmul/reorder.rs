//! Rung 2 of the matmul ladder: loop order `i, p, j` (lesson `lessons/01-matmul`).
//!
//! Same arithmetic as [`super::naive`], loops swapped: for each row `i` of C and each
//! `p`, add `a[i][p] * (row p of B)` to row `i` of C. The inner loop now reads a row of
//! B and writes a row of C, both with unit stride when B's columns are adjacent, so
//! every cache line is used in full and the compiler turns the loop into SIMD
//! multiply-adds ("axpy"). When B is strided (e.g. transposed) the same loop runs
//! through [`MatRef::at`]; the result is identical, only slower.
//!
//! The order of additions into each `c[i][j]` is still `p = 0, 1, ..`, exactly as
//! in the naive loop, so the two agree to the last bit.
//!
//! Shapes: A (m x k), B (k x n) through [`MatRef`]s with any strides; C contiguous
//! (m x n), overwritten.
//!
//! ```
//! use tensor::matmul::{reorder, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! let mut c = [0.0; 4];
//! reorder::gemm(
//!     MatRef::row_major(&a, 2, 2).unwrap(),
//!     MatRef::row_major(&b, 2, 2).unwrap(),
//!     &mut c,
//! );
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

use super::MatRef;

/// C = A * B with loops `i, p, j`. Contract as [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if n == 0 {
        return;
    }
    for (i, c_row) in c.chunks_exact_mut(n).take(m).enumerate() {
        c_row.fill(0.0);
        for p in 0..k {
            axpy(a.at(i, p), b, p, c_row);
        }
    }
}

/// `c_row += alpha * (row p of B)`, the unit-stride inner loop of the reordered and
/// blocked rungs. `c_row` covers columns `0..c_row.len()` of B.
#[inline]
pub(crate) fn axpy(alpha: f32, b: MatRef<'_>, p: usize, c_row: &mut [f32]) {
    match b.row_slice(p) {
        Some(b_row) => {
            for (c, &bv) in c_row.iter_mut().zip(b_row) {
                *c += alpha * bv;
            }
        }
        None => {
            for (j, c) in c_row.iter_mut().enumerate() {
                *c += alpha * b.at(p, j);
            }
        }
    }
}
