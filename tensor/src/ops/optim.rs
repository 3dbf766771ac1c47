//! Fused optimizer updates (PyTorch's `_fused_adamw_` and `_fused_sgd_`, and the
//! EMA's shadow update): one pass over a parameter, its gradient and its state
//! gives the new parameter and state, as new tensors on the parameter's device. `p, g, state: (..)`, the same number
//! of elements (any shapes and layouts; the results take `p`'s shape, contiguous).
//!
//! The formulas and their order are `torch.optim`'s, given in `nn::optim`, which
//! calls these; the scalars arrive already rounded to f32, as torch's CPU kernels
//! take them. On the CPU the loop is bit for bit the one `nn`'s torch-parity tests
//! hold; on wgpu the same arithmetic is one WGSL kernel (`wgpu::optim`), within a
//! few ulp (its `sqrt` and division are not required to round correctly).
//!
//! ```
//! use tensor::ops::optim::{sgd_step, SgdStep};
//! use tensor::Tensor;
//! let p = Tensor::from_slice(&[1.0, 2.0], [2]).unwrap();
//! let g = Tensor::from_slice(&[0.5, -1.0], [2]).unwrap();
//! let s = SgdStep { lr: 0.1, weight_decay: 0.0, momentum: 0.9, damp: 1.0, nesterov: false };
//! let (p1, buf) = sgd_step(&p, &g, None, &s).unwrap();
//! assert_eq!(p1.to_vec().unwrap(), vec![0.95, 2.1]);
//! assert_eq!(buf.unwrap().to_vec().unwrap(), vec![0.5, -1.0]); // the first buffer is g
//! ```

use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// One AdamW step's scalars, as `nn::AdamW` derives them for step `t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// `1 - lr * weight_decay` (1 without decay: the multiply is then exact).
    pub decay: f32,
    /// `1 - beta1`, the weight of torch's `lerp(m, g, w1)`.
    pub w1: f32,
    pub beta2: f32,
    /// `1 - beta2`.
    pub w2: f32,
    pub eps: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f32,
    /// `-lr / (1 - beta1^t)`.
    pub neg_step: f32,
}

/// torch's CPU `lerp` for a scalar weight: `a + w (b - a)` when `|w| < 0.5`, else
/// `b - (b - a)(1 - w)`.
#[inline(always)]
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

/// The elements of each operand, checking they agree in number.
fn same_numel(op: &'static str, ts: &[&Tensor]) -> Result<usize> {
    let n = ts[0].numel();
    if let Some(t) = ts.iter().find(|t| t.numel() != n) {
        return Err(TensorError::invalid(
            op,
            format!("operands of {n} and {} elements", t.numel()),
        ));
    }
    Ok(n)
}

/// One AdamW update: `(p, exp_avg, exp_avg_sq)` after the step, from the parameter
/// `p`, its gradient `g` and the moments `m`, `v` before it.
pub fn adamw_step(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &AdamWStep,
) -> Result<[Tensor; 3]> {
    let op = "adamw_step";
    same_numel(op, &[p, g, m, v])?;
    #[cfg(feature = "wgpu")]
    if let Some(out) = crate::wgpu::optim::adamw(p, g, m, v, s)? {
        return Ok(out);
    }
    let device = p.device();
    let (mut pv, gv, mut mv, mut vv) = (p.to_vec()?, g.to_vec()?, m.to_vec()?, v.to_vec()?);
    for i in 0..pv.len() {
        let gi = gv[i];
        let mi = lerp(mv[i], gi, s.w1);
        let vi = vv[i] * s.beta2 + s.w2 * gi * gi;
        mv[i] = mi;
        vv[i] = vi;
        let denom = vi.sqrt() / s.bc2_sqrt + s.eps;
        pv[i] = pv[i] * s.decay + s.neg_step * mi / denom; // torch addcdiv: (value * t1) / t2
    }
    let back = |x: Vec<f32>| Tensor::from_vec(x, p.shape().clone())?.to_device(&device);
    Ok([back(pv)?, back(mv)?, back(vv)?])
}

/// One SGD step's settings, as f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    /// `1 - dampening` (rounded once from the f64 setting, as torch does).
    pub damp: f32,
    pub nesterov: bool,
}

/// One SGD update: the parameter after the step and, with momentum, the new
/// momentum buffer (the decayed gradient itself when `buf` is `None`: the first
/// step).
pub fn sgd_step(
    p: &Tensor,
    g: &Tensor,
    buf: Option<&Tensor>,
    s: &SgdStep,
) -> Result<(Tensor, Option<Tensor>)> {
    let op = "sgd_step";
    same_numel(op, &[p, g])?;
    if let Some(b) = buf {
        same_numel(op, &[p, b])?;
    }
    #[cfg(feature = "wgpu")]
    if let Some(out) = crate::wgpu::optim::sgd(p, g, buf, s)? {
        return Ok(out);
    }
    let device = p.device();
    let (mut pv, mut gv) = (p.to_vec()?, g.to_vec()?);
    if s.weight_decay != 0.0 {
        gv.iter_mut()
            .zip(&pv)
            .for_each(|(g, p)| *g += s.weight_decay * p);
    }
    let mut new_buf = None;
    if s.momentum != 0.0 {
        let b = match buf {
            Some(b) => {
                let mut b = b.to_vec()?;
                b.iter_mut()
                    .zip(&gv)
                    .for_each(|(b, g)| *b = *b * s.momentum + s.damp * g);
                b
            }
            None => gv.clone(),
        };
        if s.nesterov {
            gv.iter_mut()
                .zip(&b)
                .for_each(|(g, b)| *g += s.momentum * b);
        } else {
            gv.copy_from_slice(&b);
        }
        new_buf = Some(b);
    }
    pv.iter_mut().zip(&gv).for_each(|(p, g)| *p += -s.lr * g);
    let back = |x: Vec<f32>| Tensor::from_vec(x, p.shape().clone())?.to_device(&device);
    Ok((back(pv)?, new_buf.map(back).transpose()?))
}

/// One EMA update of a shadow `s` toward its parameter `p`:
/// `s - w (s - p)` with `w = 1 - decay` (diffusers' `EMAModel`).
pub fn ema_step(s: &Tensor, p: &Tensor, w: f32) -> Result<Tensor> {
    same_numel("ema_step", &[s, p])?;
    #[cfg(feature = "wgpu")]
    if let Some(out) = crate::wgpu::optim::ema(s, p, w)? {
        return Ok(out);
    }
    let device = s.device();
    let (mut sv, pv) = (s.to_vec()?, p.to_vec()?);
    sv.iter_mut().zip(&pv).for_each(|(s, p)| *s -= w * (*s - p));
    Tensor::from_vec(sv, s.shape().clone())?.to_device(&device)
}
