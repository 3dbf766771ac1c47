//! Gradient checks for reductions (`sum mean max min var std` over any set of dims,
//! keepdim or not) and for `softmax` / `log_softmax` along any dim, over random
//! shapes and leaf layouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use autodiff::Var;
use common::*;
use proptest::prelude::*;
use tensor::Tensor;

/// A leaf of rank 1..=4 with a subset of its dims to reduce (empty = all), written
/// with negative indices half the time.
fn leaf_and_dims(no_bcast: bool) -> impl Strategy<Value = (Tensor, Vec<isize>, bool)> {
    // max/min of nothing is an error: only sum/mean/var see empty tensors.
    let d = if no_bcast {
        dims(1, 4, 4).boxed()
    } else {
        dims0(1, 4, 4).boxed()
    };
    d.prop_flat_map(move |d| {
        let r = d.len();
        let rec = if no_bcast {
            recipe_no_bcast(r).boxed()
        } else {
            recipe(r).boxed()
        };
        (
            rec.prop_map(move |rc| build(&d, &rc)),
            proptest::collection::vec(any::<bool>(), r),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(t, pick, negative, keepdim)| {
                let axes = (0..r)
                    .filter(|&i| pick[i])
                    .map(|i| {
                        if negative {
                            i as isize - r as isize
                        } else {
                            i as isize
                        }
                    })
                    .collect();
                (t, axes, keepdim)
            })
    })
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn sum_and_mean((x, axes, keep) in leaf_and_dims(false)) {
        check_gradients("sum", std::slice::from_ref(&x), |v| v[0].sum(&axes, keep));
        check_gradients("mean", &[x], |v| v[0].mean(&axes, keep));
    }

    #[test]
    fn max_and_min((x, axes, keep) in leaf_and_dims(true), seed in any::<u64>()) {
        let x = distinct_storage(&x, seed);
        check_gradients("max", std::slice::from_ref(&x), |v| v[0].max(&axes, keep));
        check_gradients("min", &[x], |v| v[0].min(&axes, keep));
    }

    #[test]
    fn var_and_std((x, axes, keep) in leaf_and_dims(false), correction in 0usize..=1) {
        // var needs more elements than the correction; std needs var > 0 (no ties).
        let n: usize = if axes.is_empty() {
            x.numel()
        } else {
            axes.iter().map(|&a| x.dims()[a.rem_euclid(x.rank() as isize) as usize]).product()
        };
        prop_assume!(n > correction);
        check_gradients("var", std::slice::from_ref(&x), |v| v[0].var(&axes, correction, keep));
        prop_assume!(n >= 2 && x.strides().iter().zip(x.dims()).all(|(&s, &d)| s != 0 || d == 1));
        check_gradients("std", &[distinct_storage(&x, 7)], |v| v[0].std(&axes, correction, keep));
    }

    #[test]
    fn softmax_and_log_softmax(x in any_leaf(1, 4, 5), pick in any::<usize>()) {
        let dim = (pick % x.rank()) as isize - if pick % 2 == 0 { 0 } else { x.rank() as isize };
        let x = map_storage(&x, |v| 3.0 * v);
        check_gradients("softmax", std::slice::from_ref(&x), |v| v[0].softmax(dim));
        check_gradients("log_softmax", &[x], |v| v[0].log_softmax(dim));
    }
}

/// Ties: the whole gradient goes to the first maximum in row-major order over the
/// reduced dims (as torch.max(dim) / argmax), none to the others.
#[test]
fn max_ties_go_to_the_first() {
    let x = Var::leaf(
        Tensor::from_vec(vec![3.0, 1.0, 3.0, 2.0, 5.0, 5.0, 0.0, 5.0], [2, 2, 2]).unwrap(),
    );
    let g = x
        .max(&[1, 2], false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    );
    let g = x
        .min(&[0], true)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // column-wise min over dim 0: (3|5)->3 first, (1|5)->1, (3|0)->0 second, (2|5)->2
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        vec![1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    );
}

/// A NaN is the maximum (as in forward), and gets the gradient.
#[test]
fn max_nan_gets_the_gradient() {
    let x = Var::leaf(Tensor::from_vec(vec![1.0, f32::NAN, 2.0], [3]).unwrap());
    let g = x.max(&[0], false).unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.0, 1.0, 0.0]);
}

/// The mean's gradient is 1/N for each element, with N the reduced count only.
#[test]
fn mean_gradient_is_one_over_count() {
    let x = Var::leaf(Tensor::zeros([2, 4]));
    let g = x
        .mean(&[1], false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.25; 8]);
}
