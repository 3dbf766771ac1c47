//! Fashion-MNIST (Zalando, MIT): 60,000 training and 10,000 test images of clothing,
//! 28 x 28 grayscale u8, each labelled with one of 10 classes ([`CLASS_NAMES`]).
//!
//! The four files `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` are read from,
//! in this order of preference: a directory given as an argument, the directory in the
//! environment variable `FASHION_MNIST_DIR`, or `/usr/share/datasets/fashion-mnist`
//! (where Debian's `dataset-fashion-mnist` package installs them). Uncompressed files
//! (without `.gz`) are accepted too.
//!
//! Images stay u8 in memory (47 MB for the training set); [`ImageDataset::to_tensor`]
//! gives (N, 1, 28, 28) f32 in [0, 1] (`v / 255`), and [`ImageDataset::batch_tensor`]
//! gathers a batch, optionally zero-padded to 32 x 32 (`pad = 2`) for models that
//! halve the size several times. Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::data::ImageDataset;
//! // Two 2x2 "images" and their labels.
//! let ds = ImageDataset::new(vec![0, 255, 51, 102, 255, 0, 0, 0], vec![3, 7], 2, 2).unwrap();
//! let x = ds.batch_tensor(&[0], 1).unwrap();          // (1, 1, 4, 4), zero border
//! assert_eq!(x.dims(), &[1, 1, 4, 4]);
//! assert_eq!(x.to_vec().unwrap()[5..7], [0.0, 1.0]);   // row 1: pad, 0/255, 255/255
//! assert_eq!(ds.label(1), Some(7));
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::idx::read_idx_rank;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// The 10 Fashion-MNIST classes, indexed by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable naming a directory that holds the four files.
pub const ENV_VAR: &str = "FASHION_MNIST_DIR";

/// Where the dataset directory came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirSource {
    Argument,
    EnvVar,
    Default,
}

/// Pick the directory: `explicit`, else the value of `FASHION_MNIST_DIR` (passed in as
/// `env` so this stays a pure function), else [`DEFAULT_DIR`]. Empty values count as
/// unset.
pub fn resolve_dir(explicit: Option<&Path>, env: Option<OsString>) -> (PathBuf, DirSource) {
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return (p.to_path_buf(), DirSource::Argument);
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return (PathBuf::from(e), DirSource::EnvVar);
    }
    (PathBuf::from(DEFAULT_DIR), DirSource::Default)
}

/// [`resolve_dir`] with the real environment.
pub fn dataset_dir(explicit: Option<&Path>) -> (PathBuf, DirSource) {
    resolve_dir(explicit, std::env::var_os(ENV_VAR))
}

/// Training (60,000 images) or test (10,000 images) split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// File name prefix: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Grayscale images (u8, row-major, H x W each) with one u8 label per image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    height: usize,
    width: usize,
}

impl ImageDataset {
    /// `images` holds `labels.len()` images of `height x width` bytes, back to back.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, height: usize, width: usize) -> Result<Self> {
        if images.len() != labels.len() * height * width {
            return Err(TensorError::invalid(
                "ImageDataset::new",
                format!(
                    "{} image bytes are not {} images of {height}x{width}",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        Ok(ImageDataset {
            images,
            labels,
            height,
            width,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn width(&self) -> usize {
        self.width
    }
    /// All pixels, image after image.
    pub fn images(&self) -> &[u8] {
        &self.images
    }
    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
    /// The pixels of image `i` (H * W bytes, row-major).
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.height * self.width;
        self.images.get(i * n..(i + 1) * n)
    }
    /// The label of image `i`.
    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.get(i).copied()
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i >= self.len() {
            return Err(TensorError::IndexOutOfRange {
                op: "ImageDataset",
                index: i,
                dim: 0,
                size: self.len(),
            });
        }
        Ok(())
    }

    /// Images `indices` as (B, 1, H + 2 pad, W + 2 pad) f32 in [0, 1]: `v / 255`, with
    /// a border of `pad` zeros.
    pub fn batch_tensor(&self, indices: &[usize], pad: usize) -> Result<Tensor> {
        let (h, w) = (self.height, self.width);
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let mut out = vec![0.0f32; indices.len() * ph * pw];
        for (b, &i) in indices.iter().enumerate() {
            self.check_index(i)?;
            let src = &self.images[i * h * w..(i + 1) * h * w];
            for (y, row) in src.chunks_exact(w.max(1)).enumerate() {
                let d = b * ph * pw + (y + pad) * pw + pad;
                for (o, &v) in out[d..d + w].iter_mut().zip(row) {
                    *o = f32::from(v) / 255.0;
                }
            }
        }
        Tensor::from_vec(out, [indices.len(), 1, ph, pw])
    }

    /// The labels of images `indices`.
    pub fn batch_labels(&self, indices: &[usize]) -> Result<Vec<u8>> {
        indices
            .iter()
            .map(|&i| {
                self.check_index(i)?;
                Ok(self.labels[i])
            })
            .collect()
    }

    /// Every image as (N, 1, H, W) f32 in [0, 1].
    pub fn to_tensor(&self) -> Result<Tensor> {
        self.to_tensor_padded(0)
    }

    /// Every image as (N, 1, H + 2 pad, W + 2 pad) f32 in [0, 1], zero border.
    pub fn to_tensor_padded(&self, pad: usize) -> Result<Tensor> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.batch_tensor(&all, pad)
    }
}

/// Both splits of Fashion-MNIST.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    pub train: ImageDataset,
    pub test: ImageDataset,
}

/// `name.gz` if present, else `name`; a not-found error with install instructions
/// when neither exists.
fn find_file(dir: &Path, source: DirSource, name: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let from = match source {
        DirSource::Argument => "the directory passed in".to_string(),
        DirSource::EnvVar => format!("from ${ENV_VAR}"),
        DirSource::Default => "the default directory".to_string(),
    };
    let msg = format!(
        "Fashion-MNIST not found: no {name}.gz (or {name}) in {} ({from}). \
         Install it with `sudo apt-get install dataset-fashion-mnist` (files go to {DEFAULT_DIR}), \
         or set {ENV_VAR} to a directory holding \
         train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
         t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
        dir.display()
    );
    Err(TensorError::io(
        &gz,
        std::io::Error::new(std::io::ErrorKind::NotFound, msg),
    ))
}

/// Load one split from `dir`, checking that images are (N, 28, 28), labels (N) and
/// every label is below 10.
pub fn load_split(dir: &Path, source: DirSource, split: Split) -> Result<ImageDataset> {
    let p = split.prefix();
    let img_path = find_file(dir, source, &format!("{p}-images-idx3-ubyte"))?;
    let lbl_path = find_file(dir, source, &format!("{p}-labels-idx1-ubyte"))?;
    let images = read_idx_rank(&img_path, 3)?;
    let labels = read_idx_rank(&lbl_path, 1)?;
    if images.dims[1..] != [28, 28] {
        return Err(TensorError::format(
            &img_path,
            format!("expected 28x28 images, found dims {:?}", images.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(TensorError::format(
            &lbl_path,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                img_path.display()
            ),
        ));
    }
    if let Some(i) = labels
        .data
        .iter()
        .position(|&l| usize::from(l) >= CLASS_NAMES.len())
    {
        return Err(TensorError::format(
            &lbl_path,
            format!(
                "label {} at index {i} is not a class (0..=9)",
                labels.data[i]
            ),
        ));
    }
    ImageDataset::new(images.data, labels.data, 28, 28)
}

impl FashionMnist {
    /// Load both splits from `FASHION_MNIST_DIR` or the default directory.
    pub fn load() -> Result<Self> {
        Self::load_dir(None)
    }

    /// Load both splits from `dir`.
    pub fn load_from(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_dir(Some(dir.as_ref()))
    }

    /// Load both splits from `dir` if given, else as [`FashionMnist::load`].
    pub fn load_dir(dir: Option<&Path>) -> Result<Self> {
        let (dir, source) = dataset_dir(dir);
        Ok(FashionMnist {
            train: load_split(&dir, source, Split::Train)?,
            test: load_split(&dir, source, Split::Test)?,
        })
    }
}
