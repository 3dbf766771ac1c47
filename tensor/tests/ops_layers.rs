//! conv2d (implicit GEMM) and conv2d_im2col (explicit im2col + GEMM) against
//! hand-computed values and the direct-loop reference `conv2d_naive`, over strided
//! layouts, odd sizes, stride, padding, dilation and groups, on 1 to 4 threads; plus
//! the error cases. Pool/resize, concat/index and norm tests live in `ops_layers_*.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    assert_close, err_of, kind, make, naive_values, ravel, t, unravel, values, Fill, Kind, WIDE,
};
use proptest::prelude::*;
use tensor::Tensor;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

const GRID: [f32; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];

#[test]
fn conv3x3_padding1_sums_neighbourhoods() {
    let x = t(&GRID, &[1, 1, 3, 3]);
    let w = Tensor::ones([1, 1, 3, 3]);
    let want = [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0];
    for y in [
        x.conv2d(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap(),
        x.conv2d_naive(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap(),
    ] {
        assert_eq!(y.dims(), &[1, 1, 3, 3]);
        assert_eq!(y.to_vec().unwrap(), want);
    }
}

#[test]
fn conv3x3_stride2_with_bias() {
    let x = t(&GRID, &[1, 1, 3, 3]);
    let w = Tensor::ones([1, 1, 3, 3]);
    let b = t(&[0.5], &[1]);
    let y = x.conv2d(&w, Some(&b), (2, 2), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec().unwrap(), vec![12.5, 16.5, 24.5, 28.5]);
}

#[test]
fn conv_dilation2_reads_every_other_pixel() {
    // 5x5 arange, 3x3 ones dilated by 2: rows and cols {0, 2, 4}: sum of 5r + c.
    let x = Tensor::arange(0.0, 25.0, 1.0)
        .unwrap()
        .reshape([1, 1, 5, 5])
        .unwrap();
    let w = Tensor::ones([1, 1, 3, 3]);
    let y = x.conv2d(&w, None, (1, 1), (0, 0), (2, 2), 1).unwrap();
    assert_eq!(y.dims(), &[1, 1, 1, 1]);
    assert_eq!(y.to_vec().unwrap(), vec![108.0]);
}

#[test]
fn conv_two_output_channels_asymmetric_kernel() {
    // Kernel (1, 2): out = x[., j]*w0 + x[., j+1]*w1.
    let x = t(&GRID, &[1, 1, 3, 3]);
    let w = t(&[1.0, -1.0, 2.0, 0.5], &[2, 1, 1, 2]);
    let y = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
    assert_eq!(y.dims(), &[1, 2, 3, 2]);
    let want = [
        -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, // x[j] - x[j+1]
        3.0, 5.5, 10.5, 13.0, 18.0, 20.5, // 2 x[j] + 0.5 x[j+1]
    ];
    assert_eq!(y.to_vec().unwrap(), want);
}

#[test]
fn conv_groups_keep_channels_apart() {
    // Two channels, groups 2, 1x1 weights 2 and 3: each output sees one channel.
    let x = t(&[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0], &[1, 2, 2, 2]);
    let w = t(&[2.0, 3.0], &[2, 1, 1, 1]);
    let y = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 2).unwrap();
    assert_eq!(
        y.to_vec().unwrap(),
        vec![2.0, 4.0, 6.0, 8.0, 30.0, 60.0, 90.0, 120.0]
    );
}

#[test]
fn conv_depthwise_with_multiplier_matches_naive() {
    let x = make(&[2, 5, 7, 11], Kind::Contiguous, 3);
    let w = make(&[10, 1, 3, 3], Kind::Contiguous, 4);
    let b = make(&[10], Kind::Contiguous, 5);
    let y = x.conv2d(&w, Some(&b), (2, 1), (1, 1), (1, 1), 5).unwrap();
    let r = x
        .conv2d_naive(&w, Some(&b), (2, 1), (1, 1), (1, 1), 5)
        .unwrap();
    assert_eq!(y.dims(), &[2, 10, 4, 11]);
    assert_close(
        &y.to_vec().unwrap(),
        &r.to_vec().unwrap(),
        1e-5,
        1e-5,
        "depthwise",
    );
}

#[test]
fn conv_unbatched_input() {
    let x = t(&GRID, &[1, 3, 3]);
    let w = Tensor::ones([1, 1, 3, 3]);
    let y = x.conv2d(&w, None, (2, 2), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.dims(), &[1, 2, 2]);
    assert_eq!(y.to_vec().unwrap(), vec![12.0, 16.0, 24.0, 28.0]);
}

#[test]
fn conv_empty_batch_and_zero_channels() {
    let x = Tensor::zeros([0, 3, 5, 5]);
    let w = Tensor::ones([4, 3, 3, 3]);
    let y = x.conv2d(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.dims(), &[0, 4, 5, 5]);
    // No input channels: every output is the bias.
    let x = Tensor::zeros([1, 0, 2, 2]);
    let w = Tensor::zeros([2, 0, 1, 1]);
    let b = t(&[1.5, -2.0], &[2]);
    let y = x.conv2d(&w, Some(&b), (1, 1), (0, 0), (1, 1), 1).unwrap();
    assert_eq!(
        y.to_vec().unwrap(),
        vec![1.5, 1.5, 1.5, 1.5, -2.0, -2.0, -2.0, -2.0]
    );
}

/// Sizes that force several pixel tiles and depth blocks (3x3 over 120 channels
/// unfolds to K = 1080 rows, more than one 1024-deep block; 24x24 = 576 output
/// pixels, several 128-pixel tiles), im2col tiles over its 2^18-float budget, the
/// 1x1 paths, a 1280-channel 3x3 at 4x4 (one tile: the weight rows are split
/// between threads), and 97x91 = 8827 pixels (69 tiles, more than the 64 jobs an
/// image is cut into: jobs of two tiles, the last one short), under 1, 2 and 4
/// threads, for both fast versions.
#[test]
fn conv_tiled_paths_match_naive() {
    let cases = [
        (vec![1, 120, 24, 24], vec![8, 120, 3, 3], (1, 1), (1, 1)),
        (vec![2, 64, 23, 29], vec![5, 64, 3, 3], (2, 2), (1, 1)),
        (vec![1, 8, 17, 19], vec![6, 8, 1, 1], (1, 1), (0, 0)),
        (vec![3, 7, 13, 13], vec![4, 7, 1, 1], (2, 2), (0, 0)),
        (vec![1, 16, 4, 4], vec![1280, 16, 3, 3], (1, 1), (1, 1)),
        (vec![1, 3, 64, 70], vec![7, 3, 3, 3], (2, 2), (1, 1)),
        (vec![1, 2, 97, 91], vec![5, 2, 3, 3], (1, 1), (1, 1)),
    ];
    for (xd, wd, stride, pad) in cases {
        let x = make(&xd, Kind::Contiguous, 11);
        let w = make(&wd, Kind::Contiguous, 12);
        let b = make(&wd[..1], Kind::Contiguous, 13);
        let r = x
            .conv2d_naive(&w, Some(&b), stride, pad, (1, 1), 1)
            .unwrap();
        for threads in [1, 2, 4] {
            let (y, y2) = in_pool(threads, || {
                (
                    x.conv2d(&w, Some(&b), stride, pad, (1, 1), 1).unwrap(),
                    x.conv2d_im2col(&w, Some(&b), stride, pad, (1, 1), 1)
                        .unwrap(),
                )
            });
            for (name, y) in [("conv2d", y), ("conv2d_im2col", y2)] {
                assert_eq!(y.dims(), r.dims());
                let what = format!("{name} {xd:?} * {wd:?} on {threads} threads");
                assert_close(
                    &y.to_vec().unwrap(),
                    &r.to_vec().unwrap(),
                    1e-4,
                    1e-4,
                    &what,
                );
            }
        }
    }
}

#[test]
fn conv_matches_torch_output_size_formula() {
    // H' = (H + 2p - d(k-1) - 1)/s + 1 for a few odd combinations.
    for (h, k, s, p, d) in [
        (7, 3, 2, 1, 1),
        (8, 3, 2, 1, 1),
        (13, 5, 3, 2, 2),
        (1, 1, 1, 0, 1),
        (4, 3, 1, 2, 2),
    ] {
        let x = Tensor::zeros([1, 1, h, h]);
        let w = Tensor::zeros([1, 1, k, k]);
        let y = x.conv2d(&w, None, (s, s), (p, p), (d, d), 1).unwrap();
        let want = (h + 2 * p - d * (k - 1) - 1) / s + 1;
        assert_eq!(
            y.dims(),
            &[1, 1, want, want],
            "h {h} k {k} s {s} p {p} d {d}"
        );
    }
}

#[test]
fn conv_errors_name_op_and_shapes() {
    let x = Tensor::zeros([1, 4, 5, 5]);
    let w = Tensor::zeros([6, 4, 3, 3]);
    let e = err_of(x.conv2d(
        &Tensor::zeros([6, 3, 3, 3]),
        None,
        (1, 1),
        (0, 0),
        (1, 1),
        1,
    ));
    assert!(
        e.contains("conv2d") && e.contains("[1, 4, 5, 5]") && e.contains("[6, 3, 3, 3]"),
        "{e}"
    );
    let e = err_of(x.conv2d(
        &Tensor::zeros([6, 1, 3, 3]),
        None,
        (1, 1),
        (0, 0),
        (1, 1),
        3,
    ));
    assert!(e.contains("divisible by groups 3"), "{e}");
    let e = err_of(x.conv2d(&w, None, (0, 1), (0, 0), (1, 1), 1));
    assert!(e.contains("stride"), "{e}");
    let e = err_of(x.conv2d(&w, None, (1, 1), (0, 0), (1, 0), 1));
    assert!(e.contains("dilation"), "{e}");
    let e = err_of(x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 0));
    assert!(e.contains("groups"), "{e}");
    let e = err_of(x.conv2d(
        &Tensor::zeros([6, 4, 7, 3]),
        None,
        (1, 1),
        (0, 0),
        (1, 1),
        1,
    ));
    assert!(e.contains("larger than the padded input (5, 5)"), "{e}");
    let e = err_of(x.conv2d(&w, None, (1, 1), (0, 0), (3, 3), 1));
    assert!(e.contains("spans (7, 7)"), "{e}");
    let e = err_of(x.conv2d(&w, Some(&Tensor::zeros([5])), (1, 1), (0, 0), (1, 1), 1));
    assert!(e.contains("bias must be (6,)"), "{e}");
    let e = err_of(Tensor::zeros([4, 5]).conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1));
    assert!(e.contains("(N, C, H, W)") && e.contains("[4, 5]"), "{e}");
    let e = err_of(x.conv2d_naive(&Tensor::zeros([6, 4, 3]), None, (1, 1), (0, 0), (1, 1), 1));
    assert!(e.contains("conv2d_naive") && e.contains("[6, 4, 3]"), "{e}");
}

/// A valid conv2d problem: (input dims, weight dims, stride, padding, dilation, groups).
type Problem = (
    Vec<usize>,
    Vec<usize>,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
);

fn problem() -> impl Strategy<Value = Problem> {
    (
        (0usize..3, 1usize..4, 0usize..4, 1usize..4), // n, groups, c/g, o/g
        (1usize..4, 1usize..4, 1usize..3, 1usize..3), // kh, kw, sh, sw
        (0usize..3, 0usize..3, 1usize..3, 1usize..3), // ph, pw, dh, dw
        (0usize..9, 0usize..9),                       // extra h, w
    )
        .prop_map(
            |((n, g, cg, og), (kh, kw, sh, sw), (ph, pw, dh, dw), (eh, ew))| {
                let h = (dh * (kh - 1) + 1).saturating_sub(2 * ph).max(1) + eh;
                let w = (dw * (kw - 1) + 1).saturating_sub(2 * pw).max(1) + ew;
                (
                    vec![n, g * cg, h, w],
                    vec![g * og, cg, kh, kw],
                    (sh, sw),
                    (ph, pw),
                    (dh, dw),
                    g,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv2d_matches_naive(
        (xd, wd, stride, pad, dil, groups) in problem(),
        (kx, kw, kb) in (kind(), kind(), kind()),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let x = make(&xd, kx, seed);
        let w = make(&wd, kw, seed ^ 1);
        let b = make(&wd[..1], kb, seed ^ 2);
        let b = with_bias.then_some(&b);
        let y = x.conv2d(&w, b, stride, pad, dil, groups).unwrap();
        let y2 = x.conv2d_im2col(&w, b, stride, pad, dil, groups).unwrap();
        let r = x.conv2d_naive(&w, b, stride, pad, dil, groups).unwrap();
        prop_assert_eq!(y.dims(), r.dims());
        prop_assert_eq!(y2.dims(), r.dims());
        let r = r.to_vec().unwrap();
        assert_close(&y.to_vec().unwrap(), &r, 1e-5, 1e-5, "conv2d vs naive");
        assert_close(&y2.to_vec().unwrap(), &r, 1e-5, 1e-5, "conv2d_im2col vs naive");
    }

    /// Bigger problems, the shapes of real networks scaled down: 1x1 and 3x3
    /// kernels, stride 1 and 2, padding 0 and 1, now and then dilation 2 or two
    /// groups, widths that are not a multiple of the micro-kernel's 16 or 32 lanes,
    /// images spread over several pixel tiles, permuted, sliced or broadcast inputs,
    /// on 1 or 2 threads.
    #[test]
    fn conv2d_network_shapes_match_naive(
        (n, groups, cg, og) in (1usize..3, 1usize..3, 1usize..40, 1usize..20),
        (k, stride, pad, dil) in (prop_oneof![Just(1usize), Just(3)], 1usize..3, 0usize..2, prop_oneof![4 => Just(1usize), 1 => Just(2)]),
        (h, w) in (1usize..30, 1usize..75),
        (kx, kw) in (kind(), kind()),
        threads in 1usize..3,
        seed in any::<u64>(),
    ) {
        let span = dil * (k - 1) + 1;
        let (h, w) = (h.max(span), w.max(span));
        let x = make(&[n, groups * cg, h, w], kx, seed);
        let wt = make(&[groups * og, cg, k, k], kw, seed ^ 1);
        let b = make(&[groups * og], Kind::Contiguous, seed ^ 2);
        let args = ((stride, stride), (pad, pad), (dil, dil), groups);
        let y = in_pool(threads, || x.conv2d(&wt, Some(&b), args.0, args.1, args.2, args.3).unwrap());
        let r = x.conv2d_naive(&wt, Some(&b), args.0, args.1, args.2, args.3).unwrap();
        prop_assert_eq!(y.dims(), r.dims());
        assert_close(&y.to_vec().unwrap(), &r.to_vec().unwrap(), 1e-4, 1e-4, "conv2d vs naive");
    }

    /// The naive reference itself against an independent formula: the sum over the
    /// kernel of one shifted, strided input window, computed from `to_vec` data.
    #[test]
    fn conv2d_naive_matches_window_sum(
        (xd, wd, stride, pad, dil, groups) in problem(),
        seed in any::<u64>(),
    ) {
        let x = make(&xd, Kind::Permuted, seed);
        let w = make(&wd, Kind::Sliced, seed ^ 7);
        let y = x.conv2d_naive(&w, None, stride, pad, dil, groups).unwrap();
        let (xv, wv) = (x.to_vec().unwrap(), w.to_vec().unwrap());
        let yd = y.dims().to_vec();
        let got = y.to_vec().unwrap();
        let og = wd[0] / groups;
        for (i, &g) in got.iter().enumerate() {
            let [n, o, oy, ox] = unravel(i, &yd)[..] else { unreachable!() };
            let mut acc = 0.0f64;
            for ci in 0..wd[1] {
                let c = (o / og) * wd[1] + ci;
                for ky in 0..wd[2] {
                    for kx2 in 0..wd[3] {
                        let iy = (oy * stride.0 + ky * dil.0) as i64 - pad.0 as i64;
                        let ix = (ox * stride.1 + kx2 * dil.1) as i64 - pad.1 as i64;
                        if iy >= 0 && ix >= 0 && (iy as usize) < xd[2] && (ix as usize) < xd[3] {
                            let xi = ravel(&[n, c, iy as usize, ix as usize], &xd);
                            let wi = ravel(&[o, ci, ky, kx2], &wd);
                            acc += xv[xi] as f64 * wv[wi] as f64;
                        }
                    }
                }
            }
            prop_assert!((g as f64 - acc).abs() < 1e-5, "element {} got {} want {}", i, g, acc);
        }
    }
}

#[test]
fn values_are_not_degenerate() {
    // Guard for the helpers: distinct, in range, reproducible.
    let v = values(64, 9);
    assert_eq!(v, values(64, 9));
    assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
    let distinct = v
        .iter()
        .map(|x| x.to_bits())
        .collect::<std::collections::HashSet<_>>();
    assert!(distinct.len() > 60);
    // The other fills: [-3, 3) spread out, and ties on the 13 halves -3..=3.
    let w = WIDE.values(1000, 9);
    assert!(w.iter().all(|x| (-3.0..3.0).contains(x)));
    assert!(w.iter().any(|&x| x < -2.5) && w.iter().any(|&x| x > 2.5));
    let q = Fill::Ties.values(1000, 9);
    let halves = q
        .iter()
        .map(|x| x.to_bits())
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(halves.len(), 13);
    assert!(q
        .iter()
        .all(|&x| (-3.0..=3.0).contains(&x) && (2.0 * x).fract() == 0.0));
}

#[test]
fn layout_kinds_are_the_layouts_they_name() {
    // Guard for the helpers: seed 4 picks dim 1 of (2, 3, 5).
    let dims = [2, 3, 5];
    let c = make(&dims, Kind::Contiguous, 4);
    assert!(c.is_contiguous() && c.layout().offset() == 0);
    assert_eq!(c.to_vec().unwrap(), values(30, 4));
    let p = make(&dims, Kind::Permuted, 4);
    assert!(!p.is_contiguous() && !p.strides().contains(&0));
    assert_eq!(p.cpu_storage().unwrap(), &values(30, 4)[..]);
    let s = make(&dims, Kind::Sliced, 4);
    assert_eq!((s.strides(), s.layout().offset()), (&[30, 5, 1][..], 10));
    let b = make(&dims, Kind::Broadcast, 4);
    assert_eq!(b.strides(), &[5, 0, 1]);
    for x in [&c, &p, &s, &b] {
        assert_eq!(x.dims(), &dims);
        assert_eq!(x.to_vec().unwrap(), naive_values(x));
    }
}
