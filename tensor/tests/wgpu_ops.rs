//! The wgpu backend against the CPU, op by op: every unary and binary op, scalar
//! ops, where, strided copy, reductions, softmax and the matmul ladder, on
//! contiguous, permuted, sliced and broadcast layouts (proptest), odd sizes (0, 1,
//! primes, not a multiple of the tile). Tolerance 1e-4 (relative above 1; see
//! `common::gpu::max_diff`). Without an adapter each test prints
//! "skipped: no wgpu adapter" and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gpu::{assert_close, gpu, max_diff, same_layout, to};
use common::{any_tensor, build, dims, make, operand_dims, recipe, Kind};
use proptest::prelude::*;
use tensor::ops::binary::BinaryOp;
use tensor::ops::unary::UnaryOp;
use tensor::wgpu::matmul::{
    matmul_body, matmul_tiles, matmul_vec4, matmul_with, vec4_ok, MatmulKernel, Tiles,
};
use tensor::{Device, Tensor};

const TOL: f32 = 1e-4;

fn cases() -> ProptestConfig {
    ProptestConfig::with_cases(24)
}

#[test]
fn upload_download_round_trip_and_device() {
    let Some(d) = gpu("upload_download_round_trip_and_device") else {
        return;
    };
    for n in [0usize, 1, 7, 1000, 65_537] {
        let x = Tensor::from_vec(common::values(n, n as u64), [n]).unwrap();
        let g = to(&d, &x);
        assert!(g.is_gpu() && g.device() == d);
        assert_eq!(g.to_vec().unwrap(), x.to_vec().unwrap(), "n = {n}");
        let back = g.to_device(&Device::Cpu).unwrap();
        assert!(!back.is_gpu());
        assert_eq!(back.to_vec().unwrap(), x.to_vec().unwrap());
    }
    // cpu_storage refuses a GPU tensor with a message naming the fix.
    let g = to(&d, &Tensor::ones([2]));
    let e = g.cpu_storage().unwrap_err().to_string();
    assert!(e.contains("to_device"), "{e}");
}

#[test]
fn every_unary_op_on_every_layout() {
    let Some(d) = gpu("every_unary_op_on_every_layout") else {
        return;
    };
    for kind in [
        Kind::Contiguous,
        Kind::Permuted,
        Kind::Sliced,
        Kind::Broadcast,
    ] {
        let x = make(&[3, 5, 7], kind, 11);
        let g = same_layout(&d, &x);
        for op in UnaryOp::ALL {
            let what = format!("{} on {kind:?}", op.name());
            assert_close(&what, &op.map(&g).unwrap(), &op.map(&x).unwrap(), TOL);
        }
        assert_close("erf", &g.erf().unwrap(), &x.erf().unwrap(), TOL);
        assert_close(
            "affine",
            &g.affine(2.5, -1.0).unwrap(),
            &x.affine(2.5, -1.0).unwrap(),
            TOL,
        );
        assert_close(
            "add_scalar",
            &g.add_scalar(0.5).unwrap(),
            &x.add_scalar(0.5).unwrap(),
            TOL,
        );
        assert_close(
            "mul_scalar",
            &g.mul_scalar(-3.0).unwrap(),
            &x.mul_scalar(-3.0).unwrap(),
            TOL,
        );
        assert_close(
            "clamp",
            &g.clamp(-0.5, 0.7).unwrap(),
            &x.clamp(-0.5, 0.7).unwrap(),
            0.0,
        );
        for e in [2.0, 3.0, 0.5, -1.0, 1.7] {
            let what = format!("powf {e}");
            assert_close(&what, &g.powf(e).unwrap(), &x.powf(e).unwrap(), TOL);
        }
    }
}

#[test]
fn strided_copy_of_views() {
    let Some(d) = gpu("strided_copy_of_views") else {
        return;
    };
    let x = Tensor::from_vec(common::values(2 * 3 * 4 * 5, 3), [2, 3, 4, 5]).unwrap();
    let g = to(&d, &x);
    let views = |t: &Tensor| {
        vec![
            t.permute(&[3, 1, 0, 2]).unwrap(),
            t.narrow(2, 1, 2).unwrap().transpose(0, 3).unwrap(),
            t.narrow(0, 1, 1)
                .unwrap()
                .broadcast_as([3, 1, 3, 4, 5])
                .unwrap(),
        ]
    };
    for (gv, cv) in views(&g).iter().zip(views(&x)) {
        let gc = gv.contiguous().unwrap();
        assert!(gc.is_contiguous() && gc.is_gpu());
        assert_eq!(gc.to_vec().unwrap(), cv.to_vec().unwrap());
        assert_eq!(
            gv.reshape([gv.numel()]).unwrap().to_vec().unwrap(),
            cv.to_vec().unwrap()
        );
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn unary_matches_cpu_on_any_layout(x in any_tensor(4, 6), i in 0usize..15) {
        let Some(d) = gpu("unary_matches_cpu_on_any_layout") else { return Ok(()) };
        let op = UnaryOp::ALL[i];
        let g = same_layout(&d, &x);
        let diff = max_diff(&op.map(&g).unwrap().to_vec().unwrap(), &op.map(&x).unwrap().to_vec().unwrap());
        prop_assert!(diff <= TOL, "{} diff {diff}", op.name());
    }

    #[test]
    fn binary_matches_cpu_with_broadcasting(
        (a, b) in dims(4, 5).prop_flat_map(|out| {
            (Just(out.clone()), operand_dims(out))
        }).prop_flat_map(|(da, db)| (recipe(da.len()).prop_map(move |r| build(&da, &r)),
                                       recipe(db.len()).prop_map(move |r| build(&db, &r)))),
        i in 0usize..13,
        swap in any::<bool>(),
    ) {
        let Some(d) = gpu("binary_matches_cpu_with_broadcasting") else { return Ok(()) };
        let op = BinaryOp::ALL[i];
        let (a, b) = if swap { (b, a) } else { (a, b) };
        let (ga, gb) = (same_layout(&d, &a), same_layout(&d, &b));
        let want = op.zip(&a, &b).unwrap();
        let got = op.zip(&ga, &gb).unwrap();
        prop_assert_eq!(got.dims(), want.dims());
        let diff = max_diff(&got.to_vec().unwrap(), &want.to_vec().unwrap());
        prop_assert!(diff <= TOL, "{} diff {diff}", op.name());
        // A CPU operand is uploaded on the way.
        let mixed = op.zip(&ga, &b).unwrap();
        prop_assert!(mixed.is_gpu());
        prop_assert!(max_diff(&mixed.to_vec().unwrap(), &want.to_vec().unwrap()) <= TOL);
    }

    #[test]
    fn reductions_match_cpu(x in any_tensor(4, 6), mask in 0u8..16, keep in any::<bool>()) {
        let Some(d) = gpu("reductions_match_cpu") else { return Ok(()) };
        let dims: Vec<isize> = (0..x.rank()).filter(|i| mask >> i & 1 == 1).map(|i| i as isize).collect();
        let g = same_layout(&d, &x);
        let empty = x.numel() == 0;
        prop_assert!(max_diff(&g.sum(&dims, keep).unwrap().to_vec().unwrap(),
                              &x.sum(&dims, keep).unwrap().to_vec().unwrap()) <= TOL);
        prop_assert!(max_diff(&g.mean(&dims, keep).unwrap().to_vec().unwrap(),
                              &x.mean(&dims, keep).unwrap().to_vec().unwrap()) <= TOL);
        if !empty {
            prop_assert_eq!(g.max(&dims, keep).unwrap().to_vec().unwrap(), x.max(&dims, keep).unwrap().to_vec().unwrap());
            prop_assert_eq!(g.min(&dims, keep).unwrap().to_vec().unwrap(), x.min(&dims, keep).unwrap().to_vec().unwrap());
            prop_assert!(max_diff(&g.var(&dims, 1, keep).unwrap().to_vec().unwrap(),
                                  &x.var(&dims, 1, keep).unwrap().to_vec().unwrap()) <= TOL);
        }
    }

    #[test]
    fn softmax_matches_cpu(x in any_tensor(4, 7), dim in 0usize..4, log in any::<bool>()) {
        let Some(d) = gpu("softmax_matches_cpu") else { return Ok(()) };
        prop_assume!(x.rank() > 0);
        let dim = (dim % x.rank()) as isize;
        let g = same_layout(&d, &x);
        let (got, want) = if log {
            (g.log_softmax(dim).unwrap(), x.log_softmax(dim).unwrap())
        } else {
            (g.softmax(dim).unwrap(), x.softmax(dim).unwrap())
        };
        prop_assert!(max_diff(&got.to_vec().unwrap(), &want.to_vec().unwrap()) <= TOL);
    }
}

#[test]
fn where_cond_and_big_reductions() {
    let Some(d) = gpu("where_cond_and_big_reductions") else {
        return;
    };
    let c = Tensor::from_slice(&[1.0, 0.0, f32::NAN], [3, 1]).unwrap();
    let t = Tensor::from_slice(&[1.0, 2.0], [2]).unwrap();
    let f = Tensor::from_slice(&[-1.0], [1]).unwrap();
    let got = to(&d, &c).where_cond(&to(&d, &t), &f).unwrap();
    assert_eq!(
        got.to_vec().unwrap(),
        c.where_cond(&t, &f).unwrap().to_vec().unwrap()
    );
    // A long sum: 256 threads fold 100,003 values each way.
    let x = Tensor::from_vec(common::values(3 * 100_003, 5), [3, 100_003]).unwrap();
    let g = to(&d, &x);
    assert_close(
        "long sum",
        &g.sum(&[1], false).unwrap(),
        &x.sum(&[1], false).unwrap(),
        1e-3,
    );
    assert_close(
        "column sum",
        &g.sum(&[0], false).unwrap(),
        &x.sum(&[0], false).unwrap(),
        TOL,
    );
    // More outputs than a grid row holds (65,535 workgroups).
    let y = Tensor::from_vec(common::values(70_001 * 3, 9), [70_001, 3]).unwrap();
    assert_close(
        "many rows",
        &to(&d, &y).sum(&[1], false).unwrap(),
        &y.sum(&[1], false).unwrap(),
        TOL,
    );
    assert_close(
        "many rows softmax",
        &to(&d, &y).softmax(1).unwrap(),
        &y.softmax(1).unwrap(),
        TOL,
    );
}

/// Every rung of the ladder on sizes around and off its tiles, on transposed,
/// sliced and batch-broadcast operands.
#[test]
fn matmul_ladder_matches_cpu() {
    let Some(d) = gpu("matmul_ladder_matches_cpu") else {
        return;
    };
    let shapes = [
        (1, 1, 1),
        (2, 3, 4),
        (7, 13, 5),
        (16, 16, 16),
        (17, 31, 65),
        (64, 64, 64),
        (65, 129, 67),
        (130, 7, 200),
        (3, 0, 5),
        (4, 5, 0),
    ];
    for &(m, k, n) in &shapes {
        let a = Tensor::from_vec(common::values(m * k, 1), [m, k]).unwrap();
        let b = Tensor::from_vec(common::values(k * n, 2), [k, n]).unwrap();
        let bt = Tensor::from_vec(common::values(k * n, 3), [n, k])
            .unwrap()
            .t()
            .unwrap();
        let want = a.matmul(&b).unwrap();
        let want_t = a.matmul(&bt).unwrap();
        let (ga, gb, gbt) = (to(&d, &a), to(&d, &b), same_layout(&d, &bt));
        for kernel in MatmulKernel::ALL {
            let what = format!("{kernel:?} {m}x{k}x{n}");
            assert_close(&what, &matmul_with(kernel, &ga, &gb).unwrap(), &want, TOL);
            assert_close(
                &what,
                &matmul_with(kernel, &ga, &gbt).unwrap(),
                &want_t,
                TOL,
            );
        }
    }
    // Batched with a broadcast rhs and a sliced lhs; vectors; Tensor::matmul.
    let a = Tensor::from_vec(common::values(3 * 2 * 9 * 11, 4), [3, 2, 9, 11]).unwrap();
    let a = a.narrow(3, 1, 10).unwrap();
    let b = Tensor::from_vec(common::values(10 * 6, 5), [10, 6]).unwrap();
    let ga = same_layout(&d, &a);
    assert_close(
        "batched",
        &ga.matmul(&to(&d, &b)).unwrap(),
        &a.matmul(&b).unwrap(),
        TOL,
    );
    let v = Tensor::from_vec(common::values(10, 6), [10]).unwrap();
    assert_close(
        "mat @ vec",
        &ga.matmul(&to(&d, &v)).unwrap(),
        &a.matmul(&v).unwrap(),
        TOL,
    );
    assert_close(
        "vec @ mat",
        &to(&d, &v).matmul(&to(&d, &b)).unwrap(),
        &v.matmul(&b).unwrap(),
        TOL,
    );
    assert_close(
        "dot",
        &to(&d, &v).matmul(&to(&d, &v)).unwrap(),
        &v.matmul(&v).unwrap(),
        TOL,
    );
}

/// Every block size rung 4 accepts, on ragged, transposed (both sides) and batched
/// operands; sizes it does not accept are an error.
#[test]
fn matmul_tiles_match_cpu() {
    let Some(d) = gpu("matmul_tiles_match_cpu") else {
        return;
    };
    let a = Tensor::from_vec(common::values(2 * 131 * 37, 7), [2, 131, 37]).unwrap();
    let at = Tensor::from_vec(common::values(2 * 37 * 131, 8), [2, 37, 131])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let b = Tensor::from_vec(common::values(37 * 200, 9), [37, 200]).unwrap();
    let bt = Tensor::from_vec(common::values(200 * 37, 10), [200, 37])
        .unwrap()
        .t()
        .unwrap();
    let cases = [(&a, &b), (&at, &bt), (&a, &bt)];
    for bm in [64, 128] {
        for bn in [64, 128] {
            for bk in [4, 8, 16] {
                let tiles = Tiles { bm, bn, bk };
                for (i, (x, y)) in cases.iter().enumerate() {
                    let y = y.broadcast_as([2, 37, 200]).unwrap();
                    let want = x.matmul(&y).unwrap();
                    let (gx, gy) = (same_layout(&d, x), same_layout(&d, &y));
                    let got = matmul_tiles(tiles, &gx, &gy);
                    assert_close(&format!("{tiles:?} case {i}"), &got.unwrap(), &want, TOL);
                    let got = matmul_body(&tiles.source_with(true), [bm, bn], &gx, &gy);
                    assert_close(
                        &format!("{tiles:?} unrolled, case {i}"),
                        &got.unwrap(),
                        &want,
                        TOL,
                    );
                }
            }
        }
    }
    let (ga, gb) = (to(&d, &b.t().unwrap()), to(&d, &b));
    for bad in [(32, 64, 8), (64, 64, 3), (128, 128, 32)] {
        let tiles = Tiles {
            bm: bad.0,
            bn: bad.1,
            bk: bad.2,
        };
        assert!(matmul_tiles(tiles, &ga, &gb).is_err(), "{tiles:?}");
    }
}

/// Rung 5 (vec4 loads, prefetch) on the shapes it accepts: ragged m, k and n
/// multiples of 4 but not of the tile, a batch-broadcast rhs and an offset view;
/// refused for a transposed rhs or an odd n.
#[test]
fn matmul_vec4_matches_cpu() {
    let Some(d) = gpu("matmul_vec4_matches_cpu") else {
        return;
    };
    for &(m, k, n) in &[(1, 4, 4), (37, 20, 68), (130, 132, 200), (64, 16, 64)] {
        let a = Tensor::from_vec(common::values(3 * m * k, 11), [3, m, k]).unwrap();
        let b = Tensor::from_vec(common::values(k * n, 12), [k, n])
            .unwrap()
            .broadcast_as([3, k, n])
            .unwrap();
        let (ga, gb) = (same_layout(&d, &a), same_layout(&d, &b));
        assert!(vec4_ok(&ga, &gb));
        let got = matmul_vec4(&ga, &gb).unwrap();
        assert_close(
            &format!("vec4 {m}x{k}x{n}"),
            &got,
            &a.matmul(&b).unwrap(),
            TOL,
        );
    }
    let a = Tensor::from_vec(common::values(9 * 24, 13), [9, 24]).unwrap();
    let view = a.narrow(1, 4, 16).unwrap(); // offset 4, row stride 24
    let b = Tensor::from_vec(common::values(16 * 8, 14), [16, 8]).unwrap();
    let (gv, gb) = (same_layout(&d, &view), same_layout(&d, &b));
    let got = matmul_vec4(&gv, &gb).unwrap();
    assert_close("vec4 offset view", &got, &view.matmul(&b).unwrap(), TOL);
    let bt = same_layout(&d, &b.t().unwrap().contiguous().unwrap())
        .t()
        .unwrap();
    assert!(!vec4_ok(&gv, &bt) && matmul_vec4(&gv, &bt).is_err());
    let odd = same_layout(&d, &Tensor::ones([16, 6]));
    assert!(!vec4_ok(&gv, &odd));
}
