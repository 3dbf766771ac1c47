//! Tests of [`super`]; a file of their own to keep the kernel file short.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ops::conv_naive::direct_loops;
use crate::test_util::values;

/// (input dims, weight dims, stride, padding, dilation, groups)
type Case = (
    [usize; 4],
    [usize; 4],
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
);

/// Every micro-kernel this CPU has (AVX-512, AVX2, portable) through the whole
/// implicit-GEMM path, on shapes with several pixel tiles, rows that do not fill
/// a sliver, several depth blocks (K = 115*9 > PACKED_KC), split weight rows, and
/// jobs of several tiles (91x97 = 8827 pixels, 69 tiles).
#[test]
fn every_kernel_matches_the_direct_loops() {
    let cases: [Case; 7] = [
        ([1, 115, 9, 37], [7, 115, 3, 3], (1, 1), (1, 1), (1, 1), 1),
        ([2, 6, 23, 41], [13, 6, 3, 3], (2, 2), (1, 1), (1, 1), 1),
        ([1, 4, 19, 19], [8, 2, 3, 5], (1, 2), (2, 0), (2, 1), 2),
        ([1, 9, 17, 50], [20, 9, 1, 1], (1, 1), (0, 0), (1, 1), 1),
        ([3, 5, 11, 13], [4, 5, 1, 1], (2, 2), (1, 1), (1, 1), 1),
        ([1, 3, 1, 1], [5, 3, 3, 3], (1, 1), (1, 1), (1, 1), 1),
        ([1, 1, 91, 97], [3, 1, 3, 3], (1, 1), (1, 1), (1, 1), 1),
    ];
    for (xd, wd, stride, padding, dilation, groups) in cases {
        let g = Conv2dGeom::new(
            "test",
            &xd,
            &wd,
            Some(&[wd[0]]),
            stride,
            padding,
            dilation,
            groups,
        )
        .unwrap();
        let x = values(xd.iter().product(), 1);
        let w = values(wd.iter().product(), 2);
        let b = values(wd[0], 3);
        let want = direct_loops(&x, &w, Some(&b), &g);
        for kernel in Kernel::available() {
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| conv2d_with(kernel, &x, &w, Some(&b), &g));
                assert_eq!(got.len(), want.len());
                for (i, (&y, &r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (y - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "{} {xd:?} * {wd:?} on {threads} threads: [{i}] = {y}, want {r}",
                        kernel.name()
                    );
                }
            }
        }
    }
}
