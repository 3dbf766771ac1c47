//! Views (reshape, permute, transpose, narrow, broadcast_as, squeeze, unsqueeze,
//! flatten, contiguous) against a naive reference that computes every element from
//! its logical index, on random shapes and on chains of views.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ravel, unravel, Lcg};
use proptest::prelude::*;
use tensor::{Layout, Shape, Tensor, TensorError};

/// Row-major multi-indices of a shape.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = dims.iter().product();
    (0..n).map(|flat| unravel(flat, dims)).collect()
}

/// Value of element `idx` of a contiguous `dims` tensor holding 0, 1, 2, ...
fn flat_of(idx: &[usize], dims: &[usize]) -> f32 {
    ravel(idx, dims) as f32
}

fn iota(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f32).collect(), dims.to_vec()).unwrap()
}

proptest! {
    #[test]
    fn permute_matches_index_reference(
        dims in prop::collection::vec(1usize..5, 1..=4),
        seed in any::<u64>(),
    ) {
        // A permutation from the seed (Fisher-Yates with a fixed LCG).
        let mut perm: Vec<usize> = (0..dims.len()).collect();
        let mut lcg = Lcg::new(seed);
        for i in (1..perm.len()).rev() {
            perm.swap(i, (lcg.next_u64() >> 33) as usize % (i + 1));
        }
        let x = iota(&dims);
        let y = x.permute(&perm).unwrap();
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        prop_assert_eq!(y.dims(), &out_dims[..]);
        let got = y.to_vec().unwrap();
        for (k, idx) in indices(&out_dims).iter().enumerate() {
            let mut src = vec![0; dims.len()];
            for (o, &p) in perm.iter().enumerate() {
                src[p] = idx[o];
            }
            prop_assert_eq!(got[k], flat_of(&src, &dims));
        }
        // Permuting back restores the original order.
        let mut inv = vec![0; perm.len()];
        for (o, &p) in perm.iter().enumerate() {
            inv[p] = o;
        }
        prop_assert_eq!(y.permute(&inv).unwrap().to_vec().unwrap(), x.to_vec().unwrap());
    }

    #[test]
    fn narrow_matches_index_reference(
        dims in prop::collection::vec(1usize..6, 1..=4),
        pick in any::<(u8, u8, u8)>(),
    ) {
        let d = pick.0 as usize % dims.len();
        let start = pick.1 as usize % (dims[d] + 1);
        let len = pick.2 as usize % (dims[d] - start + 1);
        let x = iota(&dims);
        let y = x.narrow(d as isize, start, len).unwrap();
        let mut out_dims = dims.clone();
        out_dims[d] = len;
        prop_assert_eq!(y.dims(), &out_dims[..]);
        let got = y.to_vec().unwrap();
        for (k, idx) in indices(&out_dims).iter().enumerate() {
            let mut src = idx.clone();
            src[d] += start;
            prop_assert_eq!(got[k], flat_of(&src, &dims));
        }
    }

    #[test]
    fn broadcast_matches_index_reference(
        dims in prop::collection::vec(1usize..4, 0..=3),
        ones in any::<u8>(),
        extra in prop::collection::vec(1usize..4, 0..=2),
        grow in prop::collection::vec(1usize..4, 3),
    ) {
        // Source: some dims set to 1; target: those dims grown, extra dims in front.
        let src: Vec<usize> = dims.iter().enumerate()
            .map(|(i, &d)| if ones >> i & 1 == 1 { 1 } else { d }).collect();
        let mut target = extra.clone();
        target.extend(src.iter().enumerate().map(|(i, &d)| if d == 1 { grow[i % 3] } else { d }));
        let x = iota(&src);
        let y = x.broadcast_as(target.clone()).unwrap();
        let got = y.to_vec().unwrap();
        for (k, idx) in indices(&target).iter().enumerate() {
            let s: Vec<usize> = idx[extra.len()..].iter().zip(&src)
                .map(|(&i, &d)| if d == 1 { 0 } else { i }).collect();
            prop_assert_eq!(got[k], flat_of(&s, &src));
        }
        // Stride 0 on every broadcast dim: no storage was added.
        prop_assert_eq!(y.storage().len(), x.numel());
    }

    #[test]
    fn transpose_narrow_chain_then_contiguous(
        dims in prop::collection::vec(1usize..5, 2..=4),
        a in any::<u8>(),
        b in any::<u8>(),
        cut in any::<u8>(),
    ) {
        let x = iota(&dims);
        let (i, j) = (a as usize % dims.len(), b as usize % dims.len());
        let mut t_dims = dims.clone();
        t_dims.swap(i, j);
        // Narrow the last dim of the transposed view by one from the front, if possible.
        let last = t_dims.len() - 1;
        let start = if t_dims[last] > 1 { (cut as usize % 2).min(t_dims[last] - 1) } else { 0 };
        let y = x.transpose(i as isize, j as isize).unwrap()
            .narrow(-1, start, t_dims[last] - start).unwrap()
            .unsqueeze(0).unwrap().squeeze(0).unwrap();
        let mut out_dims = t_dims.clone();
        out_dims[last] -= start;
        let expect: Vec<f32> = indices(&out_dims).iter().map(|idx| {
            let mut s = idx.clone();
            s[last] += start;
            s.swap(i, j);
            flat_of(&s, &dims)
        }).collect();
        let c = y.contiguous().unwrap();
        prop_assert!(c.is_contiguous());
        prop_assert_eq!(c.to_vec().unwrap(), expect.clone());
        // reshape of the non-contiguous view copies, then flattens in logical order.
        let n = expect.len();
        prop_assert_eq!(y.reshape([n]).unwrap().to_vec().unwrap(), expect);
    }
}

#[test]
fn reshape_is_zero_copy_when_contiguous() {
    let x = iota(&[2, 3, 4]);
    let y = x.reshape([6, 4]).unwrap();
    assert!(std::sync::Arc::ptr_eq(x.storage(), y.storage()));
    assert_eq!(y.strides(), &[4, 1]);
    let f = x.flatten(1, 2).unwrap();
    assert_eq!(f.dims(), &[2, 12]);
    assert_eq!(x.flatten(0, -1).unwrap().dims(), &[24]);
}

#[test]
fn view_refuses_to_copy() {
    let x = iota(&[2, 3]).t().unwrap();
    let err = x.view([6]).unwrap_err();
    assert!(
        matches!(err, TensorError::Invalid { op: "reshape", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not contiguous"), "{err}");
}

#[test]
fn unsqueeze_and_squeeze_positions() {
    let x = iota(&[2, 3]);
    assert_eq!(x.unsqueeze(0).unwrap().dims(), &[1, 2, 3]);
    assert_eq!(x.unsqueeze(2).unwrap().dims(), &[2, 3, 1]);
    assert_eq!(x.unsqueeze(-1).unwrap().dims(), &[2, 3, 1]);
    let back = x.unsqueeze(1).unwrap().squeeze(1).unwrap();
    assert_eq!(back.to_vec().unwrap(), x.to_vec().unwrap());
    let e = x.squeeze(0).unwrap_err();
    assert!(e.to_string().contains("size 2, not 1"), "{e}");
}

#[test]
fn bad_views_are_clear_errors() {
    let x = iota(&[2, 3]);
    let e = x.reshape([4, 2]).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::ElementCount {
                expected: 8,
                got: 6,
                ..
            }
        ),
        "{e}"
    );
    let e = x.transpose(0, 2).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::DimOutOfRange {
                dim: 2,
                rank: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = x.permute(&[0, 0]).unwrap_err();
    assert!(e.to_string().contains("not a permutation"), "{e}");
    let e = x.narrow(1, 2, 2).unwrap_err();
    assert!(
        matches!(e, TensorError::IndexOutOfRange { op: "narrow", .. }),
        "{e}"
    );
    let e = x.broadcast_as([3, 3]).unwrap_err();
    assert!(matches!(e, TensorError::Broadcast { .. }), "{e}");
    assert!(
        e.to_string().contains("[2, 3]") && e.to_string().contains("[3, 3]"),
        "{e}"
    );
    let e = Tensor::from_vec(vec![1.0; 5], [2, 3]).unwrap_err();
    assert!(e.to_string().contains("5 elements"), "{e}");
    assert!(x.dim(-3).is_err());
    assert_eq!(x.dim(-1).unwrap(), 3);
    assert!(Tensor::arange(0.0, 1.0, 0.0).is_err());
}

#[test]
fn broadcast_rule_examples() {
    // NumPy's documented example: (8,1,6,1) with (7,1,5) -> (8,7,6,5).
    let s = Shape::broadcast("t", &Shape::from([8, 1, 6, 1]), &Shape::from([7, 1, 5])).unwrap();
    assert_eq!(s.dims(), &[8, 7, 6, 5]);
    assert!(Shape::broadcast("t", &Shape::from([3]), &Shape::from([4])).is_err());
    let z = Shape::broadcast("t", &Shape::from([0]), &Shape::from([1])).unwrap();
    assert_eq!(z.dims(), &[0]);
}

#[test]
fn layout_bounds_are_checked() {
    let x = iota(&[4]);
    let bad = Layout::new([3], vec![2], 0).unwrap(); // reads 0, 2, 4: past 4 elements
    assert!(Tensor::from_storage(x.storage().clone(), bad).is_err());
    let ok = Layout::new([2], vec![2], 1).unwrap(); // reads 1, 3
    let y = Tensor::from_storage(x.storage().clone(), ok).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![1.0, 3.0]);
    assert!(Layout::new([2, 2], vec![1], 0).is_err());
}

#[test]
fn empty_and_scalar_tensors() {
    let e = Tensor::zeros([0, 3]);
    assert_eq!(e.to_vec().unwrap(), Vec::<f32>::new());
    assert_eq!(e.t().unwrap().dims(), &[3, 0]);
    let s = Tensor::scalar(2.5);
    assert_eq!(s.rank(), 0);
    assert_eq!(s.to_scalar().unwrap(), 2.5);
    assert_eq!(s.unsqueeze(0).unwrap().dims(), &[1]);
    assert!(Tensor::ones([2]).to_scalar().is_err());
    let r = Tensor::arange(0.0, 1.0, 0.25).unwrap().to_vec().unwrap();
    assert_eq!(r, vec![0.0, 0.25, 0.5, 0.75]);
}
