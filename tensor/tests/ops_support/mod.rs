//! Shared helpers for the ops tests: tensors with arbitrary layouts (permuted,
//! narrowed, broadcast) and a naive reader that uses only index arithmetic.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::collection::vec;
use proptest::prelude::*;
use tensor::Tensor;

/// Row-major multi-index of flat position `i` in `dims`.
pub fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = i % dims[d];
        i /= dims[d];
    }
    idx
}

/// Flat row-major position of `idx` in `dims`.
pub fn ravel(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// The elements of `t` in row-major order, read with `offset + sum(i * stride)`.
pub fn naive_values(t: &Tensor) -> Vec<f32> {
    let data = t.cpu_storage().unwrap();
    let l = t.layout();
    (0..t.numel())
        .map(|i| {
            let idx = unravel(i, l.dims());
            let off = l.offset()
                + idx
                    .iter()
                    .zip(l.strides())
                    .map(|(a, b)| a * b)
                    .sum::<usize>();
            data[off]
        })
        .collect()
}

/// Deterministic pseudo-random values; `quantized` gives many ties (halves in -3..3).
pub fn values(seed: u64, n: usize, quantized: bool) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as u32;
            if quantized {
                (u % 13) as f32 / 2.0 - 3.0
            } else {
                (u as f32 / (1u32 << 24) as f32) * 6.0 - 3.0
            }
        })
        .collect()
}

/// How a tensor of given dims is laid out over its storage.
#[derive(Clone, Debug)]
pub struct LayoutRecipe {
    pub perm: Vec<usize>,
    pub bcast: Vec<bool>,
    pub extra: Vec<(usize, usize)>,
    pub seed: u64,
    pub quantized: bool,
}

/// Build a tensor of `dims` following `r`: a contiguous base (physically permuted,
/// larger by `extra`), permuted back, narrowed, and broadcast where `bcast`.
pub fn build(dims: &[usize], r: &LayoutRecipe) -> Tensor {
    let rank = dims.len();
    let base: Vec<usize> = (0..rank)
        .map(|i| {
            if r.bcast[i] {
                1
            } else {
                dims[i] + r.extra[i].0
            }
        })
        .collect();
    let phys: Vec<usize> = r.perm.iter().map(|&p| base[p]).collect();
    let n: usize = phys.iter().product();
    let mut t = Tensor::from_vec(values(r.seed, n, r.quantized), phys).unwrap();
    let mut inv = vec![0; rank];
    for (j, &p) in r.perm.iter().enumerate() {
        inv[p] = j;
    }
    t = t.permute(&inv).unwrap();
    for (i, &d) in dims.iter().enumerate() {
        if !r.bcast[i] {
            let start = r.extra[i].1.min(r.extra[i].0);
            t = t.narrow(i as isize, start, d).unwrap();
        }
    }
    let t = t.broadcast_as(dims.to_vec()).unwrap();
    assert_eq!(t.dims(), dims);
    t
}

impl LayoutRecipe {
    /// Cut a recipe made for a larger rank down to `rank` dims.
    pub fn truncate(mut self, rank: usize) -> Self {
        self.perm.retain(|&p| p < rank);
        self.bcast.truncate(rank);
        self.extra.truncate(rank);
        self
    }
}

pub fn recipe(rank: usize) -> impl Strategy<Value = LayoutRecipe> {
    (
        Just((0..rank).collect::<Vec<_>>()).prop_shuffle(),
        vec(prop::bool::weighted(0.25), rank),
        vec((0..=2usize, 0..=2usize), rank),
        any::<u64>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(perm, bcast, extra, seed, quantized)| LayoutRecipe {
            perm,
            bcast,
            extra,
            seed,
            quantized,
        })
}

pub fn dims(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    (0..=max_rank).prop_flat_map(move |r| vec(prop_oneof![1 => Just(0usize), 9 => 1..=max_dim], r))
}

/// A tensor of exactly `dims` with an arbitrary layout.
pub fn tensor_of(d: Vec<usize>) -> impl Strategy<Value = Tensor> {
    recipe(d.len()).prop_map(move |r| build(&d, &r))
}

/// A tensor of arbitrary dims (rank <= max_rank, sizes <= max_dim, some 0) and layout.
pub fn any_tensor(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Tensor> {
    dims(max_rank, max_dim).prop_flat_map(tensor_of)
}

/// The shape of an operand that broadcasts to `out`: some leading dims dropped,
/// some of the rest set to 1.
pub fn operand_dims(out: Vec<usize>) -> impl Strategy<Value = Vec<usize>> {
    let r = out.len();
    (0..=r, vec(prop::bool::weighted(0.3), r)).prop_map(move |(drop, ones)| {
        (drop..r)
            .map(|i| if ones[i] { 1 } else { out[i] })
            .collect()
    })
}

/// Value of an operand of dims `od` at output multi-index `idx` (NumPy broadcasting).
pub fn bcast_get(vals: &[f32], od: &[usize], idx: &[usize]) -> f32 {
    let lead = idx.len() - od.len();
    let j: Vec<usize> = od
        .iter()
        .enumerate()
        .map(|(k, &d)| if d == 1 { 0 } else { idx[lead + k] })
        .collect();
    vals[ravel(&j, od)]
}

/// Same value, counting NaN == NaN and telling 0.0 from -0.0 apart not at all.
pub fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// |a - b| <= atol + rtol * |b|, NaN matching NaN and infinities matching exactly.
pub fn close(a: f32, b: f64, atol: f64, rtol: f64) -> bool {
    if b.is_nan() {
        return a.is_nan();
    }
    if b.is_infinite() {
        return a as f64 == b;
    }
    ((a as f64) - b).abs() <= atol + rtol * b.abs()
}
