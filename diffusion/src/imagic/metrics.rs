//! How an edit is measured on Fashion-MNIST (the report of `sd edit-report`, the
//! claims of `lessons/10-stable-diffusion`): did the content move to the target class,
//! and how much of the input image is left?
//!
//! - target probability: the evaluation classifier's softmax probability of the
//!   target class ([`crate::eval::classifier::FashionClassifier`]);
//! - pixel similarity: `1 - |x - x_in|_2 / |x_in|_2` on the 32x32 images in [0, 1]
//!   (1 for the input itself, 0 for a black image, negative when further away);
//! - feature cosine: the cosine of the classifier's 64 features of x and x_in.
//!
//! ```
//! use diffusion::imagic::metrics::{cosine, pixel_similarity};
//! let x_in = [0.0, 1.0, 1.0, 0.0];
//! assert_eq!(pixel_similarity(&x_in, &x_in), 1.0);
//! assert_eq!(pixel_similarity(&[0.0; 4], &x_in), 0.0);
//! assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
//! ```

use tensor::Tensor;

use crate::error::{DiffusionError, Result};
use crate::eval::classifier::FashionClassifier;

/// `1 - |x - reference| / |reference|` (Euclidean norms).
pub fn pixel_similarity(x: &[f32], reference: &[f32]) -> f64 {
    let d: f64 = x
        .iter()
        .zip(reference)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let r: f64 = reference.iter().map(|&b| f64::from(b).powi(2)).sum();
    if r == 0.0 {
        return if d == 0.0 { 1.0 } else { f64::NEG_INFINITY };
    }
    1.0 - (d / r).sqrt()
}

/// Cosine of two vectors (0 when one is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Softmax of each row of logits (B, K).
pub fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let k = logits.dims().get(1).copied().unwrap_or(1).max(1);
    Ok(logits
        .to_vec()?
        .chunks(k)
        .map(|row| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f64> = row.iter().map(|&x| f64::from(x - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        })
        .collect())
}

/// The measures of one edited image against its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EditScore {
    /// Classifier probability of the target class and of the source class.
    pub p_target: f64,
    pub p_source: f64,
    pub pixel_similarity: f64,
    pub feature_cosine: f64,
}

/// Score `images` (N, 1, H, W) in [-1, 1] against `input` (1, 1, H, W) in [-1, 1].
pub fn score_edits(
    classifier: &FashionClassifier,
    images: &Tensor,
    input: &Tensor,
    source: usize,
    target: usize,
) -> Result<Vec<EditScore>> {
    let unit = |t: &Tensor| -> Result<Tensor> { Ok(t.affine(0.5, 0.5)?.clamp(0.0, 1.0)?) };
    let (x, x_in) = (unit(images)?, unit(input)?);
    if x.dims().get(1..) != x_in.dims().get(1..) || x_in.dims().first() != Some(&1) {
        return Err(DiffusionError::invalid(
            "score_edits",
            format!(
                "images {:?} and input {:?} do not match",
                x.dims(),
                x_in.dims()
            ),
        ));
    }
    let (f, logits) = classifier.embed(&x)?;
    let (f_in, _) = classifier.embed(&x_in)?;
    let probs = softmax_rows(&logits)?;
    let (xv, inv, fv, finv) = (x.to_vec()?, x_in.to_vec()?, f.to_vec()?, f_in.to_vec()?);
    let per = inv.len();
    let width = finv.len();
    probs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let get = |row: &[f64], c: usize| {
                row.get(c)
                    .copied()
                    .ok_or_else(|| DiffusionError::invalid("score_edits", format!("no class {c}")))
            };
            Ok(EditScore {
                p_target: get(p, target)?,
                p_source: get(p, source)?,
                pixel_similarity: pixel_similarity(&xv[i * per..(i + 1) * per], &inv),
                feature_cosine: cosine(&fv[i * width..(i + 1) * width], &finv),
            })
        })
        .collect()
}
