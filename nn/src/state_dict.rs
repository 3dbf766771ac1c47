//! Saving and loading a [`ParamStore`] as safetensors, by parameter name.
//!
//! [`ParamStore::save`] writes every parameter under its full name (atomically: a
//! temp file renamed into place), so the file has a diffusers checkpoint's keys.
//! [`ParamStore::load`] is strict, like `load_state_dict(strict=True)`: before
//! touching any parameter it compares the file's keys and shapes with the model's
//! and fails with one error listing every missing, unexpected and misshapen key;
//! only a file that matches exactly is loaded (all or nothing).
//!
//! [`write_safetensors`] is the writer with a `__metadata__` string map, which
//! checkpoints use for the step, epoch and optimizer settings.
//!
//! ```
//! use nn::ParamStore;
//! use tensor::Tensor;
//! let dir = std::env::temp_dir().join(format!("nn-sd-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let a = ParamStore::new();
//! a.insert("conv_in.weight", Tensor::full([2, 1, 1, 1], 0.5)).unwrap();
//! a.save(dir.join("w.safetensors")).unwrap();
//! let b = ParamStore::new();
//! b.insert("conv_in.weight", Tensor::zeros([2, 1, 1, 1])).unwrap();
//! b.insert("conv_in.bias", Tensor::zeros([2])).unwrap();
//! let err = b.load(dir.join("w.safetensors")).unwrap_err().to_string();
//! assert!(err.contains("missing keys: 'conv_in.bias'"), "{err}");
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use tensor::io::{encode_from_f32, write_atomic, DType, SafeTensorsFile};
use tensor::{Tensor, TensorError};

use crate::error::{Misshapen, NnError, Result};
use crate::param::ParamStore;

impl ParamStore {
    /// Write every parameter as f32 to `path`, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_as(path, DType::F32)
    }

    /// Write every parameter in `dtype` (F32, F16 or BF16) to `path`, atomically.
    pub fn save_as(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        let tensors = self.tensors();
        tensor::io::save(path, tensors.iter().map(|(n, t)| (n, t)), dtype)?;
        Ok(())
    }

    /// Load every parameter from a safetensors file (any float dtype, widened to
    /// f32). Strict: the file must hold exactly the model's keys with its shapes.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = SafeTensorsFile::open(path)?;
        let available: Vec<(String, Vec<usize>)> = file
            .infos()
            .iter()
            .map(|i| (i.name.clone(), i.shape.clone()))
            .collect();
        self.load_checked(
            &path.display().to_string(),
            &available,
            |k| Ok(file.get(k)?),
        )
    }

    /// Load every parameter from tensors by name; strict like [`ParamStore::load`].
    /// `source_name` names the source in errors.
    pub fn load_tensors(
        &self,
        tensors: &BTreeMap<String, Tensor>,
        source_name: &str,
    ) -> Result<()> {
        let available: Vec<(String, Vec<usize>)> = tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.dims().to_vec()))
            .collect();
        self.load_checked(source_name, &available, |k| {
            tensors
                .get(k)
                .cloned()
                .ok_or_else(|| NnError::invalid("load", format!("key '{k}' vanished")))
        })
    }

    /// Compare `available` (name, shape) with the model: an error listing every
    /// missing, unexpected and misshapen key unless they match exactly.
    pub fn check_keys(&self, source_name: &str, available: &[(String, Vec<usize>)]) -> Result<()> {
        let shapes: HashMap<&str, &[usize]> = available
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_slice()))
            .collect();
        let params = self.params();
        let mut missing = Vec::new();
        let mut misshapen = Vec::new();
        for p in &params {
            match shapes.get(p.name()) {
                None => missing.push(p.name().to_string()),
                Some(&s) if s != p.dims().as_slice() => misshapen.push(Misshapen {
                    key: p.name().to_string(),
                    expected: p.dims(),
                    found: s.to_vec(),
                }),
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<String> = available
            .iter()
            .filter(|(k, _)| self.get(k).is_none())
            .map(|(k, _)| k.clone())
            .collect();
        unexpected.sort();
        if !missing.is_empty() || !unexpected.is_empty() || !misshapen.is_empty() {
            return Err(NnError::StateDict {
                source_name: source_name.to_string(),
                missing,
                unexpected,
                misshapen,
            });
        }
        Ok(())
    }

    /// [`ParamStore::check_keys`], then read every tensor with `get` and set them all,
    /// each on its parameter's device.
    pub(crate) fn load_checked(
        &self,
        source_name: &str,
        available: &[(String, Vec<usize>)],
        mut get: impl FnMut(&str) -> Result<Tensor>,
    ) -> Result<()> {
        self.check_keys(source_name, available)?;
        let params = self.params();
        let values = params
            .iter()
            .map(|p| get(p.name()))
            .collect::<Result<Vec<Tensor>>>()?;
        // Each value lands on its parameter's device, as torch's `load_state_dict`
        // copies into the existing tensors: a model on a GPU stays there.
        for (p, v) in params.iter().zip(values) {
            p.set(v.to_device(&p.value().device())?)?;
        }
        Ok(())
    }
}

/// Write `tensors` as f32 with a `__metadata__` map to `path`, atomically (temp file
/// and rename, [`tensor::io::write_atomic`]). Names must be unique.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| Ok(encode_from_f32(&t.to_vec()?, DType::F32)?))
        .collect::<Result<_>>()?;
    let mut views: BTreeMap<&str, TensorView<'_>> = BTreeMap::new();
    for ((name, t), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(safetensors::Dtype::F32, t.dims().to_vec(), b)
            .map_err(|e| TensorError::format(path, format!("tensor '{name}': {e}")))?;
        if views.insert(name, view).is_some() {
            return Err(
                TensorError::format(path, format!("tensor name '{name}' given twice")).into(),
            );
        }
    }
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let data = safetensors::serialize(views, &Some(meta))
        .map_err(|e| TensorError::format(path, e.to_string()))?;
    write_atomic(path, &data)?;
    Ok(())
}
