//! Reductions, argmax and softmax against f64 naive references on permuted,
//! narrowed and broadcast layouts; PyTorch's edge cases; errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{any_tensor, close, naive_values, ravel, unravel, WIDE};
use proptest::prelude::*;
use tensor::{Tensor, TensorError};

/// Reference reduction: f64 buckets per kept position. Returns (out dims, buckets).
fn naive_reduce(t: &Tensor, mask: &[bool], keepdim: bool) -> (Vec<usize>, Vec<Vec<f64>>) {
    let dims = t.dims();
    let kept: Vec<usize> = dims
        .iter()
        .zip(mask)
        .filter(|(_, &m)| !m)
        .map(|(&d, _)| d)
        .collect();
    let out_dims: Vec<usize> = if keepdim {
        dims.iter()
            .zip(mask)
            .map(|(&d, &m)| if m { 1 } else { d })
            .collect()
    } else {
        kept.clone()
    };
    let mut buckets = vec![vec![]; kept.iter().product()];
    for (i, v) in naive_values(t).into_iter().enumerate() {
        let idx = unravel(i, dims);
        let k: Vec<usize> = idx
            .iter()
            .zip(mask)
            .filter(|(_, &m)| !m)
            .map(|(&x, _)| x)
            .collect();
        buckets[ravel(&k, &kept)].push(v as f64);
    }
    (out_dims, buckets)
}

fn dims_list(mask: &[bool], negative: bool) -> Vec<isize> {
    let r = mask.len() as isize;
    (0..mask.len())
        .filter(|&i| mask[i])
        .map(|i| if negative { i as isize - r } else { i as isize })
        .collect()
}

fn tensor_and_mask() -> impl Strategy<Value = (Tensor, Vec<bool>, bool, bool)> {
    any_tensor(4, 5).prop_flat_map(|t| {
        let r = t.rank();
        (
            Just(t),
            proptest::collection::vec(any::<bool>(), r),
            any::<bool>(),
            any::<bool>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sum_mean_max_min_match_naive((t, mask, keepdim, neg) in tensor_and_mask()) {
        let list = dims_list(&mask, neg);
        // An empty dims list reduces every dim.
        let mask = if list.is_empty() { vec![true; t.rank()] } else { mask };
        let (out_dims, buckets) = naive_reduce(&t, &mask, keepdim);
        let sum = t.sum(&list, keepdim).unwrap();
        let mean = t.mean(&list, keepdim).unwrap();
        prop_assert_eq!(sum.dims(), &out_dims[..]);
        prop_assert_eq!(mean.dims(), &out_dims[..]);
        let (s, m) = (sum.to_vec().unwrap(), mean.to_vec().unwrap());
        let empty = buckets.first().is_some_and(|b| b.is_empty());
        for (i, b) in buckets.iter().enumerate() {
            let total: f64 = b.iter().sum();
            prop_assert!(close(s[i], total, 1e-5, 1e-6), "sum {} vs {}", s[i], total);
            prop_assert!(close(m[i], total / b.len() as f64, 1e-6, 1e-6), "mean {} vs {:?}", m[i], b);
        }
        match (t.max(&list, keepdim), t.min(&list, keepdim)) {
            (Ok(mx), Ok(mn)) => {
                prop_assert!(!empty);
                prop_assert_eq!(mx.dims(), &out_dims[..]);
                let (mx, mn) = (mx.to_vec().unwrap(), mn.to_vec().unwrap());
                for (i, b) in buckets.iter().enumerate() {
                    prop_assert_eq!(mx[i] as f64, b.iter().cloned().fold(f64::MIN, f64::max));
                    prop_assert_eq!(mn[i] as f64, b.iter().cloned().fold(f64::MAX, f64::min));
                }
            }
            (Err(TensorError::Invalid { .. }), Err(TensorError::Invalid { .. })) => {
                prop_assert!(mask.iter().zip(t.dims()).any(|(&m, &d)| m && d == 0));
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn var_and_std_match_two_pass_f64((t, mask, keepdim, neg) in tensor_and_mask(), correction in 0usize..3) {
        let list = dims_list(&mask, neg);
        let mask = if list.is_empty() { vec![true; t.rank()] } else { mask };
        let (out_dims, buckets) = naive_reduce(&t, &mask, keepdim);
        let var = t.var(&list, correction, keepdim).unwrap();
        let std = t.std(&list, correction, keepdim).unwrap().to_vec().unwrap();
        prop_assert_eq!(var.dims(), &out_dims[..]);
        for ((g, b), sd) in var.to_vec().unwrap().iter().zip(&buckets).zip(&std) {
            let n = b.len() as f64;
            let mean = b.iter().sum::<f64>() / n;
            let ss: f64 = b.iter().map(|v| (v - mean) * (v - mean)).sum();
            let want = ss / (n - correction as f64).max(0.0);
            prop_assert!(close(*g, want, 1e-6, 1e-5), "var {} vs {} of {:?}", g, want, b);
            prop_assert!(close(*sd, want.sqrt(), 1e-6, 1e-5));
        }
    }

    #[test]
    fn argmax_argmin_pick_first_extreme((t, dim, keepdim) in any_tensor(4, 5).prop_flat_map(|t| {
        let r = t.rank().max(1) as isize;
        (Just(t), -r..r, any::<bool>())
    })) {
        let d = if t.rank() == 0 { 0 } else { dim.rem_euclid(t.rank() as isize) as usize };
        let mut mask = vec![false; t.rank()];
        if t.rank() > 0 { mask[d] = true; }
        let (out_dims, buckets) = naive_reduce(&t, &mask, keepdim);
        match (t.argmax(dim, keepdim), t.argmin(dim, keepdim)) {
            (Ok(amax), Ok(amin)) => {
                prop_assert_eq!(amax.dims(), &out_dims[..]);
                let (amax, amin) = (amax.to_vec().unwrap(), amin.to_vec().unwrap());
                for (i, b) in buckets.iter().enumerate() {
                    let hi = b.iter().cloned().fold(f64::MIN, f64::max);
                    let lo = b.iter().cloned().fold(f64::MAX, f64::min);
                    prop_assert_eq!(amax[i] as usize, b.iter().position(|&v| v == hi).unwrap());
                    prop_assert_eq!(amin[i] as usize, b.iter().position(|&v| v == lo).unwrap());
                }
            }
            (Err(TensorError::Invalid { .. }), Err(TensorError::Invalid { .. })) => {
                prop_assert_eq!(t.dims()[d], 0);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn softmax_and_log_softmax_match_naive((t, dim) in any_tensor(4, 5).prop_flat_map(|t| {
        let r = t.rank().max(1) as isize;
        (Just(t), -r..r)
    })) {
        let p = t.softmax(dim).unwrap();
        let l = t.log_softmax(dim).unwrap();
        prop_assert_eq!(p.dims(), t.dims());
        prop_assert_eq!(l.dims(), t.dims());
        let (p, l, x) = (p.to_vec().unwrap(), l.to_vec().unwrap(), naive_values(&t));
        let dims = t.dims();
        let d = if t.rank() == 0 { None } else { Some(dim.rem_euclid(t.rank() as isize) as usize) };
        for i in 0..x.len() {
            let idx = unravel(i, dims);
            // The slice through element i along `dim`.
            let slice: Vec<f64> = match d {
                None => vec![x[i] as f64],
                Some(d) => (0..dims[d]).map(|k| {
                    let mut j = idx.clone();
                    j[d] = k;
                    x[ravel(&j, dims)] as f64
                }).collect(),
            };
            let m = slice.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = slice.iter().map(|v| (v - m).exp()).sum();
            let xi = x[i] as f64;
            prop_assert!(close(p[i], (xi - m).exp() / s, 1e-7, 1e-6), "softmax {} at {:?}", p[i], idx);
            prop_assert!(close(l[i], xi - m - s.ln(), 1e-6, 1e-6), "log_softmax {} at {:?}", l[i], idx);
        }
    }
}

fn check_against_naive(t: &Tensor, dims: &[isize], mask: &[bool]) {
    let (_, buckets) = naive_reduce(t, mask, false);
    let s = t.sum(dims, false).unwrap().to_vec().unwrap();
    let mx = t.max(dims, false).unwrap().to_vec().unwrap();
    for (i, b) in buckets.iter().enumerate() {
        assert!(
            close(s[i], b.iter().sum(), 1e-4, 1e-6),
            "{} vs {}",
            s[i],
            b.iter().sum::<f64>()
        );
        assert_eq!(mx[i] as f64, b.iter().cloned().fold(f64::MIN, f64::max));
    }
}

#[test]
fn large_reductions_over_rows_columns_and_channels() {
    // Above the parallel threshold: column sums (rows folded into accumulators),
    // row sums, both through a transpose, and NCHW per-channel sums.
    let x = Tensor::from_vec(WIDE.values(517 * 263, 1), [517, 263]).unwrap();
    for t in [x.clone(), x.t().unwrap()] {
        check_against_naive(&t, &[0], &[true, false]);
        check_against_naive(&t, &[1], &[false, true]);
        check_against_naive(&t, &[], &[true, true]);
    }
    let y = Tensor::from_vec(WIDE.values(4 * 32 * 33 * 31, 2), [4, 32, 33, 31]).unwrap();
    check_against_naive(&y, &[0, 2, 3], &[true, false, true, true]);
    check_against_naive(&y, &[1], &[false, true, false, false]);
    check_against_naive(
        &y.permute(&[0, 2, 3, 1]).unwrap(),
        &[3],
        &[false, false, false, true],
    );
}

#[test]
fn large_softmax_rows_and_blocks() {
    let x = Tensor::from_vec(WIDE.values(8 * 77 * 130, 3), [8, 77, 130]).unwrap();
    for dim in [2, 1, 0] {
        let p = x.softmax(dim).unwrap();
        let s = p.sum(&[dim], false).unwrap().to_vec().unwrap();
        assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-5), "dim {dim}");
        let l = x.log_softmax(dim).unwrap().exp().unwrap().to_vec().unwrap();
        let pv = p.to_vec().unwrap();
        assert!(
            l.iter().zip(&pv).all(|(a, b)| (a - b).abs() < 1e-6),
            "dim {dim}"
        );
        // Against a row computed from the definition.
        let want = x
            .narrow(dim, 3, 1)
            .unwrap()
            .exp()
            .unwrap()
            .div(&x.exp().unwrap().sum(&[dim], true).unwrap())
            .unwrap()
            .to_vec()
            .unwrap();
        let got = p.narrow(dim, 3, 1).unwrap().to_vec().unwrap();
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "dim {dim}"
        );
    }
}

#[test]
fn summation_is_accurate() {
    let x = Tensor::full([1_000_000], 0.1);
    let want = (0.1f32 as f64 * 1e6) as f32; // naive f32 accumulation gives 100958.34
    assert_eq!(x.sum_all().unwrap().to_scalar().unwrap(), want);
    assert_eq!(x.mean_all().unwrap().to_scalar().unwrap(), 0.1);
    let y = Tensor::from_slice(&[1e8, 1.0, -1e8, 1.0], [4]).unwrap();
    assert_eq!(y.sum_all().unwrap().to_scalar().unwrap(), 2.0);
}

#[test]
fn torch_edge_cases() {
    let e = Tensor::zeros([3, 0]);
    assert_eq!(e.sum(&[1], false).unwrap().to_vec().unwrap(), vec![0.0; 3]);
    assert!(e
        .mean(&[1], false)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|v| v.is_nan()));
    assert_eq!(e.sum_all().unwrap().to_scalar().unwrap(), 0.0);
    let msg = e.max(&[1], false).unwrap_err().to_string();
    assert!(msg.contains("max") && msg.contains("[3, 0]"), "{msg}");
    assert!(e.argmax(1, false).is_err() && e.min(&[], false).is_err());
    assert_eq!(Tensor::zeros([0, 3]).max(&[1], false).unwrap().dims(), &[0]);
    assert!(Tensor::zeros([0, 0]).max(&[1], false).is_err()); // torch errors too
    assert_eq!(e.softmax(1).unwrap().dims(), &[3, 0]);

    let one = Tensor::from_slice(&[1.0], [1]).unwrap();
    assert!(one
        .var(&[], 1, false)
        .unwrap()
        .to_scalar()
        .unwrap()
        .is_nan());
    let two = Tensor::from_slice(&[1.0, 2.0], [2]).unwrap();
    assert_eq!(
        two.var(&[], 3, false).unwrap().to_scalar().unwrap(),
        f32::INFINITY
    );
    assert_eq!(
        two.var(&[0], 0, true).unwrap().to_vec().unwrap(),
        vec![0.25]
    );

    let nan = Tensor::from_slice(&[1.0, f32::NAN, 3.0, f32::NAN], [4]).unwrap();
    assert_eq!(nan.argmax(0, false).unwrap().to_scalar().unwrap(), 1.0);
    assert_eq!(nan.argmin(0, false).unwrap().to_scalar().unwrap(), 1.0);
    assert!(nan.max(&[0], false).unwrap().to_scalar().unwrap().is_nan());
    assert!(nan.min(&[0], false).unwrap().to_scalar().unwrap().is_nan());
    let ties = Tensor::from_slice(&[3.0, 1.0, 3.0, 1.0], [4]).unwrap();
    assert_eq!(ties.argmax(0, false).unwrap().to_scalar().unwrap(), 0.0);
    assert_eq!(ties.argmin(-1, true).unwrap().to_vec().unwrap(), vec![1.0]);

    let s = Tensor::scalar(3.0);
    assert_eq!(s.sum(&[0], false).unwrap().dims(), &[] as &[usize]);
    assert_eq!(s.softmax(0).unwrap().to_scalar().unwrap(), 1.0);
    assert_eq!(s.log_softmax(-1).unwrap().to_scalar().unwrap(), 0.0);
    assert_eq!(s.argmax(0, false).unwrap().to_scalar().unwrap(), 0.0);

    let x = Tensor::from_slice(
        &[f32::NEG_INFINITY, f32::NEG_INFINITY, 1000.0, 1000.0],
        [2, 2],
    )
    .unwrap();
    let p = x.softmax(1).unwrap().to_vec().unwrap();
    assert!(p[0].is_nan() && p[1].is_nan() && p[2..] == [0.5, 0.5]);
    let m = Tensor::arange(0.0, 6.0, 1.0)
        .unwrap()
        .reshape([2, 3])
        .unwrap();
    assert_eq!(m.sum_keepdim(1).unwrap().to_vec().unwrap(), vec![3.0, 12.0]);
    assert_eq!(m.sum_keepdim(1).unwrap().dims(), &[2, 1]);
    assert_eq!(
        m.mean_keepdim(0).unwrap().to_vec().unwrap(),
        vec![1.5, 2.5, 3.5]
    );
    assert_eq!(m.max_keepdim(-1).unwrap().to_vec().unwrap(), vec![2.0, 5.0]);
}

#[test]
fn bad_dims_are_errors() {
    let x = Tensor::zeros([2, 3]);
    match x.sum(&[2], false) {
        Err(TensorError::DimOutOfRange { op, dim, rank }) => {
            assert_eq!((op, dim, rank), ("sum", 2, 2))
        }
        other => panic!("expected DimOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        x.mean(&[-3], true),
        Err(TensorError::DimOutOfRange { dim: -3, .. })
    ));
    let dup = x.sum(&[0, -2], false).unwrap_err().to_string();
    assert!(dup.contains("more than once"), "{dup}");
    assert!(matches!(
        x.argmax(5, false),
        Err(TensorError::DimOutOfRange { op: "argmax", .. })
    ));
    assert!(matches!(
        x.softmax(2),
        Err(TensorError::DimOutOfRange { op: "softmax", .. })
    ));
    assert!(matches!(
        x.log_softmax(-3),
        Err(TensorError::DimOutOfRange { .. })
    ));
    assert!(matches!(
        x.var(&[7], 1, false),
        Err(TensorError::DimOutOfRange { op: "var", .. })
    ));
    assert!(matches!(
        Tensor::scalar(1.0).sum(&[1], false),
        Err(TensorError::DimOutOfRange { .. })
    ));
}
