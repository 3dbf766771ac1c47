//! Layers as objects with `forward` and `backward` (the notebook's "Refactor model").
//!
//! The hand-written backward of [`crate::hand`] repeats one pattern per layer: keep
//! the layer's input from the forward pass, and in the backward pass turn the
//! output's gradient into the input's gradient (and the parameters'). A [`Layer`]
//! packages exactly that; a [`Model`] runs its layers forward in order and backward
//! in reverse, so the chain rule becomes a loop:
//!
//! ```text
//! forward:   x -> Lin(w1, b1) -> Relu -> Lin(w2, b2) -> Mse(., y) -> loss
//! backward:  Mse.backward() -> out.g -> Lin -> Relu -> Lin -> x.g
//! ```
//!
//! Python stores gradients as attributes (`inp.g`); here `backward` takes
//! `d loss / d out` and returns `d loss / d inp`, and a layer with parameters keeps
//! their gradients ([`Layer::grads`]). The library's `autodiff` goes one step further
//! and records the layers' backward functions itself, for every op.
//!
//! ```
//! use lesson_04_backprop::layers::{Layer, Relu};
//! use tensor::Tensor;
//! let mut relu = Relu::default();
//! let out = relu.forward(&Tensor::from_vec(vec![-1.0, 2.0], [2]).unwrap()).unwrap();
//! assert_eq!(out.to_vec().unwrap(), vec![0.0, 2.0]);
//! let inp_g = relu.backward(&Tensor::from_vec(vec![5.0, 7.0], [2]).unwrap()).unwrap();
//! assert_eq!(inp_g.to_vec().unwrap(), vec![0.0, 7.0]);
//! ```

use tensor::{Result, Tensor, TensorError};

use crate::hand::{lin, lin_grad, mse, mse_grad, relu, relu_grad};
use crate::{Grads, Problem};

/// A layer that remembers its input in `forward` and uses it in `backward`.
pub trait Layer {
    /// The output; keeps what backward will need.
    fn forward(&mut self, inp: &Tensor) -> Result<Tensor>;
    /// `d loss / d inp` from `out_g = d loss / d out`; stores parameter gradients.
    fn backward(&mut self, out_g: &Tensor) -> Result<Tensor>;
    /// The parameters' gradients from the last backward (none for `Relu`).
    fn grads(&self) -> Vec<Tensor> {
        Vec::new()
    }
}

fn saved<'a>(t: &'a Option<Tensor>, layer: &'static str) -> Result<&'a Tensor> {
    t.as_ref()
        .ok_or_else(|| TensorError::invalid(layer, "backward called before forward"))
}

/// `max(inp, 0)`.
#[derive(Clone, Debug, Default)]
pub struct Relu {
    inp: Option<Tensor>,
}

impl Layer for Relu {
    fn forward(&mut self, inp: &Tensor) -> Result<Tensor> {
        self.inp = Some(inp.clone());
        relu(inp)
    }
    fn backward(&mut self, out_g: &Tensor) -> Result<Tensor> {
        relu_grad(saved(&self.inp, "Relu")?, out_g)
    }
}

/// `inp @ w + b`, keeping `w.g` and `b.g`.
#[derive(Clone, Debug)]
pub struct Lin {
    pub w: Tensor,
    pub b: Tensor,
    inp: Option<Tensor>,
    grads: Vec<Tensor>,
}

impl Lin {
    pub fn new(w: Tensor, b: Tensor) -> Lin {
        Lin {
            w,
            b,
            inp: None,
            grads: Vec::new(),
        }
    }
}

impl Layer for Lin {
    fn forward(&mut self, inp: &Tensor) -> Result<Tensor> {
        self.inp = Some(inp.clone());
        lin(inp, &self.w, &self.b)
    }
    fn backward(&mut self, out_g: &Tensor) -> Result<Tensor> {
        let g = lin_grad(saved(&self.inp, "Lin")?, &self.w, out_g)?;
        self.grads = vec![g.w, g.b];
        Ok(g.inp)
    }
    fn grads(&self) -> Vec<Tensor> {
        self.grads.clone()
    }
}

/// The loss, `mean((inp[:, 0] - targ)^2)`: the start of the backward pass.
#[derive(Clone, Debug, Default)]
pub struct Mse {
    saved: Option<(Tensor, Tensor)>,
}

impl Mse {
    pub fn forward(&mut self, inp: &Tensor, targ: &Tensor) -> Result<f32> {
        self.saved = Some((inp.clone(), targ.clone()));
        mse(inp, targ)
    }
    /// `d loss / d inp`: `(n, 1)`.
    pub fn backward(&self) -> Result<Tensor> {
        let (inp, targ) = self
            .saved
            .as_ref()
            .ok_or_else(|| TensorError::invalid("Mse", "backward called before forward"))?;
        mse_grad(inp, targ)
    }
}

/// The notebook's `Model`: `[Lin(w1, b1), Relu(), Lin(w2, b2)]` and an `Mse` loss.
pub struct Model {
    pub layers: Vec<Box<dyn Layer>>,
    pub loss: Mse,
}

impl Model {
    pub fn new(p: &Problem) -> Model {
        let m = &p.mlp;
        Model {
            layers: vec![
                Box::new(Lin::new(m.w1.clone(), m.b1.clone())),
                Box::new(Relu::default()),
                Box::new(Lin::new(m.w2.clone(), m.b2.clone())),
            ],
            loss: Mse::default(),
        }
    }

    /// Every layer forward, then the loss.
    pub fn forward(&mut self, x: &Tensor, targ: &Tensor) -> Result<f32> {
        let mut h = x.clone();
        for layer in &mut self.layers {
            h = layer.forward(&h)?;
        }
        self.loss.forward(&h, targ)
    }

    /// The loss backward, then every layer in reverse. Returns the gradients of the
    /// parameters in layer order followed by the input's: `w1, b1, w2, b2, x`.
    pub fn backward(&mut self) -> Result<Grads> {
        let mut g = self.loss.backward()?;
        for layer in self.layers.iter_mut().rev() {
            g = layer.backward(&g)?;
        }
        let params: Vec<Tensor> = self.layers.iter().flat_map(|l| l.grads()).collect();
        match <[Tensor; 4]>::try_from(params) {
            Ok([w1, b1, w2, b2]) => Ok(Grads {
                w1,
                b1,
                w2,
                b2,
                x: g,
            }),
            Err(v) => Err(TensorError::invalid(
                "Model",
                format!("expected 4 parameter gradients, got {}", v.len()),
            )),
        }
    }
}
