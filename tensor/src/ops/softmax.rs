//! Softmax and log-softmax along one dim, numerically stable.
//! `x: (.., n, ..) -> (.., n, ..)`, each slice along `dim` mapped to
//! `exp(x - max) / sum(exp(x - max))`.
//!
//! Subtracting the slice's max first keeps `exp` from overflowing (the largest term
//! becomes `exp(0) = 1`), and changes nothing mathematically. The input is viewed as
//! `(A, n, B)` around `dim`: with `B == 1` (the last dim, as in attention) each
//! slice is a contiguous row; otherwise a whole `(n, B)` block is processed with `B`
//! running maxima and sums so memory is still read in order. Sums accumulate in
//! f64. `log_softmax = x - max - ln(sum(exp(x - max)))`. A slice containing NaN, or
//! only `-inf`, gives NaN (as PyTorch). Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::from_slice(&[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0], [2, 3]).unwrap();
//! let p = x.softmax(-1).unwrap().to_vec().unwrap();
//! assert!((p[0] - 0.090_030_57).abs() < 1e-7 && (p[2] - 0.665_240_94).abs() < 1e-7);
//! assert!((p[3] - 1.0 / 3.0).abs() < 1e-7); // no overflow at 1000
//! let l = x.log_softmax(1).unwrap().to_vec().unwrap();
//! assert!((l[2] - (-0.407_605_96)).abs() < 1e-6);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::ops::act_slice;
use crate::ops::special::exp;
use crate::ops::strided::{with_simd, PAR_MIN_ELEMS};
use crate::tensor::Tensor;

/// Max of a slice (NaN-ignoring, NaN shows up later through `exp`), 8 lanes.
#[inline(always)]
fn max_f32(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    lanes.iter().fold(m, |a, &v| a.max(v))
}

/// Write `exp(x - m)` into `out` and return its sum (f64): the vectorised
/// [`act_slice::exp_sub_sum`] (AVX-512 / AVX2 lanes, same bits as [`exp`]).
#[inline(always)]
fn exp_sum(x: &[f32], out: &mut [f32], m: f32) -> f64 {
    act_slice::exp_sub_sum(x, m, out)
}

/// Softmax (or log-softmax) of one contiguous row into `out`.
#[inline(always)]
fn row(x: &[f32], out: &mut [f32], log: bool) {
    let m = max_f32(x);
    let s = exp_sum(x, out, m);
    if log {
        let ls = s.ln() as f32;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (v - m) - ls;
        }
    } else {
        let r = (1.0 / s) as f32;
        for o in out.iter_mut() {
            *o *= r;
        }
    }
}

/// Softmax (or log-softmax) along the rows of an `(n, b)` block, per column.
#[inline(always)]
fn block(x: &[f32], out: &mut [f32], b: usize, log: bool) {
    let mut m = vec![f32::NEG_INFINITY; b];
    for r in x.chunks_exact(b) {
        for (mi, &v) in m.iter_mut().zip(r) {
            *mi = if v > *mi { v } else { *mi };
        }
    }
    let mut s = vec![0.0f64; b];
    for (ro, r) in out.chunks_exact_mut(b).zip(x.chunks_exact(b)) {
        for (((o, &v), &mi), si) in ro.iter_mut().zip(r).zip(&m).zip(s.iter_mut()) {
            *o = exp(v - mi);
            *si += *o as f64;
        }
    }
    if log {
        let ls: Vec<f32> = s.iter().map(|&v| v.ln() as f32).collect();
        for (ro, r) in out.chunks_exact_mut(b).zip(x.chunks_exact(b)) {
            for (((o, &v), &mi), &l) in ro.iter_mut().zip(r).zip(&m).zip(&ls) {
                *o = (v - mi) - l;
            }
        }
    } else {
        let r: Vec<f32> = s.iter().map(|&v| (1.0 / v) as f32).collect();
        for ro in out.chunks_exact_mut(b) {
            for (o, &ri) in ro.iter_mut().zip(&r) {
                *o *= ri;
            }
        }
    }
}

fn softmax_impl(x: &Tensor, name: &'static str, dim: isize, log: bool) -> Result<Tensor> {
    if x.rank() == 0 {
        crate::shape::resolve_dim(name, dim, 1)?;
        return softmax_impl(&x.reshape([1])?, name, 0, log)?.reshape(Vec::<usize>::new());
    }
    let d = x.shape().dim(name, dim)?;
    #[cfg(feature = "wgpu")]
    if x.is_gpu() {
        return crate::wgpu::reduce::softmax(x, d, log);
    }
    let dims = x.dims().to_vec();
    let n = dims[d];
    let b: usize = dims[d + 1..].iter().product();
    let mut out = vec![0.0f32; x.numel()];
    if out.is_empty() {
        return Tensor::from_vec(out, dims);
    }
    let xc = x.contiguous()?;
    let Some(src) = xc.contiguous_slice()? else {
        return Err(TensorError::invalid(
            name,
            "contiguous() did not give a contiguous tensor",
        ));
    };
    let blk = n * b;
    let par = out.len() >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1;
    if b == 1 {
        let min_rows = (PAR_MIN_ELEMS / 4).div_ceil(n).max(1);
        if par {
            out.par_chunks_mut(n)
                .zip(src.par_chunks(n))
                .with_min_len(min_rows)
                .for_each(|(o, r)| {
                    with_simd(
                        #[inline(always)]
                        || row(r, o, log),
                    )
                });
        } else {
            out.chunks_mut(n).zip(src.chunks(n)).for_each(|(o, r)| {
                with_simd(
                    #[inline(always)]
                    || row(r, o, log),
                )
            });
        }
    } else if par {
        let min_blocks = (PAR_MIN_ELEMS / 4).div_ceil(blk).max(1);
        out.par_chunks_mut(blk)
            .zip(src.par_chunks(blk))
            .with_min_len(min_blocks)
            .for_each(|(o, r)| {
                with_simd(
                    #[inline(always)]
                    || block(r, o, b, log),
                )
            });
    } else {
        out.chunks_mut(blk).zip(src.chunks(blk)).for_each(|(o, r)| {
            with_simd(
                #[inline(always)]
                || block(r, o, b, log),
            )
        });
    }
    Tensor::from_vec(out, dims)
}

impl Tensor {
    /// `exp(x - max) / sum(exp(x - max))` along `dim` (negative counts from the end).
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        softmax_impl(self, "softmax", dim, false)
    }

    /// `x - max - ln(sum(exp(x - max)))` along `dim`.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        softmax_impl(self, "log_softmax", dim, true)
    }
}
