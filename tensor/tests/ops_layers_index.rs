//! cat, stack, chunk, split, index_select, gather and embedding against per-element
//! references over strided layouts and odd sizes (0, 1, primes); plus error cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{err_of, kind, make, ravel, t, unravel, Kind};
use proptest::prelude::*;
use tensor::Tensor;

#[test]
fn cat_and_stack_hand_values() {
    let a = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t(&[5.0, 6.0], &[2, 1]);
    let c = Tensor::cat(&[a.clone(), b.clone()], 1).unwrap();
    assert_eq!(c.dims(), &[2, 3]);
    assert_eq!(c.to_vec().unwrap(), vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    let c = Tensor::cat(&[&a, &a.t().unwrap()], -2).unwrap();
    assert_eq!(
        c.to_vec().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 1.0, 3.0, 2.0, 4.0]
    );
    let s = Tensor::stack(&[&a, &a], 1).unwrap();
    assert_eq!(s.dims(), &[2, 2, 2]);
    assert_eq!(
        s.to_vec().unwrap(),
        vec![1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]
    );
    let s = Tensor::stack(&[Tensor::scalar(1.0), Tensor::scalar(2.0)], 0).unwrap();
    assert_eq!((s.dims(), s.to_vec().unwrap()), (&[2][..], vec![1.0, 2.0]));
}

#[test]
fn cat_stack_errors() {
    let a = Tensor::zeros([2, 2]);
    let e = err_of(Tensor::cat(&[a.clone(), Tensor::zeros([3, 3])], 0));
    assert!(
        e.contains("cat") && e.contains("[2, 2]") && e.contains("[3, 3]"),
        "{e}"
    );
    let e = err_of(Tensor::cat(&[a.clone(), Tensor::zeros([2, 2, 1])], 0));
    assert!(e.contains("[2, 2, 1]"), "{e}");
    assert!(err_of(Tensor::cat::<Tensor>(&[], 0)).contains("at least one"));
    assert!(err_of(Tensor::cat(std::slice::from_ref(&a), 2)).contains("dim 2 out of range"));
    let e = err_of(Tensor::stack(&[a.clone(), Tensor::zeros([2, 3])], 0));
    assert!(e.contains("stack") && e.contains("[2, 3]"), "{e}");
    assert!(err_of(Tensor::stack(&[a], 3)).contains("out of range"));
}

#[test]
fn chunk_and_split_follow_torch_sizes() {
    let x = Tensor::arange(0.0, 5.0, 1.0).unwrap();
    let sizes = |v: Vec<Tensor>| v.iter().map(|p| p.dims()[0]).collect::<Vec<_>>();
    assert_eq!(sizes(x.chunk(2, 0).unwrap()), vec![3, 2]);
    assert_eq!(sizes(x.chunk(4, 0).unwrap()), vec![2, 2, 1]); // fewer than asked
    assert_eq!(sizes(x.chunk(7, 0).unwrap()), vec![1, 1, 1, 1, 1]);
    assert_eq!(sizes(x.split(2, 0).unwrap()), vec![2, 2, 1]);
    assert_eq!(sizes(x.split(9, 0).unwrap()), vec![5]);
    assert_eq!(
        sizes(x.split_with_sizes(&[1, 0, 4], 0).unwrap()),
        vec![1, 0, 4]
    );
    let empty = Tensor::zeros([0, 2]);
    assert_eq!(sizes(empty.chunk(3, 0).unwrap()), vec![0, 0, 0]);
    assert_eq!(sizes(empty.split(2, 0).unwrap()), vec![0]);
    assert_eq!(sizes(empty.split(0, 0).unwrap()), vec![0]);
    let parts = x.chunk(2, 0).unwrap();
    assert_eq!(parts[1].to_vec().unwrap(), vec![3.0, 4.0]);
    assert!(
        parts.iter().all(|p| Arc::ptr_eq(p.storage(), x.storage())),
        "views"
    );
    assert!(err_of(x.chunk(0, 0)).contains("chunks"));
    assert!(err_of(x.split(0, 0)).contains("split_size 0"));
    assert!(err_of(x.split_with_sizes(&[1, 2], 0)).contains("add up to 3"));
}

#[test]
fn index_select_gather_embedding_hand_values() {
    let x = Tensor::arange(0.0, 6.0, 1.0)
        .unwrap()
        .reshape([2, 3])
        .unwrap();
    let y = x.index_select(1, &[2, 0, 2]).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![2.0, 0.0, 2.0, 5.0, 3.0, 5.0]);
    let y = x.index_select(0, &[]).unwrap();
    assert_eq!(y.dims(), &[0, 3]);
    let idx = t(&[1.0, 1.0, 0.0, 0.0], &[2, 2]);
    assert_eq!(
        x.gather(0, &idx).unwrap().to_vec().unwrap(),
        vec![3.0, 4.0, 0.0, 1.0]
    );
    assert_eq!(
        x.gather(-1, &idx).unwrap().to_vec().unwrap(),
        vec![1.0, 1.0, 3.0, 3.0]
    );
    let w = Tensor::arange(0.0, 8.0, 1.0)
        .unwrap()
        .reshape([4, 2])
        .unwrap();
    let e = Tensor::embedding_with_shape(&w, &[3, 0, 1, 3], &[2, 2]).unwrap();
    assert_eq!(e.dims(), &[2, 2, 2]);
    assert_eq!(
        e.to_vec().unwrap(),
        vec![6.0, 7.0, 0.0, 1.0, 2.0, 3.0, 6.0, 7.0]
    );
    // A transposed weight is read through its layout.
    let wt = Tensor::arange(0.0, 8.0, 1.0)
        .unwrap()
        .reshape([2, 4])
        .unwrap()
        .t()
        .unwrap();
    let e = Tensor::embedding(&wt, &[1]).unwrap();
    assert_eq!(e.to_vec().unwrap(), vec![1.0, 5.0]);
    assert_eq!(Tensor::embedding(&w, &[]).unwrap().dims(), &[0, 2]);
}

#[test]
fn index_errors() {
    let x = Tensor::zeros([2, 3]);
    let e = err_of(x.index_select(1, &[0, 3]));
    assert!(
        e.contains("index_select") && e.contains("index 3") && e.contains("size 3"),
        "{e}"
    );
    let e = err_of(x.gather(1, &t(&[0.5], &[1, 1])));
    assert!(
        e.contains("gather") && e.contains("0.5") && e.contains("[0, 0]"),
        "{e}"
    );
    let e = err_of(x.gather(1, &t(&[0.0, -1.0], &[1, 2])));
    assert!(e.contains("-1") && e.contains("[0, 1]"), "{e}");
    let e = err_of(x.gather(0, &t(&[2.0], &[1, 1])));
    assert!(e.contains("out of range for dim 0 of size 2"), "{e}");
    let e = err_of(x.gather(0, &t(&[f32::NAN], &[1, 1])));
    assert!(e.contains("NaN"), "{e}");
    let e = err_of(x.gather(0, &Tensor::zeros([1, 4])));
    assert!(e.contains("[1, 4]") && e.contains("[2, 3]"), "{e}");
    let e = err_of(x.gather(0, &Tensor::zeros([2])));
    assert!(e.contains("rank"), "{e}");
    let w = Tensor::zeros([49408, 1]);
    let e = err_of(Tensor::embedding(&w, &[320, 49408]));
    assert!(
        e.contains("id 49408") && e.contains("vocabulary of 49408"),
        "{e}"
    );
    let e = err_of(Tensor::embedding(&Tensor::zeros([3]), &[0]));
    assert!(e.contains("(vocab, dim)"), "{e}");
    let e = err_of(Tensor::embedding_with_shape(&w, &[1, 2, 3], &[2, 2]));
    assert!(e.contains("embedding") && e.contains("[2, 2]"), "{e}");
}

fn dims_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![Just(0usize), Just(1), Just(2), Just(3), Just(5), Just(7)],
        1..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn cat_matches_reference(
        base in dims_strategy(),
        extra in prop::collection::vec((0usize..4, kind()), 1..4),
        dim_pick in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let d = dim_pick % base.len();
        let parts: Vec<Tensor> = extra
            .iter()
            .enumerate()
            .map(|(i, &(len, k))| {
                let mut dims = base.clone();
                dims[d] = len;
                make(&dims, k, seed.wrapping_add(i as u64))
            })
            .collect();
        let y = Tensor::cat(&parts, d as isize).unwrap();
        let mut od = base.clone();
        od[d] = extra.iter().map(|e| e.0).sum();
        prop_assert_eq!(y.dims(), &od[..]);
        let vals: Vec<Vec<f32>> = parts.iter().map(|p| p.to_vec().unwrap()).collect();
        let want: Vec<f32> = (0..y.numel())
            .map(|i| {
                let mut idx = unravel(i, &od);
                let mut p = 0;
                while idx[d] >= parts[p].dims()[d] {
                    idx[d] -= parts[p].dims()[d];
                    p += 1;
                }
                vals[p][ravel(&idx, parts[p].dims())]
            })
            .collect();
        prop_assert_eq!(y.to_vec().unwrap(), want);
    }

    #[test]
    fn stack_matches_reference(
        dims in dims_strategy(),
        n in 1usize..4,
        dim_pick in any::<usize>(),
        k in kind(),
        seed in any::<u64>(),
    ) {
        let d = dim_pick % (dims.len() + 1);
        let parts: Vec<Tensor> = (0..n).map(|i| make(&dims, k, seed ^ i as u64)).collect();
        let y = Tensor::stack(&parts, d as isize).unwrap();
        let mut od = dims.clone();
        od.insert(d, n);
        prop_assert_eq!(y.dims(), &od[..]);
        let got = y.to_vec().unwrap();
        for (i, &g) in got.iter().enumerate() {
            let mut idx = unravel(i, &od);
            let p = idx.remove(d);
            prop_assert_eq!(g, parts[p].to_vec().unwrap()[ravel(&idx, &dims)]);
        }
    }

    #[test]
    fn split_and_chunk_reassemble(
        dims in dims_strategy(),
        size in 1usize..6,
        dim_pick in any::<usize>(),
        k in kind(),
        seed in any::<u64>(),
    ) {
        let d = dim_pick % dims.len();
        let x = make(&dims, k, seed);
        for parts in [x.split(size, d as isize).unwrap(), x.chunk(size, d as isize).unwrap()] {
            let lens: Vec<usize> = parts.iter().map(|p| p.dims()[d]).collect();
            prop_assert_eq!(lens.iter().sum::<usize>(), dims[d]);
            prop_assert!(parts.iter().all(|p| Arc::ptr_eq(p.storage(), x.storage())));
            let back = Tensor::cat(&parts, d as isize).unwrap();
            prop_assert_eq!(back.to_vec().unwrap(), x.to_vec().unwrap());
        }
        let n = dims[d];
        let chunks = x.chunk(size, d as isize).unwrap();
        let want = if n == 0 { size } else { n.div_ceil(n.div_ceil(size)) };
        prop_assert_eq!(chunks.len(), want);
    }

    #[test]
    fn index_select_and_gather_match_reference(
        dims in dims_strategy(),
        dim_pick in any::<usize>(),
        picks in prop::collection::vec(any::<usize>(), 0..9),
        (kx, ki) in (kind(), kind()),
        seed in any::<u64>(),
    ) {
        let d = dim_pick % dims.len();
        let x = make(&dims, kx, seed);
        let xv = x.to_vec().unwrap();
        let size = dims[d];
        let ids: Vec<usize> = if size == 0 { vec![] } else { picks.iter().map(|p| p % size).collect() };
        let y = x.index_select(d as isize, &ids).unwrap();
        let mut od = dims.clone();
        od[d] = ids.len();
        prop_assert_eq!(y.dims(), &od[..]);
        let want: Vec<f32> = (0..y.numel())
            .map(|i| {
                let mut idx = unravel(i, &od);
                idx[d] = ids[idx[d]];
                xv[ravel(&idx, &dims)]
            })
            .collect();
        prop_assert_eq!(y.to_vec().unwrap(), want);

        // gather: an index no larger than x outside d, any length along d.
        let mut gd: Vec<usize> = dims.iter().map(|&s| s.min(2)).collect();
        gd[d] = if size == 0 { 0 } else { 3 };
        let gn: usize = gd.iter().product();
        let raw: Vec<f32> = (0..gn).map(|i| ((i * 7 + seed as usize % 5) % size.max(1)) as f32).collect();
        let index = match ki {
            Kind::Permuted if gd.len() >= 2 => {
                let mut rev = gd.clone();
                rev.reverse();
                let perm: Vec<usize> = (0..gd.len()).rev().collect();
                let vals: Vec<f32> = (0..gn).map(|i| {
                    let mut idx = unravel(i, &rev);
                    idx.reverse();
                    raw[ravel(&idx, &gd)]
                }).collect();
                Tensor::from_vec(vals, rev).unwrap().permute(&perm).unwrap()
            }
            _ => Tensor::from_vec(raw.clone(), gd.clone()).unwrap(),
        };
        prop_assert_eq!(index.to_vec().unwrap(), raw.clone());
        let g = x.gather(d as isize, &index).unwrap();
        prop_assert_eq!(g.dims(), &gd[..]);
        let want: Vec<f32> = (0..gn)
            .map(|i| {
                let mut idx = unravel(i, &gd);
                idx[d] = raw[i] as usize;
                xv[ravel(&idx, &dims)]
            })
            .collect();
        prop_assert_eq!(g.to_vec().unwrap(), want);
    }
}
