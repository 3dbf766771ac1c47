//! Losses, each a scalar `Var` to call `backward` on, and the accuracy metric.
//!
//! - [`mse_loss`]: `mean((pred - target)^2)` over every element (`F.mse_loss`).
//! - [`cross_entropy`]: logits `(N, C)` and integer targets `(N,)`:
//!   `-mean_i log_softmax(logits)[i, t_i]` (`F.cross_entropy`, mean reduction). The
//!   picking of `t_i` is a product with a constant one-hot mask, so backward is
//!   `softmax - onehot` divided by N.
//! - [`kl_diag_gaussian`]: `KL(N(mean, exp(logvar)) || N(0, 1))` for a diagonal
//!   Gaussian `(B, *)`: per sample `0.5 * sum(mean^2 + exp(logvar) - 1 - logvar)`
//!   over the non-batch dims (diffusers' `DiagonalGaussianDistribution.kl()`),
//!   averaged over the batch.
//!
//! Introduced with the course's loss functions (cross-entropy from log-softmax).
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! // Two equal logits: log_softmax = ln(1/2), so the loss is ln 2.
//! let logits = Var::leaf(Tensor::zeros([1, 2]));
//! let loss = nn::cross_entropy(&logits, &[1]).unwrap();
//! assert!((loss.to_scalar().unwrap() - std::f32::consts::LN_2).abs() < 1e-6);
//! let g = loss.backward().unwrap();                       // softmax - onehot
//! assert_eq!(g.get(&logits).unwrap().to_vec().unwrap(), vec![0.5, -0.5]);
//! ```

use autodiff::Var;
use tensor::Tensor;

use crate::error::{NnError, Result};

/// `mean((pred - target)^2)`; `target` broadcasts to `pred`.
pub fn mse_loss(pred: &Var, target: &Var) -> Result<Var> {
    Ok(pred.sub(target)?.sqr()?.mean_all()?)
}

/// The constant `(N, C)` one-hot of `targets`, checked against `C`.
fn one_hot(op: &'static str, targets: &[usize], classes: usize) -> Result<Tensor> {
    let mut data = vec![0.0; targets.len() * classes];
    for (i, &t) in targets.iter().enumerate() {
        if t >= classes {
            return Err(NnError::invalid(
                op,
                format!("target {t} at position {i} is out of range for {classes} classes"),
            ));
        }
        data[i * classes + t] = 1.0;
    }
    Ok(Tensor::from_vec(data, [targets.len(), classes])?)
}

fn check_logits(op: &'static str, logits: &Var, targets: &[usize]) -> Result<(usize, usize)> {
    match logits.dims() {
        &[n, c] if n == targets.len() && n > 0 => Ok((n, c)),
        d => Err(NnError::invalid(
            op,
            format!(
                "expected logits (N, C) with N = {} targets (N > 0), got shape {d:?}",
                targets.len()
            ),
        )),
    }
}

/// Cross-entropy of `logits: (N, C)` against class indices `targets: (N,)`, mean
/// over the batch.
pub fn cross_entropy(logits: &Var, targets: &[usize]) -> Result<Var> {
    let (_, c) = check_logits("cross_entropy", logits, targets)?;
    let mask = Var::constant(one_hot("cross_entropy", targets, c)?);
    let picked = logits.log_softmax(-1)?.mul(&mask)?.sum(&[-1], false)?; // (N,)
    Ok(picked.mean_all()?.neg()?)
}

/// KL divergence of `N(mean, exp(logvar))` from `N(0, 1)`, summed over the non-batch
/// dims and averaged over the batch: `mean, logvar: (B, *)` -> scalar.
pub fn kl_diag_gaussian(mean: &Var, logvar: &Var) -> Result<Var> {
    if mean.dims() != logvar.dims() || mean.rank() == 0 {
        return Err(NnError::invalid(
            "kl_diag_gaussian",
            format!(
                "mean {:?} and logvar {:?} must have one shape (B, *)",
                mean.dims(),
                logvar.dims()
            ),
        ));
    }
    let terms = mean
        .sqr()?
        .add(&logvar.exp()?)?
        .sub(logvar)?
        .add_scalar(-1.0)?; // (B, *)
    let rest: Vec<isize> = (1..mean.rank() as isize).collect();
    let per_sample = if rest.is_empty() {
        terms
    } else {
        terms.sum(&rest, false)? // (B,)
    };
    Ok(per_sample.mean_all()?.mul_scalar(0.5)?)
}

/// Fraction of rows of `logits: (N, C)` whose argmax is the target (first maximum
/// wins ties, as `argmax`).
pub fn accuracy(logits: &Tensor, targets: &[usize]) -> Result<f32> {
    let (n, _) = match logits.dims() {
        &[n, c] if n == targets.len() => (n, c),
        d => {
            return Err(NnError::invalid(
                "accuracy",
                format!(
                    "expected logits (N, C) with N = {}, got {d:?}",
                    targets.len()
                ),
            ))
        }
    };
    if n == 0 {
        return Ok(0.0);
    }
    Ok(correct(logits, targets)? as f32 / n as f32)
}

/// How many rows of `logits: (N, C)` have their argmax at the target.
pub fn correct(logits: &Tensor, targets: &[usize]) -> Result<usize> {
    let pred = logits.argmax(-1, false)?.to_vec()?;
    if pred.len() != targets.len() {
        return Err(NnError::invalid(
            "accuracy",
            format!("{} predictions for {} targets", pred.len(), targets.len()),
        ));
    }
    Ok(pred
        .iter()
        .zip(targets)
        .filter(|(&p, &t)| p as usize == t)
        .count())
}
