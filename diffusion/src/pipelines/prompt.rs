//! Prompts to text embeddings, as diffusers' `StableDiffusionPipeline.encode_prompt`.
//!
//! Each prompt is tokenized to 77 ids (bos, at most 75 tokens, eos, padding; a longer
//! prompt is cut and a warning names the part that was dropped) and encoded by CLIP:
//! `(B, 77) -> last_hidden_state (B, 77, D)`. With `n` images per prompt each row is
//! repeated `n` times in place (`p0, p0, p1, p1` for n = 2). For classifier-free
//! guidance the negative prompts (the empty prompt when none is given) are encoded the
//! same way; the UNet then sees the batch `[uncond; cond]`.
//!
//! [`slerp`] interpolates two embeddings (or two noise tensors) on the sphere, for the
//! course's prompt-interpolation homework:
//!
//! ```
//! use diffusion::pipelines::slerp;
//! use diffusion::Tensor;
//! let a = Tensor::from_vec(vec![1.0, 0.0], [2]).unwrap();
//! let b = Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap();
//! let mid = slerp(&a, &b, 0.5).unwrap().to_vec().unwrap();
//! // halfway along the quarter circle: (cos 45deg, sin 45deg)
//! assert!((mid[0] - 0.70710677).abs() < 1e-6 && (mid[1] - 0.70710677).abs() < 1e-6);
//! ```

use tensor::Tensor;

use crate::clip::{expand_multi_vector_tokens, load_textual_inversion};
use crate::error::{DiffusionError, Result};
use crate::pipelines::model::StableDiffusion;

/// CLIP's context length: bos + 75 tokens + eos.
pub const MAX_LENGTH: usize = 77;

/// Text embeddings for one generation: `cond` (B * n, 77, D) and, with guidance,
/// `uncond` of the same shape.
#[derive(Clone, Debug)]
pub struct PromptEmbeds {
    pub cond: Tensor,
    pub uncond: Option<Tensor>,
}

impl PromptEmbeds {
    /// Number of rows (images) the embeddings serve.
    pub fn batch(&self) -> usize {
        self.cond.dims().first().copied().unwrap_or(0)
    }

    /// The UNet's `encoder_hidden_states`: `[uncond; cond]` with guidance, else `cond`.
    pub fn unet_context(&self) -> Result<Tensor> {
        match &self.uncond {
            Some(u) => Ok(Tensor::cat(&[u, &self.cond], 0)?),
            None => Ok(self.cond.clone()),
        }
    }
}

impl StableDiffusion {
    /// Encode prompts to `last_hidden_state` (B, 77, D), warning on stderr about any
    /// prompt longer than 75 tokens (the cut part is named, as diffusers does).
    pub fn encode_text(&self, prompts: &[String]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(prompts.len() * MAX_LENGTH);
        for prompt in prompts {
            // Multi-vector textual-inversion tokens `<t>` become `<t> <t>_1 ...`.
            let prompt = &if self.tokenizer.added_tokens().is_empty() {
                prompt.clone()
            } else {
                expand_multi_vector_tokens(&self.tokenizer, prompt)?
            };
            let enc = self.tokenizer.encode_padded(prompt, MAX_LENGTH)?;
            if enc.truncated {
                eprintln!(
                    "warning: the following part of your input was truncated because CLIP can \
                     only handle sequences up to {MAX_LENGTH} tokens: {:?}",
                    self.tokenizer.truncated_text(prompt, MAX_LENGTH)?
                );
            }
            ids.extend(enc.ids);
        }
        let hidden = autodiff::no_grad(|| self.text_encoder.forward(&ids, prompts.len()))?;
        Ok(hidden.value().clone())
    }

    /// Load a textual-inversion embedding (diffusers' `learned_embeds.safetensors`)
    /// into the tokenizer and text encoder; returns the tokens added, which prompts
    /// can then use (`"a photo of <cat-toy>"`). `token` renames the file's token.
    pub fn load_textual_inversion(
        &mut self,
        path: impl AsRef<std::path::Path>,
        token: Option<&str>,
    ) -> Result<Vec<String>> {
        load_textual_inversion(path, token, &mut self.tokenizer, &mut self.text_encoder)
    }

    /// Embeddings for `prompts` (each repeated `num_images_per_prompt` times) and, when
    /// `guidance` is on, for `negative_prompts` (empty: the empty prompt for each; else
    /// one per prompt).
    pub fn encode_prompt(
        &self,
        prompts: &[String],
        negative_prompts: &[String],
        num_images_per_prompt: usize,
        guidance: bool,
    ) -> Result<PromptEmbeds> {
        if prompts.is_empty() || num_images_per_prompt == 0 {
            return Err(DiffusionError::invalid(
                "encode_prompt",
                "give at least one prompt and one image per prompt",
            ));
        }
        if !negative_prompts.is_empty() && negative_prompts.len() != prompts.len() {
            return Err(DiffusionError::invalid(
                "encode_prompt",
                format!(
                    "{} negative prompts for {} prompts: give none, or one per prompt",
                    negative_prompts.len(),
                    prompts.len()
                ),
            ));
        }
        let cond = repeat_rows(&self.encode_text(prompts)?, num_images_per_prompt)?;
        let uncond = if guidance {
            let negatives: Vec<String> = if negative_prompts.is_empty() {
                vec![String::new(); prompts.len()]
            } else {
                negative_prompts.to_vec()
            };
            Some(repeat_rows(
                &self.encode_text(&negatives)?,
                num_images_per_prompt,
            )?)
        } else {
            None
        };
        Ok(PromptEmbeds { cond, uncond })
    }
}

/// Repeat each row of dim 0 `n` times in place: rows (a, b), n = 2 -> (a, a, b, b).
pub fn repeat_rows(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let dims = x.dims().to_vec();
    let Some((&b, rest)) = dims.split_first() else {
        return Err(DiffusionError::invalid(
            "repeat_rows",
            "expected a batch dim",
        ));
    };
    let mut expanded = vec![b, n];
    expanded.extend_from_slice(rest);
    let mut out = vec![b * n];
    out.extend_from_slice(rest);
    Ok(x.unsqueeze(1)?
        .broadcast_as(expanded)?
        .contiguous()?
        .reshape(out)?)
}

/// Spherical interpolation between `v0` and `v1` (same shape) at `t` in [0, 1],
/// treating each tensor as one vector; nearly parallel vectors fall back to a
/// straight line (|cos| > 0.9995), as the usual diffusers recipe does.
pub fn slerp(v0: &Tensor, v1: &Tensor, t: f64) -> Result<Tensor> {
    if v0.dims() != v1.dims() {
        return Err(DiffusionError::invalid(
            "slerp",
            format!("shapes differ: {:?} and {:?}", v0.dims(), v1.dims()),
        ));
    }
    let (a, b) = (v0.to_vec()?, v1.to_vec()?);
    let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let cos = if na > 0.0 && nb > 0.0 {
        dot / (na * nb)
    } else {
        1.0
    };
    let (s0, s1) = if cos.abs() > 0.9995 {
        (1.0 - t, t)
    } else {
        let theta = cos.acos();
        let sin = theta.sin();
        (((1.0 - t) * theta).sin() / sin, (t * theta).sin() / sin)
    };
    let out = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| (s0 * x as f64 + s1 * y as f64) as f32)
        .collect();
    Ok(Tensor::from_vec(out, v0.shape().clone())?)
}
