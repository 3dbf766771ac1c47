//! Scaled dot-product attention the textbook way, the reference for
//! [`super::attention`] (UNet lesson): materialise the scores
//! `S = Q K^T * scale + mask` (`(.., Lq, Lk)`), take `softmax(S)` along the keys and
//! multiply by `V`. Built only from existing ops (`matmul`, `mul_scalar`, `add`,
//! `softmax`), so it is easy to trust, and it needs `Lq * Lk` floats per batch
//! item (1 GiB for SD's `(2, 8, 4096, 4096)` scores; the flash version needs a tile).
//!
//! Shapes as [`Tensor::scaled_dot_product_attention`]:
//! `q: (.., Lq, D)`, `k: (.., Lk, D)`, `v: (.., Lk, Dv)` -> `(.., Lq, Dv)`.
//!
//! ```
//! use tensor::Tensor;
//! let q = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], [2, 2]).unwrap();
//! let v = Tensor::from_vec(vec![1.0, 2.0], [2, 1]).unwrap();
//! // Causal: the first query sees only the first key.
//! let o = q.scaled_dot_product_attention_naive(&q, &v, None, None, true).unwrap();
//! let o = o.to_vec().unwrap();
//! assert_eq!(o[0], 1.0);
//! let w = 1.0 / (1.0 + (1.0 / 2f32.sqrt()).exp()); // second query: softmax([0, 1/sqrt 2])
//! assert!((o[1] - (w + 2.0 * (1.0 - w))).abs() < 1e-6);
//! ```

use super::attention::prepare;
use crate::error::Result;
use crate::tensor::Tensor;

impl Tensor {
    /// `softmax(self K^T * scale + mask) V` with the full score matrix in memory: the
    /// reference twin of [`Tensor::scaled_dot_product_attention`] (same arguments,
    /// same checks).
    pub fn scaled_dot_product_attention_naive(
        &self,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: Option<f32>,
        causal: bool,
    ) -> Result<Tensor> {
        let p = prepare(self, k, v, mask, scale)?;
        let mut s = p.q.matmul(&p.k.transpose(-2, -1)?)?.mul_scalar(p.scale)?;
        if let Some(m) = &p.mask {
            s = s.add(m)?;
        }
        if causal {
            let tri: Vec<f32> = (0..p.lq * p.lk)
                .map(|i| {
                    if i % p.lk.max(1) > i / p.lk.max(1) {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            s = s.add(&Tensor::from_vec(tri, [p.lq, p.lk])?)?;
        }
        s.softmax(-1)?.matmul(&p.v)
    }
}
