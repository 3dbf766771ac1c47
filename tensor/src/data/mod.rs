//! Datasets and mini-batches: the IDX format ([`idx`]), Fashion-MNIST
//! ([`fashion_mnist`]: 28 x 28 u8 images, 10 classes) and iterator-based batching with
//! Fisher-Yates shuffling ([`batches`]). Images come out as (B, 1, H, W) f32 tensors in
//! [0, 1]. Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::data::{Batches, ImageDataset};
//! // Five 1x1 images with values 0, 51, 102, 153, 204 and labels 0..5.
//! let ds = ImageDataset::new(vec![0, 51, 102, 153, 204], vec![0, 1, 2, 3, 4], 1, 1).unwrap();
//! let batches: Vec<_> = Batches::new(&ds, 2).unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!(batches.len(), 3);                                   // 2 + 2 + 1
//! assert_eq!(batches[1].images.to_vec().unwrap(), vec![0.4, 0.6]); // 102/255, 153/255
//! assert_eq!(batches[2].labels, vec![4]);
//! ```

pub mod batches;
pub mod fashion_mnist;
pub mod idx;

pub use self::batches::{chunks, randperm, shuffle, Batch, Batches, IndexBatches};
pub use self::fashion_mnist::{FashionMnist, ImageDataset, Split, CLASS_NAMES};
pub use self::idx::{read_idx, IdxArray};
