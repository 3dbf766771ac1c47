//! Unary elementwise ops: `y[i] = f(x[i])`, same shape in and out, any layout in,
//! contiguous out. `x: (..) -> (..)`.
//!
//! [`map`] is the kernel: it walks the input as strided runs (see
//! [`super::strided`]) so contiguous and broadcast inputs run tight loops. Each
//! [`UnaryOp`] carries its CPU function ([`UnaryOp::apply`]) and its WGSL expression
//! ([`UnaryOp::wgsl`]), so an op is defined once for every backend. GELU uses the
//! exact erf, as PyTorch does; erf and exp are written here, in
//! [`super::special`].
//! Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::from_slice(&[-1.0, 0.0, 1.0], [3]).unwrap();
//! let y = x.gelu().unwrap().to_vec().unwrap();
//! assert!((y[2] - 0.841_344_7).abs() < 1e-6 && y[1] == 0.0);
//! assert_eq!(x.relu().unwrap().to_vec().unwrap(), vec![0.0, 0.0, 1.0]);
//! assert_eq!(x.affine(2.0, 1.0).unwrap().to_vec().unwrap(), vec![-1.0, 1.0, 3.0]);
//! ```

use crate::error::Result;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::ops::act_slice::{act_slice, act_slice_uninit, vec_uninit, Pre};
use crate::ops::special::{erf, exp};
use crate::ops::strided::{with_simd, StridedRuns, PAR_MIN_ELEMS};
use crate::ops::vmath;
use crate::tensor::Tensor;

/// Apply `f` to every element of `x`; the result is contiguous with `x`'s shape.
/// The building block for every unary kernel (other modules reuse it).
pub fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Result<Tensor> {
    if let Some((dev, cpu)) = Tensor::closure_operands(&[x])? {
        return map_with(&cpu[0], f, false)?.to_device(&dev);
    }
    map_with(x, f, false)
}

/// [`map`], with the inner loops compiled for AVX2 when `simd` (for `f` that
/// captures nothing and is compute-bound: the [`UnaryOp`]s).
fn map_with(x: &Tensor, f: impl Fn(f32) -> f32 + Sync, simd: bool) -> Result<Tensor> {
    let src = x.cpu_storage()?;
    let mut out = vec![0.0f32; x.numel()];
    let runs = StridedRuns::new("map", [x.layout()])?;
    let [st] = runs.inner_strides();
    runs.fill(&mut out, |d, [o]| {
        if simd {
            with_simd(
                #[inline(always)]
                || map_run(&f, src, o, st, d),
            )
        } else {
            map_run(&f, src, o, st, d)
        }
    });
    Tensor::from_vec(out, x.shape().clone())
}

/// [`map`] for an op with a vector form: a contiguous input goes to
/// [`act_slice_uninit`] in parallel chunks (into an output that is never zeroed),
/// unit-stride runs of a strided one to [`act_slice`].
fn map_vector(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    if let Some(src) = x.contiguous_slice()? {
        let chunk = src
            .len()
            .div_ceil(4 * rayon::current_num_threads())
            .max(PAR_MIN_ELEMS / 4);
        let fill = |out: &mut [MaybeUninit<f32>]| {
            if src.len() >= PAR_MIN_ELEMS && rayon::current_num_threads() > 1 {
                out.par_chunks_mut(chunk)
                    .zip(src.par_chunks(chunk))
                    .for_each(|(d, s)| act_slice_uninit(Some(op), Pre::Id, s, d));
            } else {
                act_slice_uninit(Some(op), Pre::Id, src, out);
            }
        };
        // SAFETY: the chunks cover `out` and `act_slice_uninit` writes every element.
        let out = unsafe { vec_uninit(src.len(), fill) };
        return Tensor::from_vec(out, x.shape().clone());
    }
    let src = x.cpu_storage()?;
    let mut out = vec![0.0f32; x.numel()];
    let runs = StridedRuns::new("map", [x.layout()])?;
    let [st] = runs.inner_strides();
    runs.fill(&mut out, |d, [o]| {
        if st == 1 {
            act_slice(Some(op), Pre::Id, &src[o..o + d.len()], d);
        } else {
            map_run(&|a| op.apply(a), src, o, st, d);
        }
    });
    Tensor::from_vec(out, x.shape().clone())
}

/// `d[i] = f(src[o + i * st])`, with tight loops for unit and zero strides.
#[inline(always)]
fn map_run(f: &impl Fn(f32) -> f32, src: &[f32], o: usize, st: usize, d: &mut [f32]) {
    match st {
        0 => d.fill(f(src[o])),
        1 => {
            let n = d.len();
            for (v, &a) in d.iter_mut().zip(&src[o..o + n]) {
                *v = f(a);
            }
        }
        _ => {
            for (i, v) in d.iter_mut().enumerate() {
                *v = f(src[o + i * st]);
            }
        }
    }
}

/// The unary ops, each with a CPU function and a WGSL expression in `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Sigmoid,
    Silu,
    /// Exact GELU: `x/2 * (1 + erf(x / sqrt 2))` (torch's default).
    Gelu,
    /// CLIP's `x * sigmoid(1.702 x)`.
    QuickGelu,
    Relu,
    Abs,
    Recip,
    Sqr,
    Sin,
    Cos,
}

impl UnaryOp {
    /// Every variant, for tests and backends that build one kernel per op.
    pub const ALL: [UnaryOp; 15] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::QuickGelu,
        UnaryOp::Relu,
        UnaryOp::Abs,
        UnaryOp::Recip,
        UnaryOp::Sqr,
        UnaryOp::Sin,
        UnaryOp::Cos,
    ];

    /// The PyTorch name of the op.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::QuickGelu => "quick_gelu",
            UnaryOp::Relu => "relu",
            UnaryOp::Abs => "abs",
            UnaryOp::Recip => "reciprocal",
            UnaryOp::Sqr => "square",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
        }
    }

    /// The CPU function (f32 in, f32 out; formulas as in PyTorch's CPU kernels).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => exp(x),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => 1.0 / (1.0 + exp(-x)),
            UnaryOp::Silu => x / (1.0 + exp(-x)),
            UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            UnaryOp::QuickGelu => x / (1.0 + exp(-1.702 * x)),
            UnaryOp::Relu => {
                if x > 0.0 || x.is_nan() {
                    x
                } else {
                    0.0
                }
            }
            UnaryOp::Abs => x.abs(),
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Sqr => x * x,
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
        }
    }

    /// The op as a WGSL expression in the f32 variable `x`. It may call the functions
    /// in [`super::special::WGSL_HELPERS`] (include them once per shader).
    pub fn wgsl(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-x",
            UnaryOp::Exp => "exp(x)",
            UnaryOp::Log => "log(x)",
            UnaryOp::Sqrt => "sqrt(x)",
            UnaryOp::Tanh => "tanh(x)",
            UnaryOp::Sigmoid => "1.0 / (1.0 + exp(-x))",
            UnaryOp::Silu => "x / (1.0 + exp(-x))",
            UnaryOp::Gelu => "0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752))",
            UnaryOp::QuickGelu => "x / (1.0 + exp(-1.702 * x))",
            UnaryOp::Relu => "max(x, 0.0)",
            UnaryOp::Abs => "abs(x)",
            UnaryOp::Recip => "1.0 / x",
            UnaryOp::Sqr => "x * x",
            UnaryOp::Sin => "sin(x)",
            UnaryOp::Cos => "cos(x)",
        }
    }

    /// Apply this op to every element of `x`. Ops with a vector form
    /// ([`vmath::has_vector_form`]: exp, sigmoid, silu, gelu, ...) run contiguous runs
    /// through the explicit AVX-512 / AVX2 kernels of [`crate::ops::act_slice`], which give the same
    /// bits as [`UnaryOp::apply`].
    pub fn map(self, x: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if x.is_gpu() {
            return crate::wgpu::elementwise::unary(self, x);
        }
        if vmath::has_vector_form(self) {
            return map_vector(self, x);
        }
        // One arm per op so each closure is a constant op the compiler can inline.
        macro_rules! dispatch {
            ($($v:ident),*) => {
                match self { $(UnaryOp::$v => map_with(x, #[inline(always)] |a| UnaryOp::$v.apply(a), true),)* }
            };
        }
        dispatch!(
            Neg, Exp, Log, Sqrt, Tanh, Sigmoid, Silu, Gelu, QuickGelu, Relu, Abs, Recip, Sqr, Sin,
            Cos
        )
    }
}

/// Tensor methods named as in PyTorch.
impl Tensor {
    /// Apply a [`UnaryOp`].
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        op.map(self)
    }
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// `x * sigmoid(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }
    /// Exact (erf) GELU.
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Gelu)
    }
    /// `x * sigmoid(1.702 x)`.
    pub fn quick_gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::QuickGelu)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    /// `1 / x`.
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip)
    }
    /// `x * x`.
    pub fn sqr(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqr)
    }
    pub fn sin(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sin)
    }
    pub fn cos(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Cos)
    }
    /// The error function, elementwise.
    pub fn erf(&self) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::elementwise::map_expr("erf", self, "erf_f32(x)", [0.0, 0.0]);
        }
        map_with(self, erf, true)
    }

    /// `x * mul + add`.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::elementwise::map_expr("affine", self, "x * p0 + p1", [mul, add]);
        }
        map(self, |x| x * mul + add)
    }
    /// `x + value`.
    pub fn add_scalar(&self, value: f32) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::elementwise::map_expr("add_scalar", self, "x + p0", [value, 0.0]);
        }
        map(self, |x| x + value)
    }
    /// `x * value`.
    pub fn mul_scalar(&self, value: f32) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::elementwise::map_expr("mul_scalar", self, "x * p0", [value, 0.0]);
        }
        map(self, |x| x * value)
    }
    /// `x ^ exponent`, with PyTorch's exact fast paths for 2, 3, 0.5, -0.5, -1, -2.
    pub fn powf(&self, exponent: f32) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::elementwise::map_expr(
                "powf",
                self,
                crate::wgpu::elementwise::powf_expr(exponent),
                [exponent, 0.0],
            );
        }
        match exponent {
            1.0 => map(self, |x| x),
            2.0 => map(self, |x| x * x),
            3.0 => map(self, |x| x * x * x),
            0.5 => map(self, f32::sqrt),
            -0.5 => map(self, |x| 1.0 / x.sqrt()),
            -1.0 => map(self, |x| 1.0 / x),
            -2.0 => map(self, |x| 1.0 / (x * x)),
            e => map(self, |x| x.powf(e)),
        }
    }
    /// `min(max(x, min), max)`; NaN stays NaN, and `min > max` gives `max` everywhere
    /// (as `torch.clamp`).
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() {
            return crate::wgpu::elementwise::map_expr(
                "clamp",
                self,
                "select(min(max(x, p0), p1), x, x != x)",
                [min, max],
            );
        }
        map(self, |x| {
            if x.is_nan() {
                x
            } else {
                let lo = if x < min { min } else { x };
                if lo > max {
                    max
                } else {
                    lo
                }
            }
        })
    }
}
