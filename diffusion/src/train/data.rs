//! Fashion-MNIST batches for training: images padded by 2 to 32x32 and mapped to
//! [-1, 1] (what the VAE sees, as SD's VAE sees RGB in [-1, 1]), shuffled per epoch by
//! a generator derived from (seed, epoch), each batch carrying its own seed for the
//! noise it needs, so a resumed run draws exactly the numbers the first one would have.
//!
//! ```
//! use diffusion::train::data::{epoch_batches, images_pm1};
//! use tensor::data::ImageDataset;
//! let ds = ImageDataset::new(vec![0, 255, 255, 0], vec![3], 2, 2).unwrap();
//! let x = images_pm1(&ds, &[0], 1).unwrap(); // (1, 1, 4, 4), border -1
//! assert_eq!(x.dims(), &[1, 1, 4, 4]);
//! assert_eq!(x.to_vec().unwrap()[5..7], [-1.0, 1.0]);
//! let b = epoch_batches(10, 4, 7, 0);
//! assert_eq!(b.len(), 2); // the last partial batch is dropped
//! ```

use tensor::data::{randperm, ImageDataset};
use tensor::random::fork_safe::mix;
use tensor::random::WichmannHill;
use tensor::Tensor;

use crate::error::Result;

/// One batch: which images, and the seed of its noise.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchPlan {
    pub indices: Vec<usize>,
    pub seed: u64,
}

/// Images `indices` as `(B, 1, H + 2 pad, W + 2 pad)` in [-1, 1] (`2 v / 255 - 1`;
/// the padding is -1, the black background).
pub fn images_pm1(ds: &ImageDataset, indices: &[usize], pad: usize) -> Result<Tensor> {
    Ok(ds.batch_tensor(indices, pad)?.affine(2.0, -1.0)?)
}

/// The batches of epoch `epoch` over `n` samples: a permutation drawn from
/// (seed, epoch), cut in full batches of `batch_size`; batch `i` gets the seed
/// `mix(seed, epoch, i)`.
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<BatchPlan> {
    let mut rng = WichmannHill::seed(mix(seed, 0x5eed, epoch as u64));
    let order = randperm(n, &mut rng);
    order
        .chunks_exact(batch_size.max(1))
        .enumerate()
        .map(|(i, c)| BatchPlan {
            indices: c.to_vec(),
            seed: mix(seed, epoch as u64, i as u64),
        })
        .collect()
}

/// Like [`epoch_batches`] over the images whose labels are `labels`, with each image of
/// class `c` appearing `repeats[c]` times per epoch: a class-weighted epoch (used to go
/// on training the classes the model confuses most). The same `(seed, epoch)` gives the
/// same batches.
pub fn weighted_epoch_batches(
    labels: &[u8],
    repeats: &[usize; 10],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<BatchPlan> {
    let pool: Vec<usize> = labels
        .iter()
        .enumerate()
        .flat_map(|(i, &l)| std::iter::repeat_n(i, repeats[usize::from(l).min(9)]))
        .collect();
    let mut rng = WichmannHill::seed(mix(seed, 0x5eed, epoch as u64));
    let order = randperm(pool.len(), &mut rng);
    order
        .chunks_exact(batch_size.max(1))
        .enumerate()
        .map(|(i, c)| BatchPlan {
            indices: c.iter().map(|&k| pool[k]).collect(),
            seed: mix(seed, epoch as u64, i as u64),
        })
        .collect()
}
