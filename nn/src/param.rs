//! Named parameters: [`Param`] (one shared, updatable leaf) and [`ParamStore`] (every
//! parameter of a model by its full dotted name, in registration order).
//!
//! A [`Param`] is a cheap handle (`Arc`) to a cell holding the parameter's current
//! leaf [`Var`]. A module keeps its `Param`s and reads them with [`Param::var`] on
//! every forward; the optimizer, holding the same handles through the store, writes
//! each new value with [`Param::set`] (a [`Var::update`], which keeps the
//! [`autodiff::VarId`] so gradients and optimizer state stay keyed the same). So a
//! train step reads:
//!
//! ```text
//! let loss = model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?;  // modules read params
//! let grads = loss.backward()?;                               // keyed by VarId
//! opt.step(&grads)?;                                          // writes through the store
//! ```
//!
//! Names are diffusers/transformers checkpoint keys (`conv_in.weight`,
//! `down_blocks.0.resnets.0.norm1.bias`), so the store saves and loads safetensors
//! files by name ([`crate::state_dict`]). Freezing is by name prefix: a frozen
//! parameter reads as a constant (no gradient is computed for it) and optimizers skip
//! it. The store also carries the model's train/eval switch, read by dropout.
//!
//! ```
//! use nn::ParamStore;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! store.insert("encoder.proj.weight", Tensor::ones([2, 3])).unwrap();
//! store.insert("encoder.proj.bias", Tensor::zeros([2])).unwrap();
//! store.insert("head.weight", Tensor::ones([1, 2])).unwrap();
//! assert_eq!(store.num_elements(), 6 + 2 + 2);
//! assert_eq!(store.freeze("encoder").unwrap(), 2);       // both encoder params
//! assert!(!store.get("encoder.proj.bias").unwrap().var().requires_grad());
//! assert_eq!(store.trainable().len(), 1);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use autodiff::{Var, VarId};
use tensor::Tensor;

use crate::error::{NnError, Result};

struct ParamCell {
    name: String,
    var: RwLock<Var>,
    trainable: AtomicBool,
}

/// One named parameter: a shared handle to its current leaf value.
#[derive(Clone)]
pub struct Param(Arc<ParamCell>);

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Param({}, {:?}{})",
            self.name(),
            self.dims(),
            if self.is_trainable() { "" } else { ", frozen" }
        )
    }
}

impl Param {
    /// A new trainable parameter holding `value` as a leaf.
    pub fn new(name: impl Into<String>, value: Tensor) -> Param {
        Param(Arc::new(ParamCell {
            name: name.into(),
            var: RwLock::new(Var::leaf(value)),
            trainable: AtomicBool::new(true),
        }))
    }

    /// The full dotted name (`down_blocks.0.resnets.0.conv1.weight`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn leaf(&self) -> Var {
        self.0
            .var
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The value to use in a forward pass: the leaf itself when trainable (so the
    /// graph reaches it), a constant copy when frozen (no gradient flows to it).
    pub fn var(&self) -> Var {
        let leaf = self.leaf();
        if self.is_trainable() {
            leaf
        } else {
            leaf.detach()
        }
    }

    /// The current value.
    pub fn value(&self) -> Tensor {
        self.leaf().value().clone()
    }

    /// The id gradients and optimizer state are keyed by; stable across [`Param::set`].
    pub fn id(&self) -> VarId {
        self.leaf().id()
    }

    pub fn dims(&self) -> Vec<usize> {
        self.leaf().dims().to_vec()
    }

    pub fn numel(&self) -> usize {
        self.leaf().numel()
    }

    /// Replace the value (same shape), keeping the id: an optimizer step, a load.
    pub fn set(&self, value: Tensor) -> Result<()> {
        let mut guard = self.0.var.write().unwrap_or_else(PoisonError::into_inner);
        if value.dims() != guard.dims() {
            return Err(NnError::ShapeMismatch {
                key: self.0.name.clone(),
                source_name: "the new value".into(),
                expected: guard.dims().to_vec(),
                found: value.dims().to_vec(),
            });
        }
        *guard = guard.update(value)?;
        Ok(())
    }

    pub fn is_trainable(&self) -> bool {
        self.0.trainable.load(Ordering::Relaxed)
    }

    /// Freeze (`false`) or unfreeze (`true`) this parameter.
    pub fn set_trainable(&self, trainable: bool) {
        self.0.trainable.store(trainable, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Registry {
    params: Vec<Param>,
    index: HashMap<String, usize>,
}

struct StoreInner {
    registry: RwLock<Registry>,
    training: Arc<AtomicBool>,
}

/// Every parameter of a model by full name, in registration order. A cheap clone
/// (an `Arc`): modules' builders, optimizers, EMA and the learner share one store.
#[derive(Clone)]
pub struct ParamStore(Arc<StoreInner>);

impl Default for ParamStore {
    fn default() -> Self {
        ParamStore::new()
    }
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.params()).finish()
    }
}

/// Whether `name` lies under `prefix`: equal to it, or below it at a dot boundary
/// (`down_blocks.1` covers `down_blocks.1.conv.weight`, not `down_blocks.10.conv.weight`).
/// The empty prefix covers everything.
pub fn under_prefix(name: &str, prefix: &str) -> bool {
    if prefix.is_empty() || name == prefix {
        return true;
    }
    if let Some(p) = prefix.strip_suffix('.') {
        return name.starts_with(p) && name[p.len()..].starts_with('.');
    }
    name.starts_with(prefix) && name[prefix.len()..].starts_with('.')
}

impl ParamStore {
    pub fn new() -> ParamStore {
        ParamStore(Arc::new(StoreInner {
            registry: RwLock::new(Registry::default()),
            training: Arc::new(AtomicBool::new(true)),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.0
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Register a new trainable parameter; a name may be registered once.
    pub fn insert(&self, name: impl Into<String>, value: Tensor) -> Result<Param> {
        let name = name.into();
        let mut reg = self
            .0
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if reg.index.contains_key(&name) {
            return Err(NnError::DuplicateKey { key: name });
        }
        let param = Param::new(name.clone(), value);
        let i = reg.params.len();
        reg.params.push(param.clone());
        reg.index.insert(name, i);
        Ok(param)
    }

    /// The parameter named `name`.
    pub fn get(&self, name: &str) -> Option<Param> {
        let reg = self.read();
        reg.index.get(name).map(|&i| reg.params[i].clone())
    }

    /// All parameters, in registration order.
    pub fn params(&self) -> Vec<Param> {
        self.read().params.clone()
    }

    /// All names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.read()
            .params
            .iter()
            .map(|p| p.name().to_string())
            .collect()
    }

    /// The parameters an optimizer updates: those not frozen.
    pub fn trainable(&self) -> Vec<Param> {
        self.read()
            .params
            .iter()
            .filter(|p| p.is_trainable())
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Move every parameter to `device`, keeping their ids (optimizers and graphs
    /// that hold them see the moved values): the model then runs there.
    pub fn to_device(&self, device: &tensor::Device) -> Result<()> {
        for p in self.params() {
            p.set(p.value().to_device(device)?)?;
        }
        Ok(())
    }

    /// Total number of scalars in all parameters.
    pub fn num_elements(&self) -> usize {
        self.read().params.iter().map(Param::numel).sum()
    }

    /// The parameters under `prefix` (see [`under_prefix`]).
    pub fn under(&self, prefix: &str) -> Vec<Param> {
        self.read()
            .params
            .iter()
            .filter(|p| under_prefix(p.name(), prefix))
            .cloned()
            .collect()
    }

    fn set_trainable(&self, prefix: &str, trainable: bool) -> Result<usize> {
        let matched = self.under(prefix);
        if matched.is_empty() {
            let names = self.names();
            let near = crate::error::nearest_keys(prefix, names.iter().map(String::as_str));
            return Err(NnError::MissingKey {
                key: prefix.to_string(),
                source_name: "the model (no parameter has this prefix)".into(),
                near,
            });
        }
        for p in &matched {
            p.set_trainable(trainable);
        }
        Ok(matched.len())
    }

    /// Freeze every parameter under `prefix`; returns how many. A prefix matching
    /// nothing is an error naming it (a typo would otherwise freeze nothing).
    pub fn freeze(&self, prefix: &str) -> Result<usize> {
        self.set_trainable(prefix, false)
    }

    /// Unfreeze every parameter under `prefix`; returns how many.
    pub fn unfreeze(&self, prefix: &str) -> Result<usize> {
        self.set_trainable(prefix, true)
    }

    /// (name, current value) of every parameter, in registration order.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.read()
            .params
            .iter()
            .map(|p| (p.name().to_string(), p.value()))
            .collect()
    }

    /// Training mode (dropout active); the default.
    pub fn train(&self) {
        self.0.training.store(true, Ordering::Relaxed);
    }

    /// Evaluation mode (dropout is the identity).
    pub fn eval(&self) {
        self.0.training.store(false, Ordering::Relaxed);
    }

    pub fn is_training(&self) -> bool {
        self.0.training.load(Ordering::Relaxed)
    }

    /// The shared train/eval flag, for modules (dropout) built from this store.
    pub fn training_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0.training)
    }
}
