//! Gradient checks for `matmul` (plain, batched, broadcast batch dims, vector
//! operands) and the composite attention, over random shapes and leaf layouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use autodiff::Var;
use common::*;
use proptest::prelude::*;
use tensor::Tensor;

/// Operand dims for `a @ b`: batch dims that broadcast together (some dropped or 1
/// on either side), and 1-D operands a quarter of the time each.
fn matmul_dims() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        dims(0, 2, 3),
        1..=4usize,
        1..=4usize,
        1..=4usize,
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.25),
    )
        .prop_flat_map(|(batch, m, k, n, a_vec, b_vec)| {
            (
                tensor_common_operand(batch.clone()),
                tensor_common_operand(batch),
                Just((m, k, n, a_vec, b_vec)),
            )
        })
        .prop_map(|(ba, bb, (m, k, n, a_vec, b_vec))| {
            let a = if a_vec {
                vec![k]
            } else {
                [ba, vec![m, k]].concat()
            };
            let b = if b_vec {
                vec![k]
            } else {
                [bb, vec![k, n]].concat()
            };
            (a, b)
        })
}

fn tensor_common_operand(out: Vec<usize>) -> impl Strategy<Value = Vec<usize>> {
    common::tcommon::operand_dims(out)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn matmul_any_shapes((da, db) in matmul_dims().prop_flat_map(|(a, b)| (leaf(a), leaf(b)))) {
        let what = format!("matmul {:?} @ {:?}", da.dims(), db.dims());
        check_gradients(&what, &[da, db], |v| v[0].matmul(&v[1]));
    }

    #[test]
    fn attention(
        (b, l, s, e, ev) in (1..=2usize, 1..=4usize, 1..=4usize, 1..=4usize, 1..=3usize),
        masked in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let q = build(&[b, l, e], &LayoutRecipe::of_kind(Kind::Permuted, 3, seed));
        let k = build(&[b, s, e], &LayoutRecipe::of_kind(Kind::Sliced, 3, seed ^ 1));
        let v = build(&[b, s, ev], &LayoutRecipe::of_kind(Kind::Contiguous, 3, seed ^ 2));
        // A causal-style additive mask (position j > i dropped), never a full row.
        let mask = masked.then(|| {
            let m: Vec<f32> = (0..l * s)
                .map(|p| if p % s > p / s { -1e4 } else { 0.0 })
                .collect();
            Tensor::from_vec(m, [l, s]).unwrap()
        });
        let scale = if seed % 2 == 0 { None } else { Some(0.7) };
        check_gradients("attention", &[q, k, v], |x| {
            Var::scaled_dot_product_attention(&x[0], &x[1], &x[2], mask.as_ref(), scale)
        });
    }
}

/// A linear layer `(B, T, C) @ (C, N)` folds the batch into the rows for the weight
/// gradient; it must equal the sum over the batch of per-matrix products.
#[test]
fn linear_layer_weight_gradient_sums_over_batch() {
    let x = Tensor::arange(0.0, 12.0, 1.0)
        .unwrap()
        .reshape([2, 3, 2])
        .unwrap();
    let w = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap());
    let y = Var::constant(x.clone()).matmul(&w).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    // dW[c][n] = sum over (b, t) of x[b][t][c]: column sums 0+2+..+10 = 30, 1+3+..+11 = 36.
    assert_eq!(
        g.get(&w).unwrap().to_vec().unwrap(),
        vec![30.0, 30.0, 30.0, 36.0, 36.0, 36.0]
    );
}

/// A dot product of two vectors: each gets the other.
#[test]
fn vector_dot_gradient() {
    let a = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], [3]).unwrap());
    let b = Var::leaf(Tensor::from_vec(vec![4.0, 5.0, 6.0], [3]).unwrap());
    let y = a.matmul(&b).unwrap();
    assert_eq!(y.dims(), &[] as &[usize]);
    let g = y.backward().unwrap();
    assert_eq!(g.get(&a).unwrap().to_vec().unwrap(), vec![4.0, 5.0, 6.0]);
    assert_eq!(g.get(&b).unwrap().to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
}

/// Empty inner dim: the product is zeros and both gradients are empty.
#[test]
fn matmul_with_empty_inner_dim() {
    let a = Var::leaf(Tensor::zeros([2, 0]));
    let b = Var::leaf(Tensor::zeros([0, 3]));
    let y = a.matmul(&b).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![0.0; 6]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&a).unwrap().dims(), &[2, 0]);
    assert_eq!(g.get(&b).unwrap().dims(), &[0, 3]);
}
