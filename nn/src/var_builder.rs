//! [`VarBuilder`]: where a module's constructor gets its parameters.
//!
//! A builder is a parameter source plus a path prefix. `vb.pp("down_blocks").pp(0)`
//! is a builder one level deeper, and `vb.get("weight", &[320, 4, 3, 3], init)` asks
//! for the parameter named `down_blocks.0.weight`. The same module code then serves
//! both uses of a model:
//!
//! - training from scratch, [`VarBuilder::from_init`]: the parameter is made by
//!   its initialiser, drawing from the builder's generator (in construction order);
//! - loading a checkpoint, [`VarBuilder::from_safetensors`] (or `from_tensors`): the
//!   tensor is read by its full name (f16/bf16 widened to f32) and its shape checked;
//!   a missing key or a wrong shape is an error naming the key.
//!
//! Either way the parameter is registered under its full name in the builder's
//! [`ParamStore`], which optimizers, saving and freezing then use. After loading,
//! [`VarBuilder::finish`] fails naming any key of the file that no module asked for.
//!
//! ```
//! use nn::{Init, ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! let store = ParamStore::new();
//! let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
//! let conv = vb.pp("down_blocks").pp(0).pp("conv");
//! conv.get("weight", &[8, 4, 3, 3], Init::torch_default()).unwrap();
//! conv.get("bias", &[8], Init::ZEROS).unwrap();
//! assert_eq!(store.names(), ["down_blocks.0.conv.weight", "down_blocks.0.conv.bias"]);
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tensor::io::SafeTensorsFile;
use tensor::{Rng, Tensor};

use crate::error::{nearest_keys, NnError, Result};
use crate::init::Init;
use crate::param::{Param, ParamStore};

/// A generator that can be shared by the builders of one model.
pub type SharedRng = Arc<Mutex<Box<dyn Rng + Send>>>;

enum Source {
    Init(SharedRng),
    File {
        file: SafeTensorsFile,
        used: Mutex<HashSet<String>>,
    },
    Tensors {
        map: BTreeMap<String, Tensor>,
        name: String,
        used: Mutex<HashSet<String>>,
    },
}

/// A parameter source with a path prefix; cheap to clone and to extend.
#[derive(Clone)]
pub struct VarBuilder {
    store: ParamStore,
    source: Arc<Source>,
    prefix: String,
}

impl VarBuilder {
    /// Make fresh parameters with their initialisers, drawing from `rng`.
    pub fn from_init(store: &ParamStore, rng: impl Rng + Send + 'static) -> VarBuilder {
        VarBuilder::from_shared_rng(store, Arc::new(Mutex::new(Box::new(rng))))
    }

    /// Like [`VarBuilder::from_init`] with a generator shared with other code.
    pub fn from_shared_rng(store: &ParamStore, rng: SharedRng) -> VarBuilder {
        VarBuilder {
            store: store.clone(),
            source: Arc::new(Source::Init(rng)),
            prefix: String::new(),
        }
    }

    /// Read parameters by name from a safetensors file (memory-mapped; each tensor
    /// is converted when a module asks for it).
    pub fn from_safetensors(store: &ParamStore, path: impl AsRef<Path>) -> Result<VarBuilder> {
        let file = SafeTensorsFile::open(path)?;
        Ok(VarBuilder {
            store: store.clone(),
            source: Arc::new(Source::File {
                file,
                used: Mutex::new(HashSet::new()),
            }),
            prefix: String::new(),
        })
    }

    /// Read parameters by name from tensors in memory; `source_name` names them in errors.
    pub fn from_tensors(
        store: &ParamStore,
        map: BTreeMap<String, Tensor>,
        source_name: impl Into<String>,
    ) -> VarBuilder {
        VarBuilder {
            store: store.clone(),
            source: Arc::new(Source::Tensors {
                map,
                name: source_name.into(),
                used: Mutex::new(HashSet::new()),
            }),
            prefix: String::new(),
        }
    }

    /// A builder one level deeper: `vb.pp("to_out").pp(0)` names `to_out.0.*`.
    pub fn pp(&self, name: impl Display) -> VarBuilder {
        VarBuilder {
            store: self.store.clone(),
            source: Arc::clone(&self.source),
            prefix: self.path(name),
        }
    }

    /// This builder's prefix (`""` at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of `name` under this prefix.
    pub fn path(&self, name: impl Display) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The store parameters are registered in.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Whether parameters come from loaded weights (not initialisers).
    pub fn is_loading(&self) -> bool {
        !matches!(*self.source, Source::Init(_))
    }

    /// The parameter `name` of shape `shape` under this prefix: made by `init`, or
    /// read from the loaded weights (shape checked), and registered in the store.
    pub fn get(&self, name: impl Display, shape: &[usize], init: Init) -> Result<Param> {
        let key = self.path(name);
        let value = match &*self.source {
            Source::Init(rng) => {
                let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
                init.tensor(shape, &mut **rng)?
            }
            Source::File { file, used } => {
                let Some(info) = file.info(&key) else {
                    return Err(NnError::MissingKey {
                        near: nearest_keys(&key, file.names()),
                        key,
                        source_name: file.path().display().to_string(),
                    });
                };
                check_shape(&key, &file.path().display().to_string(), shape, &info.shape)?;
                let t = file.get(&key)?;
                used.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone());
                t
            }
            Source::Tensors { map, name, used } => {
                let Some(t) = map.get(&key) else {
                    return Err(NnError::MissingKey {
                        near: nearest_keys(&key, map.keys().map(String::as_str)),
                        key,
                        source_name: name.clone(),
                    });
                };
                check_shape(&key, name, shape, t.dims())?;
                used.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone());
                t.clone()
            }
        };
        self.store.insert(key, value)
    }

    /// Mark the key `name` under this prefix as deliberately unused, so
    /// [`VarBuilder::finish`] accepts it: a buffer the model recomputes, like CLIP's
    /// `text_model.embeddings.position_ids`. Returns whether the weights hold it
    /// (always false when initialising).
    pub fn skip(&self, name: impl Display) -> bool {
        let key = self.path(name);
        let (present, used) = match &*self.source {
            Source::Init(_) => return false,
            Source::File { file, used } => (file.contains(&key), used),
            Source::Tensors { map, used, .. } => (map.contains_key(&key), used),
        };
        if present {
            used.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key);
        }
        present
    }

    /// Keys of the loaded weights that no module has asked for, sorted (empty when
    /// initialising).
    pub fn unused_keys(&self) -> Vec<String> {
        let mut out: Vec<String> = match &*self.source {
            Source::Init(_) => Vec::new(),
            Source::File { file, used } => {
                let used = used.lock().unwrap_or_else(PoisonError::into_inner);
                file.names()
                    .into_iter()
                    .filter(|k| !used.contains(*k))
                    .map(str::to_string)
                    .collect()
            }
            Source::Tensors { map, used, .. } => {
                let used = used.lock().unwrap_or_else(PoisonError::into_inner);
                map.keys().filter(|k| !used.contains(*k)).cloned().collect()
            }
        };
        out.sort();
        out
    }

    /// After building a model from loaded weights: an error listing every key of the
    /// weights that the model did not use (`strict=True`). Always fine when initialising.
    pub fn finish(&self) -> Result<()> {
        let unexpected = self.unused_keys();
        if unexpected.is_empty() {
            return Ok(());
        }
        let source_name = match &*self.source {
            Source::Init(_) => String::new(),
            Source::File { file, .. } => file.path().display().to_string(),
            Source::Tensors { name, .. } => name.clone(),
        };
        Err(NnError::StateDict {
            source_name,
            missing: Vec::new(),
            unexpected,
            misshapen: Vec::new(),
        })
    }
}

fn check_shape(key: &str, source: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(NnError::ShapeMismatch {
            key: key.to_string(),
            source_name: source.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}
