//! Helpers for the autodiff tests: a gradient check by central differences and
//! proptest strategies for leaf values of any layout (reusing the tensor crate's
//! layout recipes from `tensor/tests/common`).
//!
//! # The gradient check
//!
//! For a function `f` of some tensors, [`check_gradients`] makes each input a leaf,
//! reduces the output to a scalar with fixed random weights, `L = sum(r * f(x))`
//! (so every output element's gradient is exercised, each with its own weight),
//! and compares `dL/dx` from backward with the central difference
//!
//! `(L(x + h e_j) - L(x - h e_j)) / (x_j+ - x_j-)`
//!
//! for every element `j` of every input, where `x_j+-` are the f32 values actually
//! stored (so f32 rounding of `x +- h` does not count as error) and `L` is summed in
//! f64 from the f32 outputs. `h = 1e-2` (the step, [`STEP`]): smaller steps drown in
//! f32 rounding of the outputs (about `1e-7 * |L| / h`), larger ones in truncation
//! error (about `h^2 / 6 * f'''`). Both are a few 1e-4 for the values used here
//! (inputs in [-1, 1), small shapes), so the tolerance is
//! `|analytic - numeric| <= ATOL + RTOL * max(|analytic|, |numeric|)` with
//! `ATOL = 5e-3`, `RTOL = 1e-2`: loose enough for f32, tight enough that a wrong
//! factor, sign, transpose or a missed broadcast sum fails by orders of magnitude.
//! Ops with kinks (relu, abs, max) are checked at inputs kept away from the kink.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

#[path = "../../../tensor/tests/common/mod.rs"]
pub mod tcommon;

use std::sync::Arc;

use autodiff::{no_grad, Var};
use proptest::prelude::*;
use tensor::{Storage, Tensor};

pub use tcommon::{build, values, Fill, Kind, LayoutRecipe};

/// Finite-difference step.
pub const STEP: f64 = 1e-2;
/// Absolute tolerance of the gradient check.
pub const ATOL: f64 = 5e-3;
/// Relative tolerance of the gradient check.
pub const RTOL: f64 = 1e-2;

/// `L = sum(r * y)` in f64.
fn weighted_sum(y: &Tensor, r: &[f32]) -> f64 {
    let v = y.to_vec().unwrap();
    assert_eq!(v.len(), r.len(), "output changed size under perturbation");
    v.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Check backward of `f` at `inputs` against central differences (see the module
/// docs). `what` names the case in failure messages. Returns the analytic grads.
pub fn check_gradients(
    what: &str,
    inputs: &[Tensor],
    f: impl Fn(&[Var]) -> autodiff::Result<Var>,
) -> Vec<Tensor> {
    let leaves: Vec<Var> = inputs.iter().cloned().map(Var::leaf).collect();
    let y = f(&leaves).unwrap_or_else(|e| panic!("{what}: forward failed: {e}"));
    // Weights in [-1, 1) that depend on the output size only.
    let r = values(y.numel(), 0x5eed ^ y.numel() as u64);
    let rt = Var::constant(Tensor::from_vec(r.clone(), y.dims().to_vec()).unwrap());
    let loss = y.mul(&rt).unwrap().sum_all().unwrap();
    let grads = if loss.requires_grad() {
        Some(
            loss.backward()
                .unwrap_or_else(|e| panic!("{what}: backward failed: {e}")),
        )
    } else {
        None
    };
    let analytic: Vec<Tensor> = leaves
        .iter()
        .map(|l| match grads.as_ref().and_then(|g| g.get(l)) {
            Some(g) => {
                assert_eq!(g.dims(), l.dims(), "{what}: gradient shape");
                g.clone()
            }
            None => Tensor::zeros(l.dims().to_vec()),
        })
        .collect();
    let base: Vec<Vec<f32>> = inputs.iter().map(|t| t.to_vec().unwrap()).collect();
    let eval = |which: usize, j: usize, x: f32| -> f64 {
        let vars: Vec<Var> = base
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut v = b.clone();
                if i == which {
                    v[j] = x;
                }
                Var::constant(Tensor::from_vec(v, inputs[i].dims().to_vec()).unwrap())
            })
            .collect();
        let y = no_grad(|| f(&vars)).unwrap();
        weighted_sum(y.value(), &r)
    };
    for (i, b) in base.iter().enumerate() {
        let got = analytic[i].to_vec().unwrap();
        for (j, &x) in b.iter().enumerate() {
            let (xp, xm) = ((x as f64 + STEP) as f32, (x as f64 - STEP) as f32);
            let numeric = (eval(i, j, xp) - eval(i, j, xm)) / (xp as f64 - xm as f64);
            let a = got[j] as f64;
            let tol = ATOL + RTOL * a.abs().max(numeric.abs());
            assert!(
                (a - numeric).abs() <= tol && a.is_finite(),
                "{what}: input {i} {:?} element {j} (x = {x}): backward {a}, central difference {numeric}",
                inputs[i].dims()
            );
        }
    }
    analytic
}

/// `t` with every stored value replaced by `f(value)`, keeping its layout (strides,
/// offset, stride-0 dims), so a leaf can be non-contiguous and still hold values
/// chosen for an op (positive for log, away from 0 for relu, ...).
pub fn map_storage(t: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    let data: Vec<f32> = t.cpu_storage().unwrap().iter().map(|&v| f(v)).collect();
    Tensor::from_storage(Arc::new(Storage::Cpu(data)), t.layout().clone()).unwrap()
}

/// `t` with stored values replaced by distinct values `0.1 * k` in a shuffled order
/// (no ties, gaps far larger than the step) for max/min; not for broadcast layouts.
pub fn distinct_storage(t: &Tensor, seed: u64) -> Tensor {
    let n = t.cpu_storage().unwrap().len();
    let keys = values(n, seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    let mut data = vec![0.0; n];
    for (rank, &pos) in order.iter().enumerate() {
        data[pos] = 0.1 * rank as f32 - 0.05 * n as f32;
    }
    Tensor::from_storage(Arc::new(Storage::Cpu(data)), t.layout().clone()).unwrap()
}

/// Push values in [-1, 1) away from 0 into +-[0.2, 1.2): for kinks at 0.
pub fn away_from_zero(v: f32) -> f32 {
    if v < 0.0 {
        v - 0.2
    } else {
        v + 0.2
    }
}

/// Values in [-1, 1) moved to [0.3, 2.3): for log, sqrt, recip, pow bases.
pub fn positive(v: f32) -> f32 {
    v + 1.3
}

// ---- strategies ---------------------------------------------------------------------

/// A layout recipe of rank `rank`: permuted, sliced and broadcast dims in any mix,
/// values uniform in [-1, 1).
pub fn recipe(rank: usize) -> impl Strategy<Value = LayoutRecipe> {
    tcommon::recipe(rank).prop_map(|mut r| {
        r.fill = Fill::Uniform(1.0);
        r
    })
}

/// The same, never broadcast (for max/min, where broadcast copies would tie).
pub fn recipe_no_bcast(rank: usize) -> impl Strategy<Value = LayoutRecipe> {
    recipe(rank).prop_map(|mut r| {
        r.bcast.iter_mut().for_each(|b| *b = false);
        r
    })
}

/// A leaf value of exactly `dims` in an arbitrary layout.
pub fn leaf(dims: Vec<usize>) -> impl Strategy<Value = Tensor> {
    let r = dims.len();
    recipe(r).prop_map(move |rc| build(&dims, &rc))
}

/// Dims of rank `min_rank..=max_rank`, sizes `1..=max_dim`.
pub fn dims(min_rank: usize, max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    (min_rank..=max_rank).prop_flat_map(move |r| proptest::collection::vec(1..=max_dim, r))
}

/// Dims of rank `min_rank..=max_rank`, sizes `1..=max_dim` or (1 time in 10) 0.
pub fn dims0(
    min_rank: usize,
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Vec<usize>> {
    (min_rank..=max_rank).prop_flat_map(move |r| {
        proptest::collection::vec(prop_oneof![1 => Just(0usize), 9 => 1..=max_dim], r)
    })
}

/// A leaf of random dims, some of them 0 (empty tensors).
pub fn any_leaf0(
    min_rank: usize,
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Tensor> {
    dims0(min_rank, max_rank, max_dim).prop_flat_map(leaf)
}

/// A leaf of random dims (rank `min_rank..=max_rank`, sizes `1..=max_dim`).
pub fn any_leaf(min_rank: usize, max_rank: usize, max_dim: usize) -> impl Strategy<Value = Tensor> {
    dims(min_rank, max_rank, max_dim).prop_flat_map(leaf)
}

/// Two leaves whose shapes broadcast together (some dims may be 0): `out` dims, the second operand with
/// some leading dims dropped and some dims set to 1 (either order).
pub fn broadcast_pair(max_rank: usize, max_dim: usize) -> impl Strategy<Value = (Tensor, Tensor)> {
    (dims0(0, max_rank, max_dim), any::<bool>())
        .prop_flat_map(|(d, swap)| (Just(d.clone()), tcommon::operand_dims(d), Just(swap)))
        .prop_flat_map(|(a, b, swap)| {
            let (a, b) = if swap { (b, a) } else { (a, b) };
            (leaf(a), leaf(b))
        })
}

/// Proptest settings for gradient checks: few cases (each is many forward passes).
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}
