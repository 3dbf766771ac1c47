//! Rung 5 of the matmul ladder: the SIMD rung on every core (lesson `lessons/01-matmul`).
//!
//! What it adds over [`super::simd`]: for each `(jc, pc)` panel, B is packed once and
//! shared (read-only) by all threads; the rows of C are cut into blocks of at most
//! `MC` rows, and rayon hands the blocks to its threads. Each thread packs its own
//! rows of A into a buffer of its own and writes only its own rows of C, so no two
//! threads ever touch the same memory (`par_chunks_mut` proves it to the compiler).
//! The number of blocks is a multiple of the thread count so the threads finish
//! together. When C has too few rows to go round (a matrix-vector-like product), the
//! columns are split instead: each thread computes a strip of C into its own buffer.
//!
//! Each C element is computed by exactly the same sequence of operations as in the
//! single-threaded SIMD rung, so the two agree bit for bit.
//!
//! Shapes: A (m x k), B (k x n) through [`MatRef`]s with any strides; C contiguous
//! (m x n), overwritten.
//!
//! ```
//! use tensor::matmul::{parallel, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! let mut c = [0.0; 4];
//! parallel::gemm(
//!     MatRef::row_major(&a, 2, 2).unwrap(),
//!     MatRef::row_major(&b, 2, 2).unwrap(),
//!     &mut c,
//! );
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

use rayon::prelude::*;

use super::simd::{self, aligned_buffer, bpack_len, macro_kernel, pack_b, Kernel, MC, MR};
use super::simd::{KC, NC};
use super::MatRef;

/// C = A * B with packing, the fastest micro-kernel, and rayon threads over row blocks
/// of C. Contract as [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::detect(), rayon::current_num_threads(), a, b, c);
}

/// Row-block height: at most `MC`, a multiple of `MR`, and enough blocks for every one
/// of `threads` threads to get the same number (up to the last, shorter one).
fn block_rows(m: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    let rounds = m.div_ceil(threads * MC).max(1);
    let blocks = threads * rounds;
    m.div_ceil(blocks).next_multiple_of(MR).clamp(MR, MC)
}

/// C = A * B with the given micro-kernel, work split for `threads` threads: by row
/// blocks, or by column strips when there are too few rows to go round.
pub fn gemm_with(kernel: Kernel, threads: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if threads <= 1 || m == 0 || n == 0 || k == 0 {
        return simd::gemm_with(kernel, a, b, c);
    }
    if m.div_ceil(MR) < 2 * threads {
        if n >= 2 * kernel.nr() * threads {
            return column_strips(kernel, threads, a, b, c);
        }
        return simd::gemm_with(kernel, a, b, c);
    }
    let mb = block_rows(m, threads);
    let c = &mut c[..m * n];
    let nr = kernel.nr();
    let (mut bbuf, boff) = aligned_buffer(bpack_len(kernel, k, n));
    let bpack = &mut bbuf[boff..];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, (pc, kc), (jc, nc), nr, bpack);
            let bpack = &*bpack;
            c.par_chunks_mut(mb * n).enumerate().for_each_init(
                || aligned_buffer(mb * kc),
                |(abuf, aoff), (blk, c_rows)| {
                    let mc = c_rows.len() / n;
                    macro_kernel(
                        kernel,
                        a,
                        (blk * mb, mc),
                        (pc, kc),
                        (jc, nc),
                        bpack,
                        &mut abuf[*aoff..],
                        c_rows,
                        n,
                    );
                },
            );
        }
    }
}

/// Few rows, many columns (a matrix-vector-like product): give each thread a strip of
/// columns of B, computed into its own buffer, then copy the strips into C. The copy
/// is `m * n` floats against `m * n * k` multiply-adds.
fn column_strips(kernel: Kernel, threads: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, n) = (a.rows, b.cols);
    let w = n.div_ceil(threads).next_multiple_of(kernel.nr());
    let starts: Vec<usize> = (0..n).step_by(w).collect();
    let strips: Vec<(usize, usize, Vec<f32>)> = starts
        .into_par_iter()
        .map(|j0| {
            let wj = w.min(n - j0);
            let mut buf = vec![0.0f32; m * wj];
            simd::gemm_with(kernel, a, b.cols_range(j0, wj), &mut buf);
            (j0, wj, buf)
        })
        .collect();
    for (j0, wj, buf) in strips {
        for (c_row, s_row) in c.chunks_exact_mut(n).zip(buf.chunks_exact(wj)) {
            c_row[j0..j0 + wj].copy_from_slice(s_row);
        }
    }
}
