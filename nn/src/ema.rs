//! Exponential moving average of weights (the "EMA model" diffusion training keeps).
//!
//! After each optimizer step, for every parameter `p` with shadow `s`:
//! `s = s - (1 - decay) * (s - p)`, i.e. `s = decay s + (1 - decay) p`. With
//! `warmup`, the decay used at update `n` (1-based) is `min(decay, (1 + n) / (10 + n))`,
//! so early shadows follow the weights closely (diffusers' `EMAModel` without
//! power warmup). [`Ema::copy_to`] writes the shadows into the model (to evaluate or
//! save the averaged weights); [`Ema::state`] exports them by name for checkpoints.
//!
//! ```
//! use nn::{Ema, ParamStore};
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let w = store.insert("w", Tensor::from_vec(vec![0.0], [1]).unwrap()).unwrap();
//! let mut ema = Ema::new(&store, 0.9).unwrap();             // shadow starts at 0
//! w.set(Tensor::from_vec(vec![1.0], [1]).unwrap()).unwrap();
//! ema.update().unwrap();                                     // 0.9 * 0 + 0.1 * 1
//! assert!((ema.shadow("w").unwrap().to_vec().unwrap()[0] - 0.1).abs() < 1e-7);
//! ```

use std::collections::BTreeMap;

use tensor::ops::optim::ema_step;
use tensor::Tensor;

use crate::error::{NnError, Result};
use crate::param::ParamStore;

/// Shadow copies of a store's parameters, by name, each on its parameter's device.
pub struct Ema {
    store: ParamStore,
    pub decay: f64,
    pub warmup: bool,
    updates: u64,
    shadows: BTreeMap<String, Tensor>,
}

impl Ema {
    /// Shadows of every parameter of `store`, starting at their current values.
    pub fn new(store: &ParamStore, decay: f64) -> Result<Ema> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(NnError::invalid(
                "Ema",
                format!("decay must be in [0, 1], got {decay}"),
            ));
        }
        let shadows = store
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.value()))
            .collect();
        Ok(Ema {
            store: store.clone(),
            decay,
            warmup: false,
            updates: 0,
            shadows,
        })
    }

    /// Updates so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The decay the next update will use.
    pub fn current_decay(&self) -> f64 {
        let n = (self.updates + 1) as f64;
        if self.warmup {
            self.decay.min((1.0 + n) / (10.0 + n))
        } else {
            self.decay
        }
    }

    /// Move every shadow toward its parameter's current value.
    pub fn update(&mut self) -> Result<()> {
        let w = (1.0 - self.current_decay()) as f32;
        for p in self.store.params() {
            let Some(s) = self.shadows.get_mut(p.name()) else {
                continue;
            };
            *s = ema_step(s, &p.value(), w)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// The shadow of parameter `name`, in its shape.
    pub fn shadow(&self, name: &str) -> Option<Tensor> {
        let p = self.store.get(name)?;
        let s = self.shadows.get(name)?;
        s.reshape(p.dims()).ok()
    }

    /// Write the shadows into the model's parameters.
    pub fn copy_to(&self, store: &ParamStore) -> Result<()> {
        for (name, s) in &self.shadows {
            let p = store.get(name).ok_or_else(|| NnError::MissingKey {
                key: name.clone(),
                source_name: "the target model of Ema::copy_to".into(),
                near: Vec::new(),
            })?;
            p.set(s.to_device(&p.value().device())?)?;
        }
        Ok(())
    }

    /// Shadows by parameter name, and the update count.
    pub fn state(&self) -> Result<(Vec<(String, Tensor)>, u64)> {
        let tensors = self
            .shadows
            .keys()
            .map(|n| {
                let t = self
                    .shadow(n)
                    .ok_or_else(|| NnError::invalid("Ema", format!("no shadow for '{n}'")))?;
                Ok((n.clone(), t))
            })
            .collect::<Result<_>>()?;
        Ok((tensors, self.updates))
    }

    /// Restore [`Ema::state`]: every shadow must be given, with its parameter's shape.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, updates: u64) -> Result<()> {
        let mut shadows = BTreeMap::new();
        for p in self.store.params() {
            let t = tensors.get(p.name()).ok_or_else(|| NnError::MissingKey {
                key: format!("ema.{}", p.name()),
                source_name: "the EMA state".into(),
                near: Vec::new(),
            })?;
            if t.dims() != p.dims().as_slice() {
                return Err(NnError::ShapeMismatch {
                    key: format!("ema.{}", p.name()),
                    source_name: "the EMA state".into(),
                    expected: p.dims(),
                    found: t.dims().to_vec(),
                });
            }
            shadows.insert(p.name().to_string(), t.to_device(&p.value().device())?);
        }
        if let Some(extra) = tensors.keys().find(|k| !shadows.contains_key(*k)) {
            return Err(NnError::invalid(
                "Ema",
                format!("unexpected key 'ema.{extra}': no such parameter in the model"),
            ));
        }
        self.shadows = shadows;
        self.updates = updates;
        Ok(())
    }
}
