//! Initialisers: how a fresh parameter is filled, drawing from an explicit generator
//! (any [`tensor::Rng`]: the course's `WichmannHill`, or `TorchGenerator`).
//!
//! The fans of a weight of shape `(out, in, *kernel)` are `fan_in = in * prod(kernel)`
//! and `fan_out = out * prod(kernel)` (`torch.nn.init._calculate_fan_in_and_fan_out`).
//! Then, as in `torch.nn.init`:
//!
//! - Kaiming (He): `std = gain / sqrt(fan)`; uniform on `[-sqrt(3) std, sqrt(3) std]` or
//!   normal; `gain = sqrt(2)` for ReLU ([`gain_relu`]), `sqrt(2 / (1 + a^2))` for
//!   leaky ReLU ([`gain_leaky_relu`]).
//! - Xavier (Glorot): `std = gain * sqrt(2 / (fan_in + fan_out))`, uniform or normal.
//! - [`Init::torch_default`]: what `nn.Linear` and `nn.Conv2d` do on construction,
//!   Kaiming uniform with `a = sqrt(5)`, which is uniform on `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`.
//!
//! Uniform draws use one `rng.uniform()` per element; normal draws use Box-Muller
//! (`Tensor::randn`). Introduced with the course's initialisation lesson (why
//! activations explode or vanish without the right scale).
//!
//! ```
//! use nn::Init;
//! use tensor::random::WichmannHill;
//! let mut rng = WichmannHill::seed(42);
//! // A (4, 25) weight: fan_in = 25, so torch's default bound is 1/5 = 0.2.
//! let w = Init::torch_default().tensor(&[4, 25], &mut rng).unwrap();
//! assert!(w.to_vec().unwrap().iter().all(|v| v.abs() <= 0.2));
//! assert_eq!(Init::torch_default().bound(&[4, 25]).unwrap(), 0.2);
//! ```

use tensor::{Rng, Tensor};

use crate::error::{NnError, Result};

/// Which fan a Kaiming initialiser scales by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fan {
    /// Keeps the variance of activations in the forward pass (torch's default).
    In,
    /// Keeps the variance of gradients in the backward pass.
    Out,
}

/// How to fill a new parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Every element `value` (`nn.init.constant_`; zeros for biases, ones for norm weights).
    Const(f32),
    /// Uniform on `[lo, hi)`.
    Uniform { lo: f32, hi: f32 },
    /// Normal with mean and standard deviation (`nn.init.normal_`; embeddings).
    Normal { mean: f32, std: f32 },
    /// `nn.init.kaiming_uniform_`: uniform on `±sqrt(3) * gain / sqrt(fan)`.
    KaimingUniform { gain: f64, fan: Fan },
    /// `nn.init.kaiming_normal_`: normal with `std = gain / sqrt(fan)`.
    KaimingNormal { gain: f64, fan: Fan },
    /// `nn.init.xavier_uniform_`: uniform on `±gain * sqrt(6 / (fan_in + fan_out))`.
    XavierUniform { gain: f64 },
    /// `nn.init.xavier_normal_`: normal with `std = gain * sqrt(2 / (fan_in + fan_out))`.
    XavierNormal { gain: f64 },
}

/// Kaiming gain for ReLU: `sqrt(2)`.
pub fn gain_relu() -> f64 {
    2f64.sqrt()
}

/// Kaiming gain for leaky ReLU with negative slope `a`: `sqrt(2 / (1 + a^2))`.
pub fn gain_leaky_relu(a: f64) -> f64 {
    (2.0 / (1.0 + a * a)).sqrt()
}

/// `(fan_in, fan_out)` of a weight of shape `(out, in, *kernel)`; needs rank >= 2.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(NnError::invalid(
            "init",
            format!("fan in and fan out need a weight of rank >= 2, got shape {shape:?}"),
        ));
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

impl Init {
    pub const ZEROS: Init = Init::Const(0.0);
    pub const ONES: Init = Init::Const(1.0);

    /// `nn.Linear` / `nn.Conv2d` weights: Kaiming uniform with `a = sqrt(5)`.
    pub fn torch_default() -> Init {
        Init::KaimingUniform {
            gain: gain_leaky_relu(5f64.sqrt()),
            fan: Fan::In,
        }
    }

    /// Kaiming normal for a ReLU network, fan in (the course's `init.kaiming_normal_`).
    pub fn kaiming_normal_relu() -> Init {
        Init::KaimingNormal {
            gain: gain_relu(),
            fan: Fan::In,
        }
    }

    /// `nn.Linear` / `nn.Conv2d` biases for a weight of shape `weight_shape`:
    /// uniform on `±1/sqrt(fan_in)`.
    pub fn torch_default_bias(weight_shape: &[usize]) -> Result<Init> {
        let (fan_in, _) = fans(weight_shape)?;
        let b = if fan_in > 0 {
            (1.0 / (fan_in as f64).sqrt()) as f32
        } else {
            0.0
        };
        Ok(Init::Uniform { lo: -b, hi: b })
    }

    /// The half-width of a uniform initialiser for `shape` (`None`-like error for
    /// normal and constant ones).
    pub fn bound(&self, shape: &[usize]) -> Result<f32> {
        match *self {
            Init::Uniform { lo, hi } if lo == -hi => Ok(hi),
            Init::KaimingUniform { gain, fan } => {
                Ok((3f64.sqrt() * kaiming_std(gain, fan, shape)?) as f32)
            }
            Init::XavierUniform { gain } => Ok((3f64.sqrt() * xavier_std(gain, shape)?) as f32),
            other => Err(NnError::invalid(
                "init",
                format!("{other:?} is not a symmetric uniform initialiser"),
            )),
        }
    }

    /// A tensor of `shape` filled by this initialiser.
    pub fn tensor(&self, shape: &[usize], rng: &mut dyn Rng) -> Result<Tensor> {
        let shape = shape.to_vec();
        let mut rng = rng;
        match *self {
            Init::Const(v) => Ok(Tensor::full(shape, v)),
            Init::Uniform { lo, hi } => uniform(shape, lo, hi, &mut rng),
            Init::Normal { mean, std } => normal(shape, mean, std, &mut rng),
            Init::KaimingUniform { .. } | Init::XavierUniform { .. } => {
                let b = self.bound(&shape)?;
                uniform(shape, -b, b, &mut rng)
            }
            Init::KaimingNormal { gain, fan } => {
                let std = kaiming_std(gain, fan, &shape)?;
                normal(shape, 0.0, std as f32, &mut rng)
            }
            Init::XavierNormal { gain } => {
                let std = xavier_std(gain, &shape)?;
                normal(shape, 0.0, std as f32, &mut rng)
            }
        }
    }
}

fn kaiming_std(gain: f64, fan: Fan, shape: &[usize]) -> Result<f64> {
    let (fan_in, fan_out) = fans(shape)?;
    let f = match fan {
        Fan::In => fan_in,
        Fan::Out => fan_out,
    };
    Ok(if f == 0 {
        0.0
    } else {
        gain / (f as f64).sqrt()
    })
}

fn xavier_std(gain: f64, shape: &[usize]) -> Result<f64> {
    let (fan_in, fan_out) = fans(shape)?;
    let f = fan_in + fan_out;
    Ok(if f == 0 {
        0.0
    } else {
        gain * (2.0 / f as f64).sqrt()
    })
}

fn uniform(shape: Vec<usize>, lo: f32, hi: f32, rng: &mut impl Rng) -> Result<Tensor> {
    Ok(Tensor::rand(shape, rng)?.affine(hi - lo, lo)?)
}

fn normal(shape: Vec<usize>, mean: f32, std: f32, rng: &mut impl Rng) -> Result<Tensor> {
    Ok(Tensor::randn(shape, rng)?.affine(std, mean)?)
}
