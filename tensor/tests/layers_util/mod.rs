//! Shared helpers for the layer-op tests: deterministic values, tensors with a chosen
//! strided layout (contiguous, permuted, sliced, broadcast), and closeness checks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tensor::Tensor;

/// `n` values in [-1, 1) from a small LCG, so failures reproduce from the seed.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// How a test tensor is laid out in memory.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Contiguous,
    /// A contiguous buffer in another dim order, permuted back.
    Permuted,
    /// A narrow of a larger buffer along one dim (offset and gaps).
    Sliced,
    /// A size-1 dim broadcast to the wanted size (stride 0).
    Broadcast,
}

pub fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Contiguous),
        Just(Kind::Permuted),
        Just(Kind::Sliced),
        Just(Kind::Broadcast),
    ]
}

/// A tensor of logical shape `dims` with layout `kind`; `seed` picks values and the
/// dim that is permuted / sliced / broadcast.
pub fn make(dims: &[usize], kind: Kind, seed: u64) -> Tensor {
    let r = dims.len();
    let numel: usize = dims.iter().product();
    let pick = if r == 0 { 0 } else { (seed as usize) % r };
    let t = match kind {
        Kind::Contiguous => Tensor::from_vec(values(numel, seed), dims.to_vec()).unwrap(),
        Kind::Permuted if r >= 2 => {
            // Rotate the dims by `pick + 1` in storage, then undo it with permute.
            let rot = pick % (r - 1) + 1;
            let q: Vec<usize> = (0..r).map(|i| (i + rot) % r).collect();
            let stored: Vec<usize> = q.iter().map(|&i| dims[i]).collect();
            let mut inv = vec![0; r];
            for (i, &qi) in q.iter().enumerate() {
                inv[qi] = i;
            }
            Tensor::from_vec(values(numel, seed), stored)
                .unwrap()
                .permute(&inv)
                .unwrap()
        }
        Kind::Sliced if r >= 1 => {
            let mut big = dims.to_vec();
            big[pick] += 3;
            let n: usize = big.iter().product();
            Tensor::from_vec(values(n, seed), big)
                .unwrap()
                .narrow(pick as isize, 2, dims[pick])
                .unwrap()
        }
        Kind::Broadcast if r >= 1 => {
            let mut small = dims.to_vec();
            small[pick] = 1;
            let n: usize = small.iter().product();
            Tensor::from_vec(values(n, seed), small)
                .unwrap()
                .broadcast_as(dims.to_vec())
                .unwrap()
        }
        _ => Tensor::from_vec(values(numel, seed), dims.to_vec()).unwrap(),
    };
    assert_eq!(t.dims(), dims);
    t
}

/// Assert `got` and `want` agree elementwise within `atol + rtol * |want|`.
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

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
