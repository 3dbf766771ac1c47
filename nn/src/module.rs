//! The [`Module`] trait and the stateless pieces: [`Sequential`], [`Activation`]
//! (ReLU, SiLU, GELU, QuickGELU, sigmoid, tanh) and [`Dropout`].
//!
//! A module is built once (from a [`crate::VarBuilder`], which registers its named
//! parameters) and then called: `forward(&self, x: &Var) -> Result<Var>`. It holds
//! [`crate::Param`] handles and reads their current values on each call, so an
//! optimizer step is seen by the next forward without rebuilding anything.
//!
//! [`Dropout`] zeroes each element with probability `p` and scales the rest by
//! `1 / (1 - p)` while its store is in training mode ([`crate::ParamStore::train`]);
//! in eval mode it is the identity. Introduced with the course's Learner lessons.
//!
//! ```
//! use autodiff::Var;
//! use nn::{Activation, Module, Sequential};
//! use tensor::Tensor;
//! let net = Sequential::new().with(Activation::ReLU).with(Activation::Sigmoid);
//! let x = Var::constant(Tensor::from_vec(vec![-2.0, 0.0], [2]).unwrap());
//! // relu gives (0, 0); sigmoid(0) = 0.5
//! assert_eq!(net.forward(&x).unwrap().to_vec().unwrap(), vec![0.5, 0.5]);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use autodiff::Var;
use tensor::{Rng, Tensor};

use crate::error::{NnError, Result};
use crate::param::ParamStore;
use crate::var_builder::SharedRng;

/// Something that maps a `Var` to a `Var`: a layer, a block, a whole model.
pub trait Module {
    fn forward(&self, x: &Var) -> Result<Var>;
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Var) -> Result<Var> {
        (**self).forward(x)
    }
}

impl<M: Module + ?Sized> Module for &M {
    fn forward(&self, x: &Var) -> Result<Var> {
        (**self).forward(x)
    }
}

/// Modules applied one after the other (`nn.Sequential`). Build the children with
/// `vb.pp(0)`, `vb.pp(1)`, ... to get torch's `0.weight`, `1.weight` names.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential::default()
    }
    /// Append a module (builder style).
    pub fn with(mut self, m: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(m));
        self
    }
    /// Append a module.
    pub fn push(&mut self, m: impl Module + 'static) {
        self.layers.push(Box::new(m));
    }
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }
}

/// Elementwise activations (`nn.ReLU`, `nn.SiLU`, `nn.GELU`, CLIP's `QuickGELU`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    ReLU,
    /// `x * sigmoid(x)` (swish; the UNet's nonlinearity).
    SiLU,
    /// Exact erf GELU, `x * Phi(x)`.
    GELU,
    /// `x * sigmoid(1.702 x)` (CLIP).
    QuickGELU,
    Sigmoid,
    Tanh,
    Identity,
}

impl Module for Activation {
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(match self {
            Activation::ReLU => x.relu()?,
            Activation::SiLU => x.silu()?,
            Activation::GELU => x.gelu()?,
            Activation::QuickGELU => x.quick_gelu()?,
            Activation::Sigmoid => x.sigmoid()?,
            Activation::Tanh => x.tanh()?,
            Activation::Identity => x.clone(),
        })
    }
}

/// `nn.Dropout(p)`: in training mode each element is zeroed with probability `p`
/// (one `rng.uniform()` per element, dropped when `u < p`) and the survivors scaled
/// by `1 / (1 - p)`; in eval mode the identity.
pub struct Dropout {
    p: f32,
    training: Arc<AtomicBool>,
    rng: SharedRng,
}

impl Dropout {
    /// Dropout following `store`'s train/eval mode, drawing masks from `rng`.
    pub fn new(p: f32, store: &ParamStore, rng: impl Rng + Send + 'static) -> Result<Dropout> {
        Dropout::with_shared_rng(p, store, Arc::new(Mutex::new(Box::new(rng))))
    }

    /// Like [`Dropout::new`] with a generator shared with other code.
    pub fn with_shared_rng(p: f32, store: &ParamStore, rng: SharedRng) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(NnError::invalid(
                "Dropout",
                format!("probability must be in [0, 1], got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            training: store.training_flag(),
            rng,
        })
    }

    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Var) -> Result<Var> {
        if !self.training.load(Ordering::Relaxed) || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep_scale = if self.p >= 1.0 {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        };
        let p = f64::from(self.p);
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mask: Vec<f32> = (0..x.numel())
            .map(|_| if rng.uniform() < p { 0.0 } else { keep_scale })
            .collect();
        let mask = Tensor::from_vec(mask, x.dims().to_vec())?;
        Ok(x.mul(&Var::constant(mask))?)
    }
}
