//! Modules, named parameters, initialisers, losses, optimizers and the training loop,
//! on top of the `autodiff` crate (the course's Learner lessons, and what diffusion
//! training and checkpoint loading stand on).
//!
//! # How parameters flow
//!
//! A [`ParamStore`] holds every parameter of a model by its full dotted name
//! (diffusers/transformers checkpoint keys: `conv_in.weight`,
//! `down_blocks.0.attentions.0.proj_in.bias`), in registration order. A module is
//! built from a config plus a [`VarBuilder`], which is a parameter source with a
//! path prefix: `vb.pp("down_blocks").pp(0)`. The same constructor therefore builds
//! a randomly initialised model ([`VarBuilder::from_init`], drawing from an explicit
//! generator) or loads one ([`VarBuilder::from_safetensors`], checking every shape
//! and naming any missing or misshapen key).
//!
//! Modules keep [`Param`] handles, shared with the store, and read each parameter's
//! current leaf [`autodiff::Var`] on every forward. Optimizers hold the store and write
//! new values through the same handles ([`Param::set`], a [`autodiff::Var::update`]
//! that keeps the `VarId`, so the gradients of the last backward and the optimizer
//! state stay keyed the same). A train step reads as it does in PyTorch, without
//! `zero_grad` because each backward returns fresh gradients:
//!
//! ```
//! use autodiff::Var;
//! use nn::{AdamW, AdamWConfig, Linear, Module, Optimizer, ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let vb = VarBuilder::from_init(&store, WichmannHill::seed(7));
//! let model = Linear::new(vb.pp("proj"), 3, 1, true).unwrap();
//! let mut opt = AdamW::new(&store, AdamWConfig { lr: 0.05, ..Default::default() });
//! let x = Var::constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0], [2, 3]).unwrap());
//! let y = Var::constant(Tensor::from_vec(vec![1.0, -1.0], [2, 1]).unwrap());
//! let first = nn::mse_loss(&model.forward(&x).unwrap(), &y).unwrap().to_scalar().unwrap();
//! for _ in 0..200 {
//!     let loss = nn::mse_loss(&model.forward(&x).unwrap(), &y).unwrap();
//!     let grads = loss.backward().unwrap();
//!     opt.step(&grads).unwrap();
//! }
//! let last = nn::mse_loss(&model.forward(&x).unwrap(), &y).unwrap().to_scalar().unwrap();
//! assert!(last < first / 100.0);
//! assert_eq!(store.names(), ["proj.weight", "proj.bias"]);
//! ```
//!
//! # Contents
//!
//! - [`param`], [`var_builder`], [`state_dict`]: named parameters, freezing by
//!   prefix, building and loading by name, strict safetensors load/save.
//! - [`init`]: Kaiming, Xavier, normal, uniform, torch's layer defaults.
//! - Modules: [`Linear`], [`Embedding`], [`Conv2d`], [`GroupNorm`], [`LayerNorm`],
//!   [`MultiHeadAttention`], [`Activation`] (SiLU, GELU, QuickGELU, ...), [`Dropout`],
//!   [`Sequential`].
//! - [`loss`]: [`mse_loss`], [`cross_entropy`], [`kl_diag_gaussian`], [`accuracy`].
//! - [`optim`]: [`Sgd`], [`AdamW`]; [`schedule`]: [`OneCycle`], [`CosineAnnealing`];
//!   [`clip_grad_norm`]; [`Ema`].
//! - [`checkpoint`]: whole-run checkpoints, atomic and exactly resumable.
//! - [`learner`]: [`Learner`] with callbacks (progress bar, recorder, checkpointer,
//!   stop/early stopping).

pub mod attention;
pub mod checkpoint;
pub mod clip;
pub mod conv;
pub mod ema;
pub mod error;
pub mod init;
pub mod learner;
pub mod linear;
pub mod loss;
pub mod module;
pub mod norm;
pub mod optim;
pub mod param;
pub mod schedule;
pub mod state_dict;
pub mod var_builder;

pub use attention::{AttentionConfig, AttentionNames, MultiHeadAttention};
pub use autodiff::Tensor;
pub use checkpoint::{load_checkpoint, save_checkpoint, TrainState};
pub use clip::clip_grad_norm;
pub use conv::{Conv2d, Conv2dConfig};
pub use ema::Ema;
pub use error::{Misshapen, NnError, Result};
pub use init::{fans, gain_leaky_relu, gain_relu, Fan, Init};
pub use learner::callbacks::{
    epoch_line, Callback, Checkpointer, Ctx, EarlyStopping, ProgressBar, Record, Recorder,
    StopAfter, StopFlag,
};
pub use learner::{BatchOutput, BatchStats, EpochStats, FitReport, Learner};
pub use linear::{Embedding, Linear};
pub use loss::{accuracy, correct, cross_entropy, kl_diag_gaussian, mse_loss};
pub use module::{Activation, Dropout, Module, Sequential};
pub use norm::{GroupNorm, LayerNorm};
pub use optim::{AdamW, AdamWConfig, OptimState, Optimizer, Sgd, SgdConfig};
pub use param::{under_prefix, Param, ParamStore};
pub use schedule::{Anneal, CosineAnnealing, LrSchedule, OneCycle};
pub use state_dict::write_safetensors;
pub use var_builder::{SharedRng, VarBuilder};
