//! The tensor crate's one error type. Every message names the op and the shapes,
//! dims, keys or paths involved, so a caller can tell what went wrong and where.

use std::path::{Path, PathBuf};

/// Errors from tensor construction, views, ops and I/O.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// Two shapes that had to agree did not.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// Shapes that cannot be broadcast together (NumPy rules).
    #[error("{op}: cannot broadcast {lhs:?} with {rhs:?}")]
    Broadcast {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A dimension index outside `-rank..rank`.
    #[error("{op}: dim {dim} out of range for rank {rank}")]
    DimOutOfRange {
        op: &'static str,
        dim: isize,
        rank: usize,
    },
    /// An index or range outside a dimension's size.
    #[error("{op}: index {index} out of range for dim {dim} of size {size}")]
    IndexOutOfRange {
        op: &'static str,
        index: usize,
        dim: usize,
        size: usize,
    },
    /// The number of elements does not match the shape.
    #[error("{op}: {got} elements do not fill shape {shape:?} ({expected} elements)")]
    ElementCount {
        op: &'static str,
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    /// Any other invalid argument, with a sentence that says which and why.
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose contents are not what its format promises.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// No GPU adapter (wgpu found no Vulkan/Metal/DX12 device).
    #[error("wgpu: no adapter: {0}")]
    NoAdapter(String),
    /// The GPU ran out of memory (reported by the driver through an error scope).
    #[error("{op}: out of GPU memory allocating {bytes} bytes: {msg}")]
    DeviceOutOfMemory {
        op: &'static str,
        bytes: u64,
        msg: String,
    },
    /// The GPU device was lost (driver reset, hang, unplugged) or reported an error.
    #[error("{op}: GPU device error: {msg}")]
    Device { op: &'static str, msg: String },
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, TensorError>;

impl TensorError {
    /// Shorthand for [`TensorError::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        TensorError::Invalid {
            op,
            msg: msg.into(),
        }
    }

    /// Shorthand for [`TensorError::Format`].
    pub fn format(path: &Path, msg: impl Into<String>) -> Self {
        TensorError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`TensorError::Io`].
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TensorError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
