//! Helpers shared by the tensor crate's integration tests (each test file says
//! `mod common;`): deterministic values from a seed, row-major index arithmetic, a
//! naive strided reader, NumPy-broadcast lookups, closeness checks, and (in
//! [`layouts`]) tensors of any shape in a chosen layout: contiguous, permuted,
//! sliced (narrowed out of a bigger buffer) or broadcast (stride 0), alone or combined.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod gpu;
pub mod layouts;

pub use layouts::{
    any_tensor, build, dims, kind, make, operand_dims, recipe, tensor_of, Kind, LayoutRecipe,
};

use tensor::Tensor;

// ---- deterministic values ---------------------------------------------------------

/// A 64-bit LCG (Knuth's MMIX constants): tests need reproducible numbers, not a
/// good generator, and must not depend on the library's `Rng`s they test.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    const MUL: u64 = 6364136223846793005;
    const INC: u64 = 1442695040888963407;

    /// The state starts one step past `seed`.
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed.wrapping_mul(Self::MUL).wrapping_add(Self::INC))
    }

    /// The next raw state (its high bits are the good ones).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(Self::MUL).wrapping_add(Self::INC);
        self.0
    }

    /// The top 24 bits of the next state as an f32 in [0, 1) (exact).
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// As a library generator: the top 53 bits of the next state, in [0, 1).
impl tensor::Rng for Lcg {
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Which values a test tensor holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// Uniform in `[-w, w)`: `u * 2w - w` for `u` from [`Lcg::unit_f32`].
    Uniform(f32),
    /// Halves in `-3..=3` (13 values): many ties, for max/min/argmax.
    Ties,
}

/// Uniform in [-3, 3): wide enough that exp, softmax and pow see large and small values.
pub const WIDE: Fill = Fill::Uniform(3.0);

impl Fill {
    /// `n` values drawn from `Lcg::new(seed)`, one step per value.
    pub fn values(self, n: usize, seed: u64) -> Vec<f32> {
        let mut g = Lcg::new(seed);
        (0..n)
            .map(|_| match self {
                Fill::Uniform(w) => g.unit_f32() * (2.0 * w) - w,
                Fill::Ties => ((g.next_u64() >> 40) % 13) as f32 / 2.0 - 3.0,
            })
            .collect()
    }
}

/// `n` values in [-1, 1) from `seed`, so a failure reproduces from the seed.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    Fill::Uniform(1.0).values(n, seed)
}

// ---- index arithmetic and naive readers ---------------------------------------------

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

/// Flat position, in an operand of dims `od`, of output multi-index `idx` under
/// NumPy broadcasting (missing leading dims and size-1 dims read index 0).
pub fn bcast_index(od: &[usize], idx: &[usize]) -> usize {
    let lead = idx.len() - od.len();
    let j: Vec<usize> = od
        .iter()
        .enumerate()
        .map(|(k, &d)| if d == 1 { 0 } else { idx[lead + k] })
        .collect();
    ravel(&j, od)
}

/// Value of a row-major operand of dims `od` at output multi-index `idx`.
pub fn bcast_get(vals: &[f32], od: &[usize], idx: &[usize]) -> f32 {
    vals[bcast_index(od, idx)]
}

// ---- comparisons ----------------------------------------------------------------------

/// Same value, counting NaN == NaN and telling 0.0 from -0.0 apart not at all.
pub fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// `|got - want| <= atol + rtol * |want|` (in f64), NaN matching NaN and infinities
/// matching exactly.
pub fn close(got: f32, want: f64, atol: f64, rtol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got as f64 == want;
    }
    ((got as f64) - want).abs() <= atol + rtol * want.abs()
}

/// Assert [`close`] for every element, naming `what` and the first element that is not.
pub fn assert_close(got: &[f32], want: &[f32], atol: f64, rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(g, w as f64, atol, rtol),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

// ---- small conveniences -------------------------------------------------------------

/// A contiguous tensor holding `data`.
pub fn t(data: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(data, dims.to_vec()).unwrap()
}

/// The message of an error the call must return.
pub fn err_of<T: std::fmt::Debug>(r: tensor::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}
