//! Test tensors of a given logical shape in a chosen memory layout. A
//! [`LayoutRecipe`] says how the storage buffer is arranged (physical dim order,
//! extra room to narrow from, size-1 dims to broadcast); [`build`] makes the tensor
//! by `from_vec` -> `permute` -> `narrow` -> `broadcast_as`. The named [`Kind`]s are
//! recipes with one of those features; the proptest strategies combine them freely.

use proptest::collection::vec;
use proptest::prelude::*;
use tensor::Tensor;

use super::{Fill, WIDE};

/// How a tensor of given dims is laid out over its storage.
#[derive(Clone, Debug)]
pub struct LayoutRecipe {
    /// Physical dim order: the buffer's dim `j` is logical dim `perm[j]`.
    pub perm: Vec<usize>,
    /// Dims stored with size 1 and broadcast to the wanted size (stride 0).
    pub bcast: Vec<bool>,
    /// Per dim `(more, start)`: the buffer is `more` larger along it and the view
    /// starts at `min(start, more)` (an offset, and gaps in the outer strides).
    pub extra: Vec<(usize, usize)>,
    pub seed: u64,
    pub fill: Fill,
}

/// A named layout of a test tensor.
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

impl LayoutRecipe {
    /// Row-major, no gaps, values uniform in [-1, 1).
    pub fn contiguous(rank: usize, seed: u64) -> Self {
        LayoutRecipe {
            perm: (0..rank).collect(),
            bcast: vec![false; rank],
            extra: vec![(0, 0); rank],
            seed,
            fill: Fill::Uniform(1.0),
        }
    }

    /// The layout `kind` for rank `rank`; `seed` picks the values and the dim that is
    /// rotated / sliced / broadcast. A kind the rank cannot show (a permuted vector, a
    /// sliced scalar) is contiguous.
    pub fn of_kind(kind: Kind, rank: usize, seed: u64) -> Self {
        let mut r = Self::contiguous(rank, seed);
        let pick = if rank == 0 { 0 } else { (seed as usize) % rank };
        match kind {
            Kind::Permuted if rank >= 2 => {
                // Rotate the dims by `pick + 1` in storage; `build` permutes them back.
                let rot = pick % (rank - 1) + 1;
                r.perm = (0..rank).map(|i| (i + rot) % rank).collect();
            }
            Kind::Sliced if rank >= 1 => r.extra[pick] = (3, 2),
            Kind::Broadcast if rank >= 1 => r.bcast[pick] = true,
            _ => {}
        }
        r
    }

    /// Cut a recipe made for a larger rank down to `rank` dims.
    pub fn truncate(mut self, rank: usize) -> Self {
        self.perm.retain(|&p| p < rank);
        self.bcast.truncate(rank);
        self.extra.truncate(rank);
        self
    }
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
    let mut t = Tensor::from_vec(r.fill.values(n, r.seed), phys).unwrap();
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

/// A tensor of `dims` in layout `kind`, values uniform in [-1, 1) from `seed`.
pub fn make(dims: &[usize], kind: Kind, seed: u64) -> Tensor {
    build(dims, &LayoutRecipe::of_kind(kind, dims.len(), seed))
}

// ---- proptest strategies ----------------------------------------------------------

pub fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Contiguous),
        Just(Kind::Permuted),
        Just(Kind::Sliced),
        Just(Kind::Broadcast),
    ]
}

/// Any mix of permutation, broadcasting (1 dim in 4) and slicing, values in [-3, 3)
/// or (3 times in 10) ties.
pub fn recipe(rank: usize) -> impl Strategy<Value = LayoutRecipe> {
    (
        Just((0..rank).collect::<Vec<_>>()).prop_shuffle(),
        vec(prop::bool::weighted(0.25), rank),
        vec((0..=2usize, 0..=2usize), rank),
        any::<u64>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(perm, bcast, extra, seed, ties)| LayoutRecipe {
            perm,
            bcast,
            extra,
            seed,
            fill: if ties { Fill::Ties } else { WIDE },
        })
}

/// Dims of rank `0..=max_rank`, each `1..=max_dim` or (1 time in 10) 0.
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
