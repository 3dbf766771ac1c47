//! The wgpu kernels added for issue 6 against the CPU: argmax / argmin (ties, NaN,
//! dims longer than a workgroup), gather (index on the CPU or the GPU),
//! index_add (repeated indices), max / avg pool2d (stride, padding, NaN) and
//! reflect / replicate pad, on odd sizes (0, 1, primes) and permuted, sliced and
//! broadcast layouts (named kinds and proptest). Exact for argmax, gather, pad and
//! the max pool; 1e-4 for sums (see `common::gpu::max_diff`). Without an adapter
//! each test prints "skipped: no wgpu adapter" and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gpu::{assert_close, gpu, max_diff, same_layout, to};
use common::{any_tensor, build, Fill, Kind, LayoutRecipe};
use proptest::prelude::*;
use tensor::ops::resize::PadMode;
use tensor::{Device, Tensor};

const TOL: f32 = 1e-4;
/// Bitwise the same up to NaN payloads and the sign of zero.
const EXACT: f32 = 0.0;

const KINDS: [Kind; 4] = [
    Kind::Contiguous,
    Kind::Permuted,
    Kind::Sliced,
    Kind::Broadcast,
];

fn cases() -> ProptestConfig {
    ProptestConfig::with_cases(24)
}

/// A tensor of `dims` in layout `kind` with values from `fill`.
fn filled(dims: &[usize], kind: Kind, seed: u64, fill: Fill) -> Tensor {
    let mut r = LayoutRecipe::of_kind(kind, dims.len(), seed);
    r.fill = fill;
    build(dims, &r)
}

/// Both results equal (GPU within `tol` of the CPU) or both errors.
fn agree(what: &str, g: tensor::Result<Tensor>, c: tensor::Result<Tensor>, tol: f32) {
    match (g, c) {
        (Ok(g), Ok(c)) => assert_close(what, &g, &c, tol),
        (Err(_), Err(_)) => {}
        (g, c) => panic!("{what}: GPU {g:?} but CPU {c:?}"),
    }
}

#[test]
fn argmax_argmin_match_cpu() {
    let Some(d) = gpu("argmax_argmin_match_cpu") else {
        return;
    };
    let shapes: [&[usize]; 6] = [
        &[1],
        &[7],
        &[3, 5, 7],
        &[2, 1, 13],
        &[4, 0, 3],
        &[2, 3, 1031],
    ];
    for (s, dims) in shapes.iter().enumerate() {
        for kind in KINDS {
            for fill in [Fill::Ties, common::WIDE] {
                let x = filled(dims, kind, s as u64 + 3, fill);
                let g = same_layout(&d, &x);
                for dim in 0..dims.len() as isize {
                    for keep in [false, true] {
                        let what = format!("{dims:?} {kind:?} {fill:?} dim {dim} keep {keep}");
                        agree(
                            &format!("argmax {what}"),
                            g.argmax(dim, keep),
                            x.argmax(dim, keep),
                            EXACT,
                        );
                        agree(
                            &format!("argmin {what}"),
                            g.argmin(-dim - 1, keep),
                            x.argmin(-dim - 1, keep),
                            EXACT,
                        );
                    }
                }
            }
        }
    }
    // An empty dim is an error on both; NaN wins (the first one), infinities and
    // signed zeros tie as on the CPU; ties far apart in a long row.
    assert!(to(&d, &Tensor::zeros([2, 0])).argmax(1, false).is_err());
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let mut v = vec![0.0f32; 2 * 600];
    v[..8].copy_from_slice(&[-0.0, 0.0, inf, -inf, nan, 1.0, nan, inf]);
    v[600 + 599] = 5.0;
    v[600 + 300] = 5.0;
    v[600 + 3] = -inf;
    v[600 + 500] = -inf;
    let x = Tensor::from_vec(v, [2, 600]).unwrap();
    let g = to(&d, &x);
    for dim in [0, 1] {
        let what = format!("special values, dim {dim}");
        assert_close(
            &what,
            &g.argmax(dim, false).unwrap(),
            &x.argmax(dim, false).unwrap(),
            EXACT,
        );
        assert_close(
            &what,
            &g.argmin(dim, true).unwrap(),
            &x.argmin(dim, true).unwrap(),
            EXACT,
        );
    }
    assert_eq!(
        g.argmax(1, false).unwrap().to_vec().unwrap(),
        vec![4.0, 300.0]
    );
    assert_eq!(
        g.argmin(1, false).unwrap().to_vec().unwrap(),
        vec![4.0, 3.0]
    );
    // More outputs than a grid row holds (65,535 workgroups).
    let y = filled(&[70_001, 3], Kind::Contiguous, 9, Fill::Ties);
    assert_close(
        "many rows",
        &to(&d, &y).argmax(1, false).unwrap(),
        &y.argmax(1, false).unwrap(),
        EXACT,
    );
}

#[test]
fn gather_matches_cpu() {
    let Some(d) = gpu("gather_matches_cpu") else {
        return;
    };
    let dims = [5, 7, 3];
    for kind in KINDS {
        let x = common::make(&dims, kind, 21);
        let g = same_layout(&d, &x);
        for dim in 0..3 {
            // index dims: at most x's outside `dim`, any size along it.
            for (k, idims) in [[2, 3, 1], [5, 7, 3], [1, 1, 1], [4, 2, 3], [0, 2, 2]]
                .iter()
                .enumerate()
            {
                let mut idims = *idims;
                idims[dim] = [11, 1, 2, 0, 3][k];
                let n: usize = idims.iter().product();
                let size = dims[dim];
                let ids: Vec<f32> = (0..n).map(|i| ((i * 7 + k) % size) as f32).collect();
                let index = Tensor::from_vec(ids, idims.to_vec()).unwrap();
                let want = x.gather(dim as isize, &index).unwrap();
                let what = format!("gather {kind:?} dim {dim} index {idims:?}");
                // The index on the CPU (uploaded) or on the GPU, permuted.
                let got = g.gather(dim as isize, &index).unwrap();
                assert_close(&what, &got, &want, EXACT);
                let it = index.permute(&[2, 0, 1]).unwrap().contiguous().unwrap();
                let gi = same_layout(&d, &it).permute(&[1, 2, 0]).unwrap();
                let got = g.gather(dim as isize, &gi).unwrap();
                assert_close(&format!("{what} (GPU index)"), &got, &want, EXACT);
            }
        }
    }
    // Bad index values are errors naming them, on either device of the index.
    let g = to(&d, &Tensor::ones([2, 3]));
    for bad in [3.0, -1.0, 0.5, f32::NAN] {
        let idx = Tensor::from_vec(vec![0.0, bad], [2, 1]).unwrap();
        let e = g.gather(1, &idx).unwrap_err().to_string();
        assert!(e.contains("index value"), "{e}");
        assert!(g.gather(1, &to(&d, &idx)).is_err());
    }
}

#[test]
fn index_add_matches_cpu() {
    let Some(d) = gpu("index_add_matches_cpu") else {
        return;
    };
    let dims = [5, 4, 3];
    for kind in KINDS {
        let x = common::make(&dims, kind, 31);
        let g = same_layout(&d, &x);
        for dim in 0..3 {
            let size = dims[dim];
            let lists: [Vec<usize>; 4] = [
                vec![],
                vec![size - 1],
                (0..size).rev().collect(),
                (0..13).map(|i| (i * 5 + 1) % size).collect(),
            ];
            for ids in &lists {
                let mut sdims = dims;
                sdims[dim] = ids.len();
                let src = common::make(&sdims, kind, 40 + ids.len() as u64);
                let want = x.index_add(dim as isize, ids, &src).unwrap();
                let what = format!("index_add {kind:?} dim {dim} ids {ids:?}");
                let got = g.index_add(dim as isize, ids, &src).unwrap();
                assert_close(&what, &got, &want, TOL);
                let got = g.index_add(dim as isize, ids, &same_layout(&d, &src));
                assert_close(&format!("{what} (GPU source)"), &got.unwrap(), &want, TOL);
            }
        }
    }
    // Empty tensors, and the embedding backward shape: a big table, few rows hit.
    let e = to(&d, &Tensor::zeros([0, 3]));
    let got = e.index_add(1, &[2, 2], &Tensor::zeros([0, 2])).unwrap();
    assert_eq!(got.dims(), &[0, 3]);
    let w = Tensor::zeros([1009, 16]);
    let ids: Vec<usize> = (0..77).map(|i| (i * 131) % 1009).chain([5, 5, 5]).collect();
    let src = common::make(&[80, 16], Kind::Contiguous, 50);
    let want = w.index_add(0, &ids, &src).unwrap();
    assert_close(
        "embedding backward",
        &to(&d, &w).index_add(0, &ids, &src).unwrap(),
        &want,
        TOL,
    );
    assert!(to(&d, &w)
        .index_add(0, &[1009], &Tensor::zeros([1, 16]))
        .is_err());
}

#[test]
fn pool2d_matches_cpu() {
    let Some(d) = gpu("pool2d_matches_cpu") else {
        return;
    };
    // (n, c, h, w, kernel, stride, padding)
    let cases = [
        (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
        (2, 3, 7, 9, (2, 2), (2, 2), (0, 0)),
        (1, 2, 11, 13, (3, 3), (2, 2), (1, 1)),
        (2, 1, 5, 7, (3, 2), (1, 3), (1, 0)),
        (1, 3, 8, 8, (5, 5), (3, 3), (2, 2)),
        (3, 2, 17, 4, (4, 1), (4, 1), (2, 0)),
        (0, 2, 5, 5, (2, 2), (2, 2), (0, 0)),
    ];
    for (i, &(n, c, h, w, k, s, p)) in cases.iter().enumerate() {
        for kind in KINDS {
            let x = common::make(&[n, c, h, w], kind, 60 + i as u64);
            let g = same_layout(&d, &x);
            let what = format!("case {i} {kind:?}");
            agree(
                &format!("max {what}"),
                g.max_pool2d(k, s, p),
                x.max_pool2d(k, s, p),
                EXACT,
            );
            agree(
                &format!("avg {what}"),
                g.avg_pool2d(k, s, p),
                x.avg_pool2d(k, s, p),
                TOL,
            );
        }
    }
    // Unbatched (C, H, W); NaN wins the max; bad geometry is an error on both.
    let mut v = common::values(2 * 6 * 5, 70);
    v[7] = f32::NAN;
    let x = Tensor::from_vec(v, [2, 6, 5]).unwrap();
    let g = to(&d, &x);
    let got = g.max_pool2d((2, 2), (2, 2), (1, 1)).unwrap();
    assert_close(
        "max NaN",
        &got,
        &x.max_pool2d((2, 2), (2, 2), (1, 1)).unwrap(),
        EXACT,
    );
    assert!(got.to_vec().unwrap().iter().any(|v| v.is_nan()));
    let got = g.avg_pool2d((3, 3), (1, 1), (1, 1)).unwrap();
    assert_close(
        "avg NaN",
        &got,
        &x.avg_pool2d((3, 3), (1, 1), (1, 1)).unwrap(),
        TOL,
    );
    assert!(g.max_pool2d((2, 2), (1, 1), (2, 2)).is_err());
    assert!(g.avg_pool2d((9, 2), (1, 1), (0, 0)).is_err());
}

#[test]
fn reflect_and_replicate_pad_match_cpu() {
    let Some(d) = gpu("reflect_and_replicate_pad_match_cpu") else {
        return;
    };
    let shapes: [&[usize]; 5] = [&[1], &[7], &[2, 3, 5], &[1, 2, 6, 11], &[3, 0, 4]];
    let pads: [&[(usize, usize)]; 5] = [
        &[],
        &[(0, 0)],
        &[(1, 2)],
        &[(2, 0), (0, 1)],
        &[(3, 3), (1, 1), (1, 0)],
    ];
    for (s, dims) in shapes.iter().enumerate() {
        for kind in KINDS {
            let x = common::make(dims, kind, 80 + s as u64);
            let g = same_layout(&d, &x);
            for p in pads.iter().filter(|p| p.len() <= dims.len()) {
                for mode in [
                    PadMode::Reflect,
                    PadMode::Replicate,
                    PadMode::Constant(-1.5),
                ] {
                    let what = format!("{mode:?} {dims:?} {kind:?} pads {p:?}");
                    agree(&what, g.pad_with(p, mode), x.pad_with(p, mode), EXACT);
                }
            }
        }
    }
    // The VAE's asymmetric (0, 1) pad, and a rank-0 tensor (nothing to pad).
    let x = common::make(&[1, 3, 9, 9], Kind::Permuted, 90);
    let g = same_layout(&d, &x);
    for mode in [PadMode::Reflect, PadMode::Replicate] {
        let want = x.pad_with(&[(0, 1), (0, 1)], mode).unwrap();
        assert_close(
            "vae pad",
            &g.pad_with(&[(0, 1), (0, 1)], mode).unwrap(),
            &want,
            EXACT,
        );
    }
    let s = to(&d, &Tensor::scalar(2.0));
    assert_eq!(
        s.pad_with(&[], PadMode::Reflect).unwrap().to_vec().unwrap(),
        vec![2.0]
    );
    // Reflect needs each pad smaller than the dim, on the GPU too.
    let e = to(&d, &Tensor::ones([3])).pad_with(&[(3, 0)], PadMode::Reflect);
    assert!(e.unwrap_err().to_string().contains("reflect"));
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn argmax_matches_cpu_on_any_layout(x in any_tensor(4, 7), dim in 0usize..4, keep in any::<bool>(), max in any::<bool>()) {
        let Some(d) = gpu("argmax_matches_cpu_on_any_layout") else { return Ok(()) };
        prop_assume!(x.rank() > 0);
        let dim = (dim % x.rank()) as isize;
        let g = same_layout(&d, &x);
        let (got, want) = if max {
            (g.argmax(dim, keep), x.argmax(dim, keep))
        } else {
            (g.argmin(dim, keep), x.argmin(dim, keep))
        };
        match (got, want) {
            (Ok(got), Ok(want)) => prop_assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap()),
            (got, want) => prop_assert!(got.is_err() && want.is_err()),
        }
    }

    #[test]
    fn pad_matches_cpu_on_any_layout(x in any_tensor(4, 6), raw in proptest::collection::vec((0usize..4, 0usize..4), 0..4), mode in 0u8..3) {
        let Some(d) = gpu("pad_matches_cpu_on_any_layout") else { return Ok(()) };
        let pads: Vec<(usize, usize)> = raw.into_iter().take(x.rank()).collect();
        let mode = [PadMode::Reflect, PadMode::Replicate, PadMode::Constant(0.25)][mode as usize];
        let g = same_layout(&d, &x);
        match (g.pad_with(&pads, mode), x.pad_with(&pads, mode)) {
            (Ok(got), Ok(want)) => {
                prop_assert_eq!(got.dims(), want.dims());
                prop_assert!(max_diff(&got.to_vec().unwrap(), &want.to_vec().unwrap()) == 0.0);
            }
            (got, want) => prop_assert!(got.is_err() && want.is_err()),
        }
    }

    #[test]
    fn gather_and_index_add_match_cpu_on_any_layout(x in any_tensor(3, 6), dim in 0usize..3, seed in any::<u64>()) {
        let Some(d) = gpu("gather_and_index_add_match_cpu_on_any_layout") else { return Ok(()) };
        prop_assume!(x.rank() > 0);
        let dim = dim % x.rank();
        let size = x.dims()[dim];
        let g = same_layout(&d, &x);
        let mut rng = common::Lcg::new(seed);
        let len = (rng.next_u64() % 9) as usize;
        let ids: Vec<usize> = if size == 0 { vec![] } else {
            (0..len).map(|_| (rng.next_u64() >> 33) as usize % size).collect()
        };
        // gather with an index as big as x outside `dim`, `len` along it.
        let mut idims = x.dims().to_vec();
        idims[dim] = if size == 0 { 0 } else { len };
        let n: usize = idims.iter().product();
        let vals: Vec<f32> = (0..n).map(|_| ((rng.next_u64() >> 33) as usize % size.max(1)) as f32).collect();
        let index = Tensor::from_vec(vals, idims).unwrap();
        let want = x.gather(dim as isize, &index).unwrap();
        let got = g.gather(dim as isize, &index).unwrap();
        prop_assert!(got.is_gpu());
        prop_assert!(max_diff(&got.to_vec().unwrap(), &want.to_vec().unwrap()) == 0.0);
        // index_add of a source in a random layout.
        let mut sdims = x.dims().to_vec();
        sdims[dim] = ids.len();
        let src = build(&sdims, &LayoutRecipe::of_kind(KINDS[(seed % 4) as usize], sdims.len(), seed));
        let want = x.index_add(dim as isize, &ids, &src).unwrap();
        let got = g.index_add(dim as isize, &ids, &same_layout(&d, &src)).unwrap();
        prop_assert!(got.is_gpu());
        prop_assert!(max_diff(&got.to_vec().unwrap(), &want.to_vec().unwrap()) <= TOL);
    }

    #[test]
    fn pool2d_matches_cpu_on_any_layout(
        (n, c, h, w) in (0usize..3, 1usize..4, 1usize..12, 1usize..12),
        (kh, kw, sh, sw) in (1usize..5, 1usize..5, 1usize..4, 1usize..4),
        (ph, pw) in (0usize..3, 0usize..3),
        kind in common::kind(),
        seed in any::<u64>(),
    ) {
        let Some(d) = gpu("pool2d_matches_cpu_on_any_layout") else { return Ok(()) };
        let x = filled(&[n, c, h, w], kind, seed, common::WIDE);
        let g = same_layout(&d, &x);
        let (k, s, p) = ((kh, kw), (sh, sw), (ph, pw));
        for (got, want, tol) in [
            (g.max_pool2d(k, s, p), x.max_pool2d(k, s, p), EXACT),
            (g.avg_pool2d(k, s, p), x.avg_pool2d(k, s, p), TOL),
        ] {
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    prop_assert_eq!(got.dims(), want.dims());
                    prop_assert!(max_diff(&got.to_vec().unwrap(), &want.to_vec().unwrap()) <= tol);
                }
                (got, want) => prop_assert!(got.is_err() && want.is_err()),
            }
        }
    }
}

/// Results stay on the GPU for the next op, and `Device` survives the trip.
#[test]
fn outputs_stay_on_the_gpu() {
    let Some(d) = gpu("outputs_stay_on_the_gpu") else {
        return;
    };
    let g = to(&d, &common::make(&[1, 2, 6, 6], Kind::Contiguous, 99));
    let y = g
        .pad_with(&[(1, 1), (1, 1)], PadMode::Reflect)
        .unwrap()
        .max_pool2d((2, 2), (2, 2), (0, 0))
        .unwrap()
        .avg_pool2d((2, 2), (1, 1), (1, 1))
        .unwrap();
    let a = y.argmax(3, true).unwrap();
    let v = y.gather(3, &a).unwrap();
    let src = y.narrow(2, 0, 4).unwrap().narrow(3, 0, 1).unwrap();
    let z = v.index_add(2, &[0, 0, 1, 3], &src).unwrap();
    for t in [&y, &a, &v, &z] {
        assert!(t.is_gpu() && t.device() == d);
    }
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    let yc = cpu(&y);
    let ac = yc.argmax(3, true).unwrap();
    assert_eq!(a.to_vec().unwrap(), ac.to_vec().unwrap());
    assert_eq!(
        v.to_vec().unwrap(),
        yc.gather(3, &ac).unwrap().to_vec().unwrap()
    );
}
