//! Gradient checks for the layer ops: `conv2d` (stride, padding, dilation, groups,
//! bias, unbatched input), `group_norm`, `layer_norm`, `embedding`,
//! `index_select`, `upsample_nearest2d` and `pad`, over random shapes and leaf
//! layouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use autodiff::Var;
use common::*;
use proptest::prelude::*;
use tensor::Tensor;

#[derive(Clone, Debug)]
struct Conv {
    x: Vec<usize>,
    w: Vec<usize>,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    bias: bool,
    unbatched: bool,
}

fn conv_case() -> impl Strategy<Value = Conv> {
    (
        (1..=2usize, 1..=2usize, 1..=2usize, 1..=2usize),
        (1..=3usize, 1..=3usize, 1..=6usize, 1..=6usize),
        (
            1..=2usize,
            1..=2usize,
            0..=1usize,
            0..=1usize,
            1..=2usize,
            1..=2usize,
        ),
        (any::<bool>(), prop::bool::weighted(0.2)),
    )
        .prop_map(
            |((n, groups, cg, og), (kh, kw, h, w), (sh, sw, ph, pw, dh, dw), (bias, unb))| {
                // Grow the input until the dilated kernel fits inside the padded input.
                let h = h.max((dh * (kh - 1) + 1).saturating_sub(2 * ph));
                let w = w.max((dw * (kw - 1) + 1).saturating_sub(2 * pw));
                let unbatched = unb && n == 1;
                let x = if unbatched {
                    vec![cg * groups, h, w]
                } else {
                    vec![n, cg * groups, h, w]
                };
                Conv {
                    x,
                    w: vec![og * groups, cg, kh, kw],
                    stride: (sh, sw),
                    padding: (ph, pw),
                    dilation: (dh, dw),
                    groups,
                    bias,
                    unbatched,
                }
            },
        )
}

/// The smallest standard deviation over the groups of `m` consecutive elements.
fn min_group_std(x: &Tensor, m: usize) -> f32 {
    let v = x.to_vec().unwrap();
    v.chunks(m)
        .map(|g| {
            let mean = g.iter().sum::<f32>() / m as f32;
            (g.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / m as f32).sqrt()
        })
        .fold(f32::INFINITY, f32::min)
}

proptest! {
    #![proptest_config(config(40))]

    #[test]
    fn conv2d(c in conv_case().prop_flat_map(|c| {
        let o = c.w[0];
        (Just(c.clone()), leaf(c.x.clone()), leaf(c.w.clone()), leaf(vec![o]))
    })) {
        let (c, x, w, b) = c;
        let what = format!("conv2d {c:?}");
        let mut inputs = vec![x, w];
        if c.bias {
            inputs.push(b);
        }
        let out = check_gradients(&what, &inputs, |v| {
            v[0].conv2d(&v[1], v.get(2), c.stride, c.padding, c.dilation, c.groups)
        });
        prop_assert_eq!(out[0].rank(), if c.unbatched { 3 } else { 4 });
    }

    #[test]
    fn group_norm(
        (n, groups, cg, spatial) in (1..=2usize, 1..=3usize, 1..=2usize, dims(0, 2, 3)),
        affine in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let c = groups * cg;
        let xd = [vec![n, c], spatial.clone()].concat();
        let m = cg * spatial.iter().product::<usize>();
        prop_assume!(m >= 2);
        let rec = LayoutRecipe::of_kind([Kind::Permuted, Kind::Sliced, Kind::Broadcast][seed as usize % 3], xd.len(), seed);
        let x = map_storage(&build(&xd, &rec), |v| 2.0 * v);
        prop_assume!(min_group_std(&x, m) > 0.25);
        let w = map_storage(&build(&[c], &LayoutRecipe::contiguous(1, seed ^ 3)), |v| v + 1.5);
        let b = build(&[c], &LayoutRecipe::of_kind(Kind::Sliced, 1, seed ^ 5));
        let inputs = if affine { vec![x, w, b] } else { vec![x] };
        check_gradients("group_norm", &inputs, |v| {
            v[0].group_norm(groups, v.get(1), v.get(2), 1e-5)
        });
    }

    #[test]
    fn layer_norm(
        d in dims(1, 4, 4),
        k_pick in any::<usize>(),
        affine in 0..3usize,
        seed in any::<u64>(),
    ) {
        let k = 1 + k_pick % d.len();
        let ns = d[d.len() - k..].to_vec();
        let m: usize = ns.iter().product();
        prop_assume!(m >= 2);
        let rec = LayoutRecipe::of_kind([Kind::Permuted, Kind::Sliced, Kind::Contiguous][seed as usize % 3], d.len(), seed);
        let x = map_storage(&build(&d, &rec), |v| 2.0 * v);
        prop_assume!(min_group_std(&x, m) > 0.25);
        let w = build(&ns, &LayoutRecipe::of_kind(Kind::Permuted, k, seed ^ 9));
        let b = build(&ns, &LayoutRecipe::of_kind(Kind::Broadcast, k, seed ^ 11));
        // affine: 0 = none, 1 = weight only, 2 = weight and bias
        let inputs = [vec![x], vec![w], vec![b]].concat()[..=affine].to_vec();
        check_gradients("layer_norm", &inputs, |v| v[0].layer_norm(&ns, v.get(1), v.get(2), 1e-5));
    }

    #[test]
    fn embedding(
        w in (1..=5usize, 1..=4usize).prop_flat_map(|(v, d)| leaf(vec![v, d])),
        (a, b) in (0..=3usize, 1..=3usize),
        raw in proptest::collection::vec(any::<usize>(), 9),
    ) {
        let vocab = w.dims()[0];
        let ids: Vec<usize> = raw[..a * b].iter().map(|r| r % vocab).collect();
        check_gradients("embedding", &[w], |v| Var::embedding_with_shape(&v[0], &ids, &[a, b]));
    }

    #[test]
    fn index_select(
        x in any_leaf(1, 3, 4),
        pick in any::<usize>(),
        raw in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let dim = pick % x.rank();
        let ids: Vec<usize> = raw.iter().map(|r| r % x.dims()[dim]).collect();
        check_gradients("index_select", &[x], |v| v[0].index_select(dim as isize, &ids));
    }

    #[test]
    fn upsample_nearest2d(x in any_leaf(3, 4, 4), oh in 1..=7usize, ow in 1..=7usize) {
        check_gradients("upsample_nearest2d", std::slice::from_ref(&x), |v| v[0].upsample_nearest2d(oh, ow));
        check_gradients("upsample_nearest2d_scale", &[x], |v| v[0].upsample_nearest2d_scale(2));
    }

    #[test]
    fn pad(
        x in any_leaf(1, 4, 3),
        pads in proptest::collection::vec((0..=2usize, 0..=2usize), 1..=4),
        value in -1.0f32..1.0,
    ) {
        let pads = &pads[..pads.len().min(x.rank())];
        check_gradients("pad", &[x], |v| v[0].pad(pads, value));
    }
}

/// Conv2d's three gradients at hand-computed values: a 3x3 input, a 2x2 kernel,
/// stride 2 and padding 1 (each output sees one corner block).
#[test]
fn conv2d_stride_padding_values() {
    let x = Var::leaf(
        Tensor::arange(1.0, 10.0, 1.0)
            .unwrap()
            .reshape([1, 1, 3, 3])
            .unwrap(),
    );
    let w = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]).unwrap());
    let y = x.conv2d(&w, None, (2, 2), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    let g = y.sum_all().unwrap().backward().unwrap();
    // Padded input rows/cols -1..=3; output (i, j) covers rows 2i-1..2i, cols 2j-1..2j.
    // Input pixel (r, c) meets kernel tap ((r+1)%2, (c+1)%2) exactly once.
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        vec![4.0, 3.0, 4.0, 2.0, 1.0, 2.0, 4.0, 3.0, 4.0]
    );
    // Tap (ky, kx) sums the input pixels with (r+1)%2 == ky, (c+1)%2 == kx:
    // (0,0): x[1][1] = 5; (0,1): x[1][0] + x[1][2] = 10; (1,0): 2 + 8 = 10; (1,1): 1+3+7+9 = 20.
    assert_eq!(
        g.get(&w).unwrap().to_vec().unwrap(),
        vec![5.0, 10.0, 10.0, 20.0]
    );
}

/// An empty batch: the output is empty and the weight and bias gradients are zero.
#[test]
fn conv2d_empty_batch() {
    let x = Var::leaf(Tensor::zeros([0, 2, 4, 4]));
    let w = Var::leaf(Tensor::ones([3, 2, 3, 3]));
    let b = Var::leaf(Tensor::ones([3]));
    let y = x.conv2d(&w, Some(&b), (1, 1), (1, 1), (1, 1), 1).unwrap();
    assert_eq!(y.dims(), &[0, 3, 4, 4]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().dims(), &[0, 2, 4, 4]);
    assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![0.0; 54]);
    assert_eq!(g.get(&b).unwrap().to_vec().unwrap(), vec![0.0; 3]);
}
