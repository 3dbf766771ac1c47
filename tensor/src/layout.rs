//! Layout: how a logical N-d index maps to a position in flat storage.
//!
//! `offset(i0, .., in) = offset + sum_k i_k * strides[k]`, strides in elements. Every
//! view (reshape of contiguous data, permute, transpose, narrow, broadcast_as,
//! squeeze, unsqueeze) is a new Layout over the same storage: nothing is copied.
//! A broadcast dimension has stride 0, so one element is read many times.
//! Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::Layout;
//! let l = Layout::contiguous([2, 3]);           // strides [3, 1]
//! let t = l.transpose(0, 1).unwrap();            // shape [3, 2], strides [1, 3]
//! assert_eq!(t.strides(), &[1, 3]);
//! assert_eq!(t.offsets().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
//! let b = Layout::contiguous([3]).broadcast_as([2, 3]).unwrap();
//! assert_eq!(b.strides(), &[0, 1]);
//! ```

use crate::error::{Result, TensorError};
use crate::shape::{resolve_dim, Shape};

/// Shape, strides (in elements) and the storage offset of element `[0, .., 0]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Shape,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// A row-major layout starting at offset 0.
    pub fn contiguous(shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let strides = shape.contiguous_strides();
        Layout {
            shape,
            strides,
            offset: 0,
        }
    }

    /// A layout from explicit parts; `strides` must have the shape's rank.
    pub fn new(shape: impl Into<Shape>, strides: Vec<usize>, offset: usize) -> Result<Self> {
        let shape = shape.into();
        if strides.len() != shape.rank() {
            return Err(TensorError::invalid(
                "Layout::new",
                format!("{} strides for shape {:?}", strides.len(), shape),
            ));
        }
        Ok(Layout {
            shape,
            strides,
            offset,
        })
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// True when elements sit in row-major order with no gaps (from `offset`).
    /// Dims of size 1 may have any stride.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.dims().iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// The storage range `offset..offset+numel` when the layout is contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.numel())
    }

    /// One past the largest storage index this layout reads (0 when empty).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .dims()
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Same elements, new shape. Only for contiguous layouts (else copy first).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Layout> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(TensorError::ElementCount {
                op: "reshape",
                shape: shape.dims().to_vec(),
                expected: shape.numel(),
                got: self.numel(),
            });
        }
        if !self.is_contiguous() {
            return Err(TensorError::invalid(
                "reshape",
                format!(
                    "layout {:?} with strides {:?} is not contiguous; call contiguous() first",
                    self.shape, self.strides
                ),
            ));
        }
        let strides = shape.contiguous_strides();
        Ok(Layout {
            shape,
            strides,
            offset: self.offset,
        })
    }

    /// Reorder dims: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let ok = perm.len() == rank
            && perm
                .iter()
                .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !ok {
            return Err(TensorError::invalid(
                "permute",
                format!("{perm:?} is not a permutation of 0..{rank}"),
            ));
        }
        Ok(Layout {
            shape: Shape::new(perm.iter().map(|&p| self.dims()[p]).collect()),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// Swap two dims.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Layout> {
        let a = resolve_dim("transpose", d0, self.rank())?;
        let b = resolve_dim("transpose", d1, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Keep `len` entries of `dim` starting at `start`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Layout> {
        let d = resolve_dim("narrow", dim, self.rank())?;
        let size = self.dims()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(TensorError::IndexOutOfRange {
                op: "narrow",
                index: start.saturating_add(len),
                dim: d,
                size,
            });
        }
        let mut dims = self.dims().to_vec();
        dims[d] = len;
        let offset = if len == 0 {
            self.offset
        } else {
            self.offset + start * self.strides[d]
        };
        Ok(Layout {
            shape: Shape::new(dims),
            strides: self.strides.clone(),
            offset,
        })
    }

    /// View as `shape` by NumPy broadcasting: new or size-1 dims get stride 0.
    pub fn broadcast_as(&self, shape: impl Into<Shape>) -> Result<Layout> {
        let shape = shape.into();
        let err = || TensorError::Broadcast {
            op: "broadcast_as",
            lhs: self.dims().to_vec(),
            rhs: shape.dims().to_vec(),
        };
        if shape.rank() < self.rank() {
            return Err(err());
        }
        let extra = shape.rank() - self.rank();
        let mut strides = vec![0; shape.rank()];
        for (i, s) in strides.iter_mut().enumerate().skip(extra) {
            let src = self.dims()[i - extra];
            let dst = shape.dims()[i];
            if src == dst {
                *s = self.strides[i - extra];
            } else if src != 1 {
                return Err(err());
            }
        }
        Ok(Layout {
            shape,
            strides,
            offset: self.offset,
        })
    }

    /// Remove `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Layout> {
        let d = resolve_dim("squeeze", dim, self.rank())?;
        if self.dims()[d] != 1 {
            return Err(TensorError::invalid(
                "squeeze",
                format!(
                    "dim {d} of shape {:?} has size {}, not 1",
                    self.shape,
                    self.dims()[d]
                ),
            ));
        }
        let mut dims = self.dims().to_vec();
        let mut strides = self.strides.clone();
        dims.remove(d);
        strides.remove(d);
        Ok(Layout {
            shape: Shape::new(dims),
            strides,
            offset: self.offset,
        })
    }

    /// Insert a dim of size 1 at `dim` (which may equal the rank, or be negative).
    pub fn unsqueeze(&self, dim: isize) -> Result<Layout> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut dims = self.dims().to_vec();
        let mut strides = self.strides.clone();
        let stride = if d < self.rank() {
            self.strides[d] * self.dims()[d]
        } else {
            1
        };
        dims.insert(d, 1);
        strides.insert(d, stride);
        Ok(Layout {
            shape: Shape::new(dims),
            strides,
            offset: self.offset,
        })
    }

    /// Storage offsets of every element, in row-major logical order.
    pub fn offsets(&self) -> StridedIndex<'_> {
        StridedIndex::new(self)
    }
}

/// Iterator over the storage offsets of a layout, row-major (an odometer over dims).
pub struct StridedIndex<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: Option<usize>,
}

impl<'a> StridedIndex<'a> {
    fn new(layout: &'a Layout) -> Self {
        let next = (layout.numel() > 0).then_some(layout.offset);
        StridedIndex {
            layout,
            index: vec![0; layout.rank()],
            next,
        }
    }
}

impl Iterator for StridedIndex<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        let dims = self.layout.dims();
        let strides = self.layout.strides();
        let mut pos = current;
        let mut d = dims.len();
        loop {
            if d == 0 {
                self.next = None;
                break;
            }
            d -= 1;
            self.index[d] += 1;
            pos += strides[d];
            if self.index[d] < dims[d] {
                self.next = Some(pos);
                break;
            }
            pos -= strides[d] * dims[d];
            self.index[d] = 0;
        }
        Some(current)
    }
}
