//! Evaluating the Fashion-MNIST Stable Diffusion (issue 7): a classifier trained on
//! real images ([`classifier`]) labels generated ones, giving per-class accuracy for
//! the prompt "a photo of {class}", a diversity measure, and a Frechet distance
//! between real and generated images in the classifier's feature space ([`fid`]).
//! The `sd eval` command runs it (`diffusion/src/bin/sd/eval.rs`).
//!
//! ```
//! use diffusion::eval::mean_pairwise_distance;
//! // Three points on a line at 0, 1, 3: distances 1, 3, 2.
//! let d = mean_pairwise_distance(&[0.0, 1.0, 3.0], 1);
//! assert!((d - 2.0).abs() < 1e-12);
//! ```

pub mod classifier;
pub mod fid;
pub mod sampling;

/// Mean Euclidean distance over all pairs of the rows (width `d`) of `x`: the
/// diversity of a set of samples (0 when they are all the same).
pub fn mean_pairwise_distance(x: &[f32], d: usize) -> f64 {
    let rows: Vec<&[f32]> = x.chunks(d.max(1)).collect();
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let d2: f64 = rows[i]
                .iter()
                .zip(rows[j])
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum();
            sum += d2.sqrt();
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        sum / pairs as f64
    }
}
