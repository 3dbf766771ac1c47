//! AdamW (Loshchilov and Hutter): Adam with decoupled weight decay, in
//! `torch.optim.AdamW`'s order and with its defaults (`lr = 1e-3`, `betas = (0.9,
//! 0.999)`, `eps = 1e-8`, `weight_decay = 1e-2`). For each parameter `p` with
//! gradient `g`, at its step `t = 1, 2, ...`:
//!
//! ```text
//! p = p * (1 - lr * weight_decay)                  (decay first, outside the moments)
//! m = m + (1 - beta1) * (g - m)                    (torch's lerp)
//! v = beta2 * v + (1 - beta2) * g * g
//! denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//! p = p - lr / (1 - beta1^t) * m / denom
//! ```
//!
//! The step count is per parameter (a parameter frozen for a while keeps its own).
//! Settings are f64 like Python floats; each enters the f32 arithmetic as torch's CPU
//! kernels take a scalar, rounded to f32 once.
//!
//! ```
//! use nn::{AdamW, AdamWConfig, Optimizer, ParamStore};
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let w = store.insert("w", Tensor::from_vec(vec![1.0], [1]).unwrap()).unwrap();
//! let mut opt = AdamW::new(&store, AdamWConfig { lr: 0.1, weight_decay: 0.0, ..Default::default() });
//! let grads = w.var().mul_scalar(3.0).unwrap().sum_all().unwrap().backward().unwrap();
//! opt.step(&grads).unwrap();
//! // The first Adam step moves by lr whatever the gradient's scale: 1 - 0.1.
//! assert!((w.value().to_vec().unwrap()[0] - 0.9).abs() < 1e-6);
//! ```

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use autodiff::{Grads, VarId};
use tensor::ops::optim::{adamw_step, AdamWStep};
use tensor::Tensor;

use super::{check_state, meta_num, state_tensor, with_grads, OptimState, Optimizer};
use crate::error::Result;
use crate::param::ParamStore;

/// `torch.optim.AdamW`'s settings and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// A parameter's step count and moments, on the parameter's device.
struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over a [`ParamStore`].
pub struct AdamW {
    store: ParamStore,
    pub config: AdamWConfig,
    state: HashMap<VarId, Moments>,
}

impl AdamW {
    pub fn new(store: &ParamStore, config: AdamWConfig) -> AdamW {
        AdamW {
            store: store.clone(),
            config,
            state: HashMap::new(),
        }
    }

    /// The step count of the parameter named `name` (0 before its first update).
    pub fn param_step(&self, name: &str) -> u64 {
        self.store
            .get(name)
            .and_then(|p| self.state.get(&p.id()))
            .map_or(0, |m| m.step)
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        let c = self.config;
        let decay = if c.weight_decay != 0.0 {
            (1.0 - c.lr * c.weight_decay) as f32
        } else {
            1.0 // exact: no decay
        };
        for item in with_grads(&self.store, grads) {
            let (p, v, g) = item?;
            let st = match self.state.entry(p.id()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let zeros = Tensor::zeros(p.dims()).to_device(&v.device())?;
                    e.insert(Moments {
                        step: 0,
                        exp_avg: zeros.clone(),
                        exp_avg_sq: zeros,
                    })
                }
            };
            st.step += 1;
            let t = st.step as f64;
            let s = AdamWStep {
                decay,
                w1: (1.0 - c.beta1) as f32,
                beta2: c.beta2 as f32,
                w2: (1.0 - c.beta2) as f32,
                eps: c.eps as f32,
                bc2_sqrt: ((1.0 - c.beta2.powf(t)).sqrt()) as f32,
                neg_step: (-(c.lr / (1.0 - c.beta1.powf(t)))) as f32,
            };
            let [new_p, m, v2] = adamw_step(&v, &g, &st.exp_avg, &st.exp_avg_sq, &s)?;
            st.exp_avg = m;
            st.exp_avg_sq = v2;
            p.set(new_p)?;
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn momentum(&self) -> f64 {
        self.config.beta1
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.config.beta1 = momentum;
    }
    fn store(&self) -> &ParamStore {
        &self.store
    }

    fn state(&self) -> Result<OptimState> {
        let c = self.config;
        let mut out = OptimState::with_meta([
            ("kind", "adamw".to_string()),
            ("lr", c.lr.to_string()),
            ("beta1", c.beta1.to_string()),
            ("beta2", c.beta2.to_string()),
            ("eps", c.eps.to_string()),
            ("weight_decay", c.weight_decay.to_string()),
        ]);
        for p in self.store.params() {
            if let Some(m) = self.state.get(&p.id()) {
                let name = p.name();
                out.meta.insert(format!("{name}.step"), m.step.to_string());
                out.tensors
                    .push((format!("{name}.exp_avg"), m.exp_avg.clone()));
                out.tensors
                    .push((format!("{name}.exp_avg_sq"), m.exp_avg_sq.clone()));
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &OptimState) -> Result<()> {
        check_state(state, "adamw", &self.store, &[".exp_avg", ".exp_avg_sq"])?;
        let m = &state.meta;
        let config = AdamWConfig {
            lr: meta_num(m, "lr")?,
            beta1: meta_num(m, "beta1")?,
            beta2: meta_num(m, "beta2")?,
            eps: meta_num(m, "eps")?,
            weight_decay: meta_num(m, "weight_decay")?,
        };
        let mut moments = HashMap::new();
        for p in self.store.params() {
            let name = p.name();
            let step_key = format!("{name}.step");
            if !m.contains_key(&step_key) {
                continue;
            }
            moments.insert(
                p.id(),
                Moments {
                    step: meta_num(m, &step_key)?,
                    exp_avg: state_tensor(state, &format!("{name}.exp_avg"), &p)?,
                    exp_avg_sq: state_tensor(state, &format!("{name}.exp_avg_sq"), &p)?,
                },
            );
        }
        self.config = config;
        self.state = moments;
        Ok(())
    }
}
