//! SGD with momentum, dampening, Nesterov and (L2) weight decay, in `torch.optim.SGD`'s
//! order, for each parameter `p` with gradient `g`:
//!
//! ```text
//! g = g + weight_decay * p
//! buf = g                                         (first step)
//! buf = momentum * buf + (1 - dampening) * g      (later steps)
//! g = g + momentum * buf  if nesterov,  else  g = buf
//! p = p - lr * g
//! ```
//!
//! With `momentum = 0` there is no buffer and the update is `p - lr * g`.
//!
//! ```
//! use nn::{Optimizer, ParamStore, Sgd, SgdConfig};
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let w = store.insert("w", Tensor::from_vec(vec![1.0], [1]).unwrap()).unwrap();
//! let mut opt = Sgd::new(&store, SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() });
//! for _ in 0..2 {
//!     let grads = w.var().sum_all().unwrap().backward().unwrap(); // g = 1
//!     opt.step(&grads).unwrap();
//! }
//! // buf = 1, then 0.9 + 1 = 1.9: w = 1 - 0.1 - 0.19
//! assert!((w.value().to_vec().unwrap()[0] - 0.71).abs() < 1e-6);
//! ```

use std::collections::HashMap;

use autodiff::{Grads, VarId};
use tensor::ops::optim::{sgd_step, SgdStep};
use tensor::Tensor;

use super::{check_state, meta_num, state_tensor, with_grads, OptimState, Optimizer};
use crate::error::{NnError, Result};
use crate::param::ParamStore;

/// `torch.optim.SGD`'s settings (its defaults, with a learning rate of 0.01).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// Stochastic gradient descent over a [`ParamStore`].
pub struct Sgd {
    store: ParamStore,
    pub config: SgdConfig,
    /// Momentum buffers, on their parameters' devices.
    buffers: HashMap<VarId, Tensor>,
}

impl Sgd {
    pub fn new(store: &ParamStore, config: SgdConfig) -> Sgd {
        Sgd {
            store: store.clone(),
            config,
            buffers: HashMap::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        let c = self.config;
        if c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0) {
            return Err(NnError::invalid(
                "Sgd",
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        let s = SgdStep {
            lr: c.lr as f32,
            weight_decay: c.weight_decay as f32,
            momentum: c.momentum as f32,
            damp: (1.0 - c.dampening) as f32,
            nesterov: c.nesterov,
        };
        for item in with_grads(&self.store, grads) {
            let (p, v, g) = item?;
            let (new_p, buf) = sgd_step(&v, &g, self.buffers.get(&p.id()), &s)?;
            if let Some(buf) = buf {
                self.buffers.insert(p.id(), buf);
            }
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
        self.config.momentum
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.config.momentum = momentum;
    }
    fn store(&self) -> &ParamStore {
        &self.store
    }

    fn state(&self) -> Result<OptimState> {
        let c = self.config;
        let mut state = OptimState::with_meta([
            ("kind", "sgd".to_string()),
            ("lr", c.lr.to_string()),
            ("momentum", c.momentum.to_string()),
            ("dampening", c.dampening.to_string()),
            ("weight_decay", c.weight_decay.to_string()),
            ("nesterov", c.nesterov.to_string()),
        ]);
        for p in self.store.params() {
            if let Some(buf) = self.buffers.get(&p.id()) {
                state
                    .tensors
                    .push((format!("{}.momentum_buffer", p.name()), buf.clone()));
            }
        }
        Ok(state)
    }

    fn load_state(&mut self, state: &OptimState) -> Result<()> {
        check_state(state, "sgd", &self.store, &[".momentum_buffer"])?;
        let m = &state.meta;
        let config = SgdConfig {
            lr: meta_num(m, "lr")?,
            momentum: meta_num(m, "momentum")?,
            dampening: meta_num(m, "dampening")?,
            weight_decay: meta_num(m, "weight_decay")?,
            nesterov: meta_num(m, "nesterov")?,
        };
        let mut buffers = HashMap::new();
        for p in self.store.params() {
            let key = format!("{}.momentum_buffer", p.name());
            if state.tensors.iter().any(|(k, _)| *k == key) {
                buffers.insert(p.id(), state_tensor(state, &key, &p)?);
            }
        }
        self.config = config;
        self.buffers = buffers;
        Ok(())
    }
}
