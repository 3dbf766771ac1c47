//! Optimizers: [`Sgd`] (momentum, Nesterov, weight decay) and [`AdamW`] (decoupled
//! weight decay, bias correction), each reproducing `torch.optim`'s update order, and
//! the [`Optimizer`] trait the training loop drives.
//!
//! An optimizer holds the model's [`ParamStore`]. `step(&grads)` updates every
//! trainable parameter that has a gradient in `grads` (frozen ones and ones the loss
//! did not reach are skipped, as torch skips `p.grad is None`) with one fused kernel
//! per parameter (`tensor::ops::optim`: a CPU loop, or a WGSL kernel when the
//! parameter lives on a GPU) and writes the new value with [`crate::Param::set`].
//! Per-parameter state (momentum buffers, Adam's moments and step count) lives on
//! the parameter's device, keyed by its [`autodiff::VarId`], which updates keep; there is no `zero_grad` because each backward returns fresh
//! [`Grads`]. For checkpoints the state is exported by parameter name
//! ([`Optimizer::state`]: `"<param>.exp_avg"` tensors and settings as exact decimal
//! strings) and imported into a fresh optimizer by name ([`Optimizer::load_state`]).
//! Introduced with the course's optimizers lesson (SGD, momentum, Adam).
//!
//! ```
//! use autodiff::Var;
//! use nn::{Optimizer, ParamStore, Sgd, SgdConfig};
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let w = store.insert("w", Tensor::from_vec(vec![1.0, -2.0], [2]).unwrap()).unwrap();
//! let mut opt = Sgd::new(&store, SgdConfig { lr: 0.5, ..Default::default() });
//! let grads = w.var().sqr().unwrap().sum_all().unwrap().backward().unwrap(); // 2w
//! opt.step(&grads).unwrap();                                              // w - 0.5 * 2w
//! assert_eq!(w.value().to_vec().unwrap(), vec![0.0, 0.0]);
//! ```

pub mod adamw;
pub mod sgd;

use std::collections::BTreeMap;

use autodiff::Grads;
use tensor::Tensor;

use crate::error::{NnError, Result};
use crate::param::{Param, ParamStore};

pub use adamw::{AdamW, AdamWConfig};
pub use sgd::{Sgd, SgdConfig};

/// An optimizer's state by parameter name, for checkpoints.
#[derive(Clone, Debug, Default)]
pub struct OptimState {
    /// `"<param name>.<buffer>"` -> tensor of the parameter's shape.
    pub tensors: Vec<(String, Tensor)>,
    /// Settings and counters as strings (`"lr"`, `"<param name>.step"`, ...).
    pub meta: BTreeMap<String, String>,
}

impl OptimState {
    /// A state holding just these settings (each optimizer's `kind`, `lr`, ...).
    pub fn with_meta<const N: usize>(settings: [(&str, String); N]) -> OptimState {
        OptimState {
            tensors: Vec::new(),
            meta: settings
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// What the training loop needs from an optimizer.
pub trait Optimizer {
    /// Update every trainable parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &Grads) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// SGD's momentum or Adam's beta1: what a one-cycle schedule cycles.
    fn momentum(&self) -> f64;
    fn set_momentum(&mut self, momentum: f64);
    /// The parameters it updates.
    fn store(&self) -> &ParamStore;
    /// Everything needed to continue exactly: settings and per-parameter state.
    fn state(&self) -> Result<OptimState>;
    /// Restore [`Optimizer::state`] into this optimizer (its store must have the
    /// same parameter names and shapes).
    fn load_state(&mut self, state: &OptimState) -> Result<()>;
}

impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        (**self).step(grads)
    }
    fn lr(&self) -> f64 {
        (**self).lr()
    }
    fn set_lr(&mut self, lr: f64) {
        (**self).set_lr(lr)
    }
    fn momentum(&self) -> f64 {
        (**self).momentum()
    }
    fn set_momentum(&mut self, momentum: f64) {
        (**self).set_momentum(momentum)
    }
    fn store(&self) -> &ParamStore {
        (**self).store()
    }
    fn state(&self) -> Result<OptimState> {
        (**self).state()
    }
    fn load_state(&mut self, state: &OptimState) -> Result<()> {
        (**self).load_state(state)
    }
}

/// A parameter with its value and gradient.
pub(crate) type ParamGrad = (Param, Tensor, Tensor);

/// The trainable parameters with a gradient, with (value, gradient), checked to
/// have the same number of elements.
pub(crate) fn with_grads<'g>(
    store: &ParamStore,
    grads: &'g Grads,
) -> impl Iterator<Item = Result<ParamGrad>> + 'g {
    store
        .trainable()
        .into_iter()
        .filter_map(|p| grads.get_id(p.id()).map(|g| (p, g.clone())))
        .map(|(p, g)| {
            let v = p.value();
            if v.numel() != g.numel() {
                return Err(NnError::invalid(
                    "optimizer step",
                    format!(
                        "gradient of '{}' has {} elements, the parameter {}",
                        p.name(),
                        g.numel(),
                        v.numel()
                    ),
                ));
            }
            Ok((p, v, g))
        })
}

/// A setting from exported state: a number parsed from its exact decimal string.
pub(crate) fn meta_num<T: std::str::FromStr>(
    meta: &BTreeMap<String, String>,
    key: &str,
) -> Result<T> {
    let s = meta
        .get(key)
        .ok_or_else(|| NnError::invalid("optimizer state", format!("missing setting '{key}'")))?;
    s.parse().map_err(|_| {
        NnError::invalid(
            "optimizer state",
            format!("setting '{key}' = '{s}' does not parse"),
        )
    })
}

/// The tensor `key` from exported state, checked to have `p`'s dims, on `p`'s
/// device.
pub(crate) fn state_tensor(state: &OptimState, key: &str, p: &Param) -> Result<Tensor> {
    let dims = &p.dims()[..];
    let t = state
        .tensors
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, t)| t)
        .ok_or_else(|| NnError::MissingKey {
            key: key.to_string(),
            source_name: "the optimizer state".into(),
            near: Vec::new(),
        })?;
    if t.dims() != dims {
        return Err(NnError::ShapeMismatch {
            key: key.to_string(),
            source_name: "the optimizer state".into(),
            expected: dims.to_vec(),
            found: t.dims().to_vec(),
        });
    }
    Ok(t.to_device(&p.value().device())?)
}

/// Check the state's `kind` and that every per-parameter key names a parameter.
pub(crate) fn check_state(
    state: &OptimState,
    kind: &str,
    store: &ParamStore,
    suffixes: &[&str],
) -> Result<()> {
    let found = state.meta.get("kind").map(String::as_str).unwrap_or("?");
    if found != kind {
        return Err(NnError::invalid(
            "optimizer state",
            format!("state is for optimizer '{found}', loading into '{kind}'"),
        ));
    }
    let keys = state.tensors.iter().map(|(k, _)| k.as_str());
    let steps = state
        .meta
        .keys()
        .filter(|k| k.ends_with(".step"))
        .map(String::as_str);
    for key in keys.chain(steps) {
        let name = suffixes
            .iter()
            .chain(&[".step"])
            .find_map(|s| key.strip_suffix(s));
        match name {
            Some(n) if store.get(n).is_some() => {}
            _ => {
                return Err(NnError::invalid(
                    "optimizer state",
                    format!("unexpected key '{key}': no such parameter in the model"),
                ))
            }
        }
    }
    Ok(())
}
