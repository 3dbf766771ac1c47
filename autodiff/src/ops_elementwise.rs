//! Elementwise ops and their derivatives.
//!
//! Binary ops broadcast as NumPy: `a: (3, 1) + b: (4,) -> (3, 4)`, and each
//! operand's gradient is summed back to its own shape with [`crate::sum_to()`].
//! Unary ops keep the shape; each backward is `grad * f'(x)`, computed in one pass
//! over (grad, x) or (grad, y) with the tensor crate's `zip`:
//!
//! | op | derivative |
//! |---|---|
//! | `exp` | `y` |
//! | `log` | `1 / x` |
//! | `sqrt` | `1 / (2 y)` |
//! | `tanh` | `1 - y^2` |
//! | `sigmoid` | `y (1 - y)` |
//! | `silu` = `x s(x)` | `s (1 + x (1 - s))` |
//! | `gelu` = `x Phi(x)` | `Phi(x) + x phi(x)` (the Gaussian cdf and pdf) |
//! | `quick_gelu` = `x s(1.702 x)` | `s + 1.702 x s (1 - s)` |
//! | `relu` | `1` where `x > 0`, else 0 |
//! | `abs` | `sign(x)` (0 at 0) |
//! | `powf(e)` | `e x^(e-1)` |
//! | `pow(a, b)` | `b a^(b-1)`, `a^b ln a` |
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap());
//! let b = Var::leaf(Tensor::from_vec(vec![10.0], [1]).unwrap()); // broadcast
//! let y = x.exp().unwrap().mul(&b).unwrap().sum_all().unwrap(); // sum(b * e^x)
//! let g = y.backward().unwrap();
//! let gx = g.get(&x).unwrap().to_vec().unwrap();
//! assert!((gx[0] - 10.0).abs() < 1e-5 && (gx[1] - 10.0 * std::f32::consts::E).abs() < 1e-4);
//! let gb = g.get(&b).unwrap().to_vec().unwrap();              // e^0 + e^1, summed
//! assert!((gb[0] - (1.0 + std::f32::consts::E)).abs() < 1e-5);
//! ```

use tensor::ops::binary::{zip, zip3};
use tensor::ops::special::erf;
use tensor::Tensor;

use crate::error::Result;
use crate::sum_to::sum_to;
use crate::var::{grad_if, record, Var};

/// `1 / sqrt(2 pi)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Var {
    /// A unary op `op` with value `y`, whose backward is `df(g, x, y)` elementwise.
    fn unary_op(
        &self,
        op: &'static str,
        y: Tensor,
        df: impl Fn(f32, f32, f32) -> f32 + Send + Sync + Copy + 'static,
    ) -> Var {
        let x = self.value().clone();
        let saved_y = y.clone();
        record(op, y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || zip3(op, g, &x, &saved_y, df))?])
        })
    }

    // ---- binary, broadcasting -----------------------------------------------------

    /// `self + rhs`, broadcasting.
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        let y = self.value().add(rhs.value())?;
        let (da, db) = (self.dims().to_vec(), rhs.dims().to_vec());
        Ok(record("add", y, &[self, rhs], move |g, need| {
            Ok(vec![
                grad_if(need[0], || sum_to(g, &da))?,
                grad_if(need[1], || sum_to(g, &db))?,
            ])
        }))
    }

    /// `self - rhs`, broadcasting.
    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        let y = self.value().sub(rhs.value())?;
        let (da, db) = (self.dims().to_vec(), rhs.dims().to_vec());
        Ok(record("sub", y, &[self, rhs], move |g, need| {
            Ok(vec![
                grad_if(need[0], || sum_to(g, &da))?,
                grad_if(need[1], || sum_to(&g.neg()?, &db))?,
            ])
        }))
    }

    /// `self * rhs`, broadcasting.
    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = a.mul(&b)?;
        Ok(record("mul", y, &[self, rhs], move |g, need| {
            Ok(vec![
                grad_if(need[0], || sum_to(&g.mul(&b)?, a.dims()))?,
                grad_if(need[1], || sum_to(&g.mul(&a)?, b.dims()))?,
            ])
        }))
    }

    /// `self / rhs`, broadcasting.
    pub fn div(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = a.div(&b)?;
        let saved_y = y.clone();
        Ok(record("div", y, &[self, rhs], move |g, need| {
            Ok(vec![
                grad_if(need[0], || sum_to(&g.div(&b)?, a.dims()))?,
                grad_if(need[1], || {
                    // d(a/b)/db = -a/b^2 = -y/b
                    let gb = zip3("div_backward", g, &saved_y, &b, |g, y, b| -g * y / b)?;
                    sum_to(&gb, b.dims())
                })?,
            ])
        }))
    }

    /// `self ^ rhs`, broadcasting (`torch.pow` with a tensor exponent).
    pub fn pow(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value().clone(), rhs.value().clone());
        let y = a.pow(&b)?;
        let saved_y = y.clone();
        Ok(record("pow", y, &[self, rhs], move |g, need| {
            Ok(vec![
                grad_if(need[0], || {
                    let gb = zip3("pow_backward", g, &a, &b, |g, a, b| {
                        if b == 0.0 {
                            0.0
                        } else {
                            g * b * a.powf(b - 1.0)
                        }
                    })?;
                    sum_to(&gb, a.dims())
                })?,
                grad_if(need[1], || {
                    let gy = g.mul(&saved_y)?;
                    let ge = zip("pow_backward", &gy, &a, |gy, a| {
                        if gy == 0.0 {
                            0.0
                        } else {
                            gy * a.ln()
                        }
                    })?;
                    sum_to(&ge, b.dims())
                })?,
            ])
        }))
    }

    // ---- with a scalar ---------------------------------------------------------------

    /// `self + value`.
    pub fn add_scalar(&self, value: f32) -> Result<Var> {
        let y = self.value().add_scalar(value)?;
        Ok(record("add_scalar", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || {
                Ok::<_, tensor::TensorError>(g.clone())
            })?])
        }))
    }

    /// `self * value`.
    pub fn mul_scalar(&self, value: f32) -> Result<Var> {
        let y = self.value().mul_scalar(value)?;
        Ok(record("mul_scalar", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.mul_scalar(value))?])
        }))
    }

    /// `self * mul + add`.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Var> {
        let y = self.value().affine(mul, add)?;
        Ok(record("affine", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.mul_scalar(mul))?])
        }))
    }

    /// `self ^ exponent` (`torch.pow` with a number).
    pub fn powf(&self, exponent: f32) -> Result<Var> {
        let y = self.value().powf(exponent)?;
        Ok(self.unary_op("powf", y, move |g, x, _| {
            if exponent == 0.0 {
                0.0
            } else {
                g * exponent * x.powf(exponent - 1.0)
            }
        }))
    }

    // ---- unary ---------------------------------------------------------------------

    pub fn neg(&self) -> Result<Var> {
        let y = self.value().neg()?;
        Ok(record("neg", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.neg())?])
        }))
    }
    pub fn exp(&self) -> Result<Var> {
        let y = self.value().exp()?;
        Ok(self.unary_op("exp", y, |g, _, y| g * y))
    }
    pub fn log(&self) -> Result<Var> {
        let y = self.value().log()?;
        Ok(self.unary_op("log", y, |g, x, _| g / x))
    }
    pub fn sqrt(&self) -> Result<Var> {
        let y = self.value().sqrt()?;
        Ok(self.unary_op("sqrt", y, |g, _, y| g * 0.5 / y))
    }
    pub fn tanh(&self) -> Result<Var> {
        let y = self.value().tanh()?;
        Ok(self.unary_op("tanh", y, |g, _, y| g * (1.0 - y * y)))
    }
    pub fn sigmoid(&self) -> Result<Var> {
        let y = self.value().sigmoid()?;
        Ok(self.unary_op("sigmoid", y, |g, _, y| g * y * (1.0 - y)))
    }
    /// `x * sigmoid(x)` (the UNet's and VAE's activation).
    pub fn silu(&self) -> Result<Var> {
        let y = self.value().silu()?;
        Ok(self.unary_op("silu", y, |g, x, _| {
            let s = sigmoid(x);
            g * s * (1.0 + x * (1.0 - s))
        }))
    }
    /// Exact (erf) GELU, `x * Phi(x)` (the UNet's GEGLU).
    pub fn gelu(&self) -> Result<Var> {
        let y = self.value().gelu()?;
        Ok(self.unary_op("gelu", y, |g, x, _| {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
            g * (cdf + x * pdf)
        }))
    }
    /// CLIP's `x * sigmoid(1.702 x)`.
    pub fn quick_gelu(&self) -> Result<Var> {
        let y = self.value().quick_gelu()?;
        Ok(self.unary_op("quick_gelu", y, |g, x, _| {
            let s = sigmoid(1.702 * x);
            g * (s + 1.702 * x * s * (1.0 - s))
        }))
    }
    /// `max(x, 0)`; the gradient at 0 is 0, as in PyTorch.
    pub fn relu(&self) -> Result<Var> {
        let y = self.value().relu()?;
        Ok(self.unary_op("relu", y, |g, x, _| if x > 0.0 { g } else { 0.0 }))
    }
    /// `|x|`; the gradient at 0 is 0, as in PyTorch.
    pub fn abs(&self) -> Result<Var> {
        let y = self.value().abs()?;
        Ok(self.unary_op("abs", y, |g, x, _| {
            if x > 0.0 {
                g
            } else if x < 0.0 {
                -g
            } else {
                0.0
            }
        }))
    }
    /// `x * x`.
    pub fn sqr(&self) -> Result<Var> {
        let y = self.value().sqr()?;
        Ok(self.unary_op("sqr", y, |g, x, _| 2.0 * g * x))
    }
    /// `1 / x`.
    pub fn recip(&self) -> Result<Var> {
        let y = self.value().recip()?;
        Ok(self.unary_op("recip", y, |g, _, y| -g * y * y))
    }
    pub fn sin(&self) -> Result<Var> {
        let y = self.value().sin()?;
        Ok(self.unary_op("sin", y, |g, x, _| g * x.cos()))
    }
    pub fn cos(&self) -> Result<Var> {
        let y = self.value().cos()?;
        Ok(self.unary_op("cos", y, |g, x, _| -g * x.sin()))
    }
}
