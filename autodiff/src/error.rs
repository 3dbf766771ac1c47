//! The autodiff crate's one error type: a tensor error from an op's forward or
//! backward computation, or a misuse of the graph (backward from a non-scalar
//! without a seed gradient, from a value that records no graph, ...).

use tensor::TensorError;

/// Errors from building a graph of [`crate::Var`] ops or running backward through it.
#[derive(Debug, thiserror::Error)]
pub enum AutodiffError {
    /// A tensor op failed (bad shapes, bad arguments); the message names the op.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// `backward()` needs a one-element output; other outputs need a seed gradient.
    #[error(
        "backward: output of shape {shape:?} is not a scalar; call backward_with_grad \
         with a seed gradient of that shape"
    )]
    NonScalarBackward { shape: Vec<usize> },
    /// The seed gradient given to `backward_with_grad` has the wrong shape.
    #[error("backward: seed gradient of shape {seed:?} for an output of shape {output:?}")]
    SeedShape {
        seed: Vec<usize>,
        output: Vec<usize>,
    },
    /// `backward` from a value that does not depend on any leaf requiring grad.
    #[error(
        "backward: the output (shape {shape:?}) does not require grad: it is a constant \
         or was computed under no_grad"
    )]
    NoGraph { shape: Vec<usize> },
    /// An op's backward returned a gradient whose shape differs from its input's.
    /// This is a bug in that op's backward; the message names it.
    #[error("{op}: backward gave a gradient of shape {got:?} for input {input} of shape {want:?}")]
    GradShape {
        op: &'static str,
        input: usize,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    /// Any other invalid argument, with a sentence that says which and why.
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

impl AutodiffError {
    /// Shorthand for [`AutodiffError::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        AutodiffError::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, AutodiffError>;
