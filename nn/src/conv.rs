//! [`Conv2d`] (`nn.Conv2d`): `weight: (out, in / groups, kh, kw)`, `bias: (out,)`;
//! `x: (N, in, H, W) -> (N, out, H', W')` with
//! `H' = (H + 2 pad - dil (kh - 1) - 1) / stride + 1` (and the same for W).
//! A 3-d input `(in, H, W)` is treated as a batch of one. Initialised as torch does
//! (uniform on `±1/sqrt(fan_in)`, `fan_in = in / groups * kh * kw`). Introduced with
//! the course's convolutions lesson.
//!
//! ```
//! use autodiff::Var;
//! use nn::{Conv2d, Conv2dConfig, Module, ParamStore, VarBuilder};
//! use std::collections::BTreeMap;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let w = Tensor::ones([1, 1, 2, 2]);                 // sums each 2x2 window
//! let vb = VarBuilder::from_tensors(&store, BTreeMap::from([("conv_in.weight".to_string(), w)]), "w");
//! let conv = Conv2d::new(vb.pp("conv_in"), 1, 1, 2, Conv2dConfig::default(), false).unwrap();
//! let x = Var::constant(Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap());
//! assert_eq!(conv.forward(&x).unwrap().to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0]);
//! ```

use autodiff::Var;

use crate::error::{NnError, Result};
use crate::init::Init;
use crate::module::Module;
use crate::param::Param;
use crate::var_builder::VarBuilder;

/// Stride, padding, dilation and groups of a [`Conv2d`] (square; torch's defaults
/// 1, 0, 1, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl Conv2dConfig {
    /// `padding` with the other fields at their defaults (`padding=1` for a 3x3 "same").
    pub fn padding(padding: usize) -> Conv2dConfig {
        Conv2dConfig {
            padding,
            ..Default::default()
        }
    }
}

/// A 2-d convolution layer.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Param,
    pub bias: Option<Param>,
    pub config: Conv2dConfig,
}

impl Conv2d {
    /// `vb.weight: (out, in / groups, k, k)` and, with `bias`, `vb.bias: (out,)`.
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        config: Conv2dConfig,
        bias: bool,
    ) -> Result<Conv2d> {
        let g = config.groups;
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return Err(NnError::invalid(
                "Conv2d",
                format!(
                    "{}: groups {g} must divide in_channels {in_channels} and out_channels {out_channels}",
                    vb.prefix()
                ),
            ));
        }
        let shape = [out_channels, in_channels / g, kernel, kernel];
        let weight = vb.get("weight", &shape, Init::torch_default())?;
        let bias = if bias {
            Some(vb.get("bias", &[out_channels], Init::torch_default_bias(&shape)?)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            config,
        })
    }
}

impl Module for Conv2d {
    /// `x: (N, in, H, W) -> (N, out, H', W')`.
    fn forward(&self, x: &Var) -> Result<Var> {
        let c = self.config;
        let bias = self.bias.as_ref().map(Param::var);
        Ok(x.conv2d(
            &self.weight.var(),
            bias.as_ref(),
            (c.stride, c.stride),
            (c.padding, c.padding),
            (c.dilation, c.dilation),
            c.groups,
        )?)
    }
}
