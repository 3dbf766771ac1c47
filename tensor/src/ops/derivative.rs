//! The derivatives of the elementwise ops, for autodiff (PyTorch's
//! `sigmoid_backward`, `gelu_backward`, `threshold_backward`... kernels):
//! `dx[i] = d(g[i], x[i], z[i])` with `g` the incoming gradient, `x` the operand
//! being differentiated and `z` the op's output or its other operand (each
//! [`Derivative`] variant says which). All three broadcast together (NumPy rules);
//! the result is contiguous. `g, x, z: (..) -> (..)`.
//!
//! Like the forward ops, each derivative is written once per backend: a CPU
//! closure run by [`zip3`] and a WGSL expression run by the generated elementwise
//! kernel, so a backward pass over GPU tensors stays on the GPU.
//!
//! ```
//! use tensor::ops::derivative::Derivative;
//! use tensor::ops::unary::UnaryOp;
//! use tensor::Tensor;
//! let x = Tensor::from_slice(&[-1.0, 2.0], [2]).unwrap();
//! let y = x.relu().unwrap();
//! let g = Tensor::from_slice(&[5.0, 7.0], [2]).unwrap();
//! let dx = Derivative::Unary(UnaryOp::Relu).backward(&g, &x, &y).unwrap();
//! assert_eq!(dx.to_vec().unwrap(), vec![0.0, 7.0]);
//! ```

use crate::error::Result;
use crate::ops::binary::zip3;
use crate::ops::special::erf;
use crate::ops::unary::UnaryOp;
use crate::tensor::Tensor;

/// `1 / sqrt(2 pi)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// An elementwise derivative. Operands `(g, x, z)`: `g` the gradient of the
/// output, then as each variant says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Derivative {
    /// `y = op(x)`; `z = y`. Where an op is not differentiable (relu and abs at 0)
    /// the gradient is 0, as in PyTorch.
    Unary(UnaryOp),
    /// `y = x ^ e`; `z = y`: `g e x^(e-1)`, and 0 when `e = 0`.
    Powf(f32),
    /// `y = clamp(x, lo, hi)`; `z = y`: `g` where `lo <= x <= hi`, else 0.
    Clamp(f32, f32),
    /// `y = a ^ b` with respect to the base; `x = a`, `z = b`: `g b a^(b-1)`,
    /// and 0 where `b = 0`.
    PowBase,
    /// `y = a ^ b` with respect to the exponent; `x = a`, `z = y`: `g y ln a`, and
    /// 0 where `g y = 0` (so a zero base with a zero gradient gives 0, not NaN).
    PowExponent,
    /// `y = a / b` with respect to the divisor; `x = b`, `z = y`: `-g y / b`.
    DivRhs,
}

impl Derivative {
    /// The name errors and GPU kernels carry.
    pub fn name(self) -> &'static str {
        match self {
            Derivative::Unary(op) => match op {
                UnaryOp::Neg => "neg_backward",
                UnaryOp::Exp => "exp_backward",
                UnaryOp::Log => "log_backward",
                UnaryOp::Sqrt => "sqrt_backward",
                UnaryOp::Tanh => "tanh_backward",
                UnaryOp::Sigmoid => "sigmoid_backward",
                UnaryOp::Silu => "silu_backward",
                UnaryOp::Gelu => "gelu_backward",
                UnaryOp::QuickGelu => "quick_gelu_backward",
                UnaryOp::Relu => "threshold_backward",
                UnaryOp::Abs => "abs_backward",
                UnaryOp::Recip => "reciprocal_backward",
                UnaryOp::Sqr => "square_backward",
                UnaryOp::Sin => "sin_backward",
                UnaryOp::Cos => "cos_backward",
            },
            Derivative::Powf(_) => "pow_backward",
            Derivative::Clamp(..) => "clamp_backward",
            Derivative::PowBase => "pow_backward_self",
            Derivative::PowExponent => "pow_backward_exponent",
            Derivative::DivRhs => "div_backward_other",
        }
    }

    /// The derivative as a WGSL expression in `a = g`, `b = x`, `c = z` and the
    /// parameters `p0`, `p1` (see [`Derivative::params`]); it may call the
    /// functions in [`super::special::WGSL_HELPERS`].
    pub fn wgsl(self) -> &'static str {
        match self {
            Derivative::Unary(op) => match op {
                UnaryOp::Neg => "-a",
                UnaryOp::Exp => "a * c",
                UnaryOp::Log => "a / b",
                UnaryOp::Sqrt => "a * 0.5 / c",
                UnaryOp::Tanh => "a * (1.0 - c * c)",
                UnaryOp::Sigmoid => "a * c * (1.0 - c)",
                UnaryOp::Silu => "a * sigmoid_f32(b) * (1.0 + b * (1.0 - sigmoid_f32(b)))",
                UnaryOp::Gelu => {
                    "a * (0.5 * (1.0 + erf_f32(b * 0.70710678118654752)) \
                     + b * 0.3989423 * exp(-0.5 * b * b))"
                }
                UnaryOp::QuickGelu => {
                    "a * (sigmoid_f32(1.702 * b) \
                     + 1.702 * b * sigmoid_f32(1.702 * b) * (1.0 - sigmoid_f32(1.702 * b)))"
                }
                UnaryOp::Relu => "select(0.0, a, b > 0.0)",
                UnaryOp::Abs => "select(select(0.0, -a, b < 0.0), a, b > 0.0)",
                UnaryOp::Recip => "-a * c * c",
                UnaryOp::Sqr => "2.0 * a * b",
                UnaryOp::Sin => "a * cos(b)",
                UnaryOp::Cos => "-a * sin(b)",
            },
            Derivative::Powf(_) => "select(a * p0 * pow_f32(b, p0 - 1.0), 0.0, p0 == 0.0)",
            Derivative::Clamp(..) => "select(0.0, a, b >= p0 && b <= p1)",
            Derivative::PowBase => "select(a * c * pow_f32(b, c - 1.0), 0.0, c == 0.0)",
            Derivative::PowExponent => "select(a * c * log(b), 0.0, a * c == 0.0)",
            Derivative::DivRhs => "-a * c / b",
        }
    }

    /// The scalars the expression reads as `p0`, `p1`.
    pub fn params(self) -> [f32; 2] {
        match self {
            Derivative::Powf(e) => [e, 0.0],
            Derivative::Clamp(lo, hi) => [lo, hi],
            _ => [0.0; 2],
        }
    }

    /// `dx` from the gradient `g` and the operands `x`, `z` (broadcast together), on
    /// the GPU when any of them lives there.
    pub fn backward(self, g: &Tensor, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if g.is_gpu() || x.is_gpu() || z.is_gpu() {
            return crate::wgpu::elementwise::zip_n_expr(
                self.name(),
                &[g, x, z],
                self.wgsl(),
                self.params(),
            );
        }
        self.cpu(g, x, z)
    }

    /// The CPU kernel: one [`zip3`] per variant, so each loop is specialised.
    fn cpu(self, g: &Tensor, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let name = self.name();
        macro_rules! run {
            (|$g:ident, $x:ident, $z:ident| $e:expr) => {
                zip3(name, g, x, z, move |$g: f32, $x: f32, $z: f32| $e)
            };
        }
        match self {
            Derivative::Unary(op) => match op {
                UnaryOp::Neg => run!(|g, _x, _y| -g),
                UnaryOp::Exp => run!(|g, _x, y| g * y),
                UnaryOp::Log => run!(|g, x, _y| g / x),
                UnaryOp::Sqrt => run!(|g, _x, y| g * 0.5 / y),
                UnaryOp::Tanh => run!(|g, _x, y| g * (1.0 - y * y)),
                UnaryOp::Sigmoid => run!(|g, _x, y| g * y * (1.0 - y)),
                UnaryOp::Silu => run!(|g, x, _y| {
                    let s = sigmoid(x);
                    g * s * (1.0 + x * (1.0 - s))
                }),
                UnaryOp::Gelu => run!(|g, x, _y| {
                    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                    let pdf = INV_SQRT_2PI * (-0.5 * x * x).exp();
                    g * (cdf + x * pdf)
                }),
                UnaryOp::QuickGelu => run!(|g, x, _y| {
                    let s = sigmoid(1.702 * x);
                    g * (s + 1.702 * x * s * (1.0 - s))
                }),
                UnaryOp::Relu => run!(|g, x, _y| if x > 0.0 { g } else { 0.0 }),
                UnaryOp::Abs => run!(|g, x, _y| {
                    if x > 0.0 {
                        g
                    } else if x < 0.0 {
                        -g
                    } else {
                        0.0
                    }
                }),
                UnaryOp::Recip => run!(|g, _x, y| -g * y * y),
                UnaryOp::Sqr => run!(|g, x, _y| 2.0 * g * x),
                UnaryOp::Sin => run!(|g, x, _y| g * x.cos()),
                UnaryOp::Cos => run!(|g, x, _y| -g * x.sin()),
            },
            Derivative::Powf(e) => run!(|g, x, _y| {
                if e == 0.0 {
                    0.0
                } else {
                    g * e * x.powf(e - 1.0)
                }
            }),
            Derivative::Clamp(lo, hi) => run!(|g, x, _y| {
                if (lo..=hi).contains(&x) {
                    g
                } else {
                    0.0
                }
            }),
            Derivative::PowBase => run!(|g, a, b| {
                if b == 0.0 {
                    0.0
                } else {
                    g * b * a.powf(b - 1.0)
                }
            }),
            Derivative::PowExponent => run!(|g, a, y| {
                let gy = g * y;
                if gy == 0.0 {
                    0.0
                } else {
                    gy * a.ln()
                }
            }),
            Derivative::DivRhs => run!(|g, b, y| -g * y / b),
        }
    }
}
