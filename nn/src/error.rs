//! The nn crate's one error type. Errors about parameters name the key (the full
//! dotted name, `down_blocks.0.resnets.0.conv1.weight`) and, where a file is
//! involved, its path; a whole state-dict mismatch lists every missing, unexpected
//! and misshapen key at once, so one failed load shows everything that is wrong.

use autodiff::AutodiffError;
use tensor::TensorError;

/// How many keys of each kind a [`NnError::StateDict`] message lists before "and N more".
const LISTED: usize = 8;

/// One misshapen key: the shape the model wants and the shape the source has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misshapen {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// Errors from building modules, loading and saving parameters, optimizers and training.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor op failed, or a file could not be read or written.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// An autodiff op or backward failed.
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
    /// A parameter a module asked for is not in the loaded weights.
    #[error("missing key '{key}' in {source_name}{}", near_hint(.near))]
    MissingKey {
        key: String,
        source_name: String,
        /// Keys that do exist and share the longest prefix with `key`.
        near: Vec<String>,
    },
    /// A loaded tensor does not have the shape the module asked for.
    #[error(
        "key '{key}' in {source_name} has shape {found:?}, but the model expects {expected:?}"
    )]
    ShapeMismatch {
        key: String,
        source_name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Two parameters were registered under one name.
    #[error("parameter '{key}' is registered twice (two modules built with the same prefix?)")]
    DuplicateKey { key: String },
    /// Loading a whole state dict found keys that do not match the model.
    #[error("{}", state_dict_message(source_name, missing, unexpected, misshapen))]
    StateDict {
        source_name: String,
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshapen: Vec<Misshapen>,
    },
    /// A checkpoint's metadata is missing a field or has one that does not parse.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },
    /// The loss became NaN or infinite.
    #[error("training step {step}: the loss is {value} (not finite); lower the learning rate or check the data")]
    NonFiniteLoss { step: usize, value: f32 },
    /// Any other invalid argument, with a sentence that says which and why.
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

impl NnError {
    /// Shorthand for [`NnError::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        NnError::Invalid {
            op,
            msg: msg.into(),
        }
    }

    /// Shorthand for [`NnError::Checkpoint`].
    pub fn checkpoint(path: &std::path::Path, msg: impl Into<String>) -> Self {
        NnError::Checkpoint {
            path: path.display().to_string(),
            msg: msg.into(),
        }
    }
}

fn near_hint(near: &[String]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = near.iter().map(|k| format!("'{k}'")).collect();
        format!(" (nearest keys: {})", quoted.join(", "))
    }
}

fn listed(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(LISTED).map(String::as_str).collect();
    let more = items.len().saturating_sub(LISTED);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{}{tail}", shown.join(", "))
}

fn state_dict_message(
    source: &str,
    missing: &[String],
    unexpected: &[String],
    misshapen: &[Misshapen],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let keys: Vec<String> = missing.iter().map(|k| format!("'{k}'")).collect();
        parts.push(format!("missing keys: {}", listed(&keys)));
    }
    if !unexpected.is_empty() {
        let keys: Vec<String> = unexpected.iter().map(|k| format!("'{k}'")).collect();
        parts.push(format!("unexpected keys: {}", listed(&keys)));
    }
    if !misshapen.is_empty() {
        let keys: Vec<String> = misshapen
            .iter()
            .map(|m| format!("'{}' (model {:?}, file {:?})", m.key, m.expected, m.found))
            .collect();
        parts.push(format!("misshapen keys: {}", listed(&keys)));
    }
    format!("loading {source}: {}", parts.join("; "))
}

/// Keys of `keys` sharing the longest prefix with `key`, best first (at most 3).
pub(crate) fn nearest_keys<'k>(key: &str, keys: impl IntoIterator<Item = &'k str>) -> Vec<String> {
    let common = |k: &str| {
        k.bytes()
            .zip(key.bytes())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let mut all: Vec<(usize, &str)> = keys.into_iter().map(|k| (common(k), k)).collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    all.into_iter()
        .take(3)
        .map(|(_, k)| k.to_string())
        .collect()
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, NnError>;
