//! Elementwise ops and their derivatives.
//!
//! Binary ops broadcast as NumPy: `a: (3, 1) + b: (4,) -> (3, 4)`, and each
//! operand's gradient is summed back to its own shape with [`crate::sum_to()`].
//! Unary ops keep the shape; each backward is `grad * f'(x)`, computed in one pass
//! over (grad, x, y) by the tensor crate's derivative kernels
//! ([`tensor::ops::derivative::Derivative`], a CPU loop and a WGSL twin each, so
//! GPU tensors stay on the GPU):
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
//! | `clamp(lo, hi)` | `1` where `lo <= x <= hi`, else 0 |
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

use tensor::ops::derivative::Derivative;
use tensor::ops::unary::UnaryOp;
use tensor::Tensor;

use crate::error::Result;
use crate::sum_to::sum_to;
use crate::var::{grad_if, record, Var};

impl Var {
    /// An elementwise op `op` with value `y`, whose backward is the kernel `d` on
    /// `(g, x, y)` (on the device the tensors live on).
    fn unary_op(&self, op: &'static str, y: Tensor, d: Derivative) -> Var {
        let x = self.value().clone();
        let saved_y = y.clone();
        record(op, y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || d.backward(g, &x, &saved_y))?])
        })
    }

    /// [`Tensor::unary`] with its gradient.
    fn unary(&self, op: UnaryOp) -> Result<Var> {
        let y = self.value().unary(op)?;
        Ok(self.unary_op(op.name(), y, Derivative::Unary(op)))
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
                    let gb = Derivative::DivRhs.backward(g, &b, &saved_y)?;
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
                    let gb = Derivative::PowBase.backward(g, &a, &b)?;
                    sum_to(&gb, a.dims())
                })?,
                grad_if(need[1], || {
                    let ge = Derivative::PowExponent.backward(g, &a, &saved_y)?;
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
        Ok(self.unary_op("powf", y, Derivative::Powf(exponent)))
    }

    // ---- unary ---------------------------------------------------------------------

    pub fn neg(&self) -> Result<Var> {
        let y = self.value().neg()?;
        Ok(record("neg", y, &[self], move |g, need| {
            Ok(vec![grad_if(need[0], || g.neg())?])
        }))
    }
    pub fn exp(&self) -> Result<Var> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Var> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Var> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn tanh(&self) -> Result<Var> {
        self.unary(UnaryOp::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Var> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// `x * sigmoid(x)` (the UNet's and VAE's activation).
    pub fn silu(&self) -> Result<Var> {
        self.unary(UnaryOp::Silu)
    }
    /// Exact (erf) GELU, `x * Phi(x)` (the UNet's GEGLU).
    pub fn gelu(&self) -> Result<Var> {
        self.unary(UnaryOp::Gelu)
    }
    /// CLIP's `x * sigmoid(1.702 x)`.
    pub fn quick_gelu(&self) -> Result<Var> {
        self.unary(UnaryOp::QuickGelu)
    }
    /// `max(x, 0)`; the gradient at 0 is 0, as in PyTorch.
    pub fn relu(&self) -> Result<Var> {
        self.unary(UnaryOp::Relu)
    }
    /// `|x|`; the gradient at 0 is 0, as in PyTorch.
    pub fn abs(&self) -> Result<Var> {
        self.unary(UnaryOp::Abs)
    }
    /// `x * x`.
    pub fn sqr(&self) -> Result<Var> {
        self.unary(UnaryOp::Sqr)
    }
    /// `1 / x`.
    pub fn recip(&self) -> Result<Var> {
        self.unary(UnaryOp::Recip)
    }
    pub fn sin(&self) -> Result<Var> {
        self.unary(UnaryOp::Sin)
    }
    pub fn cos(&self) -> Result<Var> {
        self.unary(UnaryOp::Cos)
    }
    /// `clamp(x, min, max)`; the gradient passes where `min <= x <= max`, as in
    /// PyTorch.
    pub fn clamp(&self, min: f32, max: f32) -> Result<Var> {
        let y = self.value().clamp(min, max)?;
        Ok(self.unary_op("clamp", y, Derivative::Clamp(min, max)))
    }
}
