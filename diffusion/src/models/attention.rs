//! The UNet's transformer: image tokens attend to themselves and to the text
//! (`lessons/10-stable-diffusion`; diffusers `models/attention.py`
//! `BasicTransformerBlock`, `FeedForward`, `models/activations.py` `GEGLU`,
//! `models/transformers/transformer_2d.py` `Transformer2DModel`).
//!
//! - [`FeedForward`] (GEGLU): `x: (B, L, D)` -> `net.0.proj` to `(B, L, 2 * 4D)`, split
//!   into `(h, gate)`, `h * gelu(gate)` with the *exact* erf GELU, then `net.2` back to
//!   `(B, L, D)`.
//! - [`BasicTransformerBlock`]: `x += attn1(norm1(x))` (self-attention, or attention to
//!   the text when `only_cross_attention`), `x += attn2(norm2(x), context)`
//!   (cross-attention to `encoder_hidden_states: (B, S, D_ctx)`),
//!   `x += ff(norm3(x))`. LayerNorms use eps 1e-5; attention uses no q/k/v bias.
//! - [`Transformer2DModel`]: `x: (B, C, H, W)` -> GroupNorm (eps 1e-6) -> `proj_in` to
//!   `(B, H W, inner)` tokens -> blocks -> `proj_out` back to `(B, C, H, W)` + `x`.
//!   `proj_in`/`proj_out` are 1x1 convs in SD 1.x and Linear layers in SD 2.x
//!   (`use_linear_projection`); a 1x1 conv over channels *is* that matrix, so both run
//!   as one matmul over the `(B, C, H W)` view, with no transposed copy of the tokens.
//!
//! ```
//! use autodiff::Var;
//! use diffusion::models::attention::{Transformer2DConfig, Transformer2DModel};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! use tensor::Tensor;
//! let store = ParamStore::new();
//! let vb = VarBuilder::from_init(&store, WichmannHill::seed(2));
//! let cfg = Transformer2DConfig::new(2, 8, 16, 4, 12); // 2 heads x 8 = 16 channels
//! let t = Transformer2DModel::new(vb, &cfg).unwrap();
//! let x = Var::constant(Tensor::ones([1, 16, 3, 5]));
//! let ctx = Var::constant(Tensor::ones([1, 7, 12]));
//! assert_eq!(t.forward(&x, &ctx).unwrap().dims(), &[1, 16, 3, 5]);
//! assert!(store.names().contains(&"transformer_blocks.0.ff.net.0.proj.weight".to_string()));
//! ```

use autodiff::Var;
use nn::{
    AttentionConfig, GroupNorm, Init, LayerNorm, Linear, Module, MultiHeadAttention, Param,
    VarBuilder,
};

use crate::error::{DiffusionError, Result};

/// GEGLU feed-forward: `net.0.proj` (D -> 2 inner), gate, `net.2` (inner -> D).
#[derive(Clone, Debug)]
pub struct FeedForward {
    pub proj: Linear,
    pub out: Linear,
    pub inner_dim: usize,
}

impl FeedForward {
    /// `inner_dim = mult * dim` (mult 4 in SD).
    pub fn new(vb: VarBuilder, dim: usize, mult: usize) -> Result<Self> {
        let inner_dim = dim * mult;
        Ok(FeedForward {
            proj: Linear::new(vb.pp("net.0.proj"), dim, 2 * inner_dim, true)?,
            out: Linear::new(vb.pp("net.2"), inner_dim, dim, true)?,
            inner_dim,
        })
    }

    /// `(B, L, D) -> (B, L, D)`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let h = self.proj.forward(x)?;
        let value = h.narrow(-1, 0, self.inner_dim)?;
        let gate = h.narrow(-1, self.inner_dim, self.inner_dim)?;
        let h = value.mul(&gate.gelu()?)?;
        Ok(self.out.forward(&h)?)
    }
}

/// Self-attention, cross-attention and feed-forward, each pre-LayerNorm and residual.
#[derive(Clone, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: MultiHeadAttention,
    pub norm2: LayerNorm,
    pub attn2: MultiHeadAttention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
    pub only_cross_attention: bool,
}

impl BasicTransformerBlock {
    /// `dim = heads * head_dim`; the context has `cross_attention_dim` features.
    pub fn new(
        vb: VarBuilder,
        dim: usize,
        heads: usize,
        head_dim: usize,
        cross_attention_dim: usize,
        only_cross_attention: bool,
    ) -> Result<Self> {
        let attn1_cfg = AttentionConfig::diffusers(dim, heads, head_dim);
        let attn1_cfg = if only_cross_attention {
            attn1_cfg.with_context(cross_attention_dim)
        } else {
            attn1_cfg
        };
        let attn2_cfg =
            AttentionConfig::diffusers(dim, heads, head_dim).with_context(cross_attention_dim);
        Ok(BasicTransformerBlock {
            norm1: LayerNorm::new(vb.pp("norm1"), &[dim], 1e-5)?,
            attn1: MultiHeadAttention::new(vb.pp("attn1"), attn1_cfg)?,
            norm2: LayerNorm::new(vb.pp("norm2"), &[dim], 1e-5)?,
            attn2: MultiHeadAttention::new(vb.pp("attn2"), attn2_cfg)?,
            norm3: LayerNorm::new(vb.pp("norm3"), &[dim], 1e-5)?,
            ff: FeedForward::new(vb.pp("ff"), dim, 4)?,
            only_cross_attention,
        })
    }

    /// `x: (B, L, dim)`, `context: (B, S, cross_attention_dim)` -> `(B, L, dim)`.
    pub fn forward(&self, x: &Var, context: &Var) -> Result<Var> {
        let n = self.norm1.forward(x)?;
        let ctx1 = self.only_cross_attention.then_some(context);
        let x = self.attn1.forward_with(&n, ctx1, None)?.add(x)?;
        let n = self.norm2.forward(&x)?;
        let x = self.attn2.forward_with(&n, Some(context), None)?.add(&x)?;
        let n = self.norm3.forward(&x)?;
        Ok(self.ff.forward(&n)?.add(&x)?)
    }
}

/// Settings of a [`Transformer2DModel`] (diffusers' continuous-input case).
#[derive(Clone, Debug, PartialEq)]
pub struct Transformer2DConfig {
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    pub norm_num_groups: usize,
    pub cross_attention_dim: usize,
    pub num_layers: usize,
    pub use_linear_projection: bool,
    pub only_cross_attention: bool,
}

impl Transformer2DConfig {
    /// One layer, conv projections (SD 1.x).
    pub fn new(
        num_attention_heads: usize,
        attention_head_dim: usize,
        in_channels: usize,
        norm_num_groups: usize,
        cross_attention_dim: usize,
    ) -> Self {
        Transformer2DConfig {
            num_attention_heads,
            attention_head_dim,
            in_channels,
            norm_num_groups,
            cross_attention_dim,
            num_layers: 1,
            use_linear_projection: false,
            only_cross_attention: false,
        }
    }
}

/// A channel projection stored as a Linear `(out, in)` or a 1x1 conv `(out, in, 1, 1)`.
#[derive(Clone, Debug)]
pub struct Proj {
    pub weight: Param,
    pub bias: Param,
}

impl Proj {
    fn new(vb: VarBuilder, cin: usize, cout: usize, linear: bool) -> Result<Self> {
        let shape: Vec<usize> = if linear {
            vec![cout, cin]
        } else {
            vec![cout, cin, 1, 1]
        };
        let weight = vb.get("weight", &shape, Init::torch_default())?;
        let bias = vb.get("bias", &[cout], Init::torch_default_bias(&shape)?)?;
        Ok(Proj { weight, bias })
    }

    /// The weight as a matrix `(out, in)` (a free reshape of either layout).
    fn matrix(&self) -> Result<Var> {
        let w = self.weight.var();
        let (o, i) = (w.dims()[0], w.dims()[1]);
        Ok(w.reshape([o, i])?)
    }

    /// Channels-first `x: (B, in, N) -> (B, out, N)`: `W x + b`.
    fn forward_channels(&self, x: &Var) -> Result<Var> {
        let y = self.matrix()?.matmul(x)?;
        let b = self.bias.var().unsqueeze(-1)?;
        Ok(y.add(&b)?)
    }

    /// Channels-last `x: (B, N, in) -> (B, N, out)`: `x W^T + b`.
    fn forward_tokens(&self, x: &Var) -> Result<Var> {
        let y = x.matmul(&self.matrix()?.t()?)?;
        Ok(y.add(&self.bias.var())?)
    }
}

/// GroupNorm, projection to tokens, transformer blocks, projection back, residual.
#[derive(Clone, Debug)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Proj,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Proj,
    pub in_channels: usize,
    pub inner_dim: usize,
}

impl Transformer2DModel {
    pub fn new(vb: VarBuilder, cfg: &Transformer2DConfig) -> Result<Self> {
        let inner = cfg.num_attention_heads * cfg.attention_head_dim;
        if inner == 0 {
            return Err(DiffusionError::invalid(
                "Transformer2DModel",
                format!(
                    "{}: heads x head_dim must be positive, got {cfg:?}",
                    vb.prefix()
                ),
            ));
        }
        let lin = cfg.use_linear_projection;
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                BasicTransformerBlock::new(
                    vb.pp("transformer_blocks").pp(i),
                    inner,
                    cfg.num_attention_heads,
                    cfg.attention_head_dim,
                    cfg.cross_attention_dim,
                    cfg.only_cross_attention,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer2DModel {
            norm: GroupNorm::new(vb.pp("norm"), cfg.norm_num_groups, cfg.in_channels, 1e-6)?,
            proj_in: Proj::new(vb.pp("proj_in"), cfg.in_channels, inner, lin)?,
            transformer_blocks: blocks,
            proj_out: Proj::new(vb.pp("proj_out"), inner, cfg.in_channels, lin)?,
            in_channels: cfg.in_channels,
            inner_dim: inner,
        })
    }

    /// `x: (B, C, H, W)`, `context: (B, S, D_ctx)` -> `(B, C, H, W)`.
    pub fn forward(&self, x: &Var, context: &Var) -> Result<Var> {
        let [b, c, h, w] = *x.dims() else {
            return Err(DiffusionError::invalid(
                "Transformer2DModel",
                format!("expected (B, C, H, W), got {:?}", x.dims()),
            ));
        };
        // (B, C, H W) viewed as tokens (B, H W, C): a transpose, not a copy.
        let n = self.norm.forward(x)?.reshape([b, c, h * w])?;
        let mut tokens = self.proj_in.forward_tokens(&n.transpose(1, 2)?)?;
        for block in &self.transformer_blocks {
            tokens = block.forward(&tokens, context)?;
        }
        // W_out (C, inner) @ tokens^T (B, inner, H W) -> (B, C, H W), channels first.
        let out = self.proj_out.forward_channels(&tokens.transpose(1, 2)?)?;
        Ok(out.reshape([b, c, h, w])?.add(x)?)
    }
}
