//! Bias + activation in one pass: `act(x + bias)` with `bias` along the last dim,
//! the tail of a linear layer (`(B, T, C) @ (C, N)` then `+ b` then GELU in SD's
//! feed-forward, lesson on the UNet). `x: (.., N)`, `bias: (N,)` -> `(.., N)`.
//!
//! Unfused, `x.add(&bias)?.gelu()?` reads and writes the whole tensor twice; here
//! each row is read once, the bias added in registers, the activation applied on
//! the lanes ([`act_slice_uninit`], AVX-512 / AVX2) and the result stored once. The
//! values are bit for bit those of the unfused pair, [`Tensor::add_bias_act_naive`].
//!
//! ```
//! use tensor::ops::unary::UnaryOp;
//! use tensor::Tensor;
//! let x = Tensor::from_vec(vec![-2.0, 0.0, 1.0, 3.0], [2, 2]).unwrap();
//! let b = Tensor::from_vec(vec![1.0, -1.0], [2]).unwrap();
//! let y = x.add_bias_act(&b, Some(UnaryOp::Relu)).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![0.0, 0.0, 2.0, 2.0]);
//! let g = x.add_bias_act(&b, Some(UnaryOp::Gelu)).unwrap().to_vec().unwrap();
//! assert!((g[0] + 0.158_655_26).abs() < 1e-7); // gelu(-1)
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::ops::act_slice::{act_slice_uninit, vec_uninit, Pre};
use crate::ops::norm::contiguous_data;
use crate::ops::strided::PAR_MIN_ELEMS;
use crate::ops::unary::UnaryOp;
use crate::tensor::Tensor;

fn check(x: &Tensor, bias: &Tensor) -> Result<usize> {
    let n = x.dims().last().copied().unwrap_or(0);
    if x.rank() == 0 || bias.dims() != [n] {
        return Err(TensorError::invalid(
            "add_bias_act",
            format!(
                "bias must be (N,) for input (.., N): got bias {:?}, input {:?}",
                bias.dims(),
                x.dims()
            ),
        ));
    }
    Ok(n)
}

impl Tensor {
    /// `act(self + bias)` (`act: None` is just the add), bias along the last dim,
    /// in one pass.
    pub fn add_bias_act(&self, bias: &Tensor, act: Option<UnaryOp>) -> Result<Tensor> {
        let n = check(self, bias)?;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() || bias.is_gpu() {
            let y = self.add(bias)?;
            return match act {
                Some(op) => op.map(&y),
                None => Ok(y),
            };
        }
        let x = self.contiguous()?;
        let b = bias.contiguous()?;
        let (src, b) = (contiguous_data(&x)?, contiguous_data(&b)?);
        if n == 0 || src.is_empty() {
            return Tensor::from_vec(vec![0.0; src.len()], x.dims().to_vec());
        }
        let task = (PAR_MIN_ELEMS / 4).div_ceil(n) * n;
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let rows = |d: &mut [MaybeUninit<f32>], s: &[f32]| {
                for (d, s) in d.chunks_mut(n).zip(s.chunks(n)) {
                    act_slice_uninit(act, Pre::Add(b), s, d);
                }
            };
            if src.len() >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1 {
                out.par_chunks_mut(task)
                    .zip(src.par_chunks(task))
                    .for_each(|(d, s)| rows(d, s));
            } else {
                rows(out, src);
            }
        };
        // SAFETY: the rows cover `out` exactly and `act_slice_uninit` writes each.
        let out = unsafe { vec_uninit(src.len(), fill) };
        Tensor::from_vec(out, x.dims().to_vec())
    }

    /// [`Tensor::add_bias_act`] unfused: `add` then the activation, the reference twin.
    pub fn add_bias_act_naive(&self, bias: &Tensor, act: Option<UnaryOp>) -> Result<Tensor> {
        check(self, bias)?;
        let y = self.add(bias)?;
        match act {
            Some(op) => y.unary(op),
            None => Ok(y),
        }
    }
}
