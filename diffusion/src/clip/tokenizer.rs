//! [`ClipTokenizer`]: prompt text -> CLIP token ids, exactly as transformers'
//! `CLIPTokenizer` (the `tokenizers`-backed one of transformers 5) gives them.
//!
//! `"a photo of a cat"` -> `[49406, 320, 1125, 539, 320, 2368, 49407]`: begin-of-text,
//! one id per word here (`a</w>` 320, `photo</w>` 1125, ...), end-of-text. Stable
//! Diffusion then pads to 77 ids ([`ClipTokenizer::encode_padded`]) with the folder's
//! pad token and cuts prompts longer than 75 content tokens (saying which words it cut,
//! [`ClipTokenizer::truncated_text`]). The steps are in [`super::text`] (clean-up and
//! split) and [`super::bpe`] (byte-pair merges).
//!
//! Added tokens (the special tokens, a textual-inversion `<cat-toy>` from
//! [`ClipTokenizer::add_token`]) are matched before BPE and map to one id each.
//! Introduced in `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::clip::ClipTokenizer;
//! let mut tok = ClipTokenizer::embedded().unwrap();
//! let long = "a photograph of an astronaut riding a horse, ".repeat(10);
//! let enc = tok.encode_padded(&long, 77).unwrap();
//! assert!(enc.truncated && enc.ids.len() == 77 && enc.ids[76] == 49407);
//! assert!(tok.truncated_text(&long, 77).unwrap().unwrap().starts_with("an astronaut riding"));
//! assert_eq!(tok.add_token("<cat-toy>").unwrap(), 49408);
//! assert_eq!(tok.encode("a <cat-toy> photo").unwrap(), [320, 49408, 1125]);
//! ```

use std::collections::HashSet;
use std::path::Path;

use regex::Regex;

use super::bpe::Bpe;
use super::files::{self, SpecialToken, TokenizerSettings, BOS, EOS, NUM_MERGES};
use super::text::{self, is_python_space, Piece};
use super::tokenizer_json;
use crate::error::{DiffusionError, Result};

/// OpenAI's merges file, gzipped (MIT; see `assets/README.md`).
const EMBEDDED_BPE: &[u8] = include_bytes!("../../assets/bpe_simple_vocab_16e6.txt.gz");

/// A token matched in the text before BPE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// The text as given (`<cat-toy>`).
    pub content: String,
    pub id: u32,
    /// Special tokens (bos, eos, pad) are skipped by `decode(.., true)`.
    pub special: bool,
    /// Matched in normalised (lower-cased) text, against its normalised form.
    pub normalized: bool,
}

/// Ids for one prompt padded to a fixed length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// bos, at most `max_len - 2` content ids, eos, pads: `max_len` ids.
    pub ids: Vec<u32>,
    /// Whether content ids were cut (see [`ClipTokenizer::truncated_text`]).
    pub truncated: bool,
}

/// CLIP's byte-level BPE tokenizer (see the module docs).
#[derive(Debug)]
pub struct ClipTokenizer {
    bpe: Bpe,
    added: Vec<AddedToken>,
    /// `(matched form, id)` for raw-text and normalised-text added tokens.
    raw_patterns: Vec<(String, u32)>,
    norm_patterns: Vec<(String, u32)>,
    words: Regex,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    model_max_length: usize,
}

impl ClipTokenizer {
    /// The tokenizer of OpenAI CLIP / Stable Diffusion 1.x from the merges file built
    /// into the crate: 49,408 ids, pads with `<|endoftext|>`.
    pub fn embedded() -> Result<ClipTokenizer> {
        let path = Path::new("assets/bpe_simple_vocab_16e6.txt.gz (embedded)");
        let text = files::decode_bpe_bytes(EMBEDDED_BPE, true, path)?;
        let bpe =
            Bpe::from_merges_file(&text, NUM_MERGES, &[BOS, EOS], &path.display().to_string())?;
        ClipTokenizer::from_parts(bpe, TokenizerSettings::default(), "the embedded vocabulary")
    }

    /// Load a diffusers `tokenizer/` folder: `tokenizer.json` (what transformers 5
    /// saves), else `vocab.json` + `merges.txt`, else `bpe_simple_vocab_16e6.txt[.gz]`;
    /// and the special tokens of `tokenizer_config.json` / `special_tokens_map.json` /
    /// `added_tokens.json` when present.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<ClipTokenizer> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(DiffusionError::io(
                dir,
                "not a tokenizer folder (no such directory)",
            ));
        }
        let mut settings = files::read_settings(dir)?;
        let json = dir.join("tokenizer.json");
        let bpe = if json.is_file() {
            // What transformers 5 loads (and, alone, saves) when it is there.
            let (bpe, added) = tokenizer_json::read_tokenizer_json(&json, &settings.unk.content)?;
            settings.added.extend(added); // after the config's: the first definition wins
            bpe
        } else {
            files::read_vocabulary(dir, &settings.unk.content)?
        };
        ClipTokenizer::from_parts(bpe, settings, &dir.display().to_string())
    }

    fn from_parts(bpe: Bpe, s: TokenizerSettings, source: &str) -> Result<ClipTokenizer> {
        let id_of = |t: &SpecialToken, what: &str| {
            bpe.token_to_id(&t.content)
                .or_else(|| {
                    s.added
                        .iter()
                        .find(|(_, a, _)| a.content == t.content)
                        .map(|(id, ..)| *id)
                })
                .ok_or_else(|| {
                    DiffusionError::Tokenizer(format!(
                        "{source}: the {what} token {:?} is not in the vocabulary",
                        t.content
                    ))
                })
        };
        let (bos_id, eos_id, pad_id) = (
            id_of(&s.bos, "bos")?,
            id_of(&s.eos, "eos")?,
            id_of(&s.pad, "pad")?,
        );
        let unk_id = id_of(&s.unk, "unk")?;
        let mut added: Vec<AddedToken> = Vec::new();
        let decoder = s.added.iter().map(|(id, t, special)| (*id, t, *special));
        let named = [
            (bos_id, &s.bos),
            (eos_id, &s.eos),
            (unk_id, &s.unk),
            (pad_id, &s.pad),
        ]
        .into_iter()
        .map(|(id, t)| (id, t, true));
        for (id, t, special) in decoder.chain(named) {
            if added.iter().any(|a| a.content == t.content) {
                continue; // the first definition of a token wins
            }
            added.push(AddedToken {
                content: t.content.clone(),
                id,
                special,
                normalized: t.normalized,
            });
        }
        let mut tok = ClipTokenizer {
            bpe,
            added,
            raw_patterns: Vec::new(),
            norm_patterns: Vec::new(),
            words: text::word_regex()?,
            bos_id,
            eos_id,
            pad_id,
            model_max_length: s.model_max_length,
        };
        tok.rebuild_patterns();
        Ok(tok)
    }

    fn rebuild_patterns(&mut self) {
        self.raw_patterns.clear();
        self.norm_patterns.clear();
        for a in &self.added {
            if a.normalized {
                self.norm_patterns.push((text::normalize(&a.content), a.id));
            } else {
                self.raw_patterns.push((a.content.clone(), a.id));
            }
        }
    }

    /// `<|startoftext|>`: 49406.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }
    /// `<|endoftext|>`: 49407.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
    /// 49407 for SD 1.x, 0 (`!`) for SD 2.x.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    /// The folder's `model_max_length` (77).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }
    /// The number of ids, added tokens included (`len(tokenizer)`): 49,408 for CLIP.
    pub fn len(&self) -> usize {
        self.next_id() as usize
    }
    /// Never true for a loaded tokenizer (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The BPE vocabulary.
    pub fn bpe(&self) -> &Bpe {
        &self.bpe
    }
    /// Special and user-added tokens, in the order they were defined.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added
    }

    fn next_id(&self) -> u32 {
        let added = self.added.iter().map(|a| a.id + 1).max().unwrap_or(0);
        added.max(self.bpe.vocab_size() as u32)
    }

    /// The id of a token: a vocabulary entry (`"cat</w>"`) or an added token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added
            .iter()
            .find(|a| a.content == token)
            .map(|a| a.id)
            .or_else(|| self.bpe.token_to_id(token))
    }

    /// The token text of an id (an added token's content first).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.content.as_str())
            .or_else(|| self.bpe.id_to_token(id))
    }

    /// Content ids of `text`, without bos/eos (`"a photo of a cat"` ->
    /// `[320, 1125, 539, 320, 2368]`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for piece in text::split_added(text, &self.raw_patterns) {
            let raw = match piece {
                Piece::Token(id) => {
                    ids.push(id);
                    continue;
                }
                Piece::Text(t) => t,
            };
            let normalized = text::normalize(raw);
            for piece in text::split_added(&normalized, &self.norm_patterns) {
                match piece {
                    Piece::Token(id) => ids.push(id),
                    Piece::Text(t) => {
                        for word in text::pre_tokenize(&self.words, t) {
                            ids.extend(self.bpe.encode_word(word));
                        }
                    }
                }
            }
        }
        Ok(ids)
    }

    /// `bos + content[..max_len - 2] + eos`, padded with the pad id to `max_len`
    /// (transformers' `padding="max_length", truncation=True`). Stable Diffusion
    /// uses `max_len = 77`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<Encoded> {
        if max_len < 2 {
            return Err(DiffusionError::invalid(
                "ClipTokenizer::encode_padded",
                format!("max_len {max_len} leaves no room for the bos and eos tokens (needs >= 2)"),
            ));
        }
        let content = self.encode(text)?;
        let keep = content.len().min(max_len - 2);
        let mut ids = Vec::with_capacity(max_len);
        ids.push(self.bos_id);
        ids.extend_from_slice(&content[..keep]);
        ids.push(self.eos_id);
        ids.resize(max_len, self.pad_id);
        Ok(Encoded {
            ids,
            truncated: keep < content.len(),
        })
    }

    /// The text `encode_padded(text, max_len)` cut off, decoded as diffusers does for
    /// its warning ("The following part of your input was truncated because CLIP can
    /// only handle sequences up to 77 tokens: ..."); `None` when nothing was cut.
    pub fn truncated_text(&self, text: &str, max_len: usize) -> Result<Option<String>> {
        let content = self.encode(text)?;
        let keep = max_len.saturating_sub(2);
        if content.len() <= keep {
            return Ok(None);
        }
        self.decode(&content[keep..], false).map(Some)
    }

    /// Text of `ids`, as transformers' `decode`: token bytes joined, `</w>` read as a
    /// space, surrounding whitespace stripped; with `skip_special_tokens`, bos, eos
    /// and pad are left out. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let special: HashSet<u32> = self
            .added
            .iter()
            .filter(|a| a.special)
            .map(|a| a.id)
            .collect();
        let mut bytes = Vec::new();
        for &id in ids {
            if skip_special_tokens && special.contains(&id) {
                continue;
            }
            let token = self.id_to_token(id).ok_or_else(|| {
                DiffusionError::invalid(
                    "ClipTokenizer::decode",
                    format!("id {id} is not in the vocabulary of {} ids", self.len()),
                )
            })?;
            self.bpe.token_bytes(token, &mut bytes);
        }
        let text = String::from_utf8_lossy(&bytes).replace(super::bpe::END_OF_WORD, " ");
        Ok(text.trim_matches(is_python_space).to_string())
    }

    /// Add a token (textual inversion's `<cat-toy>`) with the next free id (49408,
    /// then 49409, ...); it is matched in lower-cased text, as transformers'
    /// `add_tokens` does. A token already in the vocabulary is an error.
    pub fn add_token(&mut self, token: &str) -> Result<u32> {
        if token.is_empty() || token.chars().all(char::is_whitespace) {
            return Err(DiffusionError::invalid(
                "ClipTokenizer::add_token",
                "the token is empty or only whitespace",
            ));
        }
        if let Some(id) = self.token_to_id(token) {
            return Err(DiffusionError::invalid(
                "ClipTokenizer::add_token",
                format!(
                    "token {token:?} is already in the vocabulary (id {id}); choose another name"
                ),
            ));
        }
        let id = self.next_id();
        self.added.push(AddedToken {
            content: text::normalize(token),
            id,
            special: false,
            normalized: true,
        });
        self.rebuild_patterns();
        Ok(id)
    }
}
