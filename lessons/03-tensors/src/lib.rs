//! Lesson 03: tensors from scratch.
//!
//! A tensor is a flat buffer plus a rule for finding element `[i0, .., in]` in it:
//! `offset + i0*s0 + .. + in*sn`. This file rebuilds that rule in a few dozen lines
//! ([`Strided`]), shows that every view is a new rule over the same buffer, derives
//! NumPy's broadcasting rule ([`broadcast_shapes`]) and the stride-0 trick, and writes
//! the iterators that turn a flat 784-vector into 28 rows ([`Chunks`], [`islice`]).
//!
//! The library versions live on in `tensor/src/shape.rs` (Shape, broadcasting),
//! `tensor/src/layout.rs` (Layout, views, StridedIndex) and `tensor/src/tensor.rs`.
//!
//! ```
//! use lesson_03_tensors::Strided;
//! let x = Strided::arange(&[2, 3]);            // [[0, 1, 2], [3, 4, 5]]
//! assert_eq!(x.strides, vec![3, 1]);
//! let t = x.transpose(0, 1);                   // same buffer, strides [1, 3]
//! assert_eq!(t.get(&[2, 1]), 5.0);
//! assert_eq!(t.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
//! ```

use std::rc::Rc;

/// A from-scratch strided array: a shared buffer, a shape, strides and an offset.
#[derive(Clone, Debug)]
pub struct Strided {
    pub data: Rc<Vec<f32>>,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

/// Row-major strides: the last dim moves by 1, each earlier dim by the product of the
/// sizes after it.
pub fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

impl Strided {
    /// A contiguous array holding 0, 1, 2, ... in row-major order.
    pub fn arange(shape: &[usize]) -> Self {
        let n = shape.iter().product::<usize>();
        Strided {
            data: Rc::new((0..n).map(|i| i as f32).collect()),
            shape: shape.to_vec(),
            strides: row_major_strides(shape),
            offset: 0,
        }
    }

    /// The index rule: position of element `idx` in the buffer.
    pub fn position(&self, idx: &[usize]) -> usize {
        self.offset
            + idx
                .iter()
                .zip(&self.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()
    }

    /// Element `idx`.
    pub fn get(&self, idx: &[usize]) -> f32 {
        self.data[self.position(idx)]
    }

    /// Swap two dims: swap their sizes and strides. No element moves.
    pub fn transpose(&self, a: usize, b: usize) -> Self {
        let mut v = self.clone();
        v.shape.swap(a, b);
        v.strides.swap(a, b);
        v
    }

    /// Keep `len` entries of `dim` from `start`: move the offset, shrink the size.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Self {
        let mut v = self.clone();
        v.offset += start * self.strides[dim];
        v.shape[dim] = len;
        v
    }

    /// Broadcast to `shape` (NumPy rule): new leading dims and size-1 dims get stride 0,
    /// so the same stored value is read again and again. `None` if not broadcastable.
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<Self> {
        let extra = shape.len().checked_sub(self.shape.len())?;
        let mut strides = vec![0; shape.len()];
        for (k, s) in strides.iter_mut().enumerate().skip(extra) {
            let (from, to) = (self.shape[k - extra], shape[k]);
            if from == to {
                *s = self.strides[k - extra];
            } else if from != 1 {
                return None;
            }
        }
        Some(Strided {
            data: Rc::clone(&self.data),
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// True when the strides are the row-major ones (ignoring size-1 dims).
    pub fn is_contiguous(&self) -> bool {
        let rm = row_major_strides(&self.shape);
        self.shape
            .iter()
            .zip(self.strides.iter().zip(&rm))
            .all(|(&d, (s, r))| d == 1 || s == r)
    }

    /// Every element in row-major logical order (an odometer over the index).
    pub fn to_vec(&self) -> Vec<f32> {
        let n = self.shape.iter().product::<usize>();
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0; self.shape.len()];
        for _ in 0..n {
            out.push(self.get(&idx));
            for k in (0..idx.len()).rev() {
                idx[k] += 1;
                if idx[k] < self.shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }
}

/// NumPy's broadcasting rule: align shapes on the right; each pair of sizes must be
/// equal or one of them 1; missing leading dims count as 1.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], k: usize| {
        if k + s.len() >= rank {
            s[k + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// An iterator over consecutive pieces of `size` items, as Python's
/// `iter(lambda: list(islice(it, size)), [])` idiom in the course.
pub struct Chunks<I: Iterator> {
    inner: I,
    size: usize,
}

impl<I: Iterator> Iterator for Chunks<I> {
    type Item = Vec<I::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let piece: Vec<I::Item> = islice(&mut self.inner, self.size).collect();
        (!piece.is_empty()).then_some(piece)
    }
}

/// Group any iterator into pieces of `size` (the last may be shorter).
pub fn chunks<I: IntoIterator>(it: I, size: usize) -> Chunks<I::IntoIter> {
    Chunks {
        inner: it.into_iter(),
        size: size.max(1),
    }
}

/// Python's `itertools.islice(it, n)`: the next `n` items of an iterator, lazily.
pub fn islice<I: Iterator>(it: I, n: usize) -> std::iter::Take<I> {
    it.take(n)
}
