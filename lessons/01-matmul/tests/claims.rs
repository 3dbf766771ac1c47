//! One test per numbered claim of lessons/01-matmul/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lesson_01_matmul::{
    broadcast_mul, einsum, matmul_blocked, matmul_broadcast, matmul_einsum, matmul_elementwise,
    matmul_loops, matmul_parallel, matmul_simd, matmul_tensor, matmul_with, sum_rows, Matrix,
};
use tensor::matmul::{self, MatRef};
use tensor::Tensor;

fn bits(m: &Matrix) -> Vec<u32> {
    m.to_flat().iter().map(|v| v.to_bits()).collect()
}

/// Shapes with 0, 1, primes and sizes around the library's tiles (6, 16, 120, 256).
const SHAPES: [(usize, usize, usize); 8] = [
    (0, 3, 4),
    (1, 1, 1),
    (3, 0, 5),
    (7, 13, 17),
    (5, 784, 10),
    (31, 257, 37),
    (127, 65, 130),
    (64, 64, 64),
];

fn pair(m: usize, k: usize, n: usize, seed: u64) -> (Matrix, Matrix) {
    (Matrix::random(m, k, seed), Matrix::random(k, n, seed + 1))
}

/// `|got - exact| <= (k + 1) * eps * sum_p |a_ip b_pj|` for every element: the
/// worst-case rounding of any order of k float additions (exact is computed in f64).
fn assert_within_rounding(got: &Matrix, a: &Matrix, b: &Matrix) {
    let (m, k) = a.shape();
    let n = b.n_cols();
    assert_eq!(got.shape(), (m, n));
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut scale) = (0.0f64, 0.0f64);
            for p in 0..k {
                let prod = a[(i, p)] as f64 * b[(p, j)] as f64;
                exact += prod;
                scale += prod.abs();
            }
            let tol = (k as f64 + 1.0) * f32::EPSILON as f64 * scale;
            let err = (got[(i, j)] as f64 - exact).abs();
            assert!(
                err <= tol,
                "({i}, {j}): got {}, exact {exact}, tol {tol}",
                got[(i, j)]
            );
        }
    }
}

#[test]
fn claim_1_matrix_indexes_rows_then_columns() {
    let rows = vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]];
    let mut m = Matrix::from_rows(rows.clone()).unwrap();
    assert_eq!(m.shape(), (2, 3));
    for (i, row) in rows.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert_eq!(m[(i, j)], v);
        }
    }
    assert_eq!(m[(1, 2)], 6.0);
    assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
    assert_eq!(m.col(1).collect::<Vec<_>>(), vec![2.0, 5.0]);
    assert_eq!(m.get(2, 0), None);
    m[(0, 1)] = 9.0;
    assert_eq!(m.to_flat(), vec![1.0, 9.0, 3.0, 4.0, 5.0, 6.0]);
    let err = Matrix::from_rows(vec![vec![1.0, 2.0], vec![3.0]]).unwrap_err();
    assert!(err.to_string().contains("row 1 has 1 values"), "{err}");
}

#[test]
fn claim_2_loops_compute_the_matrix_product() {
    // [[1, 2, 3], [4, 5, 6]] @ [[7, 8], [9, 10], [11, 12]] = [[58, 64], [139, 154]]
    let a = Matrix::from_rows(vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]).unwrap();
    let b = Matrix::from_flat(3, 2, &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]).unwrap();
    let c = matmul_loops(&a, &b).unwrap();
    assert_eq!(c.to_flat(), vec![58.0, 64.0, 139.0, 154.0]);
    for (m, k, n) in SHAPES {
        let (a, b) = pair(m, k, n, 10);
        assert_within_rounding(&matmul_loops(&a, &b).unwrap(), &a, &b);
    }
    let err = matmul_loops(&a, &a).unwrap_err();
    assert!(err.to_string().contains("inner dimensions differ"), "{err}");
}

#[test]
fn claim_3_elementwise_equals_loops() {
    for (m, k, n) in SHAPES {
        let (a, b) = pair(m, k, n, 20);
        let loops = matmul_loops(&a, &b).unwrap();
        assert_eq!(
            bits(&matmul_elementwise(&a, &b).unwrap()),
            bits(&loops),
            "{m}x{k}x{n}"
        );
    }
}

#[test]
fn claim_4_broadcasting_equals_loops() {
    // [1, 2][:, None] * [[1, 1, 1], [1, 1, 1]] = [[1, 1, 1], [2, 2, 2]]; sum(dim=0) = [3, 3, 3]
    let ones = Matrix::from_flat(2, 3, &[1.0; 6]).unwrap();
    let prod = broadcast_mul(&[1.0, 2.0], &ones);
    assert_eq!(prod.to_flat(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    assert_eq!(sum_rows(&prod), vec![3.0, 3.0, 3.0]);
    for (m, k, n) in SHAPES {
        let (a, b) = pair(m, k, n, 30);
        let loops = matmul_loops(&a, &b).unwrap();
        assert_eq!(
            bits(&matmul_broadcast(&a, &b).unwrap()),
            bits(&loops),
            "{m}x{k}x{n}"
        );
    }
}

#[test]
fn claim_5_einsum_equals_loops() {
    for (m, k, n) in SHAPES {
        let (a, b) = pair(m, k, n, 40);
        let loops = matmul_loops(&a, &b).unwrap();
        assert_eq!(
            bits(&matmul_einsum(&a, &b).unwrap()),
            bits(&loops),
            "{m}x{k}x{n}"
        );
        // 'ik,kj->ikj' keeps every product; summing over k by hand gives the product.
        let all = einsum("ik,kj->ikj", &a, &b).unwrap();
        assert_eq!(all.dims, vec![m, k, n]);
        let mut summed = Matrix::zeros(m, n);
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    summed[(i, j)] += all.data[(i * k + p) * n + j];
                }
            }
        }
        assert_eq!(bits(&summed), bits(&loops), "{m}x{k}x{n}");
    }
    // The letters carry the meaning: 'ik,jk->ij' is a @ b^T.
    let a = Matrix::from_flat(2, 2, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(
        einsum("ik,jk->ij", &a, &a).unwrap().data,
        vec![5.0, 11.0, 11.0, 25.0]
    );
    let b = Matrix::zeros(3, 3);
    assert!(einsum("ik,kj->ij", &a, &b).is_err()); // k is 2 in a, 3 in b
    assert!(einsum("ik,kj->iz", &a, &a).is_err()); // z is in no input
}

#[test]
fn claim_6_blocked_equals_loops() {
    for (m, k, n) in SHAPES.into_iter().chain([(130, 300, 270)]) {
        let (a, b) = pair(m, k, n, 50);
        let loops = bits(&matmul_loops(&a, &b).unwrap());
        assert_eq!(
            bits(&matmul_blocked(&a, &b).unwrap()),
            loops,
            "blocked {m}x{k}x{n}"
        );
        for rung in [matmul::naive::gemm, matmul::reorder::gemm] {
            assert_eq!(
                bits(&matmul_with(rung, &a, &b).unwrap()),
                loops,
                "{m}x{k}x{n}"
            );
        }
    }
}

#[test]
fn claim_7_simd_matches_loops_to_rounding() {
    for (m, k, n) in SHAPES.into_iter().chain([(130, 300, 270)]) {
        let (a, b) = pair(m, k, n, 60);
        assert_within_rounding(&matmul_simd(&a, &b).unwrap(), &a, &b);
        assert_within_rounding(
            &matmul_with(matmul::simd::gemm_portable, &a, &b).unwrap(),
            &a,
            &b,
        );
    }
}

#[test]
fn claim_8_parallel_equals_simd_bit_for_bit() {
    for (m, k, n) in SHAPES.into_iter().chain([(130, 300, 270), (250, 40, 33)]) {
        let (a, b) = pair(m, k, n, 70);
        let simd = bits(&matmul_simd(&a, &b).unwrap());
        assert_eq!(bits(&matmul_parallel(&a, &b).unwrap()), simd, "{m}x{k}x{n}");
    }
}

#[test]
fn claim_9_a_transposed_view_needs_no_copy() {
    // B^T stored row-major (n x k); the view `.t()` swaps the strides, nothing moves.
    let (m, k, n) = (37, 129, 53);
    let a = Matrix::random(m, k, 80).to_flat();
    let b = Matrix::random(k, n, 81);
    let mut b_t = Matrix::zeros(n, k);
    for p in 0..k {
        for j in 0..n {
            b_t[(j, p)] = b[(p, j)];
        }
    }
    let (b_flat, bt_flat) = (b.to_flat(), b_t.to_flat());
    let am = MatRef::row_major(&a, m, k).unwrap();
    let view = MatRef::row_major(&bt_flat, n, k).unwrap().t();
    assert_eq!((view.row_stride, view.col_stride), (1, k));
    assert!(std::ptr::eq(view.data, bt_flat.as_slice()));
    let (mut c_view, mut c_copy) = (vec![0.0; m * n], vec![0.0; m * n]);
    matmul::simd::gemm(am, view, &mut c_view);
    matmul::simd::gemm(am, MatRef::row_major(&b_flat, k, n).unwrap(), &mut c_copy);
    let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(to_bits(&c_view), to_bits(&c_copy));
}

#[test]
fn claim_10_tensor_matmul_is_the_at_operator() {
    let (a, b) = pair(5, 784, 10, 90);
    let c = matmul_tensor(&a, &b).unwrap();
    assert_within_rounding(&c, &a, &b);
    // A batch of 3 stacks of 5 images against the same weights: the weights broadcast.
    let batch = Tensor::from_vec(
        [a.to_flat(), a.to_flat(), a.to_flat()].concat(),
        [3, 5, 784],
    );
    let w = Tensor::from_vec(b.to_flat(), [784, 10]).unwrap();
    let out = batch.unwrap().matmul(&w).unwrap();
    assert_eq!(out.dims(), &[3, 5, 10]);
    let flat = out.to_vec().unwrap();
    for chunk in flat.chunks(50) {
        assert_eq!(chunk, c.to_flat().as_slice());
    }
}

/// The default GPU, or `None` after printing that the GPU claims were skipped.
fn gpu(claim: &str) -> Option<tensor::Device> {
    match tensor::Device::wgpu() {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipped: no wgpu adapter ({claim}: {e})");
            None
        }
    }
}

fn on_gpu(m: &Matrix, d: &tensor::Device) -> Tensor {
    let (r, c) = m.shape();
    Tensor::from_vec(m.to_flat(), [r, c])
        .unwrap()
        .to_device(d)
        .unwrap()
}

#[test]
fn claim_11_every_gpu_rung_matches_loops_to_rounding() {
    use tensor::wgpu::matmul::{matmul_vec4, matmul_with, vec4_ok, MatmulKernel};
    let Some(d) = gpu("claim_11") else { return };
    let mut tested_vec4 = 0;
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        let (a, b) = pair(m, k, n, 110 + i as u64);
        let (ga, gb) = (on_gpu(&a, &d), on_gpu(&b, &d));
        for kernel in MatmulKernel::ALL {
            let c = matmul_with(kernel, &ga, &gb).unwrap();
            assert!(c.is_gpu());
            let got = Matrix::from_flat(m, n, &c.to_vec().unwrap()).unwrap();
            assert_within_rounding(&got, &a, &b);
        }
        // Rung G5 takes rows aligned to 4 floats (k and n multiples of 4).
        if vec4_ok(&ga, &gb) {
            tested_vec4 += 1;
            let c = matmul_vec4(&ga, &gb).unwrap();
            let got = Matrix::from_flat(m, n, &c.to_vec().unwrap()).unwrap();
            assert_within_rounding(&got, &a, &b);
        }
    }
    // And on aligned shapes off its 64 x 64 x 16 tile.
    for (i, &(m, k, n)) in [(33, 20, 68), (130, 132, 200)].iter().enumerate() {
        let (a, b) = (
            Matrix::random(m, k, 130 + i as u64),
            Matrix::random(k, n, 140 + i as u64),
        );
        let c = matmul_vec4(&on_gpu(&a, &d), &on_gpu(&b, &d)).unwrap();
        tested_vec4 += 1;
        let got = Matrix::from_flat(m, n, &c.to_vec().unwrap()).unwrap();
        assert_within_rounding(&got, &a, &b);
    }
    assert_eq!(
        tested_vec4, 3,
        "G5 ran on (64, 64, 64) and the two aligned shapes"
    );
}

#[test]
fn claim_12_a_transposed_view_needs_no_copy_on_the_gpu_either() {
    use tensor::wgpu::matmul::{matmul_with, MatmulKernel};
    let Some(d) = gpu("claim_12") else { return };
    let a = Matrix::random(29, 45, 120);
    let bt = Matrix::random(70, 45, 121); // B^T stored row-major; B is 45 x 70
    let ga = on_gpu(&a, &d);
    let view = on_gpu(&bt, &d).t().unwrap(); // (45, 70), strides swapped, no copy
    assert!(!view.is_contiguous());
    let copy = view.contiguous().unwrap();
    assert!(copy.is_contiguous() && copy.is_gpu());
    let to_bits = |t: &Tensor| {
        t.to_vec()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    for kernel in MatmulKernel::ALL {
        let c_view = matmul_with(kernel, &ga, &view).unwrap();
        let c_copy = matmul_with(kernel, &ga, &copy).unwrap();
        assert_eq!(to_bits(&c_view), to_bits(&c_copy), "{kernel:?}");
    }
}
