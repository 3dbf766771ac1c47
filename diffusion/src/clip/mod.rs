//! CLIP's text side, as Stable Diffusion uses it (`lessons/10-stable-diffusion`):
//! a byte-level BPE tokenizer ([`ClipTokenizer`], transformers'
//! `models/clip/tokenization_clip.py`) and the text transformer ([`ClipTextModel`],
//! `models/clip/modeling_clip.py`'s `CLIPTextModel`) whose `last_hidden_state`
//! conditions the UNet.
//!
//! A prompt becomes 77 ids (bos, at most 75 content tokens, eos, pads), then
//! `(B, 77)` ids -> token + position embeddings `(B, 77, D)` -> `num_hidden_layers`
//! pre-norm blocks of causal self-attention and MLP -> `final_layer_norm` ->
//! `last_hidden_state: (B, 77, D)` (D = 768 for SD 1.x, 1024 for SD 2.x).
//! Textual inversion ([`load_textual_inversion`]) adds a word: one new token id and
//! one new embedding row.
//!
//! ```
//! use diffusion::clip::ClipTokenizer;
//! let tok = ClipTokenizer::embedded().unwrap();
//! assert_eq!(tok.encode("a photo of a cat").unwrap(), [320, 1125, 539, 320, 2368]);
//! let enc = tok.encode_padded("a photo of a cat", 77).unwrap();
//! assert_eq!(enc.ids[..8], [49406, 320, 1125, 539, 320, 2368, 49407, 49407]);
//! assert_eq!(enc.ids.len(), 77);
//! assert!(!enc.truncated);
//! assert_eq!(tok.decode(&enc.ids[..7], true).unwrap(), "a photo of a cat");
//! ```

pub mod bpe;
pub mod config;
pub mod files;
pub mod text;
pub mod text_model;
pub mod textual_inversion;
pub mod tokenizer;
pub mod tokenizer_json;

pub use config::{ClipTextConfig, HiddenAct};
pub use text_model::{ClipEncoderLayer, ClipTextEmbeddings, ClipTextModel};
pub use textual_inversion::{
    expand_multi_vector_tokens, load_textual_inversion, read_textual_inversion,
};
pub use tokenizer::{AddedToken, ClipTokenizer, Encoded};
