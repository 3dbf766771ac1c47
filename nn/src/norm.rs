//! Normalisation layers: [`GroupNorm`] (`nn.GroupNorm`) and [`LayerNorm`]
//! (`nn.LayerNorm`), each with an optional affine `weight` (ones) and `bias` (zeros).
//!
//! - GroupNorm: `x: (N, C, *)`, the C channels split into `groups` groups; each
//!   (sample, group) is normalised to mean 0, variance 1 (biased), then
//!   `y = xhat * weight[c] + bias[c]`; `weight, bias: (C,)`.
//! - LayerNorm: `x: (*, D)` normalised over the last dim(s) `normalized_shape`;
//!   `weight, bias: normalized_shape`.
//!
//! Introduced with the course's normalisation lesson (BatchNorm's batch-free cousins).
//!
//! ```
//! use autodiff::Var;
//! use nn::{LayerNorm, Module, ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let ln = LayerNorm::new(VarBuilder::from_init(&store, WichmannHill::seed(1)), &[2], 1e-5).unwrap();
//! let x = Var::constant(Tensor::from_vec(vec![1.0, 3.0], [1, 2]).unwrap());
//! let y = ln.forward(&x).unwrap().to_vec().unwrap(); // mean 2, std 1
//! assert!((y[0] + 1.0).abs() < 1e-4 && (y[1] - 1.0).abs() < 1e-4);
//! assert_eq!(store.names(), ["weight", "bias"]);
//! ```

use autodiff::Var;

use crate::error::{NnError, Result};
use crate::init::Init;
use crate::module::Module;
use crate::param::Param;
use crate::var_builder::VarBuilder;

/// Group normalisation over `(N, C, *)`.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    pub weight: Option<Param>,
    pub bias: Option<Param>,
    pub num_groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    /// Affine group norm (`weight`, `bias`: `(C,)`), as diffusers uses it.
    pub fn new(
        vb: VarBuilder,
        num_groups: usize,
        num_channels: usize,
        eps: f64,
    ) -> Result<GroupNorm> {
        GroupNorm::with_affine(vb, num_groups, num_channels, eps, true)
    }

    /// Group norm; without `affine` it has no parameters.
    pub fn with_affine(
        vb: VarBuilder,
        num_groups: usize,
        num_channels: usize,
        eps: f64,
        affine: bool,
    ) -> Result<GroupNorm> {
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            return Err(NnError::invalid(
                "GroupNorm",
                format!(
                    "{}: num_groups {num_groups} must divide num_channels {num_channels}",
                    vb.prefix()
                ),
            ));
        }
        let (weight, bias) = if affine {
            (
                Some(vb.get("weight", &[num_channels], Init::ONES)?),
                Some(vb.get("bias", &[num_channels], Init::ZEROS)?),
            )
        } else {
            (None, None)
        };
        Ok(GroupNorm {
            weight,
            bias,
            num_groups,
            eps,
        })
    }
}

impl Module for GroupNorm {
    /// `x: (N, C, *) -> (N, C, *)`.
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.as_ref().map(Param::var);
        let b = self.bias.as_ref().map(Param::var);
        Ok(x.group_norm(self.num_groups, w.as_ref(), b.as_ref(), self.eps)?)
    }
}

/// Layer normalisation over the trailing `normalized_shape` dims.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Option<Param>,
    pub bias: Option<Param>,
    pub normalized_shape: Vec<usize>,
    pub eps: f64,
}

impl LayerNorm {
    /// Affine layer norm over `normalized_shape` (`weight`, `bias` of that shape).
    pub fn new(vb: VarBuilder, normalized_shape: &[usize], eps: f64) -> Result<LayerNorm> {
        LayerNorm::with_affine(vb, normalized_shape, eps, true)
    }

    /// Layer norm; without `affine` it has no parameters.
    pub fn with_affine(
        vb: VarBuilder,
        normalized_shape: &[usize],
        eps: f64,
        affine: bool,
    ) -> Result<LayerNorm> {
        let (weight, bias) = if affine {
            (
                Some(vb.get("weight", normalized_shape, Init::ONES)?),
                Some(vb.get("bias", normalized_shape, Init::ZEROS)?),
            )
        } else {
            (None, None)
        };
        Ok(LayerNorm {
            weight,
            bias,
            normalized_shape: normalized_shape.to_vec(),
            eps,
        })
    }
}

impl Module for LayerNorm {
    /// `x: (*, *normalized_shape) -> same`.
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.as_ref().map(Param::var);
        let b = self.bias.as_ref().map(Param::var);
        Ok(x.layer_norm(&self.normalized_shape, w.as_ref(), b.as_ref(), self.eps)?)
    }
}
