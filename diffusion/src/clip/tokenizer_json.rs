//! Reading the `tokenizer.json` of HuggingFace `tokenizers`: what transformers 5's
//! `CLIPTokenizer.save_pretrained` writes (without `vocab.json`/`merges.txt`), so a
//! diffusers pipeline saved today has only this file and `tokenizer_config.json` in its
//! `tokenizer/` folder. Only the BPE model (vocabulary, merges, `</w>` suffix) and the
//! added tokens are read: the normaliser and pre-tokenizer are CLIP's fixed ones
//! ([`super::text`]). Part of `lessons/10-stable-diffusion`'s tokenizer.
//!
//! ```
//! use diffusion::clip::tokenizer_json::parse_tokenizer_json;
//! let json = r#"{"model": {"type": "BPE", "end_of_word_suffix": "</w>",
//!     "vocab": {"a": 0, "t</w>": 1, "at</w>": 2, "<|endoftext|>": 3},
//!     "merges": [["a", "t</w>"]]},
//!   "added_tokens": [{"id": 3, "content": "<|endoftext|>", "normalized": true, "special": true}]}"#;
//! let (bpe, added) = parse_tokenizer_json(json, "<|endoftext|>", "tokenizer.json").unwrap();
//! assert_eq!(bpe.encode_word("at"), [2]);
//! assert_eq!((added[0].0, added[0].1.normalized, added[0].2), (3, true, true));
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::bpe::{parse_merge, Bpe, END_OF_WORD};
use super::files::SpecialToken;
use crate::error::{DiffusionError, Result};

#[derive(Deserialize)]
struct TokenizerJson {
    model: ModelJson,
    #[serde(default)]
    added_tokens: Vec<AddedJson>,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
    merges: Vec<MergeJson>,
    end_of_word_suffix: Option<String>,
}

/// `tokenizers` writes merges as `["a", "t</w>"]` (new) or `"a t</w>"` (old).
#[derive(Deserialize)]
#[serde(untagged)]
enum MergeJson {
    Pair(String, String),
    Joined(String),
}

#[derive(Deserialize)]
struct AddedJson {
    id: u32,
    content: String,
    #[serde(default)]
    normalized: bool,
    #[serde(default)]
    special: bool,
}

/// Added tokens as `(id, token, special)`.
pub type AddedList = Vec<(u32, SpecialToken, bool)>;

/// Read `path` (see the module docs); `unk` is the unknown token's text.
pub fn read_tokenizer_json(path: &Path, unk: &str) -> Result<(Bpe, AddedList)> {
    let text = std::fs::read_to_string(path).map_err(|e| DiffusionError::io(path, e))?;
    parse_tokenizer_json(&text, unk, &path.display().to_string())
}

/// Parse the text of a `tokenizer.json`; `source` names it in errors.
pub fn parse_tokenizer_json(text: &str, unk: &str, source: &str) -> Result<(Bpe, AddedList)> {
    let tj: TokenizerJson = serde_json::from_str(text).map_err(|e| {
        DiffusionError::Tokenizer(format!("{source}: not a BPE tokenizer.json: {e}"))
    })?;
    let m = tj.model;
    if m.kind.as_deref().is_some_and(|k| k != "BPE")
        || m.end_of_word_suffix.as_deref() != Some(END_OF_WORD)
    {
        return Err(DiffusionError::Tokenizer(format!(
            "{source}: not a CLIP tokenizer (model type {:?}, end_of_word_suffix {:?}; CLIP's is BPE with \"</w>\")",
            m.kind, m.end_of_word_suffix
        )));
    }
    let mut merges = Vec::with_capacity(m.merges.len());
    for (i, merge) in m.merges.into_iter().enumerate() {
        merges.push(match merge {
            MergeJson::Pair(a, b) => (a, b),
            MergeJson::Joined(s) => parse_merge(&s, i + 1, source)?,
        });
    }
    let bpe = Bpe::new(m.vocab, &merges, Some(unk), source)?;
    let added = tj
        .added_tokens
        .into_iter()
        .map(|a| {
            let tok = SpecialToken {
                content: a.content,
                normalized: a.normalized,
            };
            (a.id, tok, a.special)
        })
        .collect();
    Ok((bpe, added))
}
