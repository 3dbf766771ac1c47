//! The conv2d backward kernels (`conv2d_backward_input`, `conv2d_backward_weight`:
//! col2im / im2col + GEMM) against direct scatter loops, over strided layouts,
//! stride, padding, dilation and groups, a case large enough to be cut into several
//! column tiles, and the error cases; plus `index_add` against a naive loop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_close, err_of, kind, make, Kind};
use proptest::prelude::*;
use tensor::Tensor;

#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    s: (usize, usize),
    p: (usize, usize),
    d: (usize, usize),
    groups: usize,
}

impl Geom {
    fn out_hw(&self) -> (usize, usize) {
        let oh = (self.h + 2 * self.p.0 - self.d.0 * (self.kh - 1) - 1) / self.s.0 + 1;
        let ow = (self.w + 2 * self.p.1 - self.d.1 * (self.kw - 1) - 1) / self.s.1 + 1;
        (oh, ow)
    }

    /// Call `f(n, o, oy, ox, ci_global, ci_in_group, ky, kx, iy, ix)` for every
    /// (output pixel, kernel tap) pair that reads a real (not padding) input pixel.
    fn for_each_tap(&self, mut f: impl FnMut([usize; 10])) {
        let (oh, ow) = self.out_hw();
        let (cg, og) = (self.c / self.groups, self.o / self.groups);
        for n in 0..self.n {
            for o in 0..self.o {
                let gi = o / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ci in 0..cg {
                            for ky in 0..self.kh {
                                for kx in 0..self.kw {
                                    let iy = (oy * self.s.0 + ky * self.d.0) as isize
                                        - self.p.0 as isize;
                                    let ix = (ox * self.s.1 + kx * self.d.1) as isize
                                        - self.p.1 as isize;
                                    if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < self.h
                                        && (ix as usize) < self.w
                                    {
                                        f([
                                            n,
                                            o,
                                            oy,
                                            ox,
                                            gi * cg + ci,
                                            ci,
                                            ky,
                                            kx,
                                            iy as usize,
                                            ix as usize,
                                        ]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// dx[n, c, iy, ix] += w[o, ci, ky, kx] * dy[n, o, oy, ox] over every tap.
fn naive_input_grad(g: &Geom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (oh, ow) = g.out_hw();
    let cg = g.c / g.groups;
    let mut dx = vec![0.0f32; g.n * g.c * g.h * g.w];
    g.for_each_tap(|[n, o, oy, ox, c, ci, ky, kx, iy, ix]| {
        dx[((n * g.c + c) * g.h + iy) * g.w + ix] +=
            w[((o * cg + ci) * g.kh + ky) * g.kw + kx] * dy[((n * g.o + o) * oh + oy) * ow + ox];
    });
    dx
}

/// dw[o, ci, ky, kx] += x[n, c, iy, ix] * dy[n, o, oy, ox] over every tap.
fn naive_weight_grad(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (oh, ow) = g.out_hw();
    let cg = g.c / g.groups;
    let mut dw = vec![0.0f32; g.o * cg * g.kh * g.kw];
    g.for_each_tap(|[n, o, oy, ox, c, ci, ky, kx, iy, ix]| {
        dw[((o * cg + ci) * g.kh + ky) * g.kw + kx] +=
            x[((n * g.c + c) * g.h + iy) * g.w + ix] * dy[((n * g.o + o) * oh + oy) * ow + ox];
    });
    dw
}

/// Compare both kernels with the loops; `atol` grows with the taps summed per output
/// (f32 rounding in the GEMM).
fn check(g: Geom, kinds: [Kind; 3], seed: u64, atol: f64) {
    let (oh, ow) = g.out_hw();
    let x = make(&[g.n, g.c, g.h, g.w], kinds[0], seed);
    let w = make(&[g.o, g.c / g.groups, g.kh, g.kw], kinds[1], seed ^ 1);
    let dy = make(&[g.n, g.o, oh, ow], kinds[2], seed ^ 2);
    let dx = dy
        .conv2d_backward_input(&w, (g.h, g.w), g.s, g.p, g.d, g.groups)
        .unwrap();
    assert_eq!(dx.dims(), &[g.n, g.c, g.h, g.w]);
    let want = naive_input_grad(&g, &dy.to_vec().unwrap(), &w.to_vec().unwrap());
    assert_close(
        &dx.to_vec().unwrap(),
        &want,
        atol,
        1e-4,
        &format!("dx {g:?}"),
    );
    let dw = x
        .conv2d_backward_weight(&dy, (g.kh, g.kw), g.s, g.p, g.d, g.groups)
        .unwrap();
    assert_eq!(dw.dims(), w.dims());
    let want = naive_weight_grad(&g, &x.to_vec().unwrap(), &dy.to_vec().unwrap());
    assert_close(
        &dw.to_vec().unwrap(),
        &want,
        atol,
        1e-4,
        &format!("dw {g:?}"),
    );
}

fn geom() -> impl Strategy<Value = Geom> {
    (
        (0..=2usize, 1..=3usize, 1..=3usize, 1..=3usize),
        (1..=3usize, 1..=3usize, 1..=7usize, 1..=7usize),
        (
            1..=3usize,
            1..=2usize,
            0..=2usize,
            0..=1usize,
            1..=2usize,
            1..=2usize,
        ),
    )
        .prop_map(
            |((n, groups, cg, og), (kh, kw, h, w), (sh, sw, ph, pw, dh, dw))| {
                let h = h.max((dh * (kh - 1) + 1).saturating_sub(2 * ph));
                let w = w.max((dw * (kw - 1) + 1).saturating_sub(2 * pw));
                Geom {
                    n,
                    c: cg * groups,
                    h,
                    w,
                    o: og * groups,
                    kh,
                    kw,
                    s: (sh, sw),
                    p: (ph, pw),
                    d: (dh, dw),
                    groups,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn conv_backward_matches_naive(g in geom(), k in [kind(), kind(), kind()], seed in any::<u64>()) {
        check(g, k, seed, 1e-5);
    }

    #[test]
    fn index_add_matches_naive(
        d in proptest::collection::vec(1..=4usize, 1..=3),
        pick in any::<usize>(),
        raw in proptest::collection::vec(any::<usize>(), 0..6),
        kinds in [kind(), kind()],
        seed in any::<u64>(),
    ) {
        let dim = pick % d.len();
        let ids: Vec<usize> = raw.iter().map(|r| r % d[dim]).collect();
        let mut sd = d.clone();
        sd[dim] = ids.len();
        let base = make(&d, kinds[0], seed);
        let src = make(&sd, kinds[1], seed ^ 1);
        let out = base.index_add(dim as isize, &ids, &src).unwrap();
        let mut want = base.to_vec().unwrap();
        let sv = src.to_vec().unwrap();
        let inner: usize = d[dim + 1..].iter().product();
        for (p, &v) in sv.iter().enumerate() {
            let (outer, rest) = (p / (ids.len() * inner), p % (ids.len() * inner));
            let (i, k) = (rest / inner, rest % inner);
            want[(outer * d[dim] + ids[i]) * inner + k] += v;
        }
        prop_assert_eq!(out.dims(), d.as_slice());
        assert_close(&out.to_vec().unwrap(), &want, 1e-6, 1e-6, "index_add");
    }
}

/// 32 channels of 40x40 with a 3x3 kernel: patches of K = 288, so tiles of
/// 2^18 / 288 = 910 of the 1600 output pixels: two column tiles, the second short.
#[test]
fn conv_backward_tiled() {
    let g = Geom {
        n: 2,
        c: 32,
        h: 40,
        w: 40,
        o: 4,
        kh: 3,
        kw: 3,
        s: (1, 1),
        p: (1, 1),
        d: (1, 1),
        groups: 1,
    };
    // dW sums 2 * 40 * 40 products per element, each below 1: f32 rounding stays
    // well below 3200 * 1e-7.
    check(
        g,
        [Kind::Permuted, Kind::Contiguous, Kind::Sliced],
        42,
        5e-4,
    );
}

/// Three small images with 8 channels per group: the batched channels-last path
/// (`conv_nhwc`), on permuted and sliced inputs.
#[test]
fn conv_backward_batched_channels_last() {
    let g = Geom {
        n: 3,
        c: 16,
        h: 9,
        w: 7,
        o: 10,
        kh: 3,
        kw: 3,
        s: (2, 2),
        p: (1, 1),
        d: (1, 1),
        groups: 2,
    };
    check(g, [Kind::Permuted, Kind::Sliced, Kind::Permuted], 7, 1e-4);
}

/// Each input pixel of a 3x3 image gets the number of 2x2 windows covering it.
#[test]
fn conv_backward_input_counts_windows() {
    let dy = Tensor::ones([1, 1, 2, 2]);
    let w = Tensor::ones([1, 1, 2, 2]);
    let dx = dy
        .conv2d_backward_input(&w, (3, 3), (1, 1), (0, 0), (1, 1), 1)
        .unwrap();
    assert_eq!(
        dx.to_vec().unwrap(),
        vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]
    );
}

#[test]
fn conv_backward_errors() {
    let dy = Tensor::ones([1, 1, 2, 2]);
    let w = Tensor::ones([1, 1, 2, 2]);
    let x = Tensor::ones([1, 1, 3, 3]);
    // grad_out of the wrong spatial size for a 4x4 input
    assert!(
        err_of(dy.conv2d_backward_input(&w, (4, 4), (1, 1), (0, 0), (1, 1), 1))
            .contains("grad_out")
    );
    assert!(err_of(Tensor::ones([2, 2]).conv2d_backward_input(
        &w,
        (3, 3),
        (1, 1),
        (0, 0),
        (1, 1),
        1
    ))
    .contains("(N, O, H', W')"));
    assert!(err_of(x.conv2d_backward_weight(
        &Tensor::ones([1, 1, 3, 3]),
        (2, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        1
    ))
    .contains("grad_out"));
    assert!(
        err_of(x.conv2d_backward_weight(&dy, (2, 2), (1, 1), (0, 0), (1, 1), 0)).contains("groups")
    );
    assert!(
        err_of(Tensor::zeros([3]).index_add(0, &[3], &Tensor::ones([1]))).contains("out of range")
    );
    assert!(err_of(Tensor::zeros([3]).index_add(0, &[0], &Tensor::ones([2]))).contains("source"));
}
