//! A Frechet distance between two sets of feature vectors (FID's formula, here on the
//! evaluation classifier's 64 features instead of Inception's 2048): fit a Gaussian
//! to each set and take
//!
//! `d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`,
//!
//! where both square roots are of symmetric positive semi-definite matrices, computed
//! from a symmetric eigen-decomposition by cyclic Jacobi rotations ([`jacobi_eigen`]),
//! written here (no LAPACK): `A = V diag(w) V^T`, `A^1/2 = V diag(sqrt(max(w, 0))) V^T`.
//! This is the value `pytorch-fid`'s `calculate_frechet_distance` returns (which uses
//! `scipy.linalg.sqrtm(S1 S2)`; the trace of that root equals the one above).
//!
//! ```
//! use diffusion::eval::fid::{frechet_distance, jacobi_eigen};
//! let (w, _) = jacobi_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
//! let mut w = w; w.sort_by(f64::total_cmp);
//! assert!((w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12);
//! // N(0, I) vs N(1, 4 I) in 2-D: |mu|^2 = 2, trace term 2 * (1 + 4 - 2 * 2) = 2.
//! let d = frechet_distance(&[0.0, 0.0], &[1.0, 0.0, 0.0, 1.0], &[1.0, 1.0], &[4.0, 0.0, 0.0, 4.0], 2).unwrap();
//! assert!((d - 4.0).abs() < 1e-9);
//! ```

use crate::error::{DiffusionError, Result};

/// Eigenvalues and eigenvectors (columns of the row-major `n x n` result) of the
/// symmetric row-major matrix `a`, by cyclic Jacobi sweeps until the off-diagonal
/// mass is below `1e-24` of the total (at most 100 sweeps).
pub fn jacobi_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if a.len() != n * n {
        return Err(DiffusionError::invalid(
            "jacobi_eigen",
            format!("{} values for a {n}x{n} matrix", a.len()),
        ));
    }
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum();
        if off <= 1e-24 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                // Rotation angle that zeroes (p, q): tan(2 theta) = 2 apq / (aqq - app).
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    Ok(((0..n).map(|i| m[i * n + i]).collect(), v))
}

/// `V diag(f(w)) V^T` for the eigen-decomposition `(w, V)`.
fn reassemble(w: &[f64], v: &[f64], n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let fw: Vec<f64> = w.iter().map(|&x| f(x)).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n).map(|k| v[i * n + k] * fw[k] * v[j * n + k]).sum();
        }
    }
    out
}

/// The square root of a symmetric positive semi-definite matrix (negative
/// eigenvalues from rounding are clamped to 0).
pub fn sqrtm_psd(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let (w, v) = jacobi_eigen(a, n)?;
    Ok(reassemble(&w, &v, n, |x| x.max(0.0).sqrt()))
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// Mean and (unbiased, N - 1) covariance of `rows` vectors of width `d`.
pub fn mean_cov(x: &[f32], d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = x.len() / d.max(1);
    if n < 2 || x.len() != n * d {
        return Err(DiffusionError::invalid(
            "mean_cov",
            format!("need at least 2 rows of width {d}, got {} values", x.len()),
        ));
    }
    let mut mu = vec![0.0; d];
    for row in x.chunks(d) {
        for (m, &v) in mu.iter_mut().zip(row) {
            *m += f64::from(v) / n as f64;
        }
    }
    let mut cov = vec![0.0; d * d];
    for row in x.chunks(d) {
        for i in 0..d {
            let di = f64::from(row[i]) - mu[i];
            for j in 0..d {
                cov[i * d + j] += di * (f64::from(row[j]) - mu[j]);
            }
        }
    }
    cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
    Ok((mu, cov))
}

/// The Frechet distance `d^2` between `N(mu1, s1)` and `N(mu2, s2)` in `n` dims.
pub fn frechet_distance(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64], n: usize) -> Result<f64> {
    if mu1.len() != n || mu2.len() != n || s1.len() != n * n || s2.len() != n * n {
        return Err(DiffusionError::invalid(
            "frechet_distance",
            "mismatched sizes",
        ));
    }
    let r1 = sqrtm_psd(s1, n)?;
    let mut m = matmul(&matmul(&r1, s2, n), &r1, n);
    // Symmetrise the rounding away before the second decomposition.
    for i in 0..n {
        for j in i + 1..n {
            let avg = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = avg;
            m[j * n + i] = avg;
        }
    }
    let (w, _) = jacobi_eigen(&m, n)?;
    let tr_covmean: f64 = w.iter().map(|x| x.max(0.0).sqrt()).sum();
    let diff: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr1: f64 = (0..n).map(|i| s1[i * n + i]).sum();
    let tr2: f64 = (0..n).map(|i| s2[i * n + i]).sum();
    Ok(diff + tr1 + tr2 - 2.0 * tr_covmean)
}

/// The Frechet distance between two sets of feature rows of width `d`.
pub fn frechet_distance_of(a: &[f32], b: &[f32], d: usize) -> Result<f64> {
    let (m1, s1) = mean_cov(a, d)?;
    let (m2, s2) = mean_cov(b, d)?;
    frechet_distance(&m1, &s1, &m2, &s2, d)
}
