//! Mini-batches as iterators, and the shuffle behind them.
//!
//! An epoch is an order of the dataset's indices (`0..N`, or a shuffled copy), cut into
//! batches of `batch_size`; the last, shorter batch is kept unless `drop_last`.
//! [`IndexBatches`] yields the index lists; [`Batches`] turns each into images
//! (B, 1, H, W) f32 in [0, 1] and their labels, like PyTorch's `DataLoader`.
//!
//! [`shuffle`] is Fisher-Yates driven by any [`Rng`]: for `i` from `n - 1` down to 1,
//! draw `u` in [0, 1) and swap item `i` with item `j = floor(u * (i + 1))` (at most
//! `i`). This is exactly Python's `random.shuffle(x, random)` (Python <= 3.10), so the
//! course's generator gives the course's order. [`chunks`] is `itertools.islice` in a
//! loop, as the lesson uses it to cut a flat 784-pixel image into 28 rows.
//! Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::data::batches::{chunks, IndexBatches};
//! let rows: Vec<Vec<u32>> = chunks(0..784u32, 28).collect();
//! assert_eq!((rows.len(), rows[1][0], rows[27][27]), (28, 28, 783));
//! let b: Vec<Vec<usize>> = IndexBatches::sequential(7, 3, false).unwrap().collect();
//! assert_eq!(b, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
//! ```

use super::fashion_mnist::ImageDataset;
use crate::error::{Result, TensorError};
use crate::random::Rng;
use crate::tensor::Tensor;

/// A uniform index in `0..bound` from one draw: `floor(u * bound)`, capped at
/// `bound - 1` (f64 rounding could otherwise reach `bound` for `u` just below 1).
/// `bound` must be at least 1.
pub fn draw_index(rng: &mut impl Rng, bound: usize) -> usize {
    let j = (rng.uniform() * bound as f64).floor() as usize;
    j.min(bound.saturating_sub(1))
}

/// Shuffle in place with Fisher-Yates (one draw per position `n - 1 ..= 1`, see the
/// module docs for how each draw maps to an index).
pub fn shuffle<T>(items: &mut [T], rng: &mut impl Rng) {
    for i in (1..items.len()).rev() {
        let j = draw_index(rng, i + 1);
        items.swap(i, j);
    }
}

/// A random permutation of `0..n` (`torch.randperm`, Fisher-Yates order).
pub fn randperm(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    shuffle(&mut v, rng);
    v
}

/// Batches of indices: `order` cut into runs of `batch_size`.
#[derive(Debug, Clone)]
pub struct IndexBatches {
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    pos: usize,
}

impl IndexBatches {
    /// Batches over `order` as given. `batch_size` must be at least 1.
    pub fn new(order: Vec<usize>, batch_size: usize, drop_last: bool) -> Result<Self> {
        if batch_size == 0 {
            return Err(TensorError::invalid(
                "IndexBatches",
                "batch_size must be at least 1",
            ));
        }
        Ok(IndexBatches {
            order,
            batch_size,
            drop_last,
            pos: 0,
        })
    }

    /// Batches over `0..n` in order.
    pub fn sequential(n: usize, batch_size: usize, drop_last: bool) -> Result<Self> {
        Self::new((0..n).collect(), batch_size, drop_last)
    }

    /// Batches over a random permutation of `0..n` ([`randperm`]).
    pub fn shuffled(
        n: usize,
        batch_size: usize,
        drop_last: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Self::new(randperm(n, rng), batch_size, drop_last)
    }

    /// The epoch's order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Batches left.
    fn remaining(&self) -> usize {
        let left = self.order.len().saturating_sub(self.pos);
        if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for IndexBatches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.remaining() == 0 {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let batch = self.order[self.pos..end].to_vec();
        self.pos = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for IndexBatches {}

/// One mini-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (B, 1, H + 2 pad, W + 2 pad) f32 in [0, 1].
    pub images: Tensor,
    /// B labels.
    pub labels: Vec<u8>,
    /// The dataset indices of the B images.
    pub indices: Vec<usize>,
}

/// Mini-batches of an [`ImageDataset`]: images as tensors, with their labels.
///
/// Built with [`Batches::new`] (in order), then optionally [`Batches::shuffled`],
/// [`Batches::drop_last`], [`Batches::pad`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a ImageDataset,
    indices: IndexBatches,
    pad: usize,
}

impl<'a> Batches<'a> {
    /// All of `data` in order, `batch_size` at a time, last batch kept.
    pub fn new(data: &'a ImageDataset, batch_size: usize) -> Result<Self> {
        Ok(Batches {
            data,
            indices: IndexBatches::sequential(data.len(), batch_size, false)?,
            pad: 0,
        })
    }

    /// Only the dataset indices `subset` (in that order), e.g. a validation split.
    pub fn over_indices(
        data: &'a ImageDataset,
        subset: Vec<usize>,
        batch_size: usize,
    ) -> Result<Self> {
        if let Some(&i) = subset.iter().find(|&&i| i >= data.len()) {
            return Err(TensorError::IndexOutOfRange {
                op: "Batches::over_indices",
                index: i,
                dim: 0,
                size: data.len(),
            });
        }
        Ok(Batches {
            data,
            indices: IndexBatches::new(subset, batch_size, false)?,
            pad: 0,
        })
    }

    /// Shuffle the order (Fisher-Yates, [`shuffle`]) and start the epoch over.
    pub fn shuffled(mut self, rng: &mut impl Rng) -> Self {
        shuffle(&mut self.indices.order, rng);
        self.indices.pos = 0;
        self
    }

    /// Skip a last batch shorter than `batch_size`.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.indices.drop_last = drop_last;
        self
    }

    /// Pad each image with `pad` zeros on every side (2 turns 28x28 into 32x32).
    pub fn pad(mut self, pad: usize) -> Self {
        self.pad = pad;
        self
    }

    /// The epoch's order of dataset indices.
    pub fn order(&self) -> &[usize] {
        self.indices.order()
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let indices = self.indices.next()?;
        let batch = self
            .data
            .batch_tensor(&indices, self.pad)
            .and_then(|images| {
                Ok(Batch {
                    images,
                    labels: self.data.batch_labels(&indices)?,
                    indices,
                })
            });
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Consecutive runs of `size` items from any iterator, the last possibly shorter
/// (Python's `iter(lambda: list(islice(it, size)), [])`). `size == 0` yields nothing,
/// as `islice(it, 0)` is always empty.
pub fn chunks<I: IntoIterator>(items: I, size: usize) -> Chunks<I::IntoIter> {
    Chunks {
        it: items.into_iter(),
        size,
    }
}

/// Iterator returned by [`chunks`].
#[derive(Debug, Clone)]
pub struct Chunks<I> {
    it: I,
    size: usize,
}

impl<I: Iterator> Iterator for Chunks<I> {
    type Item = Vec<I::Item>;

    fn next(&mut self) -> Option<Vec<I::Item>> {
        let chunk: Vec<I::Item> = self.it.by_ref().take(self.size).collect();
        if chunk.is_empty() {
            None
        } else {
            Some(chunk)
        }
    }
}
