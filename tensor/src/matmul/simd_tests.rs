//! Each path of [`Plan`] (narrow, shallow, wide; packed and in-place A) on sizes
//! that cross its panel and tile edges, against an f64 reference, with the
//! threaded rung bit-identical. (The ladder tests in `tensor/tests/matmul.rs` stay
//! below these panel sizes.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::super::{naive, parallel};
use super::*;

/// Uniform in [-0.5, 0.5): the shared LCG values, halved (exact in f32).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut v = crate::test_util::values(len, seed);
    v.iter_mut().for_each(|x| *x *= 0.5);
    v
}

/// A (m x k) and B (k x n), either row-major or read through transposed views.
fn check(m: usize, k: usize, n: usize, a_t: bool, b_t: bool) {
    let a = values(m * k, 1 + m as u64);
    let b = values(k * n, 2 + n as u64);
    let am = if a_t {
        MatRef::row_major(&a, k, m).unwrap().t()
    } else {
        MatRef::row_major(&a, m, k).unwrap()
    };
    let bm = if b_t {
        MatRef::row_major(&b, n, k).unwrap().t()
    } else {
        MatRef::row_major(&b, k, n).unwrap()
    };
    let mut want = vec![0.0; m * n];
    naive::gemm(am, bm, &mut want);
    for kernel in Kernel::available() {
        let mut got = vec![f32::NAN; m * n];
        gemm_with(kernel, am, bm, &mut got);
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut scale) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let prod = am.at(i, p) as f64 * bm.at(p, j) as f64;
                    exact += prod;
                    scale += prod.abs();
                }
                let tol = 1.01 * (k as f64 + 1.0) * f32::EPSILON as f64 * scale + 1e-30;
                let g = got[i * n + j] as f64;
                assert!(
                    (g - exact).abs() <= tol,
                    "{} {m}x{k}x{n} (a_t {a_t}, b_t {b_t}) at ({i}, {j}): {g} vs {exact}",
                    kernel.name()
                );
            }
        }
        let mut par = vec![f32::NAN; m * n];
        parallel::gemm_with(kernel, 2, am, bm, &mut par);
        let same = got
            .iter()
            .zip(&par)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{} {m}x{k}x{n}: parallel differs", kernel.name());
    }
}

#[test]
fn plans_follow_the_table() {
    let p = Plan::new(Kernel::portable(), 1000, 500);
    assert_eq!((p.pack_a, p.mr, p.nr, p.kc), (true, 6, 16, 500));
    let p = Plan::new(Kernel::portable(), 100, 40);
    assert_eq!((p.pack_a, p.mr, p.nr, p.kc), (true, 6, 16, 100));
    if let Some(k) = Kernel::avx512() {
        let narrow = Plan::new(k, 4096, 40);
        assert_eq!((narrow.pack_a, narrow.mr, narrow.nr), (false, 6, 48));
        assert_eq!(narrow.kc, 1024);
        assert!(narrow.nc >= 48, "one panel: {narrow:?}");
        let shallow = Plan::new(k, 40, 4096);
        assert_eq!((shallow.pack_a, shallow.mr, shallow.nr), (true, 12, 32));
        assert_eq!((shallow.kc, shallow.nc), (40, NC));
        let wide = Plan::new(k, 640, 640);
        assert_eq!((wide.pack_a, wide.mr, wide.nr), (false, 6, 64));
        assert_eq!((wide.kc, wide.nc), (320, 384));
    }
    if let Some(k) = Kernel::avx2() {
        let p = Plan::new(k, 100, 40);
        assert_eq!((p.pack_a, p.nr, p.kc), (false, 16, 100));
        let p = Plan::new(k, 100, 100);
        assert_eq!((p.pack_a, p.mr, p.nr), (false, 6, 16));
        let p = Plan::new(k, 40, 100);
        assert_eq!((p.pack_a, p.mr, p.nr, p.kc), (false, 6, 16, 40));
    }
}

#[test]
fn narrow_products_across_deep_panels() {
    // n <= 64 in one sliver of 16..64 columns; k past KC_NARROW: two panels.
    for n in [1, 15, 16, 40, 63, 64] {
        check(13, KC_NARROW + 5, n, false, false);
    }
    check(7, 1100, 40, true, true);
}

#[test]
fn shallow_products_with_edge_tiles() {
    // k <= 64: packed 12-row slivers; m and n off the 12 x 32 grid; n past a panel.
    check(25, 40, 97, false, true);
    check(12, 64, 32, true, false);
    check(3, 1, 70, false, false);
    check(30, 9, NC + 40, false, true);
}

#[test]
fn wide_products_across_panels() {
    // k past KC (three equal panels), n past one panel of B and off the 64 grid,
    // m past MC and off the 6 grid.
    check(MC + 7, 2 * KC + 5, 200, false, false);
    check(31, 300, 450, true, true);
    check(8, KC + 1, 65, true, false);
    // The last sliver as narrow as its columns: 91 = 64 + 32 (27 used), 112 = 64 + 48.
    check(13, 100, 91, false, false);
    check(13, 100, 112, false, true);
}

#[test]
fn small_b_read_in_place() {
    // A B of at most B_IN_PLACE_FLOATS with contiguous rows is read where it lies
    // (whole slivers), a narrower last sliver packed; a transposed B is packed.
    if let Some(k) = Kernel::avx512().or_else(Kernel::avx2) {
        let b = vec![0.0; 300 * 128];
        let plan = Plan::new(k, 300, 128);
        assert!(plan.reads_b_in_place(&MatRef::row_major(&b, 300, 128).unwrap()));
        assert!(!plan.reads_b_in_place(&MatRef::row_major(&b, 128, 300).unwrap().t()));
        let n = B_IN_PLACE_FLOATS / 300 + 1;
        let big = vec![0.0; 300 * n];
        let plan = Plan::new(k, 300, n);
        assert!(!plan.reads_b_in_place(&MatRef::row_major(&big, 300, n).unwrap()));
    }
    check(25, 300, 128, false, false);
    check(MC + 1, 700, 72, true, false);
    check(40, 50, 200, false, false);
}
