//! Lesson 04: backpropagation, from the chain rule by hand to the library's autodiff.
//!
//! The running example is the course's (fastai part 2, `03_backprop`) two-layer MLP on
//! a small synthetic regression, shapes `x: (n, m)`, `y: (n)`:
//!
//! ```text
//! l1 = x @ w1 + b1      w1: (m, nh), b1: (nh)      -> (n, nh)
//! l2 = relu(l1)                                     -> (n, nh)
//! out = l2 @ w2 + b2    w2: (nh, 1), b2: (1)       -> (n, 1)
//! loss = mean((out[:, 0] - y)^2)                    -> ()
//! ```
//!
//! Its gradient with respect to `w1, b1, w2, b2` and `x` is computed four ways, and
//! every way is checked against central finite differences of [`Flat::loss`], a
//! plain-loop f64 forward:
//!
//! - [`hand`]: `lin_grad`, `relu_grad`, `mse_grad` written out with tensor ops;
//! - [`layers`]: the same, refactored into layers with `forward` / `backward`;
//! - [`scalar`]: a micrograd-style scalar autodiff (`Value`) built from scratch;
//! - [`library_forward_and_backward`]: the library's tensor autodiff, `autodiff::Var`.
//!
//! ```
//! use lesson_04_backprop::{hand, Problem};
//! let p = Problem::synthetic(64, 5, 8, 42).unwrap();
//! let (loss, grads) = hand::forward_and_backward(&p).unwrap();
//! assert!((loss - 2.267279).abs() < 1e-5); // PyTorch: 2.2672794
//! assert_eq!(grads.w1.dims(), &[5, 8]);
//! ```

pub mod hand;
pub mod layers;
pub mod scalar;

use autodiff::Var;
use tensor::random::TorchGenerator;
use tensor::{Result, Tensor, TensorError};

/// The five tensors the loss is differentiated by, in this order everywhere.
pub const NAMES: [&str; 5] = ["w1", "b1", "w2", "b2", "x"];

/// The course's two-layer MLP: `w1: (m, nh), b1: (nh), w2: (nh, 1), b2: (1)`.
#[derive(Clone, Debug)]
pub struct Mlp {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
}

/// A synthetic regression problem and an MLP to fit it: `x: (n, m)`, `y: (n)`.
#[derive(Clone, Debug)]
pub struct Problem {
    pub x: Tensor,
    pub y: Tensor,
    pub mlp: Mlp,
}

impl Problem {
    /// The same tensors as this PyTorch code (the notebook's init: unscaled `randn`
    /// weights, zero biases; `randn` is the library's PyTorch-compatible generator):
    ///
    /// ```text
    /// torch.manual_seed(seed)
    /// x = torch.randn(n, m); v = torch.randn(m); y = (x @ v).sin()
    /// w1 = torch.randn(m, nh); b1 = torch.zeros(nh); w2 = torch.randn(nh, 1); b2 = torch.zeros(1)
    /// ```
    pub fn synthetic(n: usize, m: usize, nh: usize, seed: u64) -> Result<Problem> {
        let mut g = TorchGenerator::manual_seed(seed);
        let x = g.randn([n, m])?;
        let v = g.randn([m])?;
        let y = x.matmul(&v)?.sin()?;
        let mlp = Mlp {
            w1: g.randn([m, nh])?,
            b1: Tensor::zeros([nh]),
            w2: g.randn([nh, 1])?,
            b2: Tensor::zeros([1]),
        };
        Ok(Problem { x, y, mlp })
    }

    /// Check the shapes: `x: (n, m), y: (n), w1: (m, nh), b1: (nh), w2: (nh, 1),
    /// b2: (1)`.
    pub fn validate(&self) -> Result<()> {
        let (n, m, nh) = self.dims();
        let want: [&[usize]; 6] = [&[m, nh], &[nh], &[nh, 1], &[1], &[n, m], &[n]];
        let [w1, b1, w2, b2, x] = self.tensors();
        for ((name, t), want) in NAMES
            .iter()
            .chain(&["y"])
            .zip([w1, b1, w2, b2, x, &self.y])
            .zip(want)
        {
            if t.dims() != want {
                return Err(TensorError::invalid(
                    "Problem",
                    format!("{name} has shape {:?}, expected {want:?}", t.dims()),
                ));
            }
        }
        Ok(())
    }

    /// `(n, m, nh)`.
    pub fn dims(&self) -> (usize, usize, usize) {
        let xd = self.x.dims();
        let nh = self.mlp.w1.dims().get(1).copied().unwrap_or(0);
        (
            xd.first().copied().unwrap_or(0),
            xd.get(1).copied().unwrap_or(0),
            nh,
        )
    }

    /// `w1, b1, w2, b2, x`, the order of [`NAMES`].
    pub fn tensors(&self) -> [&Tensor; 5] {
        let m = &self.mlp;
        [&m.w1, &m.b1, &m.w2, &m.b2, &self.x]
    }

    /// The same problem with the MLP's parameters moved by `-lr * grad` (one step of
    /// gradient descent; `x` stays).
    pub fn sgd_step(&self, grads: &Grads, lr: f32) -> Result<Problem> {
        let step = |p: &Tensor, g: &Tensor| p.sub(&g.mul_scalar(lr)?);
        let m = &self.mlp;
        Ok(Problem {
            x: self.x.clone(),
            y: self.y.clone(),
            mlp: Mlp {
                w1: step(&m.w1, &grads.w1)?,
                b1: step(&m.b1, &grads.b1)?,
                w2: step(&m.w2, &grads.w2)?,
                b2: step(&m.b2, &grads.b2)?,
            },
        })
    }
}

/// The gradient of the loss with respect to each tensor of [`NAMES`], same shapes.
#[derive(Clone, Debug)]
pub struct Grads {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
    pub x: Tensor,
}

impl Grads {
    /// `w1, b1, w2, b2, x`, the order of [`NAMES`].
    pub fn tensors(&self) -> [&Tensor; 5] {
        [&self.w1, &self.b1, &self.w2, &self.b2, &self.x]
    }

    /// `sum(g^2)` over the parameters (not `x`): the loss falls by about `lr` times
    /// this in one step of gradient descent.
    pub fn param_norm_sq(&self) -> Result<f64> {
        let mut s = 0.0;
        for g in &self.tensors()[..4] {
            s += g
                .to_vec()?
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>();
        }
        Ok(s)
    }
}

/// The problem as flat f64 vectors with a plain-loop forward: the reference the
/// gradients are checked against, by central finite differences. Made only from a
/// validated [`Problem`], so the sizes always agree.
#[derive(Clone, Debug)]
pub struct Flat {
    n: usize,
    m: usize,
    nh: usize,
    parts: [Vec<f64>; 5],
    y: Vec<f64>,
}

/// A tensor's elements as f64, row-major.
pub fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_vec()?.into_iter().map(f64::from).collect())
}

/// The largest `|a_i - b_i|` (0 for empty slices).
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The largest `|v_i|`.
pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().map(|x| x.abs()).fold(0.0, f64::max)
}

impl Flat {
    pub fn from_problem(p: &Problem) -> Result<Flat> {
        p.validate()?;
        let (n, m, nh) = p.dims();
        let [w1, b1, w2, b2, x] = p.tensors();
        Ok(Flat {
            n,
            m,
            nh,
            parts: [
                to_f64(w1)?,
                to_f64(b1)?,
                to_f64(w2)?,
                to_f64(b2)?,
                to_f64(x)?,
            ],
            y: to_f64(&p.y)?,
        })
    }

    /// `(n, m, nh)`.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.n, self.m, self.nh)
    }
    /// `w1, b1, w2, b2, x` as f64, row-major.
    pub fn parts(&self) -> &[Vec<f64>; 5] {
        &self.parts
    }
    /// The targets as f64.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// The MLP's loss with three nested loops, in f64.
    pub fn loss(&self) -> f64 {
        let [w1, b1, w2, b2, x] = &self.parts;
        let mut total = 0.0;
        for i in 0..self.n {
            let mut out = b2[0];
            for j in 0..self.nh {
                let mut h = b1[j];
                for k in 0..self.m {
                    h += x[i * self.m + k] * w1[k * self.nh + j];
                }
                out += h.max(0.0) * w2[j];
            }
            total += (out - self.y[i]).powi(2);
        }
        total / self.n as f64
    }

    /// `(loss(p + eps) - loss(p - eps)) / (2 eps)` for every element `p` of
    /// `parts[part]`. The error is `O(eps^2)` where the loss is smooth, plus
    /// rounding of about `1e-16 * loss / eps`.
    pub fn central_differences(&self, part: usize, eps: f64) -> Vec<f64> {
        let mut probe = self.clone();
        let len = self.parts.get(part).map_or(0, Vec::len);
        (0..len)
            .map(|i| {
                let v = self.parts[part][i];
                probe.parts[part][i] = v + eps;
                let up = probe.loss();
                probe.parts[part][i] = v - eps;
                let down = probe.loss();
                probe.parts[part][i] = v;
                (up - down) / (2.0 * eps)
            })
            .collect()
    }
}

/// Central differences of the f32 tensor forward ([`hand::loss`]) for every element
/// of tensor `part` of [`NAMES`]: what a check in f32 would see.
pub fn central_differences_f32(p: &Problem, part: usize, eps: f32) -> Result<Vec<f64>> {
    let base = p.tensors().get(part).map(|t| (*t).clone());
    let Some(base) = base else {
        return Ok(Vec::new());
    };
    let values = base.to_vec()?;
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        let at = |delta: f32| -> Result<f32> {
            let mut v = values.clone();
            v[i] += delta;
            let t = Tensor::from_vec(v, base.dims().to_vec())?;
            let mut q = p.clone();
            match part {
                0 => q.mlp.w1 = t,
                1 => q.mlp.b1 = t,
                2 => q.mlp.w2 = t,
                3 => q.mlp.b2 = t,
                _ => q.x = t,
            }
            hand::loss(&q)
        };
        let (up, down) = (at(eps)?, at(-eps)?);
        out.push((f64::from(up) - f64::from(down)) / (2.0 * f64::from(eps)));
    }
    Ok(out)
}

/// The same forward written with `autodiff::Var`; `backward()` gives every gradient.
pub fn library_forward_and_backward(p: &Problem) -> autodiff::Result<(f32, Grads)> {
    let m = &p.mlp;
    let [w1, b1, w2, b2, x] = [&m.w1, &m.b1, &m.w2, &m.b2, &p.x].map(|t| Var::leaf(t.clone()));
    let y = Var::constant(p.y.clone());
    let out = x.matmul(&w1)?.add(&b1)?.relu()?.matmul(&w2)?.add(&b2)?;
    let loss = out.squeeze(1)?.sub(&y)?.sqr()?.mean_all()?;
    let g = loss.backward()?;
    let get = |v: &Var| {
        g.get(v)
            .cloned()
            .ok_or_else(|| autodiff::AutodiffError::invalid("lesson04", "missing gradient"))
    };
    Ok((
        loss.to_scalar()?,
        Grads {
            w1: get(&w1)?,
            b1: get(&b1)?,
            w2: get(&w2)?,
            b2: get(&b2)?,
            x: get(&x)?,
        },
    ))
}
