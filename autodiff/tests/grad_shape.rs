//! Gradient checks for the views and joins: `reshape flatten squeeze unsqueeze
//! permute transpose t narrow broadcast_as contiguous cat stack chunk split`, over
//! random shapes and leaf layouts. Each view is followed by the weighted sum of the
//! check, so its backward must put every gradient element back at the right place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use autodiff::Var;
use common::*;
use proptest::prelude::*;
use tensor::Tensor;

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn reshape_flatten_squeeze_unsqueeze(x in any_leaf0(1, 4, 4), pick in any::<usize>()) {
        let r = x.rank();
        let n = x.numel();
        check_gradients("reshape", std::slice::from_ref(&x), |v| v[0].reshape([n]));
        let s = pick % r;
        let e = s + (pick / 7) % (r - s);
        check_gradients("flatten", std::slice::from_ref(&x), |v| v[0].flatten(s as isize, e as isize));
        check_gradients("unsqueeze", std::slice::from_ref(&x), |v| v[0].unsqueeze((pick % (r + 1)) as isize));
        check_gradients("unsqueeze_squeeze", &[x], |v| {
            v[0].unsqueeze(-1)?.mul_scalar(2.0)?.squeeze(-1)
        });
    }

    #[test]
    fn permute_transpose_t(
        x in dims0(2, 4, 4).prop_flat_map(|d| {
            let r = d.len();
            (leaf(d), Just((0..r).collect::<Vec<_>>()).prop_shuffle())
        }),
        pick in any::<usize>(),
    ) {
        let (x, perm) = x;
        let r = x.rank();
        check_gradients("permute", std::slice::from_ref(&x), |v| v[0].permute(&perm));
        let (a, b) = ((pick % r) as isize, ((pick / 5) % r) as isize - r as isize);
        check_gradients("transpose", std::slice::from_ref(&x), |v| v[0].transpose(a, b));
        check_gradients("t", std::slice::from_ref(&x), |v| v[0].t());
        check_gradients("contiguous", &[x], |v| v[0].t()?.contiguous());
    }

    #[test]
    fn narrow(x in any_leaf(1, 4, 5), pick in any::<usize>(), s in any::<usize>(), l in any::<usize>()) {
        let d = pick % x.rank();
        let size = x.dims()[d];
        let start = s % (size + 1);
        let len = l % (size - start + 1);
        check_gradients("narrow", &[x], |v| v[0].narrow(d as isize, start, len));
    }

    #[test]
    fn broadcast_as(
        (x, out) in dims(0, 3, 4).prop_flat_map(|out| {
            (common::tcommon::operand_dims(out.clone()).prop_flat_map(leaf), Just(out))
        }),
        extra in 0..=1usize,
    ) {
        let mut target = vec![2; extra];
        target.extend(out);
        check_gradients("broadcast_as", &[x], |v| v[0].broadcast_as(target.clone()));
    }

    #[test]
    fn cat_and_stack(
        (parts, dim) in dims(1, 3, 3).prop_flat_map(|d| {
            let r = d.len();
            (0..r, proptest::collection::vec(0..=3usize, 1..=3), Just(d))
        }).prop_flat_map(|(dim, sizes, d)| {
            let leaves: Vec<_> = sizes.iter().map(|&s| {
                let mut dd = d.clone();
                dd[dim] = s;
                leaf(dd)
            }).collect();
            (leaves, Just(dim))
        }),
    ) {
        check_gradients("cat", &parts, |v| Var::cat(&v.iter().collect::<Vec<_>>(), dim as isize));
        let d0 = parts[0].dims().to_vec();
        let same: Vec<Tensor> = parts.iter().filter(|p| p.dims() == d0.as_slice()).cloned().collect();
        check_gradients("stack", &same, |v| Var::stack(&v.iter().collect::<Vec<_>>(), dim as isize));
    }

    #[test]
    fn chunk_and_split(x in any_leaf(1, 3, 5), pick in any::<usize>(), n in 1..=4usize) {
        let d = (pick % x.rank()) as isize;
        // Recombine the pieces with different weights so each piece's backward counts.
        let recombine = |parts: Vec<Var>| -> autodiff::Result<Var> {
            let mut acc: Option<Var> = None;
            for (i, p) in parts.iter().enumerate() {
                let s = p.mul_scalar(i as f32 + 1.0)?.sum_all()?;
                acc = Some(match acc { Some(a) => a.add(&s)?, None => s });
            }
            Ok(acc.unwrap_or_else(|| Var::constant(Tensor::scalar(0.0))))
        };
        check_gradients("chunk", std::slice::from_ref(&x), |v| recombine(v[0].chunk(n, d)?));
        check_gradients("split", &[x], |v| recombine(v[0].split(n, d)?));
    }
}

/// Narrow's gradient is zero outside the slice and the incoming gradient inside.
#[test]
fn narrow_pads_with_zeros() {
    let x = Var::leaf(Tensor::zeros([2, 4]));
    let w = Var::constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2]).unwrap());
    let g = x
        .narrow(1, 1, 2)
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        vec![0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0]
    );
}
