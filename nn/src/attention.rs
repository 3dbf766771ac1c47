//! [`MultiHeadAttention`]: multi-head (self- or cross-) attention with separate
//! q, k, v and output projections, named as diffusers (`to_q`, `to_k`, `to_v`,
//! `to_out.0`) or as transformers' CLIP (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
//!
//! Shapes: `x: (B, L, query_dim)`, `context: (B, S, context_dim)` (self-attention
//! when absent) -> `(B, L, query_dim)`. Inside, with `H` heads of size `Dh`:
//! `q = x Wq^T: (B, L, H Dh) -> (B, H, L, Dh)`, the same for `k, v` from the context,
//! `o = softmax(q k^T / sqrt(Dh) + mask) v: (B, H, L, Dh) -> (B, L, H Dh)`, then the
//! output projection. `mask` is additive, broadcast to `(B, H, L, S)` (CLIP's causal
//! mask). Introduced with the course's attention lesson.
//!
//! ```
//! use autodiff::Var;
//! use nn::{AttentionConfig, Module, MultiHeadAttention, ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let vb = VarBuilder::from_init(&store, WichmannHill::seed(3));
//! let attn = MultiHeadAttention::new(vb.pp("attn1"), AttentionConfig::diffusers(8, 2, 4)).unwrap();
//! let x = Var::constant(Tensor::ones([1, 5, 8]));
//! assert_eq!(attn.forward(&x).unwrap().dims(), &[1, 5, 8]);
//! assert_eq!(store.names()[..2], ["attn1.to_q.weight", "attn1.to_k.weight"]);
//! assert_eq!(store.names()[4], "attn1.to_out.0.bias");
//! ```

use autodiff::Var;
use tensor::Tensor;

use crate::error::{NnError, Result};
use crate::linear::Linear;
use crate::module::Module;
use crate::var_builder::VarBuilder;

/// The sub-module names of the four projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionNames {
    pub q: &'static str,
    pub k: &'static str,
    pub v: &'static str,
    pub out: &'static str,
}

impl AttentionNames {
    pub const DIFFUSERS: AttentionNames = AttentionNames {
        q: "to_q",
        k: "to_k",
        v: "to_v",
        out: "to_out.0",
    };
    pub const CLIP: AttentionNames = AttentionNames {
        q: "q_proj",
        k: "k_proj",
        v: "v_proj",
        out: "out_proj",
    };
}

/// Sizes, biases and names of a [`MultiHeadAttention`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionConfig {
    pub query_dim: usize,
    /// Size of the context's features; `None` means `query_dim` (self-attention).
    pub context_dim: Option<usize>,
    pub heads: usize,
    pub head_dim: usize,
    pub qkv_bias: bool,
    pub out_bias: bool,
    pub names: AttentionNames,
}

impl AttentionConfig {
    /// diffusers' `Attention`: no q/k/v bias, an output bias, `to_*` names.
    pub fn diffusers(query_dim: usize, heads: usize, head_dim: usize) -> AttentionConfig {
        AttentionConfig {
            query_dim,
            context_dim: None,
            heads,
            head_dim,
            qkv_bias: false,
            out_bias: true,
            names: AttentionNames::DIFFUSERS,
        }
    }

    /// CLIP's `CLIPAttention`: biases everywhere, `*_proj` names, `head_dim = dim / heads`.
    pub fn clip(embed_dim: usize, heads: usize) -> AttentionConfig {
        AttentionConfig {
            query_dim: embed_dim,
            context_dim: None,
            heads,
            head_dim: embed_dim / heads.max(1),
            qkv_bias: true,
            out_bias: true,
            names: AttentionNames::CLIP,
        }
    }

    /// Cross-attention to a context of `dim` features.
    pub fn with_context(mut self, dim: usize) -> AttentionConfig {
        self.context_dim = Some(dim);
        self
    }
}

/// Multi-head attention with separate projections.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
    pub head_dim: usize,
}

impl MultiHeadAttention {
    pub fn new(vb: VarBuilder, cfg: AttentionConfig) -> Result<MultiHeadAttention> {
        if cfg.heads == 0 || cfg.head_dim == 0 {
            return Err(NnError::invalid(
                "MultiHeadAttention",
                format!(
                    "{}: heads ({}) and head_dim ({}) must be positive",
                    vb.prefix(),
                    cfg.heads,
                    cfg.head_dim
                ),
            ));
        }
        let inner = cfg.heads * cfg.head_dim;
        let ctx = cfg.context_dim.unwrap_or(cfg.query_dim);
        let n = cfg.names;
        Ok(MultiHeadAttention {
            to_q: Linear::new(vb.pp(n.q), cfg.query_dim, inner, cfg.qkv_bias)?,
            to_k: Linear::new(vb.pp(n.k), ctx, inner, cfg.qkv_bias)?,
            to_v: Linear::new(vb.pp(n.v), ctx, inner, cfg.qkv_bias)?,
            to_out: Linear::new(vb.pp(n.out), inner, cfg.query_dim, cfg.out_bias)?,
            heads: cfg.heads,
            head_dim: cfg.head_dim,
        })
    }

    /// `(B, T, H Dh) -> (B, H, T, Dh)`.
    fn split_heads(&self, t: &Var) -> Result<Var> {
        let (b, len) = batch_len(t)?;
        Ok(t.reshape([b, len, self.heads, self.head_dim])?
            .permute(&[0, 2, 1, 3])?)
    }

    /// `x: (B, L, query_dim)`, `context: (B, S, context_dim)` or `None`, additive
    /// `mask` broadcast to `(B, H, L, S)` -> `(B, L, query_dim)`.
    pub fn forward_with(
        &self,
        x: &Var,
        context: Option<&Var>,
        mask: Option<&Tensor>,
    ) -> Result<Var> {
        let ctx = context.unwrap_or(x);
        let (b, len) = batch_len(x)?;
        let q = self.split_heads(&self.to_q.forward(x)?)?;
        let k = self.split_heads(&self.to_k.forward(ctx)?)?;
        let v = self.split_heads(&self.to_v.forward(ctx)?)?;
        let o = Var::scaled_dot_product_attention(&q, &k, &v, mask, None)?;
        let o = o
            .permute(&[0, 2, 1, 3])?
            .reshape([b, len, self.heads * self.head_dim])?;
        self.to_out.forward(&o)
    }
}

fn batch_len(t: &Var) -> Result<(usize, usize)> {
    match t.dims() {
        &[b, len, _] => Ok((b, len)),
        d => Err(NnError::invalid(
            "MultiHeadAttention",
            format!("expected (B, L, features), got shape {d:?}"),
        )),
    }
}

impl Module for MultiHeadAttention {
    /// Self-attention: `x: (B, L, query_dim) -> (B, L, query_dim)`.
    fn forward(&self, x: &Var) -> Result<Var> {
        self.forward_with(x, None, None)
    }
}
