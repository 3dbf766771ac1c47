//! Tests of [`super`]; a file of their own to keep the kernel file short.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ops::conv_batched::tests::{check_against_loops, geom, CASES};
use crate::test_util::values;

/// Forward and both gradients against the direct loops on the batched path's
/// cases (channels below MIN_CHANNELS too: the path is correct for any), every
/// kernel, 1 and 3 threads.
#[test]
fn every_kernel_matches_the_direct_loops() {
    for case in CASES {
        check_against_loops(&case, conv2d, backward_input, backward_weight);
    }
}

/// The weight gradient (the only product split by thread count) is the same
/// to the bit on 1 and 4 threads, for every kernel.
#[test]
fn weight_grad_does_not_depend_on_threads() {
    let g = geom(&CASES[2]);
    let x = values(g.n * g.c * g.h * g.w, 5);
    let dy = values(g.n * g.o * g.oh * g.ow, 6);
    for kernel in Kernel::available() {
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| backward_weight(kernel, &x, &dy, &g))
        };
        assert_eq!(run(1), run(4), "{}", kernel.name());
    }
}

#[test]
fn transpose_swaps_the_last_two_dims() {
    // Whole 8 x 8 blocks, edges on either side, and no blocks at all.
    for (c, p) in [(3, 17), (16, 24), (19, 13), (8, 8), (1, 1), (0, 5)] {
        let x: Vec<f32> = (0..2 * c * p).map(|i| i as f32).collect();
        for gth in Kernel::available().into_iter().map(Gather::for_kernel) {
            let t = transpose(gth, &x, 2, c, p);
            for n in 0..2 {
                for ci in 0..c {
                    for pi in 0..p {
                        assert_eq!(t[(n * p + pi) * c + ci], x[(n * c + ci) * p + pi]);
                    }
                }
            }
            assert_eq!(transpose(gth, &t, 2, p, c), x);
        }
    }
}
