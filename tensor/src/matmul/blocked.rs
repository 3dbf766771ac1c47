//! Rung 3 of the matmul ladder: cache blocking (lesson `lessons/01-matmul`).
//!
//! The reordered loop ([`super::reorder`]) streams all of B through the cache once per
//! row of A: for n = k = 1024 that is 4 MB per row, more than the L1 (32-48 KB) or L2
//! (1 MB) hold, so B comes from a slower level m times. Blocking cuts the three loops
//! into tiles: a `KB x NB` tile of B (here 128 x 256 floats = 128 KB, L2-resident) is
//! reused by `MB` rows of A before moving on, and the `NB`-wide strip of a C row
//! (1 KB) stays in L1 while the rows of the B tile are added into it.
//!
//! With B now close at hand, the limit becomes C: the reordered loop loads and stores
//! `c[i][j]` once per multiply-add. Inside a tile this rung adds four rows of B per
//! pass over the C strip (`axpy4`), so C is loaded and stored once per four. On a
//! modern core with big caches and good prefetchers that, more than the tiling, is
//! where the speed-up comes from; the next rung ([`super::simd`]) takes the same idea
//! all the way, keeping a whole tile of C in registers.
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
                    let mut p = pp;
                    while p + 4 <= pp + kb {
                        axpy4(a, i, b_strip, p, c_row);
                        p += 4;
                    }
                    for q in p..pp + kb {
                        axpy(a.at(i, q), b_strip, q, c_row);
                    }
                }
            }
        }
    }
}

/// `c_row += a[i][p] * B[p] + .. + a[i][p+3] * B[p+3]`, four rows of the B tile per
/// pass over the C strip: one load and one store of C per four multiply-adds instead
/// of per one. Written as one left-to-right sum, so each element still sees
/// `((c + a0*b0) + a1*b1) + ..`, the same roundings as four separate passes.
fn axpy4(a: MatRef<'_>, i: usize, b: MatRef<'_>, p: usize, c_row: &mut [f32]) {
    let rows = (
        b.row_slice(p),
        b.row_slice(p + 1),
        b.row_slice(p + 2),
        b.row_slice(p + 3),
    );
    let (a0, a1, a2, a3) = (a.at(i, p), a.at(i, p + 1), a.at(i, p + 2), a.at(i, p + 3));
    match rows {
        (Some(b0), Some(b1), Some(b2), Some(b3)) => {
            let n = c_row.len();
            let (b0, b1, b2, b3) = (&b0[..n], &b1[..n], &b2[..n], &b3[..n]);
            for j in 0..n {
                c_row[j] = c_row[j] + a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
            }
        }
        _ => {
            for (q, av) in [a0, a1, a2, a3].into_iter().enumerate() {
                axpy(av, b, p + q, c_row);
            }
        }
    }
}
