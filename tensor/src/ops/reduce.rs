//! Reductions along any set of axes: `sum`, `mean`, `max`, `min`, `var`, `std`,
//! `argmax`, `argmin`. `x: (2, 3, 4).sum(&[0, 2], false) -> (3,)`; with
//! `keepdim = true` -> `(1, 3, 1)`.
//!
//! The input layout is split into two views of the same storage: the *kept* dims
//! (one output element each) and the *reduced* dims (the elements folded into it).
//! When the reduced dims hold the unit-stride run (`sum(-1)` of contiguous data) each
//! output folds contiguous runs; when the kept dims hold it (`sum(0)`, column sums)
//! whole rows are folded into a vector of accumulators, so memory is always read in
//! order. Accumulation is in f64 (8 independent lanes for speed), which makes a sum
//! of a million f32 values exact to f32 rounding without pairwise tricks. Each
//! output is folded by one thread in a fixed order, so results do not depend on the
//! number of threads.
//! As in PyTorch: an empty `dims` reduces everything, the sum of nothing is 0, the
//! mean of nothing is NaN, the max of nothing is an error, and NaN propagates
//! through `max` / `min`. Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([2, 3]).unwrap();
//! assert_eq!(x.sum(&[0], false).unwrap().to_vec().unwrap(), vec![3.0, 5.0, 7.0]);
//! assert_eq!(x.max(&[1], true).unwrap().dims(), &[2, 1]);
//! assert_eq!(x.mean_all().unwrap().to_scalar().unwrap(), 2.5);
//! assert_eq!(x.var(&[1], 1, false).unwrap().to_vec().unwrap(), vec![1.0, 1.0]);
//! assert_eq!(x.argmax(0, false).unwrap().to_vec().unwrap(), vec![1.0, 1.0, 1.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::layout::Layout;
use crate::ops::strided::{StridedRuns, PAR_MIN_ELEMS};
use crate::tensor::Tensor;

/// How elements are folded together (mean is a sum divided by the count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    /// NaN-propagating max.
    Max,
    /// NaN-propagating min.
    Min,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }

    /// The fold's starting value.
    pub fn identity(self) -> f64 {
        match self {
            ReduceOp::Sum => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
        }
    }

    /// Fold one value into the accumulator.
    #[inline(always)]
    pub fn combine(self, acc: f64, x: f64) -> f64 {
        match self {
            ReduceOp::Sum => acc + x,
            ReduceOp::Max => {
                if x > acc || x.is_nan() {
                    x
                } else {
                    acc
                }
            }
            ReduceOp::Min => {
                if x < acc || x.is_nan() {
                    x
                } else {
                    acc
                }
            }
        }
    }

    /// The fold as a WGSL expression in the f32 variables `acc` and `x`.
    pub fn wgsl(self) -> &'static str {
        match self {
            ReduceOp::Sum => "acc + x",
            ReduceOp::Max => "max(acc, x)",
            ReduceOp::Min => "min(acc, x)",
        }
    }
}

/// Fold `len` elements of `src` from `off` at `stride` into `acc`.
#[inline(always)]
fn fold_run(op: ReduceOp, src: &[f32], off: usize, len: usize, stride: usize, acc: f64) -> f64 {
    if stride == 1 {
        let run = &src[off..off + len];
        let mut lanes = [op.identity(); 8];
        let mut chunks = run.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = op.combine(*l, v as f64);
            }
        }
        let acc = chunks
            .remainder()
            .iter()
            .fold(acc, |a, &v| op.combine(a, v as f64));
        lanes.iter().fold(acc, |a, &l| op.combine(a, l))
    } else {
        (0..len).fold(acc, |a, i| op.combine(a, src[off + i * stride] as f64))
    }
}

/// Which dims are reduced: `dims` resolved (negative allowed), empty meaning all.
fn reduced_mask(op: &'static str, rank: usize, dims: &[isize]) -> Result<Vec<bool>> {
    let mut mask = vec![dims.is_empty(); rank];
    for &d in dims {
        // A rank-0 tensor accepts dim 0 / -1 (as PyTorch); it has nothing to reduce.
        let r = crate::shape::resolve_dim(op, d, rank.max(1))?;
        if rank == 0 {
            continue;
        }
        if std::mem::replace(&mut mask[r], true) {
            return Err(TensorError::invalid(
                op,
                format!("dim {r} appears more than once in {dims:?}"),
            ));
        }
    }
    Ok(mask)
}

/// The kept and reduced views of `x`'s layout, and the output dims.
struct Split {
    kept: Layout,
    reduced: Layout,
    out_dims: Vec<usize>,
}

fn split(x: &Tensor, mask: &[bool], keepdim: bool) -> Result<Split> {
    let (mut kd, mut ks, mut rd, mut rs, mut out_dims) = (vec![], vec![], vec![], vec![], vec![]);
    for ((&d, &s), &m) in x.dims().iter().zip(x.strides()).zip(mask) {
        if m {
            rd.push(d);
            rs.push(s);
            if keepdim {
                out_dims.push(1);
            }
        } else {
            kd.push(d);
            ks.push(s);
            out_dims.push(d);
        }
    }
    Ok(Split {
        kept: Layout::new(kd, ks, x.layout().offset())?,
        reduced: Layout::new(rd, rs, 0)?,
        out_dims,
    })
}

/// Fold the `reduced` dims of `x` for every kept position; f64 results, row-major
/// over the kept dims.
fn fold(x: &Tensor, op: ReduceOp, sp: &Split) -> Result<Vec<f64>> {
    let src = x.cpu_storage()?;
    let kept = StridedRuns::new(op.name(), [&sp.kept])?;
    let red = StridedRuns::new(op.name(), [&sp.reduced])?;
    let n_out = kept.numel();
    let n_red = red.numel();
    let mut out = vec![op.identity(); n_out];
    if n_out == 0 || n_red == 0 {
        return Ok(out);
    }
    let ([kst], [rst]) = (kept.inner_strides(), red.inner_strides());
    // Start offsets of the reduced runs (relative to an output element's base).
    let (rlen, mut rstarts) = (red.inner_len(), Vec::with_capacity(n_red / red.inner_len()));
    red.for_each_run(0..n_red, |_, [o], _| rstarts.push(o));
    let columns = kst == 1 && kept.inner_len() >= 8 && (rst != 1 || rlen < 8);
    let chunk = if n_out * n_red < PAR_MIN_ELEMS {
        n_out
    } else {
        let per_thread = n_out.div_ceil(rayon::current_num_threads() * 4);
        per_thread.max(PAR_MIN_ELEMS.div_ceil(n_red)).max(1)
    };
    let work = |c: usize, acc: &mut [f64]| {
        let start = c * chunk;
        if columns {
            // Kept dims hold the unit stride: fold whole rows into the accumulators.
            let mut runs = vec![];
            kept.for_each_run(start..start + acc.len(), |p, [o], l| {
                runs.push((p - start, o, l))
            });
            for &r0 in &rstarts {
                for i in 0..rlen {
                    let r = r0 + i * rst;
                    for &(p, o, l) in &runs {
                        for (a, &v) in acc[p..p + l].iter_mut().zip(&src[o + r..o + r + l]) {
                            *a = op.combine(*a, v as f64);
                        }
                    }
                }
            }
        } else {
            kept.for_each_run(start..start + acc.len(), |p, [o], l| {
                for (i, a) in acc[p - start..p - start + l].iter_mut().enumerate() {
                    let base = o + i * kst;
                    *a = rstarts
                        .iter()
                        .fold(*a, |s, &r| fold_run(op, src, base + r, rlen, rst, s));
                }
            });
        }
    };
    if chunk >= n_out {
        work(0, &mut out);
    } else {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, acc)| work(c, acc));
    }
    Ok(out)
}

/// Reduce `x` over `dims` (empty: all) with `op`; `mean` divides sums by the count.
fn reduce(x: &Tensor, op: ReduceOp, mean: bool, dims: &[isize], keepdim: bool) -> Result<Tensor> {
    let name = if mean { "mean" } else { op.name() };
    let mask = reduced_mask(name, x.rank(), dims)?;
    let sp = split(x, &mask, keepdim)?;
    let count = sp.reduced.numel();
    if count == 0 && op != ReduceOp::Sum {
        return Err(TensorError::invalid(
            name,
            format!(
                "reduction over zero elements (dims {dims:?} of shape {:?}) has no identity",
                x.dims()
            ),
        ));
    }
    #[cfg(feature = "wgpu")]
    if x.is_gpu() {
        let scale = if mean { 1.0 / count as f32 } else { 1.0 };
        return crate::wgpu::reduce::reduce(x, op, &sp.kept, &sp.reduced, sp.out_dims, scale);
    }
    let acc = fold(x, op, &sp)?;
    let out = if mean {
        acc.iter().map(|&s| (s / count as f64) as f32).collect()
    } else {
        acc.iter().map(|&s| s as f32).collect()
    };
    Tensor::from_vec(out, sp.out_dims)
}

/// Index of the first max (or min, `want_max = false`) along `dim`, as f32.
fn arg_extreme(
    x: &Tensor,
    name: &'static str,
    dim: isize,
    keepdim: bool,
    want_max: bool,
) -> Result<Tensor> {
    let mask = reduced_mask(name, x.rank(), &[dim])?;
    let sp = split(x, &mask, keepdim)?;
    let n = sp.reduced.numel();
    if n == 0 {
        return Err(TensorError::invalid(
            name,
            format!(
                "dim {dim} of shape {:?} is empty: no index to return",
                x.dims()
            ),
        ));
    }
    #[cfg(feature = "wgpu")]
    if x.is_gpu() {
        return crate::wgpu::reduce::arg_extreme(
            x,
            name,
            &sp.kept,
            &sp.reduced,
            sp.out_dims,
            want_max,
        );
    }
    let src = x.cpu_storage()?;
    let rst = sp.reduced.strides().first().copied().unwrap_or(0);
    let kept = StridedRuns::new(name, [&sp.kept])?;
    let mut out = vec![0.0f32; kept.numel()];
    kept.fill(&mut out, |d, [o]| {
        let [kst] = kept.inner_strides();
        for (j, v) in d.iter_mut().enumerate() {
            let base = o + j * kst;
            let (mut best, mut bi) = (src[base], 0);
            for i in 1..n {
                let y = src[base + i * rst];
                // NaN wins (first one), as torch's CPU argmax / argmin.
                let better = if want_max { y > best } else { y < best };
                if !best.is_nan() && (better || y.is_nan()) {
                    (best, bi) = (y, i);
                }
            }
            *v = bi as f32;
        }
    });
    Tensor::from_vec(out, sp.out_dims)
}

/// Reductions named as in PyTorch. `dims` may be negative; empty `dims` reduce all.
impl Tensor {
    /// Sum over `dims` (f64 accumulation).
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Sum, false, dims, keepdim)
    }
    /// Mean over `dims` (NaN for an empty reduction).
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Sum, true, dims, keepdim)
    }
    /// Max over `dims` (values only, as `torch.amax`); error if nothing is reduced.
    pub fn max(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Max, false, dims, keepdim)
    }
    /// Min over `dims` (values only, as `torch.amin`); error if nothing is reduced.
    pub fn min(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        reduce(self, ReduceOp::Min, false, dims, keepdim)
    }
    /// Variance over `dims`: `sum((x - mean)^2) / max(0, N - correction)`;
    /// `correction = 1` is the unbiased default of `torch.var`.
    pub fn var(&self, dims: &[isize], correction: usize, keepdim: bool) -> Result<Tensor> {
        let mask = reduced_mask("var", self.rank(), dims)?;
        let n: usize = self
            .dims()
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&d, _)| d)
            .product();
        let mean = self.mean(dims, true)?;
        let ss = self.sub(&mean)?.sqr()?.sum(dims, keepdim)?;
        let denom = n.saturating_sub(correction) as f32;
        #[cfg(feature = "wgpu")]
        if ss.is_gpu() {
            return crate::wgpu::elementwise::map_expr("var", &ss, "x / p0", [denom, 0.0]);
        }
        crate::ops::unary::map(&ss, |s| s / denom)
    }
    /// Standard deviation: `sqrt(var)`.
    pub fn std(&self, dims: &[isize], correction: usize, keepdim: bool) -> Result<Tensor> {
        self.var(dims, correction, keepdim)?.sqrt()
    }
    /// Index of the first maximum along `dim`, as f32 (exact below 2^24; NaN counts
    /// as the maximum, as torch's CPU argmax).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        arg_extreme(self, "argmax", dim, keepdim, true)
    }
    /// Index of the first minimum along `dim`, as f32 (exact below 2^24; NaN counts
    /// as the minimum).
    pub fn argmin(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        arg_extreme(self, "argmin", dim, keepdim, false)
    }
    /// Sum of every element, as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&[], false)
    }
    /// Mean of every element, as a rank-0 tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }
    /// Sum over one dim, keeping it with size 1.
    pub fn sum_keepdim(&self, dim: isize) -> Result<Tensor> {
        self.sum(&[dim], true)
    }
    /// Mean over one dim, keeping it with size 1.
    pub fn mean_keepdim(&self, dim: isize) -> Result<Tensor> {
        self.mean(&[dim], true)
    }
    /// Max over one dim, keeping it with size 1.
    pub fn max_keepdim(&self, dim: isize) -> Result<Tensor> {
        self.max(&[dim], true)
    }
}
