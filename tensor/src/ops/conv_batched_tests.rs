//! Tests of [`super`]; a file of their own to keep the kernel file short.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ops::conv_naive::direct_loops;
use crate::test_util::values;

/// (input dims, weight dims, stride, padding, dilation, groups)
pub(crate) type Case = (
    [usize; 4],
    [usize; 4],
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
);

/// Tiles that span images (7x7 and 4x4 outputs), images bigger than a tile
/// (15x13), odd channel counts, rows that do not fill a sliver, K past one
/// depth block (115*9), K < nr, groups, dilation, stride 3, a 1x1 image, more
/// images than one job holds, the lesson's layers (32 -> 64 and 64 -> 128
/// channels, fewer images), groups of 8 channels, and more output channels
/// than one depth block of the input gradient (270), and images big enough
/// (28x30 outputs) that the batch splits into several jobs.
pub(crate) const CASES: [Case; 14] = [
    ([6, 9, 28, 30], [5, 9, 3, 3], (1, 1), (1, 1), (1, 1), 1),
    ([3, 32, 14, 14], [64, 32, 3, 3], (2, 2), (1, 1), (1, 1), 1),
    ([5, 64, 7, 7], [128, 64, 3, 3], (2, 2), (1, 1), (1, 1), 1),
    ([3, 16, 5, 6], [6, 8, 3, 3], (1, 1), (1, 1), (1, 1), 2),
    ([2, 9, 4, 4], [270, 9, 3, 3], (1, 1), (1, 1), (1, 1), 1),
    ([5, 3, 14, 14], [7, 3, 3, 3], (2, 2), (1, 1), (1, 1), 1),
    ([3, 115, 7, 5], [13, 115, 3, 3], (1, 1), (1, 1), (1, 1), 1),
    ([4, 6, 15, 13], [9, 2, 3, 5], (1, 2), (2, 0), (2, 1), 3),
    ([2, 1, 1, 1], [5, 1, 3, 3], (1, 1), (1, 1), (1, 1), 1),
    ([3, 4, 11, 9], [10, 4, 1, 1], (3, 3), (1, 2), (1, 1), 1),
    ([50, 2, 8, 8], [9, 2, 3, 3], (2, 2), (1, 1), (1, 1), 1),
    ([2, 65, 5, 5], [33, 65, 2, 2], (1, 1), (0, 0), (1, 1), 1),
    ([7, 1, 28, 28], [32, 1, 3, 3], (2, 2), (1, 1), (1, 1), 1),
    ([2, 0, 5, 5], [4, 0, 3, 3], (1, 1), (1, 1), (1, 1), 1),
];

pub(crate) fn geom(c: &Case) -> Conv2dGeom {
    let (xd, wd, s, p, d, groups) = *c;
    Conv2dGeom::new("test", &xd, &wd, Some(&[wd[0]]), s, p, d, groups).unwrap()
}

/// Every (output pixel, tap) pair that reads a real input pixel:
/// `f(x index, weight index, y index)`.
fn for_each_tap(g: &Conv2dGeom, mut f: impl FnMut(usize, usize, usize)) {
    for n in 0..g.n {
        for o in 0..g.o {
            let gi = o / g.og;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ci in 0..g.cg {
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                                let ix = (ox * g.sw + kx * g.dw) as isize - g.pw as isize;
                                if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                                    continue;
                                }
                                let c = gi * g.cg + ci;
                                let xi = ((n * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((o * g.cg + ci) * g.kh + ky) * g.kw + kx;
                                let yi = ((n * g.o + o) * g.oh + oy) * g.ow + ox;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn assert_near(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&y, &r)) in got.iter().zip(want).enumerate() {
        assert!(
            (y - r).abs() <= 1e-4 * (1.0 + r.abs()),
            "{what}: [{i}] = {y}, want {r}"
        );
    }
}

/// Forward, input gradient and weight gradient against the direct loops, for
/// every micro-kernel this CPU has, on 1 and 3 threads.
#[test]
fn every_kernel_matches_the_direct_loops() {
    for case in CASES {
        check_against_loops(&case, conv2d, backward_input, backward_weight);
    }
}

type Fwd = fn(Kernel, &[f32], &[f32], Option<&[f32]>, &Conv2dGeom) -> Vec<f32>;
type Bwd = fn(Kernel, &[f32], &[f32], &Conv2dGeom) -> Vec<f32>;

/// Forward, input gradient and weight gradient of `case` against the direct
/// loops, for every micro-kernel this CPU has, on 1 and 3 threads.
pub(crate) fn check_against_loops(case: &Case, fwd: Fwd, bwd_in: Bwd, bwd_w: Bwd) {
    let g = geom(case);
    let (xd, wd) = (case.0, case.1);
    let x = values(xd.iter().product(), 1);
    let w = values(wd.iter().product(), 2);
    let b = values(wd[0], 3);
    let dy = values(g.n * g.o * g.oh * g.ow, 4);
    let want_y = direct_loops(&x, &w, Some(&b), &g);
    let (mut want_dx, mut want_dw) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
    for_each_tap(&g, |xi, wi, yi| {
        want_dx[xi] += w[wi] * dy[yi];
        want_dw[wi] += x[xi] * dy[yi];
    });
    for kernel in Kernel::available() {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let what = format!("{} {xd:?} * {wd:?} on {threads} threads", kernel.name());
            let (y, dx, dw) = pool.install(|| {
                (
                    fwd(kernel, &x, &w, Some(&b), &g),
                    bwd_in(kernel, &dy, &w, &g),
                    bwd_w(kernel, &x, &dy, &g),
                )
            });
            assert_near(&y, &want_y, &format!("forward {what}"));
            assert_near(&dx, &want_dx, &format!("input grad {what}"));
            assert_near(&dw, &want_dw, &format!("weight grad {what}"));
        }
    }
}

/// The weight gradient is the same to the bit on any number of threads.
#[test]
fn weight_grad_does_not_depend_on_threads() {
    let g = geom(&CASES[6]);
    let x = values(g.n * g.c * g.h * g.w, 5);
    let dy = values(g.n * g.o * g.oh * g.ow, 6);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| backward_weight(Kernel::detect(), &x, &dy, &g))
    };
    assert_eq!(run(1), run(4));
}

#[test]
fn takes_batches_of_small_images_only() {
    assert!(use_batched(&geom(&CASES[5])));
    let one = Conv2dGeom::new(
        "t",
        &[1, 3, 14, 14],
        &[7, 3, 3, 3],
        None,
        (1, 1),
        (1, 1),
        (1, 1),
        1,
    )
    .unwrap();
    assert!(!use_batched(&one));
    let big = Conv2dGeom::new(
        "t",
        &[2, 3, 33, 32],
        &[7, 3, 3, 3],
        None,
        (1, 1),
        (1, 1),
        (1, 1),
        1,
    )
    .unwrap();
    assert!(!use_batched(&big));
}
