//! The chain rule by hand: forward with tensor ops, then each layer's backward
//! written out, from the loss back to the input (the notebook's `lin_grad`).
//!
//! For `loss = L(out)`, `out = f(inp)`, the chain rule says
//! `dL/dinp = dL/dout * dout/dinp`; a backward pass carries `g = dL/dout` (same shape
//! as `out`) from the loss down to the inputs, one layer at a time:
//!
//! ```text
//! mse:   loss = mean((out[:, 0] - y)^2)   out.g = 2 (out[:, 0] - y)[:, None] / n   (n, 1)
//! lin:   out = inp @ w + b               inp.g = out.g @ w.T                      (n, m)
//!                                        w.g   = inp.T @ out.g                    (m, nh)
//!                                        b.g   = out.g.sum(0)                     (nh)
//! relu:  out = max(inp, 0)               inp.g = (inp > 0) * out.g                (n, nh)
//! ```
//!
//! `w.g` is a sum over the batch of outer products `inp[i]^T out.g[i]`;
//! [`lin_grad_w_outer`] computes it that way (the notebook's first version, with an
//! `(n, m, nh)` intermediate) and [`lin_grad`] as the one matmul it equals.
//!
//! ```
//! use lesson_04_backprop::hand::lin_grad;
//! use tensor::Tensor;
//! let inp = Tensor::from_vec(vec![1.0, 2.0], [1, 2]).unwrap();   // one row
//! let w = Tensor::from_vec(vec![3.0, 4.0], [2, 1]).unwrap();
//! let out_g = Tensor::from_vec(vec![0.5], [1, 1]).unwrap();
//! let g = lin_grad(&inp, &w, &out_g).unwrap();
//! assert_eq!(g.inp.to_vec().unwrap(), vec![1.5, 2.0]);  // out.g @ w.T
//! assert_eq!(g.w.to_vec().unwrap(), vec![0.5, 1.0]);    // inp.T @ out.g
//! assert_eq!(g.b.to_vec().unwrap(), vec![0.5]);         // out.g.sum(0)
//! ```

use tensor::{Result, Tensor};

use crate::{Grads, Problem};

/// `x @ w + b`: `(n, m) @ (m, k) + (k) -> (n, k)`; `b` broadcasts over the rows.
pub fn lin(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.matmul(w)?.add(b)
}

/// `max(x, 0)` (the notebook's `clamp_min(0.)`).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    x.relu()
}

/// `mean((out[:, 0] - targ)^2)`: `out: (n, 1)`, `targ: (n)`.
pub fn mse(out: &Tensor, targ: &Tensor) -> Result<f32> {
    out.squeeze(1)?.sub(targ)?.sqr()?.mean_all()?.to_scalar()
}

/// The gradients of a linear layer: its input's, its weight's and its bias's.
#[derive(Clone, Debug)]
pub struct LinGrads {
    pub inp: Tensor,
    pub w: Tensor,
    pub b: Tensor,
}

/// `d loss / d out` of [`mse`]: `2 (out[:, 0] - targ)[:, None] / n`, shape `(n, 1)`.
pub fn mse_grad(out: &Tensor, targ: &Tensor) -> Result<Tensor> {
    let n = targ.numel() as f32;
    out.squeeze(1)?
        .sub(targ)?
        .unsqueeze(1)?
        .mul_scalar(2.0)?
        .mul_scalar(1.0 / n)
}

/// Backward of [`lin`] given `out_g = d loss / d out`: `(n, m), (m, k), (n, k)`.
pub fn lin_grad(inp: &Tensor, w: &Tensor, out_g: &Tensor) -> Result<LinGrads> {
    Ok(LinGrads {
        inp: out_g.matmul(&w.t()?)?,
        w: inp.t()?.matmul(out_g)?,
        b: out_g.sum(&[0], false)?,
    })
}

/// `w.g` as the notebook first writes it: `(inp[:, :, None] * out_g[:, None, :]).sum(0)`,
/// one `(m, k)` outer product per row, all `n` of them materialised as `(n, m, k)`.
pub fn lin_grad_w_outer(inp: &Tensor, out_g: &Tensor) -> Result<Tensor> {
    inp.unsqueeze(-1)?
        .mul(&out_g.unsqueeze(1)?)?
        .sum(&[0], false)
}

/// Backward of [`relu`]: the gradient passes where the input was positive.
pub fn relu_grad(inp: &Tensor, out_g: &Tensor) -> Result<Tensor> {
    inp.gt(&Tensor::scalar(0.0))?.mul(out_g)
}

/// The forward pass alone: the loss of the problem's MLP.
pub fn loss(p: &Problem) -> Result<f32> {
    let m = &p.mlp;
    let out = lin(&relu(&lin(&p.x, &m.w1, &m.b1)?)?, &m.w2, &m.b2)?;
    mse(&out, &p.y)
}

/// The notebook's `forward_and_backward`: the loss, then every gradient by hand.
pub fn forward_and_backward(p: &Problem) -> Result<(f32, Grads)> {
    let m = &p.mlp;
    // forward
    let l1 = lin(&p.x, &m.w1, &m.b1)?;
    let l2 = relu(&l1)?;
    let out = lin(&l2, &m.w2, &m.b2)?;
    let loss = mse(&out, &p.y)?;
    // backward, in reverse order
    let out_g = mse_grad(&out, &p.y)?;
    let g2 = lin_grad(&l2, &m.w2, &out_g)?;
    let l1_g = relu_grad(&l1, &g2.inp)?;
    let g1 = lin_grad(&p.x, &m.w1, &l1_g)?;
    Ok((
        loss,
        Grads {
            w1: g1.w,
            b1: g1.b,
            w2: g2.w,
            b2: g2.b,
            x: g1.inp,
        },
    ))
}
