//! Gradient clipping by global norm (`torch.nn.utils.clip_grad_norm_`).
//!
//! The norm is the L2 norm of all gradients of `params` taken together,
//! `sqrt(sum_p sum_i g_pi^2)` (accumulated in f64). If it exceeds `max_norm`, every
//! gradient is scaled by `max_norm / (norm + 1e-6)`, as torch does; the norm before
//! clipping is returned (worth logging: a spike shows a bad batch or a too-high lr).
//!
//! ```
//! use autodiff::Var;
//! use nn::{clip_grad_norm, ParamStore};
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let w = store.insert("w", Tensor::from_vec(vec![1.5, 2.0], [2]).unwrap()).unwrap();
//! let mut grads = w.var().sqr().unwrap().sum_all().unwrap().backward().unwrap(); // (3, 4)
//! let norm = clip_grad_norm(&mut grads, &store.params(), 1.0).unwrap();
//! assert_eq!(norm, 5.0);
//! let g = grads.get_id(w.id()).unwrap().to_vec().unwrap();   // (0.6, 0.8), almost
//! assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
//! ```

use autodiff::Grads;

use crate::error::{NnError, Result};
use crate::param::Param;

/// Scale the gradients of `params` in `grads` so that their global L2 norm is at
/// most `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Grads, params: &[Param], max_norm: f32) -> Result<f32> {
    if max_norm.is_nan() || max_norm <= 0.0 {
        return Err(NnError::invalid(
            "clip_grad_norm",
            format!("max_norm must be positive, got {max_norm}"),
        ));
    }
    let mut sum = 0f64;
    for p in params {
        if let Some(g) = grads.get_id(p.id()) {
            sum += g
                .to_vec()?
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>();
        }
    }
    let norm = sum.sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for p in params {
            if let Some(g) = grads.get_id(p.id()) {
                let scaled = g.mul_scalar(coef)?;
                grads.insert(p.id(), scaled);
            }
        }
    }
    Ok(norm)
}
