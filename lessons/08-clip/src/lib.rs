//! Lesson 08: how CLIP reads a prompt. [`bpe`] builds byte-pair encoding from
//! scratch (training merges on a toy corpus, then CLIP's byte-level vocabulary from
//! its real merges, agreeing with `diffusion::clip::ClipTokenizer`); [`encoder`] opens
//! the text transformer (`diffusion::clip::ClipTextModel`): embeddings, the causal
//! mask, quick_gelu and the final layer norm.
//!
//! ```
//! use lesson_08_clip::bpe::{train_bpe, BpeEncoder};
//! // Sennrich et al.'s example corpus.
//! let merges = train_bpe(&[("low", 5), ("lower", 2), ("newest", 6), ("widest", 3)], 10);
//! assert_eq!((merges[0].left.as_str(), merges[0].right.as_str(), merges[0].count), ("e", "s", 9));
//! let pairs: Vec<(String, String)> = merges.iter().map(|m| (m.left.clone(), m.right.clone())).collect();
//! assert_eq!(BpeEncoder::new(&pairs).encode_word("lowest"), ["lo", "w", "est</w>"]);
//! ```

pub mod bpe;
pub mod encoder;

/// The toy corpus of the BPE-training claims (Sennrich et al. 2016, section 3.2).
pub const TOY_CORPUS: [(&str, usize); 4] = [("low", 5), ("lower", 2), ("newest", 6), ("widest", 3)];
