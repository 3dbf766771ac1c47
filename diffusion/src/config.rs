//! Reading a component's `config.json` (diffusers/transformers layout) into a typed
//! config. Unknown fields are ignored (diffusers writes many that do not change the
//! math, like `_diffusers_version`); a missing file, bad JSON or a wrong type is an
//! error naming the file and the field.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Tiny { sample_size: usize }
//! let dir = std::env::temp_dir().join("diffusion_config_doctest");
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("config.json"), r#"{"sample_size": 32, "_class_name": "X"}"#).unwrap();
//! let cfg: Tiny = diffusion::config::read_config(&dir.join("config.json")).unwrap();
//! assert_eq!(cfg.sample_size, 32);
//! ```

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{DiffusionError, Result};

/// Parse the JSON file at `path` into `T`.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| DiffusionError::io(path, e))?;
    parse_config(&text, path)
}

/// Parse JSON text into `T`; `path` only names the source in errors.
pub fn parse_config<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    serde_json::from_str(text).map_err(|e| DiffusionError::config(path, e.to_string()))
}
