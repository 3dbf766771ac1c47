//! The diffusion crate's one error type. Every message names what went wrong and
//! where: the file (a model folder's `unet/config.json`), the key, the size or the
//! option, so a user can fix the input without reading the code.

use std::path::Path;

use autodiff::AutodiffError;
use nn::NnError;
use tensor::TensorError;

/// Errors from tokenizing, loading configs and weights, schedulers and pipelines.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    /// A tensor op failed, or a file could not be read or written.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// An autodiff op failed.
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    /// Building a module or loading its weights failed (names the key).
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A file or folder could not be read.
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    /// A config file is malformed or asks for something this crate cannot serve.
    #[error("config {path}: {msg}")]
    Config { path: String, msg: String },
    /// The tokenizer's vocabulary or merges are malformed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Any other invalid argument, with a sentence that says which and why.
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

impl DiffusionError {
    /// Shorthand for [`DiffusionError::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        DiffusionError::Invalid {
            op,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`DiffusionError::Io`] from a path and an `std::io::Error`.
    pub fn io(path: &Path, err: impl std::fmt::Display) -> Self {
        DiffusionError::Io {
            path: path.display().to_string(),
            msg: err.to_string(),
        }
    }
    /// Shorthand for [`DiffusionError::Config`].
    pub fn config(path: &Path, msg: impl Into<String>) -> Self {
        DiffusionError::Config {
            path: path.display().to_string(),
            msg: msg.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = DiffusionError> = std::result::Result<T, E>;
