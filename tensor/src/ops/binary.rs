//! Binary elementwise ops with NumPy broadcasting: `out[i] = f(a[i'], b[i''])`.
//! `a: (3, 1), b: (4,) -> (3, 4)`.
//!
//! The shapes are aligned on the right and each pair of sizes must be equal or
//! contain a 1 ([`crate::Shape::broadcast`]); both inputs are then viewed at the
//! result shape with `broadcast_as` (stride-0 dims, nothing copied) and walked as
//! strided runs ([`super::strided`]). [`zip`] is the kernel, with tight loops for
//! the (contiguous, contiguous), (contiguous, broadcast) and (broadcast, contiguous)
//! inner runs; [`zip3`] does the same for three inputs (`where_cond`). Each
//! [`BinaryOp`] carries its CPU function and its WGSL expression in `a` and `b`;
//! comparisons return 1.0 / 0.0 masks. Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::Tensor;
//! let a = Tensor::from_slice(&[1.0, 2.0, 3.0], [3, 1]).unwrap();
//! let b = Tensor::from_slice(&[10.0, 20.0], [2]).unwrap();
//! let c = a.add(&b).unwrap();
//! assert_eq!(c.dims(), &[3, 2]);
//! assert_eq!(c.to_vec().unwrap(), vec![11.0, 21.0, 12.0, 22.0, 13.0, 23.0]);
//! assert_eq!(a.gt(&Tensor::scalar(1.5)).unwrap().to_vec().unwrap(), vec![0.0, 1.0, 1.0]);
//! ```

use crate::error::{Result, TensorError};
use crate::ops::strided::StridedRuns;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Combine `a` and `b` elementwise with NumPy broadcasting; the result is contiguous.
/// `op` names the caller in errors. The building block for every binary kernel.
pub fn zip(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<Tensor> {
    if let Some((dev, cpu)) = Tensor::closure_operands(&[a, b])? {
        return zip(op, &cpu[0], &cpu[1], f)?.to_device(&dev);
    }
    let shape = Shape::broadcast(op, a.shape(), b.shape())?;
    let (sa, sb) = (a.cpu_storage()?, b.cpu_storage()?);
    let mut out = vec![0.0f32; shape.numel()];
    let la = a.layout().broadcast_as(shape.clone())?;
    let lb = b.layout().broadcast_as(shape.clone())?;
    // Contiguous same-shape inputs coalesce into a single (1, 1) run: the fast path.
    let runs = StridedRuns::new(op, [&la, &lb])?;
    let [ta, tb] = runs.inner_strides();
    runs.fill(&mut out, |d, [oa, ob]| {
        let n = d.len();
        match (ta, tb) {
            (1, 1) => {
                for ((v, &x), &y) in d.iter_mut().zip(&sa[oa..oa + n]).zip(&sb[ob..ob + n]) {
                    *v = f(x, y);
                }
            }
            (1, 0) => {
                let y = sb[ob];
                for (v, &x) in d.iter_mut().zip(&sa[oa..oa + n]) {
                    *v = f(x, y);
                }
            }
            (0, 1) => {
                let x = sa[oa];
                for (v, &y) in d.iter_mut().zip(&sb[ob..ob + n]) {
                    *v = f(x, y);
                }
            }
            _ => {
                for (i, v) in d.iter_mut().enumerate() {
                    *v = f(sa[oa + i * ta], sb[ob + i * tb]);
                }
            }
        }
    });
    Tensor::from_vec(out, shape)
}

/// Broadcast `a`, `b` and `c` together (NumPy rules) and combine them elementwise.
pub fn zip3(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Result<Tensor> {
    if let Some((dev, cpu)) = Tensor::closure_operands(&[a, b, c])? {
        return zip3(op, &cpu[0], &cpu[1], &cpu[2], f)?.to_device(&dev);
    }
    let ab = Shape::broadcast(op, a.shape(), b.shape())?;
    let shape = Shape::broadcast(op, &ab, c.shape()).map_err(|_| TensorError::Broadcast {
        op,
        lhs: ab.dims().to_vec(),
        rhs: c.dims().to_vec(),
    })?;
    let (sa, sb, sc) = (a.cpu_storage()?, b.cpu_storage()?, c.cpu_storage()?);
    let la = a.layout().broadcast_as(shape.clone())?;
    let lb = b.layout().broadcast_as(shape.clone())?;
    let lc = c.layout().broadcast_as(shape.clone())?;
    let runs = StridedRuns::new(op, [&la, &lb, &lc])?;
    let [ta, tb, tc] = runs.inner_strides();
    let mut out = vec![0.0f32; shape.numel()];
    runs.fill(&mut out, |d, [oa, ob, oc]| {
        let n = d.len();
        if (ta, tb, tc) == (1, 1, 1) {
            let it = sa[oa..oa + n]
                .iter()
                .zip(&sb[ob..ob + n])
                .zip(&sc[oc..oc + n]);
            for (v, ((&x, &y), &z)) in d.iter_mut().zip(it) {
                *v = f(x, y, z);
            }
        } else {
            for (i, v) in d.iter_mut().enumerate() {
                *v = f(sa[oa + i * ta], sb[ob + i * tb], sc[oc + i * tc]);
            }
        }
    });
    Tensor::from_vec(out, shape)
}

/// Binary ops, each with a CPU function and a WGSL expression in `a` and `b`.
/// Comparisons produce 1.0 where true and 0.0 where false.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `a ^ b` (NaN for a negative base with a non-integer exponent).
    Pow,
    /// Elementwise max; NaN if either is NaN (as `torch.maximum`).
    Maximum,
    /// Elementwise min; NaN if either is NaN (as `torch.minimum`).
    Minimum,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    /// Every variant, for tests and backends that build one kernel per op.
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];

    /// The PyTorch name of the op.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
        }
    }

    /// True for the comparisons (which return 1.0 / 0.0 masks).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }

    /// The CPU function.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        let mask = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Maximum => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else if a > b {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Minimum => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else if a < b {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Eq => mask(a == b),
            BinaryOp::Ne => mask(a != b),
            BinaryOp::Lt => mask(a < b),
            BinaryOp::Le => mask(a <= b),
            BinaryOp::Gt => mask(a > b),
            BinaryOp::Ge => mask(a >= b),
        }
    }

    /// The op as a WGSL expression in the f32 variables `a` and `b`; it may call the
    /// functions in [`super::special::WGSL_HELPERS`].
    pub fn wgsl(self) -> &'static str {
        match self {
            BinaryOp::Add => "a + b",
            BinaryOp::Sub => "a - b",
            BinaryOp::Mul => "a * b",
            BinaryOp::Div => "a / b",
            BinaryOp::Pow => "pow_f32(a, b)",
            BinaryOp::Maximum => "max(a, b)",
            BinaryOp::Minimum => "min(a, b)",
            BinaryOp::Eq => "select(0.0, 1.0, a == b)",
            BinaryOp::Ne => "select(0.0, 1.0, a != b)",
            BinaryOp::Lt => "select(0.0, 1.0, a < b)",
            BinaryOp::Le => "select(0.0, 1.0, a <= b)",
            BinaryOp::Gt => "select(0.0, 1.0, a > b)",
            BinaryOp::Ge => "select(0.0, 1.0, a >= b)",
        }
    }

    /// Apply this op to `a` and `b` with broadcasting.
    pub fn zip(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if a.is_gpu() || b.is_gpu() {
            return crate::wgpu::elementwise::binary(self, a, b);
        }
        // One arm per op so each closure is a constant op the compiler can inline.
        macro_rules! dispatch {
            ($($v:ident),*) => {
                match self { $(BinaryOp::$v => zip(self.name(), a, b, |x, y| BinaryOp::$v.apply(x, y)),)* }
            };
        }
        dispatch!(Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge)
    }
}

/// Tensor methods named as in PyTorch (all broadcast).
impl Tensor {
    /// Apply a [`BinaryOp`] with broadcasting.
    pub fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        op.zip(self, rhs)
    }
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, rhs)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, rhs)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, rhs)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, rhs)
    }
    pub fn pow(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Pow, rhs)
    }
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Maximum, rhs)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Minimum, rhs)
    }
    /// 1.0 where `self == rhs`, else 0.0.
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Eq, rhs)
    }
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Ne, rhs)
    }
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Lt, rhs)
    }
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Le, rhs)
    }
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Gt, rhs)
    }
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Ge, rhs)
    }

    /// `on_true` where `self != 0`, else `on_false` (as `torch.where(cond, a, b)`), with
    /// all three broadcast together. NaN in the condition counts as true.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "wgpu")]
        if self.is_gpu() || on_true.is_gpu() || on_false.is_gpu() {
            return crate::wgpu::elementwise::where_cond(self, on_true, on_false);
        }
        zip3("where_cond", self, on_true, on_false, |c, t, f| {
            if c != 0.0 {
                t
            } else {
                f
            }
        })
    }
}
