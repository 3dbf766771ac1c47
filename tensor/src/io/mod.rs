//! Reading and writing tensors: safetensors checkpoints, PNG images, and the storage
//! dtypes (f16, bf16) they carry.
//!
//! - [`dtype`]: [`DType`] and slice conversion to and from f32.
//! - [`safetensors`]: [`SafeTensorsFile`] (memory-mapped, tensors by name, as f32),
//!   [`load`] and [`save`].
//! - [`image`]: PNG <-> (C, H, W) tensors in [0, 1] or [-1, 1], and image grids.
//! - [`atomic`]: [`write_atomic`], the temp-file-and-rename every writer here uses.
//!
//! Introduced with checkpoints and images in `lessons/03-tensors`.
//!
//! ```
//! use tensor::io::{round_through, DType};
//! // 1/3 in bf16 is 0.333984375 (8 significant bits); in f16 0.333251953125 (11 bits).
//! assert_eq!(round_through(&[1.0 / 3.0], DType::BF16).unwrap(), vec![0.333984375]);
//! assert_eq!(round_through(&[1.0 / 3.0], DType::F16).unwrap(), vec![0.333251953125]);
//! ```

pub mod atomic;
pub mod dtype;
pub mod image;
pub mod safetensors;

pub use self::atomic::{write_atomic, write_atomic_with};
pub use self::dtype::{decode_to_f32, encode_from_f32, round_through, DType};
pub use self::image::{image_grid, load_image, load_image_pm1, save_image_pm1, save_image_unit};
pub use self::safetensors::{load, save, SafeTensorsFile, TensorInfo};
