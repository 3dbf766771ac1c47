//! Rung 3 of the matmul ladder: cache blocking (lesson `lessons/01-matmul`).
//!
//! The reordered loop ([`super::reorder`]) streams all of B through the cache once per
//! row of A: for n = k = 1024 that is 4 MB per row, far more than the 32 KB L1 or the
//! 1 MB L2 hold, so B comes from slow memory m times. Blocking cuts the three loops
//! into tiles: a `KB x NB` tile of B (here 128 x 256 floats = 128 KB, L2-resident) is
//! reused by `MB` rows of A before moving on, and the `NB`-wide strip of a C row
//! (1 KB) stays in L1 while `KB` rows of the B tile are added into it.
//!
//! For each `c[i][j]` the products are still added in the order `p = 0, 1, ..`
//! (tiles of p run in increasing order), so this rung equals the naive one bit for bit.
//!
//! Shapes: A (m x k), B (k x n) through [`MatRef`]s with any strides; C contiguous
//! (m x n), overwritten.
//!
//! ```
//! use tensor::matmul::{blocked, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! let mut c = [0.0; 4];
//! blocked::gemm(
//!     MatRef::row_major(&a, 2, 2).unwrap(),
//!     MatRef::row_major(&b, 2, 2).unwrap(),
//!     &mut c,
//! );
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

use super::reorder::axpy;
use super::MatRef;

/// Rows of A (and C) per tile.
pub const MB: usize = 64;
/// Depth (columns of A, rows of B) per tile.
pub const KB: usize = 128;
/// Columns of B (and C) per tile.
pub const NB: usize = 256;

/// C = A * B, tiled `MB x KB x NB` with loops `i, p, j` inside a tile. Contract as
/// [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if n == 0 {
        return;
    }
    c[..m * n].fill(0.0);
    for jj in (0..n).step_by(NB) {
        let nb = NB.min(n - jj);
        let b_strip = b.cols_range(jj, nb);
        for pp in (0..k).step_by(KB) {
            let kb = KB.min(k - pp);
            for ii in (0..m).step_by(MB) {
                let mb = MB.min(m - ii);
                for i in ii..ii + mb {
                    let c_row = &mut c[i * n + jj..i * n + jj + nb];
                    for p in pp..pp + kb {
                        axpy(a.at(i, p), b_strip, p, c_row);
                    }
                }
            }
        }
    }
}
