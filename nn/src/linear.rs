//! [`Linear`] and [`Embedding`]: the two layers that are a matrix.
//!
//! - `Linear` (`nn.Linear`): `weight: (out, in)`, `bias: (out,)`;
//!   `x: (*, in) -> x W^T + b: (*, out)`. Initialised as torch does: weight and bias
//!   uniform on `±1/sqrt(in)`.
//! - `Embedding` (`nn.Embedding`): `weight: (num, dim)`; ids `(*)` -> rows `(*, dim)`.
//!   Initialised normal(0, 1) as torch does.
//!
//! Introduced with the course's first MLP (the matmul lesson made into a layer).
//!
//! ```
//! use autodiff::Var;
//! use nn::{Linear, Module, ParamStore, VarBuilder};
//! use std::collections::BTreeMap;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let weights = BTreeMap::from([
//!     ("proj.weight".to_string(), Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap()),
//!     ("proj.bias".to_string(), Tensor::from_vec(vec![0.5, -0.5], [2]).unwrap()),
//! ]);
//! let vb = VarBuilder::from_tensors(&store, weights, "weights");
//! let lin = Linear::new(vb.pp("proj"), 3, 2, true).unwrap();
//! let x = Var::constant(Tensor::from_vec(vec![1.0, 0.0, -1.0], [1, 3]).unwrap());
//! // (1 - 3 + 0.5, 4 - 6 - 0.5)
//! assert_eq!(lin.forward(&x).unwrap().to_vec().unwrap(), vec![-1.5, -2.5]);
//! ```

use autodiff::Var;

use crate::error::{NnError, Result};
use crate::init::Init;
use crate::module::Module;
use crate::param::Param;
use crate::var_builder::VarBuilder;

/// `y = x W^T + b` over the last dim.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    /// `vb.weight: (out, in)` and, with `bias`, `vb.bias: (out,)`, torch's init.
    pub fn new(
        vb: VarBuilder,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        let shape = [out_features, in_features];
        let weight = vb.get("weight", &shape, Init::torch_default())?;
        let bias = if bias {
            Some(vb.get("bias", &[out_features], Init::torch_default_bias(&shape)?)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Like [`Linear::new`] with an explicit weight initialiser (bias zeros).
    pub fn with_init(
        vb: VarBuilder,
        in_features: usize,
        out_features: usize,
        bias: bool,
        init: Init,
    ) -> Result<Linear> {
        let weight = vb.get("weight", &[out_features, in_features], init)?;
        let bias = if bias {
            Some(vb.get("bias", &[out_features], Init::ZEROS)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    /// `x: (*, in) -> (*, out)`.
    fn forward(&self, x: &Var) -> Result<Var> {
        let y = x.matmul(&self.weight.var().t()?)?;
        Ok(match &self.bias {
            Some(b) => y.add(&b.var())?,
            None => y,
        })
    }
}

/// A lookup table of `num` vectors of size `dim`.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Param,
}

impl Embedding {
    /// `vb.weight: (num, dim)`, normal(0, 1).
    pub fn new(vb: VarBuilder, num: usize, dim: usize) -> Result<Embedding> {
        let weight = vb.get(
            "weight",
            &[num, dim],
            Init::Normal {
                mean: 0.0,
                std: 1.0,
            },
        )?;
        Ok(Embedding { weight })
    }

    /// Rows named by `ids`, laid out in `shape` (`ids.len() == prod(shape)`) ->
    /// `(*shape, dim)`.
    pub fn lookup(&self, ids: &[usize], shape: &[usize]) -> Result<Var> {
        Ok(Var::embedding_with_shape(&self.weight.var(), ids, shape)?)
    }
}

impl Module for Embedding {
    /// `ids: (*)` holding integer values as f32 (exact below 2^24) -> `(*, dim)`.
    fn forward(&self, ids: &Var) -> Result<Var> {
        let ids_var_dims = ids.dims();
        let values = ids.to_vec()?;
        let ids = values
            .iter()
            .map(|&v| {
                if v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0 {
                    Ok(v as usize)
                } else {
                    Err(NnError::invalid(
                        "Embedding",
                        format!("id {v} is not a non-negative integer"),
                    ))
                }
            })
            .collect::<Result<Vec<usize>>>()?;
        let shape = ids_var_dims.to_vec();
        self.lookup(&ids, &shape)
    }
}
