//! Element-wise scheduler arithmetic in float32, one closure per diffusers expression.
//!
//! diffusers writes each update as a chain of torch ops on float32 tensors with
//! float32 0-d scalars (`alpha_prod_t ** 0.5 * model_output`): every op rounds to
//! float32, and no two are fused. Writing the same expression, in the same order, as a
//! closure over float32 values reproduces torch's result bit for bit on CPU:
//! `zip2(sample, eps, |x, e| (x - sb * e) / sa)` is
//! `(sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5`.
//!
//! ```
//! use diffusion::schedulers::elementwise::zip2;
//! use diffusion::Tensor;
//! let a = Tensor::from_vec(vec![1.0, 2.0], vec![2]).unwrap();
//! let b = Tensor::from_vec(vec![0.5, 0.25], vec![2]).unwrap();
//! assert_eq!(zip2(&a, &b, |x, y| x - 2.0 * y).unwrap().to_vec().unwrap(), vec![0.0, 1.5]);
//! ```

use crate::error::{DiffusionError, Result};
use crate::Tensor;

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(DiffusionError::invalid(
            op,
            format!("shapes differ: {:?} vs {:?}", a.dims(), b.dims()),
        ));
    }
    Ok(())
}

/// `f(x)` for every element (output has `x`'s shape, contiguous).
pub fn map1(x: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor> {
    let data: Vec<f32> = x.to_vec()?.into_iter().map(f).collect();
    Ok(Tensor::from_vec(data, x.dims().to_vec())?)
}

/// `f(a, b)` element by element; the shapes must be equal.
pub fn zip2(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
    same_shape("scheduler zip2", a, b)?;
    let (va, vb) = (a.to_vec()?, b.to_vec()?);
    let data: Vec<f32> = va.iter().zip(&vb).map(|(&x, &y)| f(x, y)).collect();
    Ok(Tensor::from_vec(data, a.dims().to_vec())?)
}

/// `f(a, b, c)` element by element; the shapes must be equal.
pub fn zip3(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    f: impl Fn(f32, f32, f32) -> f32,
) -> Result<Tensor> {
    same_shape("scheduler zip3", a, b)?;
    same_shape("scheduler zip3", a, c)?;
    let (va, vb, vc) = (a.to_vec()?, b.to_vec()?, c.to_vec()?);
    let data: Vec<f32> = va
        .iter()
        .zip(&vb)
        .zip(&vc)
        .map(|((&x, &y), &z)| f(x, y, z))
        .collect();
    Ok(Tensor::from_vec(data, a.dims().to_vec())?)
}

/// `f(&[x_0, .., x_k])` over k+1 equally shaped tensors, element by element.
pub fn zip_n(ts: &[&Tensor], f: impl Fn(&[f32]) -> f32) -> Result<Tensor> {
    let Some(first) = ts.first() else {
        return Err(DiffusionError::invalid("scheduler zip_n", "no tensors"));
    };
    let mut cols = Vec::with_capacity(ts.len());
    for t in ts {
        same_shape("scheduler zip_n", first, t)?;
        cols.push(t.to_vec()?);
    }
    let mut buf = vec![0.0f32; ts.len()];
    let data: Vec<f32> = (0..first.numel())
        .map(|i| {
            for (b, c) in buf.iter_mut().zip(&cols) {
                *b = c[i];
            }
            f(&buf)
        })
        .collect();
    Ok(Tensor::from_vec(data, first.dims().to_vec())?)
}

/// `sum_k c_k * x_k`, accumulated left to right in float32: `((c0*x0 + c1*x1) + c2*x2)`.
/// Subtracting `c * x` equals adding `(-c) * x` exactly, so diffusers' `a - b * x`
/// terms are passed with negated coefficients.
pub fn linear_combination(terms: &[(f32, &Tensor)]) -> Result<Tensor> {
    let coefs: Vec<f32> = terms.iter().map(|t| t.0).collect();
    let tensors: Vec<&Tensor> = terms.iter().map(|t| t.1).collect();
    zip_n(&tensors, |x| {
        let mut acc = coefs[0] * x[0];
        for (c, v) in coefs.iter().zip(x).skip(1) {
            acc += c * v;
        }
        acc
    })
}
