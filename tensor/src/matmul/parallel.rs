//! Rung 5 of the matmul ladder: the SIMD rung on every core (lesson `lessons/01-matmul`).
//!
//! What it adds over [`super::simd`]: for each panel of columns, the threads pack
//! B together (a sliver each, several panels of depth at once, up to 4 MB) and then
//! share it read-only; the rows of C are cut into blocks, about eight per thread, and
//! rayon hands the blocks to its threads (work stealing evens out the ragged last
//! one). Each thread reads (or, where the plan packs A, packs into a
//! buffer of its own) only its own rows of A and writes only its own rows of C, so
//! no two threads ever write the same memory (`par_chunks_mut` proves it to the
//! compiler). When C has too few rows to go round (a matrix-vector-like product), the
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

use super::simd::{
    self, macro_kernel, pack_b, pack_b_sliver, with_scratch, BPanel, Kernel, Plan, MC,
};
use super::MatRef;

/// C = A * B with packing, the fastest micro-kernel, and rayon threads over row blocks
/// of C. Contract as [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::detect(), rayon::current_num_threads(), a, b, c);
}

/// Floats of packed B the threads share at a time (4 MB): as many panels of depth as
/// fit are packed in one go, so the threads meet twice per panel of columns rather
/// than twice per panel of depth (each meeting costs a wake-up of the other threads).
const SHARED_B_FLOATS: usize = 1 << 20;

/// Row-block height: a multiple of `mr` that cuts C into [`BLOCKS_PER_THREAD`] blocks
/// per thread (rayon's work stealing then evens out the ragged last block, and a
/// thread that was descheduled for a moment). Only a plan that packs A caps it at `MC`
/// rows (its A buffer); A read in place needs no cap.
fn block_rows(m: usize, threads: usize, plan: &Plan) -> usize {
    let groups = m.div_ceil(plan.mr);
    let per_block = groups.div_ceil(threads.max(1) * BLOCKS_PER_THREAD).max(1);
    let rows = per_block * plan.mr;
    if plan.pack_a {
        rows.min(MC)
    } else {
        rows
    }
}

/// Row blocks each thread should get (see [`block_rows`]).
const BLOCKS_PER_THREAD: usize = 8;

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
    let mb = block_rows(m, threads, &plan);
    let c = &mut c[..m * n];
    let nr = plan.nr;
    let depth: Vec<(usize, usize)> = (0..k)
        .step_by(plan.kc)
        .map(|pc| (pc, plan.kc.min(k - pc)))
        .collect();
    let per_panel = plan.bpack_len(n);
    let group = (SHARED_B_FLOATS / per_panel).max(1);
    let b_in_place = plan.reads_b_in_place(&b);
    with_scratch(per_panel * group.min(depth.len()), |bpack| {
        for jc in (0..n).step_by(plan.nc) {
            let nc = plan.nc.min(n - jc);
            for panels in depth.chunks(group) {
                if b_in_place {
                    // Only narrow last slivers are packed, and they are small.
                    for (&(pc, kc), dst) in panels.iter().zip(bpack.chunks_mut(per_panel)) {
                        pack_b(b, (pc, kc), (jc, nc), &plan, true, dst);
                    }
                } else {
                    // The threads pack the panels together (a sliver each)...
                    let mut jobs = Vec::new();
                    for (&(pc, kc), dst) in panels.iter().zip(bpack.chunks_mut(per_panel)) {
                        let panel = b.rows_range(pc, kc).cols_range(jc, nc);
                        for (s, sliver) in dst.chunks_mut(kc * nr).take(nc.div_ceil(nr)).enumerate()
                        {
                            let width = plan.sliver_width(s, nc);
                            jobs.push((panel, s * nr, width, &mut sliver[..kc * width]));
                        }
                    }
                    jobs.into_par_iter().for_each(|(panel, j0, width, sliver)| {
                        pack_b_sliver(panel, j0, width, sliver)
                    });
                }
                // ...then share them: each thread takes blocks of rows through every
                // panel, in the order the single-threaded rung adds them.
                let bpack = &*bpack;
                c.par_chunks_mut(mb * n)
                    .enumerate()
                    .for_each(|(blk, c_rows)| {
                        let mc = c_rows.len() / n;
                        // Each thread packs its own rows of A (if the plan packs A).
                        with_scratch(plan.apack_len(mc), |apack| {
                            for (&(pc, kc), packed) in panels.iter().zip(bpack.chunks(per_panel)) {
                                let bpanel = BPanel::new(&b, (pc, jc), b_in_place, packed);
                                macro_kernel(
                                    &plan,
                                    a,
                                    (blk * mb, mc),
                                    (pc, kc),
                                    (jc, nc),
                                    bpanel,
                                    plan.pack_a.then_some(&mut *apack),
                                    c_rows,
                                    n,
                                );
                            }
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
