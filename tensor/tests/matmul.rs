//! The matmul ladder against the naive rung (and the naive rung against an f64
//! reference), on odd sizes and transposed, sliced and strided views; then
//! `Tensor::matmul` with batches, broadcasting, vectors, views and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::values;
use proptest::prelude::*;
use tensor::matmul::kernels::Kernel;
use tensor::matmul::{self, blocked, naive, parallel, reorder, simd, MatRef};

// ---- helpers -----------------------------------------------------------------------

/// How a `rows x cols` matrix sits in its buffer. These are raw buffers for the gemm
/// contract, not tensors (`Strided` has no tensor view); `Tensor::matmul` is tested on
/// the shared tensor layouts in `matmul/tensor_op.rs`.
#[derive(Clone, Copy, Debug)]
enum MatKind {
    /// Row-major, no gaps.
    RowMajor,
    /// Column-major: the transpose of a row-major `cols x rows` buffer.
    Transposed,
    /// Narrowed out of a bigger row-major matrix: an offset and a row stride > cols.
    Sliced,
    /// Every element `(i, j)` at `1 + 3*j + (3*cols + 2)*i`: both strides > 1.
    Strided,
}

fn mat_kinds() -> impl Strategy<Value = MatKind> {
    prop_oneof![
        Just(MatKind::RowMajor),
        Just(MatKind::Transposed),
        Just(MatKind::Sliced),
        Just(MatKind::Strided)
    ]
}

/// A buffer plus the view parameters of a `rows x cols` matrix laid out as `kind`.
struct Mat {
    data: Vec<f32>,
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl Mat {
    fn new(kind: MatKind, rows: usize, cols: usize, seed: u64) -> Mat {
        let (offset, rs, cs, len) = match kind {
            MatKind::RowMajor => (0, cols, 1, rows * cols),
            MatKind::Transposed => (0, 1, rows, rows * cols),
            // A (rows + 3) x (cols + 5) matrix, narrowed to rows 2.., cols 3...
            MatKind::Sliced => (2 * (cols + 5) + 3, cols + 5, 1, (rows + 3) * (cols + 5)),
            MatKind::Strided => (1, 3 * cols + 2, 3, 1 + (3 * cols + 2) * rows + 1),
        };
        Mat {
            data: values(len.max(1), seed),
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    fn view(&self) -> MatRef<'_> {
        MatRef::new(
            &self.data,
            self.offset,
            self.rows,
            self.cols,
            self.rs,
            self.cs,
        )
        .unwrap()
    }
}

/// The product in f64 from the views, plus `sum_p |a_ip| |b_pj|` per element (the
/// scale of the rounding error any f32 summation order can make).
fn reference(a: MatRef<'_>, b: MatRef<'_>) -> (Vec<f64>, Vec<f64>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut c = vec![0.0f64; m * n];
    let mut scale = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let (x, y) = (a.at(i, p) as f64, b.at(p, j) as f64);
                c[i * n + j] += x * y;
                scale[i * n + j] += (x * y).abs();
            }
        }
    }
    (c, scale)
}

/// `got` within the worst-case f32 summation error of the exact product: any order of
/// k additions (with or without fused multiply-adds) errs by at most
/// `k * eps * sum |a||b|` (to first order), so this bound cannot fail for a correct
/// kernel, while a missing, doubled or misplaced term is far outside it.
fn assert_within_rounding(got: &[f32], exact: &(Vec<f64>, Vec<f64>), k: usize, name: &str) {
    assert_eq!(got.len(), exact.0.len(), "{name}: length");
    let eps = f32::EPSILON as f64;
    for (idx, (&g, (&e, &s))) in got.iter().zip(exact.0.iter().zip(&exact.1)).enumerate() {
        let tol = 1.01 * (k as f64 + 1.0) * eps * s + 1e-30;
        assert!(
            (g as f64 - e).abs() <= tol,
            "{name}: element {idx}: got {g}, exact {e}, tolerance {tol}"
        );
    }
}

type Rung = fn(MatRef<'_>, MatRef<'_>, &mut [f32]);

const RUNGS: [(&str, Rung); 7] = [
    ("naive", naive::gemm),
    ("reorder", reorder::gemm),
    ("blocked", blocked::gemm),
    ("simd", simd::gemm),
    ("simd_portable", simd::gemm_portable),
    ("parallel", parallel::gemm),
    ("gemm (dispatch)", matmul::gemm),
];

/// Run every rung on `a * b` into a NaN-filled C (so an unwritten element shows),
/// checking naive against the f64 reference, reorder and blocked bit-equal to naive,
/// and every rung within rounding of the exact product.
fn check_all_rungs(a: MatRef<'_>, b: MatRef<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let exact = reference(a, b);
    let mut naive_c = vec![f32::NAN; m * n];
    naive::gemm(a, b, &mut naive_c);
    for (name, rung) in RUNGS {
        let mut c = vec![f32::NAN; m * n];
        rung(a, b, &mut c);
        assert_within_rounding(&c, &exact, k, name);
        if name == "reorder" || name == "blocked" {
            // Same order of additions per element: identical bits.
            let same = c
                .iter()
                .zip(&naive_c)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name} differs from naive in some bit ({m}x{k}x{n})");
        }
    }
    let mut c = vec![f32::NAN; m * n];
    matmul::try_gemm(a, b, &mut c).unwrap();
    assert_within_rounding(&c, &exact, k, "try_gemm");
    // Every micro-kernel this CPU has, alone and split over 3 threads (which must
    // give the same bits: each element sees the same operations in the same order).
    for kernel in Kernel::available() {
        let mut c = vec![f32::NAN; m * n];
        simd::gemm_with(kernel, a, b, &mut c);
        assert_within_rounding(&c, &exact, k, kernel.name());
        let mut cp = vec![f32::NAN; m * n];
        parallel::gemm_with(kernel, 3, a, b, &mut cp);
        let same = c.iter().zip(&cp).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "parallel {} differs from simd ({m}x{k}x{n})",
            kernel.name()
        );
    }
}

/// Sizes that stress the edges: 0, 1, primes, and neighbours of the tile sizes
/// (MR = 6, NR = 16 or 32, MC = 120, KC = 256, blocked MB = 64, KB = 128).
fn odd_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        prop::sample::select(vec![
            0usize, 1, 2, 3, 5, 6, 7, 13, 15, 16, 17, 31, 32, 33, 37, 65
        ]),
        0usize..48,
    ]
}

fn big_size() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![119usize, 121, 127, 129, 130, 255, 257, 263])
}

// ---- the ladder --------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_rung_matches_naive_on_odd_sizes_and_layouts(
        m in odd_size(), k in odd_size(), n in odd_size(),
        ka in mat_kinds(), kb in mat_kinds(), seed in any::<u64>(),
    ) {
        let a = Mat::new(ka, m, k, seed);
        let b = Mat::new(kb, k, n, seed ^ 0x9e37_79b9);
        check_all_rungs(a.view(), b.view());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Sizes past MC (rows), KC (depth) and the blocked tiles, so several packed
    /// panels and row blocks are visited, and the first panel's store vs later adds.
    #[test]
    fn every_rung_matches_naive_across_panel_edges(
        m in big_size(), k in big_size(), n in odd_size(),
        ka in mat_kinds(), kb in mat_kinds(), seed in any::<u64>(),
    ) {
        let a = Mat::new(ka, m, k, seed);
        let b = Mat::new(kb, k, n, seed.wrapping_add(7));
        check_all_rungs(a.view(), b.view());
    }
}

#[test]
fn wide_b_crosses_the_nc_panel_edge() {
    // n = 3100 > NC = 3072: two column panels of B.
    for (ka, kb) in [
        (MatKind::RowMajor, MatKind::RowMajor),
        (MatKind::Sliced, MatKind::Transposed),
    ] {
        let a = Mat::new(ka, 7, 9, 1);
        let b = Mat::new(kb, 9, simd::NC + 28, 2);
        check_all_rungs(a.view(), b.view());
    }
}

#[test]
fn broadcast_rows_with_stride_zero() {
    // Stride-0 views (a broadcast row of A, a broadcast column of B) are valid MatRefs.
    let row = values(11, 3);
    let a = MatRef::new(&row, 0, 9, 11, 0, 1).unwrap();
    let col = values(11, 4);
    let b = MatRef::new(&col, 0, 11, 20, 1, 0).unwrap();
    check_all_rungs(a, b);
}

#[test]
fn empty_inner_dim_gives_zeros_in_every_rung() {
    let a = Mat::new(MatKind::RowMajor, 4, 0, 1);
    let b = Mat::new(MatKind::RowMajor, 0, 5, 2);
    for (name, rung) in RUNGS {
        let mut c = vec![f32::NAN; 20];
        rung(a.view(), b.view(), &mut c);
        assert!(c.iter().all(|&x| x == 0.0), "{name}: {c:?}");
    }
}

#[test]
fn known_product() {
    // [[1, 2, 3], [4, 5, 6]] @ [[7, 8], [9, 10], [11, 12]] = [[58, 64], [139, 154]]
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
    for (name, rung) in RUNGS {
        let mut c = [0.0; 4];
        rung(
            MatRef::row_major(&a, 2, 3).unwrap(),
            MatRef::row_major(&b, 3, 2).unwrap(),
            &mut c,
        );
        assert_eq!(c, [58.0, 64.0, 139.0, 154.0], "{name}");
    }
}

#[test]
fn try_gemm_rejects_a_broken_contract() {
    let a = [1.0; 6];
    let am = MatRef::row_major(&a, 2, 3).unwrap();
    let mut c = [0.0; 4];
    // Inner dims: A is 2 x 3, B (= A) is 2 x 3.
    let err = matmul::try_gemm(am, am, &mut c).unwrap_err();
    assert!(err.to_string().contains("inner dimensions differ"), "{err}");
    // C of the wrong size.
    let mut c3 = [0.0; 3];
    let err = matmul::try_gemm(am, am.t(), &mut c3).unwrap_err();
    assert!(err.to_string().contains("C has 3 elements"), "{err}");
    // A view that reads past its buffer (fields are public, so one can be built).
    let bad = MatRef { rows: 3, ..am };
    assert!(matmul::try_gemm(bad, am.t(), &mut [0.0; 6]).is_err());
    assert!(MatRef::new(&a, 1, 2, 3, 3, 1).is_err());
    assert!(MatRef::new(&a, 0, 2, 3, usize::MAX, 1).is_err());
    assert!(MatRef::row_major(&a, 4, 2).is_err());
}

#[test]
fn kernels_are_detected_and_named() {
    let all = Kernel::available();
    assert_eq!(all.last(), Some(&Kernel::portable()));
    assert_eq!(all[0], Kernel::detect());
    assert_eq!(
        (Kernel::portable().name(), Kernel::portable().nr()),
        ("portable", 16)
    );
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(Kernel::avx2().is_some(), avx2);
        assert_eq!(
            Kernel::avx512().is_some(),
            is_x86_feature_detected!("avx512f")
        );
        if let Some(k) = Kernel::avx512() {
            assert_eq!((k.name(), k.nr(), Kernel::detect()), ("avx512f", 32, k));
        }
    }
    eprintln!(
        "kernels on this CPU: {:?}",
        all.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
}

/// `Tensor::matmul`: batches, broadcasting, vectors, views and bad input.
#[path = "matmul/tensor_op.rs"]
mod tensor_op;
