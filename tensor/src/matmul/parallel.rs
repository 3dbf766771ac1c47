//! Rung 5 of the matmul ladder: the SIMD rung on every core (lesson `lessons/01-matmul`).
//!
//! What it adds over [`super::simd`]: for each `(jc, pc)` panel, the threads pack B
//! together (a sliver each) and then share it read-only; the rows of C are cut into
//! blocks of at most `MC` rows, and rayon hands the blocks to its threads. Each
//! thread reads (or, where the plan packs A, packs into a buffer of its own) only its
//! own rows of A and writes only its own rows of C, so no two threads ever write the
//! same memory (`par_chunks_mut` proves it to the compiler).
//! The number of blocks is a multiple of the thread count so the threads finish
//! together. When C has too few rows to go round (a matrix-vector-like product), the
//! columns are split instead: each thread computes a strip of C into its own buffer.
//!
//! Both rungs cut a product up with the same [`super::simd::Plan`], so each C element
//! is computed by exactly the same sequence of operations as in the single-threaded
//! SIMD rung, and the two agree bit for bit.
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

use super::simd::{self, macro_kernel, pack_b_sliver, with_scratch, Kernel, Plan, MC};
use super::MatRef;

/// C = A * B with packing, the fastest micro-kernel, and rayon threads over row blocks
/// of C. Contract as [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::detect(), rayon::current_num_threads(), a, b, c);
}

/// Row-block height: at most `MC`, a multiple of `mr`, and enough blocks for every one
/// of `threads` threads to get the same number (up to the last, shorter one).
fn block_rows(m: usize, threads: usize, mr: usize) -> usize {
    let threads = threads.max(1);
    let rounds = m.div_ceil(threads * MC).max(1);
    let blocks = threads * rounds;
    m.div_ceil(blocks).next_multiple_of(mr).clamp(mr, MC)
}

/// C = A * B with the given micro-kernel, work split for `threads` threads: by row
/// blocks, or by column strips when there are too few rows to go round.
pub fn gemm_with(kernel: Kernel, threads: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let plan = Plan::new(kernel, k, n);
    if threads <= 1 || m == 0 || n == 0 || k == 0 {
        return simd::gemm_planned(&plan, a, b, c);
    }
    if m.div_ceil(plan.mr) < 2 * threads {
        if n >= 2 * plan.nr * threads {
            return column_strips(&plan, threads, a, b, c);
        }
        return simd::gemm_planned(&plan, a, b, c);
    }
    let mb = block_rows(m, threads, plan.mr);
    let c = &mut c[..m * n];
    let nr = plan.nr;
    with_scratch(plan.bpack_len(n), |bpack| {
        for jc in (0..n).step_by(plan.nc) {
            let nc = plan.nc.min(n - jc);
            for pc in (0..k).step_by(plan.kc) {
                let kc = plan.kc.min(k - pc);
                // The threads pack the panel together (a sliver each), then share it.
                let panel = b.rows_range(pc, kc).cols_range(jc, nc);
                bpack[..nc.div_ceil(nr) * kc * nr]
                    .par_chunks_mut(kc * nr)
                    .enumerate()
                    .for_each(|(s, sliver)| pack_b_sliver(panel, s, nr, sliver));
                let bpack = &*bpack;
                c.par_chunks_mut(mb * n)
                    .enumerate()
                    .for_each(|(blk, c_rows)| {
                        let mc = c_rows.len() / n;
                        // Each thread packs its own rows of A (if the plan packs A).
                        with_scratch(plan.apack_len(mc), |apack| {
                            macro_kernel(
                                &plan,
                                a,
                                (blk * mb, mc),
                                (pc, kc),
                                (jc, nc),
                                bpack,
                                plan.pack_a.then_some(apack),
                                c_rows,
                                n,
                            );
                        });
                    });
            }
        }
    });
}

/// Few rows, many columns (a matrix-vector-like product): give each thread a strip of
/// columns of B, computed into its own buffer with the whole product's plan (so the
/// same bits), then copy the strips into C. The copy is `m * n` floats against
/// `m * n * k` multiply-adds.
fn column_strips(plan: &Plan, threads: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, n) = (a.rows, b.cols);
    let w = n.div_ceil(threads).next_multiple_of(plan.nr);
    let starts: Vec<usize> = (0..n).step_by(w).collect();
    let strips: Vec<(usize, usize, Vec<f32>)> = starts
        .into_par_iter()
        .map(|j0| {
            let wj = w.min(n - j0);
            let mut buf = vec![0.0f32; m * wj];
            simd::gemm_planned(plan, a, b.cols_range(j0, wj), &mut buf);
            (j0, wj, buf)
        })
        .collect();
    for (j0, wj, buf) in strips {
        for (c_row, s_row) in c.chunks_exact_mut(n).zip(buf.chunks_exact(wj)) {
            c_row[j0..j0 + wj].copy_from_slice(s_row);
        }
    }
}
