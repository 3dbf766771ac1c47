//! [`ClipTextModel`]: transformers' `CLIPTextModel` (`models/clip/modeling_clip.py`),
//! the text encoder of Stable Diffusion, built from `nn` modules under transformers'
//! checkpoint names.
//!
//! ```text
//! ids (B, L)                      L <= max_position_embeddings (77)
//!  -> token_embedding[ids] + position_embedding[0..L]           (B, L, D)
//!  -> num_hidden_layers x  h = h + self_attn(layer_norm1(h), causal mask)
//!                          h = h + fc2(act(fc1(layer_norm2(h))))
//!  -> final_layer_norm  = last_hidden_state                     (B, L, D)
//! ```
//!
//! Keys: `text_model.embeddings.{token,position}_embedding.weight`,
//! `text_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}`,
//! `...layers.{i}.layer_norm{1,2}`, `...layers.{i}.mlp.fc{1,2}`,
//! `text_model.final_layer_norm`. An old checkpoint's `position_ids` buffer is skipped.
//! The causal mask lets position `i` attend to positions `<= i` only, so the
//! embedding of a word depends on the words before it, never on the padding after.
//!
//! Textual inversion adds rows to the token embedding
//! ([`ClipTextModel::add_token_embedding`]); they live in their own parameters,
//! `...token_embedding.added.{k}`, so the checkpoint keys stay transformers' and a
//! training run can freeze everything but them. Introduced in
//! `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::clip::{ClipTextConfig, ClipTextModel};
//! use nn::{ParamStore, VarBuilder};
//! use tensor::random::WichmannHill;
//! let cfg = ClipTextConfig { vocab_size: 100, hidden_size: 8, intermediate_size: 16,
//!     num_hidden_layers: 2, num_attention_heads: 2, max_position_embeddings: 77,
//!     ..ClipTextConfig::default() };
//! let store = ParamStore::new();
//! let model = ClipTextModel::new(VarBuilder::from_init(&store, WichmannHill::seed(1)), &cfg).unwrap();
//! let ids = [49u32, 20, 7, 99, 49, 3]; // two prompts of 3 ids
//! let h = autodiff::no_grad(|| model.forward(&ids, 2)).unwrap();
//! assert_eq!(h.dims(), &[2, 3, 8]);
//! assert_eq!(store.len(), 4 + 2 * 16); // embeddings, final norm, 16 tensors a layer
//! ```

use autodiff::Var;
use nn::{
    Activation, AttentionConfig, Embedding, LayerNorm, Linear, Module, MultiHeadAttention, Param,
    ParamStore, VarBuilder,
};
use tensor::io::SafeTensorsFile;
use tensor::Tensor;

use super::config::ClipTextConfig;
use crate::error::{DiffusionError, Result};

/// The token table's key below `text_model.`.
const TOKEN_EMBEDDING: &str = "embeddings.token_embedding.weight";

/// Token and position embeddings (`CLIPTextEmbeddings`).
#[derive(Debug, Clone)]
pub struct ClipTextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    /// Textual-inversion rows, ids `vocab_size + k`.
    pub added: Vec<Param>,
    store: ParamStore,
    added_prefix: String,
}

impl ClipTextEmbeddings {
    pub fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<ClipTextEmbeddings> {
        vb.skip("position_ids");
        let tok = vb.pp("token_embedding");
        Ok(ClipTextEmbeddings {
            token_embedding: Embedding::new(tok.clone(), cfg.vocab_size, cfg.hidden_size)?,
            position_embedding: Embedding::new(
                vb.pp("position_embedding"),
                cfg.max_position_embeddings,
                cfg.hidden_size,
            )?,
            added: Vec::new(),
            store: vb.store().clone(),
            added_prefix: tok.path("added"),
        })
    }

    /// Vocabulary rows (without the added ones).
    pub fn vocab_size(&self) -> usize {
        self.token_embedding.weight.dims()[0]
    }

    /// `ids: (B, L)` row-major -> `(B, L, D)`, token plus position embedding.
    pub fn forward(&self, ids: &[u32], batch: usize, len: usize) -> Result<Var> {
        let vocab = self.vocab_size();
        let total = vocab + self.added.len();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= total) {
            return Err(DiffusionError::invalid(
                "ClipTextModel",
                format!("token id {bad} is outside the embedding table of {total} rows ({vocab} + {} added)", self.added.len()),
            ));
        }
        let shape = [batch, len];
        let base_ids: Vec<usize> = ids
            .iter()
            .map(|&i| if (i as usize) < vocab { i as usize } else { 0 })
            .collect();
        let mut tokens = self.token_embedding.lookup(&base_ids, &shape)?;
        if ids.iter().any(|&i| i as usize >= vocab) {
            // Rows of added tokens: take them from the added table and blend with a
            // 0/1 mask, so gradients reach exactly the rows that were used.
            let rows: Vec<Var> = self.added.iter().map(Param::var).collect();
            let table = Var::cat(&rows.iter().collect::<Vec<_>>(), 0)?;
            let extra_ids: Vec<usize> = ids
                .iter()
                .map(|&i| (i as usize).saturating_sub(vocab).min(self.added.len() - 1))
                .collect();
            let extra = Var::embedding_with_shape(&table, &extra_ids, &shape)?;
            let m: Vec<f32> = ids
                .iter()
                .map(|&i| f32::from(u8::from(i as usize >= vocab)))
                .collect();
            let m = Var::constant(Tensor::from_vec(m, [batch, len, 1])?);
            let keep = Var::constant(Tensor::ones([batch, len, 1])).sub(&m)?;
            tokens = tokens.mul(&keep)?.add(&extra.mul(&m)?)?;
        }
        let positions: Vec<usize> = (0..len).collect();
        let pos = self.position_embedding.lookup(&positions, &[1, len])?;
        Ok(tokens.add(&pos)?)
    }

    /// Append one row (`(D,)` or `(1, D)`) for a new token; returns its id.
    pub fn add_row(&mut self, embedding: &Tensor) -> Result<u32> {
        let d = self.token_embedding.weight.dims()[1];
        if embedding.numel() != d || embedding.rank() > 2 {
            return Err(DiffusionError::invalid(
                "ClipTextModel::add_token_embedding",
                format!(
                    "expected an embedding of shape ({d},) or (1, {d}), got {:?}",
                    embedding.dims()
                ),
            ));
        }
        let k = self.added.len();
        let row = embedding.reshape([1, d])?.contiguous()?;
        let param = self
            .store
            .insert(format!("{}.{k}", self.added_prefix), row)?;
        self.added.push(param);
        Ok((self.vocab_size() + k) as u32)
    }

    /// The whole token table `(vocab + added, D)`, as transformers' resized
    /// `get_input_embeddings().weight`.
    pub fn token_embedding_weight(&self) -> Result<Tensor> {
        let mut rows = vec![self.token_embedding.weight.value()];
        rows.extend(self.added.iter().map(Param::value));
        Ok(Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)?)
    }
}

/// One pre-norm transformer block (`CLIPEncoderLayer`).
#[derive(Debug, Clone)]
pub struct ClipEncoderLayer {
    pub self_attn: MultiHeadAttention,
    pub layer_norm1: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub layer_norm2: LayerNorm,
    pub activation: Activation,
}

impl ClipEncoderLayer {
    pub fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<ClipEncoderLayer> {
        let d = cfg.hidden_size;
        let attn = AttentionConfig::clip(d, cfg.num_attention_heads);
        Ok(ClipEncoderLayer {
            self_attn: MultiHeadAttention::new(vb.pp("self_attn"), attn)?,
            layer_norm1: LayerNorm::new(vb.pp("layer_norm1"), &[d], cfg.layer_norm_eps)?,
            fc1: Linear::new(vb.pp("mlp").pp("fc1"), d, cfg.intermediate_size, true)?,
            fc2: Linear::new(vb.pp("mlp").pp("fc2"), cfg.intermediate_size, d, true)?,
            layer_norm2: LayerNorm::new(vb.pp("layer_norm2"), &[d], cfg.layer_norm_eps)?,
            activation: cfg.hidden_act.activation(),
        })
    }

    /// `h: (B, L, D)`, additive `mask: (L, L)` -> `(B, L, D)`.
    pub fn forward(&self, h: &Var, mask: &Tensor) -> Result<Var> {
        let x = self.layer_norm1.forward(h)?;
        let h = h.add(&self.self_attn.forward_with(&x, None, Some(mask))?)?;
        let x = self.layer_norm2.forward(&h)?;
        let x = self
            .fc2
            .forward(&self.activation.forward(&self.fc1.forward(&x)?)?)?;
        Ok(h.add(&x)?)
    }
}

/// The text transformer (see the module docs).
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    pub embeddings: ClipTextEmbeddings,
    pub layers: Vec<ClipEncoderLayer>,
    pub final_layer_norm: LayerNorm,
    pub config: ClipTextConfig,
}

/// Additive causal mask `(L, L)`: 0 where key <= query, -inf above the diagonal.
pub fn causal_mask(len: usize) -> Result<Tensor> {
    let data = (0..len * len)
        .map(|i| {
            if i % len > i / len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(data, [len, len])?)
}

impl ClipTextModel {
    /// Build under `vb.pp("text_model")` (random init or loaded weights): the keys of
    /// the SD 1.x/2.x checkpoints.
    pub fn new(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<ClipTextModel> {
        ClipTextModel::new_flat(vb.pp("text_model"), cfg)
    }

    /// Build directly under `vb`, without the `text_model.` level: the keys that
    /// transformers 5's `save_pretrained` writes (`embeddings.token_embedding.weight`).
    pub fn new_flat(vb: VarBuilder, cfg: &ClipTextConfig) -> Result<ClipTextModel> {
        cfg.validate()?;
        let embeddings = ClipTextEmbeddings::new(vb.pp("embeddings"), cfg)?;
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::new(layers_vb.pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipTextModel {
            embeddings,
            layers,
            final_layer_norm: LayerNorm::new(
                vb.pp("final_layer_norm"),
                &[cfg.hidden_size],
                cfg.layer_norm_eps,
            )?,
            config: cfg.clone(),
        })
    }

    /// Load a diffusers `text_encoder/` folder: `config.json` and
    /// `model.safetensors` (f32, f16 or bf16), every key used (`position_ids` aside).
    /// Keys with or without the `text_model.` prefix both load.
    pub fn from_dir(dir: impl AsRef<std::path::Path>, store: &ParamStore) -> Result<ClipTextModel> {
        let dir = dir.as_ref();
        let cfg = ClipTextConfig::from_file(dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(DiffusionError::io(
                &weights,
                "missing (the text encoder's weights)",
            ));
        }
        let flat =
            !SafeTensorsFile::open(&weights)?.contains(&format!("text_model.{TOKEN_EMBEDDING}"));
        let vb = VarBuilder::from_safetensors(store, &weights)?;
        let model = if flat {
            ClipTextModel::new_flat(vb.clone(), &cfg)?
        } else {
            ClipTextModel::new(vb.clone(), &cfg)?
        };
        vb.finish()?;
        Ok(model)
    }

    /// `ids: (B, L)` row-major (`batch` rows of `L = ids.len() / batch`) ->
    /// `last_hidden_state: (B, L, hidden_size)`.
    pub fn forward(&self, ids: &[u32], batch: usize) -> Result<Var> {
        self.forward_clip_skip(ids, batch, 0)
    }

    /// Like [`ClipTextModel::forward`], skipping the last `clip_skip` layers before
    /// `final_layer_norm` (diffusers' `clip_skip`: `hidden_states[-(clip_skip + 1)]`).
    pub fn forward_clip_skip(&self, ids: &[u32], batch: usize, clip_skip: usize) -> Result<Var> {
        let op = "ClipTextModel::forward";
        if batch == 0 || ids.is_empty() || !ids.len().is_multiple_of(batch) {
            return Err(DiffusionError::invalid(
                op,
                format!("{} ids do not split into {batch} non-empty rows", ids.len()),
            ));
        }
        let len = ids.len() / batch;
        if len > self.config.max_position_embeddings {
            return Err(DiffusionError::invalid(
                op,
                format!(
                    "sequences of {len} ids are longer than max_position_embeddings {} (tokenize with truncation)",
                    self.config.max_position_embeddings
                ),
            ));
        }
        if clip_skip >= self.layers.len().max(1) {
            return Err(DiffusionError::invalid(
                op,
                format!(
                    "clip_skip {clip_skip} leaves no layer of {}",
                    self.layers.len()
                ),
            ));
        }
        let mask = causal_mask(len)?;
        let mut h = self.embeddings.forward(ids, batch, len)?;
        for layer in &self.layers[..self.layers.len() - clip_skip] {
            h = layer.forward(&h, &mask)?;
        }
        Ok(self.final_layer_norm.forward(&h)?)
    }

    /// Textual inversion: append a token embedding (`(D,)` or `(1, D)`) and return
    /// the new token's id (`vocab_size`, then `vocab_size + 1`, ...).
    pub fn add_token_embedding(&mut self, embedding: &Tensor) -> Result<u32> {
        self.embeddings.add_row(embedding)
    }
}
