//! The CLIP text encoder, opened up: token + position embeddings, pre-norm
//! transformer layers whose self-attention carries a causal mask, quick_gelu in the
//! MLP, and a final layer norm (transformers `models/clip/modeling_clip.py`; the
//! library's `diffusion/src/clip/text_model.rs`).
//!
//! ```text
//! ids (B, L) -> token_embedding[ids] + position_embedding[0..L]        (B, L, D)
//!   -> layers: h += attn(ln1(h), causal mask);  h += fc2(quick_gelu(fc1(ln2(h))))
//!   -> final_layer_norm                                                (B, L, D)
//! ```

use std::path::PathBuf;

use autodiff::{no_grad, Var};
use diffusion::clip::text_model::causal_mask;
use diffusion::clip::ClipTextModel;
use diffusion::Result;
use nn::{Module, ParamStore};
use tensor::Tensor;

/// The tiny random-weight CLIP text encoder of `fixtures/tiny-sd` (D = 32, 2 layers,
/// 4 heads, CLIP's 49,408-token vocabulary and 77 positions).
pub fn tiny_text_encoder_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny-sd/text_encoder")
}

/// Load the tiny text encoder.
pub fn load_tiny() -> Result<ClipTextModel> {
    ClipTextModel::from_dir(tiny_text_encoder_dir(), &ParamStore::new())
}

/// The encoder run step by step with a chosen additive `mask` (L, L): embeddings,
/// every layer, final layer norm. With `causal_mask(L)` this is `model.forward`.
pub fn forward_with_mask(
    model: &ClipTextModel,
    ids: &[u32],
    batch: usize,
    mask: &Tensor,
) -> Result<Tensor> {
    let len = ids.len() / batch.max(1);
    no_grad(|| -> Result<Tensor> {
        let mut h = model.embeddings.forward(ids, batch, len)?;
        for layer in &model.layers {
            h = layer.forward(&h, mask)?;
        }
        Ok(model.final_layer_norm.forward(&h)?.value().clone())
    })
}

/// An all-zero mask (L, L): every position sees every other one.
pub fn no_mask(len: usize) -> Result<Tensor> {
    Ok(Tensor::zeros([len, len]))
}

/// Layer 0's attention probabilities for one sequence, computed with loops from the
/// layer's own projections: `softmax(q k^T / sqrt(Dh) + mask)`, `(H, L, L)` flattened,
/// and the attention output `(L, D)` after `out_proj`.
pub fn layer0_attention_by_hand(model: &ClipTextModel, ids: &[u32]) -> Result<(Vec<f32>, Tensor)> {
    let len = ids.len();
    let layer = model.layers.first().ok_or_else(|| {
        diffusion::DiffusionError::invalid("layer0_attention_by_hand", "no layers")
    })?;
    let attn = &layer.self_attn;
    let (heads, dh) = (attn.heads, attn.head_dim);
    no_grad(|| -> Result<(Vec<f32>, Tensor)> {
        let x = layer
            .layer_norm1
            .forward(&model.embeddings.forward(ids, 1, len)?)?;
        let q = attn.to_q.forward(&x)?.value().to_vec()?; // (L, H Dh)
        let k = attn.to_k.forward(&x)?.value().to_vec()?;
        let v = attn.to_v.forward(&x)?.value().to_vec()?;
        let d = heads * dh;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut probs = vec![0f32; heads * len * len];
        let mut o = vec![0f32; len * d];
        for h in 0..heads {
            for i in 0..len {
                let row = &mut probs[(h * len + i) * len..(h * len + i + 1) * len];
                for (j, p) in row.iter_mut().enumerate() {
                    *p = if j > i {
                        f32::NEG_INFINITY // the causal mask: no looking ahead
                    } else {
                        (0..dh)
                            .map(|c| q[i * d + h * dh + c] * k[j * d + h * dh + c])
                            .sum::<f32>()
                            * scale
                    };
                }
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let z: f32 = row.iter().map(|s| (s - m).exp()).sum();
                for p in row.iter_mut() {
                    *p = (*p - m).exp() / z;
                }
                for c in 0..dh {
                    o[i * d + h * dh + c] = (0..len).map(|j| row[j] * v[j * d + h * dh + c]).sum();
                }
            }
        }
        let o = Var::constant(Tensor::from_vec(o, [1, len, d])?);
        Ok((probs, attn.to_out.forward(&o)?.value().clone()))
    })
}

/// Layer 0's attention output as the library computes it (flash attention, causal mask).
pub fn layer0_attention_library(model: &ClipTextModel, ids: &[u32]) -> Result<Tensor> {
    let layer = model.layers.first().ok_or_else(|| {
        diffusion::DiffusionError::invalid("layer0_attention_library", "no layers")
    })?;
    no_grad(|| -> Result<Tensor> {
        let x = layer
            .layer_norm1
            .forward(&model.embeddings.forward(ids, 1, ids.len())?)?;
        let mask = causal_mask(ids.len())?;
        Ok(layer
            .self_attn
            .forward_with(&x, None, Some(&mask))?
            .value()
            .clone())
    })
}

/// `quick_gelu(x) = x sigmoid(1.702 x)`, OpenAI CLIP's cheap GELU.
pub fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + (-1.702 * x).exp())
}

/// Largest |a - b| over two equal-length slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
