//! `Tensor::matmul` against an independent torch.matmul reference: batches,
//! broadcasting, 1-D operands, transposed / narrowed / permuted / broadcast views,
//! zero sizes and the error cases.

use proptest::prelude::*;
use tensor::{Tensor, TensorError};

use crate::common::{bcast_index, build, make, unravel, Kind, LayoutRecipe};

/// torch.matmul on plain row-major data, written independently of the library.
fn ref_matmul(ad: &[usize], av: &[f32], bd: &[usize], bv: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let mut ad2 = ad.to_vec();
    let mut bd2 = bd.to_vec();
    if ad.len() == 1 {
        ad2.insert(0, 1);
    }
    if bd.len() == 1 {
        bd2.push(1);
    }
    let (m, k) = (ad2[ad2.len() - 2], ad2[ad2.len() - 1]);
    let n = bd2[bd2.len() - 1];
    let (ab, bb) = (&ad2[..ad2.len() - 2], &bd2[..bd2.len() - 2]);
    let rank = ab.len().max(bb.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (ab, bb) = (pad(ab), pad(bb));
    let batch: Vec<usize> = ab
        .iter()
        .zip(&bb)
        .map(|(&x, &y)| if x == 1 { y } else { x })
        .collect();
    let count: usize = batch.iter().product();
    let mut out = Vec::with_capacity(count * m * n);
    for flat in 0..count {
        // Unravel `flat` over `batch`, then ravel into each operand (size-1 dims -> 0).
        let idx = unravel(flat, &batch);
        let (ai, bi) = (bcast_index(&ab, &idx), bcast_index(&bb, &idx));
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += av[ai * m * k + i * k + p] as f64 * bv[bi * k * n + p * n + j] as f64;
                }
                out.push(acc as f32);
            }
        }
    }
    let mut dims = batch;
    if ad.len() > 1 {
        dims.push(m);
    }
    if bd.len() > 1 {
        dims.push(n);
    }
    (dims, out)
}

fn assert_matmul_matches(a: &Tensor, b: &Tensor) {
    let got = a.matmul(b).unwrap();
    let (dims, want) = ref_matmul(
        a.dims(),
        &a.to_vec().unwrap(),
        b.dims(),
        &b.to_vec().unwrap(),
    );
    assert_eq!(got.dims(), &dims[..], "{:?} @ {:?}", a.dims(), b.dims());
    let k = *a.dims().last().unwrap();
    for (g, w) in got.to_vec().unwrap().iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + k as f32), "{g} vs {w}");
    }
}

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    make(dims, Kind::Contiguous, seed)
}

#[test]
fn matmul_2d_known_values() {
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap();
    let b = Tensor::from_vec(vec![7.0, 8.0, 9.0, 10.0, 11.0, 12.0], [3, 2]).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dims(), &[2, 2]);
    assert_eq!(c.to_vec().unwrap(), vec![58.0, 64.0, 139.0, 154.0]);
    // a @ a^T through a transposed view (no copy).
    let g = a.matmul(&a.t().unwrap()).unwrap();
    assert_eq!(g.to_vec().unwrap(), vec![14.0, 32.0, 32.0, 77.0]);
}

#[test]
fn matmul_vectors() {
    let v = Tensor::from_vec(vec![1.0, 2.0, 3.0], [3]).unwrap();
    let dot = v.matmul(&v).unwrap();
    assert_eq!(dot.dims(), &[] as &[usize]);
    assert_eq!(dot.to_scalar().unwrap(), 14.0);
    let m = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2]).unwrap();
    let vm = v.matmul(&m).unwrap(); // (3) @ (3, 2) -> (2)
    assert_eq!(vm.dims(), &[2]);
    assert_eq!(vm.to_vec().unwrap(), vec![22.0, 28.0]);
    let mv = m.t().unwrap().matmul(&v).unwrap(); // (2, 3) @ (3) -> (2)
    assert_eq!(mv.to_vec().unwrap(), vec![22.0, 28.0]);
    // Batched with vectors on either side.
    assert_matmul_matches(&tensor(&[4], 1), &tensor(&[2, 3, 4, 5], 2));
    assert_matmul_matches(&tensor(&[2, 3, 4, 5], 3), &tensor(&[5], 4));
}

#[test]
fn matmul_batched_and_broadcast() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 4, 5], &[3, 5, 2]),
        (&[3, 4, 5], &[5, 2]),
        (&[4, 5], &[3, 5, 2]),
        (&[2, 1, 3, 4], &[5, 4, 2]),
        (&[1, 6, 4], &[7, 1, 4, 3]),
        (&[0, 4, 5], &[5, 2]),
        (&[2, 0, 5], &[2, 5, 3]),
        (&[2, 4, 0], &[2, 0, 3]),
        (&[40, 9, 7], &[40, 7, 11]), // many small matrices: the parallel batch path
        (&[2, 70, 130], &[130, 90]), // large enough for the threaded gemm
    ];
    for (i, (ad, bd)) in cases.iter().enumerate() {
        assert_matmul_matches(&tensor(ad, i as u64), &tensor(bd, 100 + i as u64));
    }
}

#[test]
fn matmul_folds_a_batch_against_a_shared_matrix() {
    // (3, 4, 5) narrowed out of (3, 4, 7): rows step by 7 and batches by 28 = 4 * 7, so
    // the batch is one 12 x 5 matrix with row stride 7 (the single-gemm path) ...
    let x = tensor(&[3, 4, 7], 1).narrow(-1, 1, 5).unwrap();
    let w = tensor(&[5, 6], 2);
    assert_matmul_matches(&x, &w);
    assert_matmul_matches(&x, &w.unsqueeze(0).unwrap()); // (1, 5, 6): still shared
                                                         // ... while a batch narrowed in its row dim does not merge (the per-matrix path).
    let y = tensor(&[3, 6, 5], 3).narrow(1, 1, 4).unwrap();
    assert_matmul_matches(&y, &w);
    // A broadcast lhs (stride 0 over the batch) does not merge either.
    let z = tensor(&[1, 4, 5], 4).broadcast_as([3, 4, 5]).unwrap();
    assert_matmul_matches(&z, &w);
}

#[test]
fn matmul_zero_inner_dim_is_zeros() {
    let c = Tensor::zeros([2, 0])
        .matmul(&Tensor::zeros([0, 3]))
        .unwrap();
    assert_eq!(c.dims(), &[2, 3]);
    assert_eq!(c.to_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn matmul_errors() {
    let s = Tensor::scalar(2.0);
    let m = tensor(&[2, 3], 1);
    for (a, b) in [(&s, &m), (&m, &s)] {
        let err = a.matmul(b).unwrap_err();
        assert!(
            matches!(err, TensorError::Invalid { op: "matmul", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("at least 1 dim"), "{err}");
    }
    let err = m.matmul(&m).unwrap_err();
    assert!(err.to_string().contains("inner dimensions differ"), "{err}");
    assert!(err.to_string().contains("[2, 3] @ [2, 3]"), "{err}");
    let err = tensor(&[4], 2).matmul(&tensor(&[5], 3)).unwrap_err();
    assert!(err.to_string().contains("inner dimensions differ"), "{err}");
    let err = tensor(&[2, 2, 3], 4)
        .matmul(&tensor(&[3, 3, 2], 5))
        .unwrap_err();
    match err {
        TensorError::Broadcast { lhs, rhs, .. } => {
            assert_eq!((lhs, rhs), (vec![2, 2, 3], vec![3, 3, 2]));
        }
        other => panic!("expected a broadcast error, got {other}"),
    }
}

/// A view of `dims` in one of several layouts: contiguous, the last two dims
/// transposed, narrowed out of a bigger tensor, batch dims permuted, or broadcast
/// from a size-1 batch dim.
fn view_of(dims: &[usize], layout: u8, seed: u64) -> Tensor {
    let r = dims.len();
    let mut recipe = LayoutRecipe::contiguous(r, seed);
    match layout % 5 {
        1 if r >= 2 => recipe.perm.swap(r - 2, r - 1),
        2 if r >= 1 => {
            // 3 more columns, starting at 2; and for a matrix 2 more rows, from 1.
            recipe.extra[r - 1] = (3, 2);
            if r > 1 {
                recipe.extra[0] = (2, 1);
            }
        }
        3 if r >= 3 => recipe.perm.swap(0, 1),
        4 if r >= 3 => recipe.bcast[0] = true,
        _ => {}
    }
    build(dims, &recipe)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn matmul_matches_reference_on_views(
        lb in prop::collection::vec(prop::sample::select(vec![1usize, 2, 3]), 0..3),
        rb in prop::collection::vec(prop::sample::select(vec![1usize, 2, 3]), 0..3),
        m in 0usize..9, k in 0usize..9, n in 0usize..9,
        lvec in any::<bool>(), rvec in any::<bool>(),
        ll in 0u8..5, rl in 0u8..5, seed in any::<u64>(),
    ) {
        // Make the batch dims broadcastable: where both have a dim, copy lhs's or use 1.
        let mut rb = rb;
        for i in 0..lb.len().min(rb.len()) {
            let (l, r) = (lb[lb.len() - 1 - i], rb.len() - 1 - i);
            if rb[r] != l && rb[r] != 1 && l != 1 {
                rb[r] = l;
            }
        }
        // A vector operand only when it has no batch dims (torch allows 1-D only).
        let ad = if lvec && lb.is_empty() { vec![k] } else { [&lb[..], &[m, k]].concat() };
        let bd = if rvec && rb.is_empty() { vec![k] } else { [&rb[..], &[k, n]].concat() };
        let a = view_of(&ad, ll, seed);
        let b = view_of(&bd, rl, seed.wrapping_add(1));
        assert_matmul_matches(&a, &b);
    }
}
