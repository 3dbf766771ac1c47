//! Strided iteration: walk one or more layouts of the same shape as
//! *(outer offsets) x (inner run)*, the basis of every elementwise kernel.
//!
//! A layout of shape `(d0, .., dn)` is first *coalesced*: size-1 dims are dropped and
//! neighbouring dims merge when `stride[i] == stride[i+1] * dim[i+1]` in every layout
//! (a contiguous `(2, 3, 4)` becomes one run of 24; a transposed `(3, 2)` stays two
//! dims). The last coalesced dim is the *inner run*: `len` elements at a fixed
//! stride, 1 for contiguous data and 0 for a broadcast dim. Kernels get one call per
//! run, so the contiguous and broadcast cases become tight (vectorisable) loops and
//! only the outer dims pay for an odometer. This is the design's "strided copy";
//! [`copy_strided`] is the copy itself (a transpose, where the inner run has a wide
//! stride, is copied in 32 x 32 tiles instead) and `unary::map` / `binary::zip`
//! build on the same walk. [`with_simd`] runs compute-bound inner loops compiled for
//! AVX2 when the CPU has it (same results, wider vectors). Introduced in
//! `lessons/03-tensors`.
//!
//! ```
//! use tensor::ops::strided::StridedRuns;
//! use tensor::Layout;
//! let t = Layout::contiguous([2, 3]).transpose(0, 1).unwrap(); // (3, 2), strides [1, 3]
//! let runs = StridedRuns::new("demo", [&t]).unwrap();
//! assert_eq!((runs.inner_len(), runs.inner_strides()), (2, [3]));
//! let mut seen = vec![];
//! runs.for_each_run(0..6, |pos, [off], len| seen.push((pos, off, len)));
//! assert_eq!(seen, vec![(0, 0, 2), (2, 1, 2), (4, 2, 2)]);
//! ```

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::layout::Layout;

/// Below this many output elements kernels run on the calling thread.
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// `K` layouts of one shape, coalesced into outer dims and one inner run.
#[derive(Clone, Debug)]
pub struct StridedRuns<const K: usize> {
    outer_dims: Vec<usize>,
    outer_strides: [Vec<usize>; K],
    inner_len: usize,
    inner_strides: [usize; K],
    offsets: [usize; K],
    numel: usize,
}

impl<const K: usize> StridedRuns<K> {
    /// Coalesce `layouts`, which must all have the same shape (broadcast them first).
    pub fn new(op: &'static str, layouts: [&Layout; K]) -> Result<Self> {
        let first = layouts.first().map(|l| l.dims()).unwrap_or(&[]);
        for l in &layouts {
            if l.dims() != first {
                return Err(TensorError::ShapeMismatch {
                    op,
                    lhs: first.to_vec(),
                    rhs: l.dims().to_vec(),
                });
            }
        }
        let mut dims: Vec<usize> = Vec::with_capacity(first.len());
        let mut strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::new());
        for (i, &d) in first.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let mergeable = !dims.is_empty()
                && layouts
                    .iter()
                    .zip(&strides)
                    .all(|(l, s)| s.last() == Some(&(l.strides()[i] * d)));
            if mergeable {
                if let Some(last) = dims.last_mut() {
                    *last *= d;
                }
                for (s, l) in strides.iter_mut().zip(&layouts) {
                    if let Some(last) = s.last_mut() {
                        *last = l.strides()[i];
                    }
                }
            } else {
                dims.push(d);
                for (s, l) in strides.iter_mut().zip(&layouts) {
                    s.push(l.strides()[i]);
                }
            }
        }
        let numel = first.iter().product();
        let inner_len = dims.pop().unwrap_or(1);
        let inner_strides = std::array::from_fn(|k| strides[k].pop().unwrap_or(0));
        Ok(StridedRuns {
            outer_dims: dims,
            outer_strides: strides,
            inner_len,
            inner_strides,
            offsets: std::array::from_fn(|k| layouts[k].offset()),
            numel,
        })
    }

    /// Sizes of the coalesced outer dims (everything but the inner run).
    pub fn outer_dims(&self) -> &[usize] {
        &self.outer_dims
    }

    /// Strides of the coalesced outer dims, per layout.
    pub fn outer_strides(&self) -> &[Vec<usize>; K] {
        &self.outer_strides
    }

    /// Number of elements in the shared shape.
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// Length of the inner run (the last coalesced dim; 1 for a scalar).
    pub fn inner_len(&self) -> usize {
        self.inner_len
    }

    /// Stride of the inner run in each layout (1: contiguous, 0: broadcast).
    pub fn inner_strides(&self) -> [usize; K] {
        self.inner_strides
    }

    /// Call `f(pos, offsets, len)` for every run covering the row-major positions in
    /// `range`: elements `pos..pos+len` sit at `offsets[k] + i * inner_strides[k]` in
    /// layout `k`'s storage. Runs are cut at the range ends.
    pub fn for_each_run(&self, range: Range<usize>, mut f: impl FnMut(usize, [usize; K], usize)) {
        let end = range.end.min(self.numel);
        let mut pos = range.start;
        if pos >= end {
            return;
        }
        let n = self.inner_len;
        let rank = self.outer_dims.len();
        // Unravel the starting row into the outer odometer.
        let mut idx = vec![0; rank];
        let mut row = pos / n;
        let mut base = self.offsets;
        for d in (0..rank).rev() {
            idx[d] = row % self.outer_dims[d];
            row /= self.outer_dims[d];
            for (b, s) in base.iter_mut().zip(&self.outer_strides) {
                *b += idx[d] * s[d];
            }
        }
        let mut j = pos % n;
        while pos < end {
            let len = (n - j).min(end - pos);
            let offs = std::array::from_fn(|k| base[k] + j * self.inner_strides[k]);
            f(pos, offs, len);
            pos += len;
            j = 0;
            for d in (0..rank).rev() {
                idx[d] += 1;
                for (b, s) in base.iter_mut().zip(&self.outer_strides) {
                    *b += s[d];
                }
                if idx[d] < self.outer_dims[d] {
                    break;
                }
                for (b, s) in base.iter_mut().zip(&self.outer_strides) {
                    *b -= s[d] * self.outer_dims[d];
                }
                idx[d] = 0;
            }
        }
    }

    /// Fill `out` (row-major over the shape, `numel` long) run by run:
    /// `f(dst, offsets)` writes `dst.len()` elements whose sources start at `offsets`.
    /// Splits the work over rayon threads when `out` is large.
    pub fn fill(&self, out: &mut [f32], f: impl Fn(&mut [f32], [usize; K]) + Sync) {
        let total = out.len().min(self.numel);
        let out = &mut out[..total];
        let threads = rayon::current_num_threads();
        if total < PAR_MIN_ELEMS || threads < 2 {
            self.for_each_run(0..total, |pos, offs, len| f(&mut out[pos..pos + len], offs));
            return;
        }
        let chunk = total.div_ceil(threads * 4).max(PAR_MIN_ELEMS / 4);
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, dst)| {
            let start = c * chunk;
            self.for_each_run(start..start + dst.len(), |pos, offs, len| {
                f(&mut dst[pos - start..pos - start + len], offs)
            });
        });
    }
}

/// Run `f` compiled for AVX2 when the CPU has it: code inlined into `f` (mark the
/// closure `#[inline(always)]`, and the element function too) then uses 8-wide
/// vectors instead of the baseline 4-wide SSE2. Results are identical (no FMA
/// contraction); only the vector width changes.
#[inline(always)]
pub fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `avx2` only requires that the CPU supports AVX2, checked above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Copy the elements of `layout` over `src` into `dst` in row-major order
/// (`dst.len()` must be `layout.numel()`): the strided copy behind `to_vec` and
/// `contiguous`.
pub fn copy_strided(src: &[f32], layout: &Layout, dst: &mut [f32]) -> Result<()> {
    if dst.len() != layout.numel() {
        return Err(TensorError::ElementCount {
            op: "copy_strided",
            shape: layout.dims().to_vec(),
            expected: layout.numel(),
            got: dst.len(),
        });
    }
    if layout.storage_extent() > src.len() {
        return Err(TensorError::invalid(
            "copy_strided",
            format!(
                "layout {:?} strides {:?} offset {} reads past a buffer of {}",
                layout.dims(),
                layout.strides(),
                layout.offset(),
                src.len()
            ),
        ));
    }
    if dst.is_empty() {
        return Ok(());
    }
    let runs = StridedRuns::new("copy_strided", [layout])?;
    let [s] = runs.inner_strides();
    let (od, os) = (runs.outer_dims(), &runs.outer_strides()[0]);
    if let (Some(&rows), Some(&sr)) = (od.last(), os.last()) {
        if s > 1 && sr >= 1 && sr < s && rows > 1 {
            copy_tiled(src, &runs, dst);
            return Ok(());
        }
    }
    runs.fill(dst, |d, [o]| match s {
        1 => d.copy_from_slice(&src[o..o + d.len()]),
        0 => d.fill(src[o]),
        _ => {
            for (i, v) in d.iter_mut().enumerate() {
                *v = src[o + i * s];
            }
        }
    });
    Ok(())
}

/// Side of the square tiles of [`copy_tiled`].
const TILE: usize = 32;

/// Copy when the inner run is a wide stride but the dim above it is narrow (a
/// transpose): move `TILE x TILE` tiles so that both the reads and the writes of a
/// tile stay in cache. The shape is `(batch.., rows, cols)` after coalescing.
fn copy_tiled(src: &[f32], runs: &StridedRuns<1>, dst: &mut [f32]) {
    let (od, os) = (runs.outer_dims(), &runs.outer_strides()[0]);
    let last = od.len() - 1;
    let (nr, sr, nc, sc) = (
        od[last],
        os[last],
        runs.inner_len(),
        runs.inner_strides()[0],
    );
    let offset = runs.offsets[0];
    let block = |plane: usize, tile: usize, out: &mut [f32]| {
        let (mut rem, mut base) = (plane, offset + tile * TILE * sr);
        for d in (0..last).rev() {
            base += (rem % od[d]) * os[d];
            rem /= od[d];
        }
        let rows = out.len() / nc;
        for c0 in (0..nc).step_by(TILE) {
            let c1 = (c0 + TILE).min(nc);
            for r in 0..rows {
                let row = &mut out[r * nc + c0..r * nc + c1];
                let b = base + r * sr;
                for (c, v) in (c0..c1).zip(row.iter_mut()) {
                    *v = src[b + c * sc];
                }
            }
        }
    };
    let plane = nr * nc;
    if dst.len() < PAR_MIN_ELEMS || rayon::current_num_threads() < 2 {
        for (p, pd) in dst.chunks_mut(plane).enumerate() {
            for (t, out) in pd.chunks_mut(TILE * nc).enumerate() {
                block(p, t, out);
            }
        }
    } else {
        dst.par_chunks_mut(plane).enumerate().for_each(|(p, pd)| {
            pd.par_chunks_mut(TILE * nc)
                .enumerate()
                .for_each(|(t, out)| block(p, t, out));
        });
    }
}
