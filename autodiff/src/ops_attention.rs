//! Softmax, log-softmax and attention.
//!
//! - `softmax(dim)`: `y = e^x / sum e^x`; backward `dx = y (g - sum(g y))`, the sum
//!   along `dim` (the Jacobian `diag(y) - y y^T` applied to `g` without forming it).
//! - `log_softmax(dim)`: `y = x - logsumexp(x)`; backward `dx = g - e^y sum(g)`.
//! - `scaled_dot_product_attention(q, k, v, mask, scale)`: `q: (.., L, E)`,
//!   `k: (.., S, E)`, `v: (.., S, Ev)` -> `(.., L, Ev)`, composed of recorded ops:
//!   `softmax(q k^T * scale + mask) v`, so its backward is theirs. `scale` defaults
//!   to `1 / sqrt(E)`; `mask` is an additive constant broadcast to `(.., L, S)`
//!   (0 to keep, a large negative number to drop: CLIP's causal mask). When nothing
//!   is recorded (under `no_grad`, or all inputs constant) and the inputs are
//!   (B, H, L, E), it runs the tensor crate's flash attention instead, which never
//!   materialises the scores.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![0.0, 0.0], [2]).unwrap());
//! let w = Var::constant(Tensor::from_vec(vec![1.0, 3.0], [2]).unwrap());
//! // y = softmax(x) = (1/2, 1/2); d(w . y)/dx = y (w - w . y) = (-1/2, 1/2)
//! let g = x.softmax(0).unwrap().mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![-0.5, 0.5]);
//! ```

use tensor::Tensor;

use crate::error::{AutodiffError, Result};
use crate::var::{grad_if, is_recording, record, Var};

impl Var {
    /// Softmax along `dim` (negative counts from the end).
    pub fn softmax(&self, dim: isize) -> Result<Var> {
        let y = self.value().softmax(dim)?;
        let saved_y = y.clone();
        Ok(record("softmax", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || -> tensor::Result<Tensor> {
                let dot = g.mul(&saved_y)?.sum(&[dim], true)?;
                saved_y.mul(&g.sub(&dot)?)
            })?])
        }))
    }

    /// Log-softmax along `dim`.
    pub fn log_softmax(&self, dim: isize) -> Result<Var> {
        let y = self.value().log_softmax(dim)?;
        let saved_y = y.clone();
        Ok(record("log_softmax", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || -> tensor::Result<Tensor> {
                let total = g.sum(&[dim], true)?;
                g.sub(&saved_y.exp()?.mul(&total)?)
            })?])
        }))
    }

    /// Attention `softmax(q k^T * scale + mask) v` as a composite of recorded ops
    /// (`torch.nn.functional.scaled_dot_product_attention` with an additive mask).
    pub fn scaled_dot_product_attention(
        q: &Var,
        k: &Var,
        v: &Var,
        mask: Option<&Tensor>,
        scale: Option<f32>,
    ) -> Result<Var> {
        let op = "scaled_dot_product_attention";
        if q.rank() < 2 || k.rank() < 2 || v.rank() < 2 {
            return Err(AutodiffError::invalid(
                op,
                format!(
                    "q, k, v need rank >= 2, got {:?}, {:?}, {:?}",
                    q.dims(),
                    k.dims(),
                    v.dims()
                ),
            ));
        }
        let e = q.dims()[q.rank() - 1];
        let scale = scale.unwrap_or(1.0 / (e as f32).sqrt());
        if !is_recording(&[q, k, v]) && q.rank() == 4 {
            // Nothing to differentiate (inference under no_grad, or constants): the
            // tensor crate's flash attention, which never materialises the
            // (L, S) scores (0.25 MiB extra instead of 1 GiB at SD's 4096 tokens).
            let out = q.value().scaled_dot_product_attention(
                k.value(),
                v.value(),
                mask,
                Some(scale),
                false,
            )?;
            return Ok(Var::constant(out));
        }
        let scores = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(scale)?;
        let scores = match mask {
            Some(m) => scores.add(&Var::constant(m.clone()))?,
            None => scores,
        };
        scores.softmax(-1)?.matmul(v)
    }
}
