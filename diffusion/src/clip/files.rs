//! Reading a diffusers `tokenizer/` folder: the vocabulary (`vocab.json` +
//! `merges.txt`, or OpenAI's `bpe_simple_vocab_16e6.txt[.gz]`; `tokenizer.json` is
//! [`super::tokenizer_json`]) and the special tokens (`tokenizer_config.json`, then
//! `special_tokens_map.json`, which wins, as in transformers; `added_tokens.json`). SD 1.x pads with `<|endoftext|>`; SD 2.x's `special_tokens_map.json`
//! says `"pad_token": "!"` (id 0), which also makes a typed `!` the pad token.
//! Part of `lessons/10-stable-diffusion`'s tokenizer.
//!
//! ```
//! use diffusion::clip::files::read_settings;
//! let dir = std::env::temp_dir().join("clip_files_doctest");
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("tokenizer_config.json"), r#"{"pad_token": "<|endoftext|>", "model_max_length": 77}"#).unwrap();
//! std::fs::write(dir.join("special_tokens_map.json"), r#"{"pad_token": "!"}"#).unwrap();
//! let s = read_settings(&dir).unwrap();
//! assert_eq!((s.pad.content.as_str(), s.model_max_length), ("!", 77));
//! assert_eq!(s.bos.content, "<|startoftext|>");
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::bpe::{parse_merge, Bpe};
use crate::error::{DiffusionError, Result};

/// The begin-of-text token.
pub const BOS: &str = "<|startoftext|>";
/// The end-of-text token (also CLIP's unknown token and SD 1.x's pad token).
pub const EOS: &str = "<|endoftext|>";
/// Merges in `bpe_simple_vocab_16e6.txt` that CLIP uses (49152 - 256 - 2).
pub const NUM_MERGES: usize = 48_894;

/// A special token as a config names it: its text and whether it is matched in
/// normalised (lower-cased) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    pub content: String,
    pub normalized: bool,
}

/// The special tokens and length a tokenizer folder asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerSettings {
    pub bos: SpecialToken,
    pub eos: SpecialToken,
    pub unk: SpecialToken,
    pub pad: SpecialToken,
    /// Tokens of `added_tokens_decoder`: (id, token, special).
    pub added: Vec<(u32, SpecialToken, bool)>,
    /// `model_max_length` (77 for every Stable Diffusion tokenizer; 77 when absent).
    pub model_max_length: usize,
}

impl Default for TokenizerSettings {
    fn default() -> Self {
        let plain = |s: &str| SpecialToken {
            content: s.to_string(),
            normalized: false,
        };
        TokenizerSettings {
            bos: plain(BOS),
            eos: plain(EOS),
            unk: plain(EOS),
            pad: plain(EOS),
            added: Vec::new(),
            model_max_length: 77,
        }
    }
}

/// Decompress (when the name ends in `.gz`) and read OpenAI's merges file.
pub fn read_bpe_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DiffusionError::io(path, e))?;
    decode_bpe_bytes(&bytes, path.extension().is_some_and(|e| e == "gz"), path)
}

/// The text of a (possibly gzipped) merges file.
pub fn decode_bpe_bytes(bytes: &[u8], gz: bool, path: &Path) -> Result<String> {
    if !gz {
        return String::from_utf8(bytes.to_vec())
            .map_err(|e| DiffusionError::io(path, format!("not UTF-8 text: {e}")));
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| DiffusionError::io(path, format!("not a gzipped UTF-8 text file: {e}")))?;
    Ok(text)
}

/// The vocabulary of a folder: `vocab.json` + `merges.txt`, else OpenAI's file.
pub fn read_vocabulary(dir: &Path, unk: &str) -> Result<Bpe> {
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    match (vocab.is_file(), merges.is_file()) {
        (true, true) => return read_vocab_merges(&vocab, &merges, unk),
        (true, false) => {
            return Err(DiffusionError::io(
                &merges,
                "missing (vocab.json needs merges.txt beside it)",
            ))
        }
        (false, true) => {
            return Err(DiffusionError::io(
                &vocab,
                "missing (merges.txt needs vocab.json beside it)",
            ))
        }
        (false, false) => {}
    }
    for name in ["bpe_simple_vocab_16e6.txt.gz", "bpe_simple_vocab_16e6.txt"] {
        let path = dir.join(name);
        if path.is_file() {
            let text = read_bpe_file(&path)?;
            return Bpe::from_merges_file(
                &text,
                NUM_MERGES,
                &[BOS, EOS],
                &path.display().to_string(),
            );
        }
    }
    Err(DiffusionError::io(
        dir,
        "no tokenizer vocabulary: expected vocab.json and merges.txt (or bpe_simple_vocab_16e6.txt[.gz])",
    ))
}

fn read_vocab_merges(vocab: &Path, merges: &Path, unk: &str) -> Result<Bpe> {
    let text = std::fs::read_to_string(vocab).map_err(|e| DiffusionError::io(vocab, e))?;
    let encoder: HashMap<String, u32> = serde_json::from_str(&text).map_err(|e| {
        DiffusionError::Tokenizer(format!(
            "{}: not a JSON object of token -> id: {e}",
            vocab.display()
        ))
    })?;
    let text = std::fs::read_to_string(merges).map_err(|e| DiffusionError::io(merges, e))?;
    let source = merges.display().to_string();
    let mut list = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.is_empty() {
            continue;
        }
        list.push(parse_merge(line, i + 1, &source)?);
    }
    let source = format!("{} + {}", vocab.display(), merges.display());
    Bpe::new(encoder, &list, Some(unk), &source)
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    bos_token: Option<Value>,
    eos_token: Option<Value>,
    unk_token: Option<Value>,
    pad_token: Option<Value>,
    model_max_length: Option<f64>,
    added_tokens_decoder: Option<HashMap<String, AddedTokenEntry>>,
}

#[derive(Deserialize)]
struct AddedTokenEntry {
    content: String,
    #[serde(default)]
    normalized: Option<bool>,
    #[serde(default)]
    special: bool,
}

fn read_json(path: &Path) -> Result<Option<ConfigFile>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| DiffusionError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DiffusionError::config(path, e.to_string()))
}

/// A token field: `"<|endoftext|>"`, or `{"content": ..., "normalized": ...}`, or null.
fn token_field(
    v: &Option<Value>,
    field: &str,
    path: &Path,
) -> Result<Option<(String, Option<bool>)>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some((s.clone(), None))),
        Some(Value::Object(m)) => match m.get("content") {
            Some(Value::String(s)) => Ok(Some((
                s.clone(),
                m.get("normalized").and_then(Value::as_bool),
            ))),
            _ => Err(DiffusionError::config(
                path,
                format!("{field}: an object without a string \"content\""),
            )),
        },
        Some(other) => Err(DiffusionError::config(
            path,
            format!("{field}: expected a string or an object, got {other}"),
        )),
    }
}

/// The special tokens of a folder (`tokenizer_config.json`, then
/// `special_tokens_map.json` overriding it); defaults where both are silent.
pub fn read_settings(dir: &Path) -> Result<TokenizerSettings> {
    let mut s = TokenizerSettings::default();
    let mut fields: [Option<(String, Option<bool>)>; 4] = [None, None, None, None];
    let mut decoder: Vec<(u32, SpecialToken, bool)> = Vec::new();
    for name in ["tokenizer_config.json", "special_tokens_map.json"] {
        let path = dir.join(name);
        let Some(cfg) = read_json(&path)? else {
            continue;
        };
        let found = [
            token_field(&cfg.bos_token, "bos_token", &path)?,
            token_field(&cfg.eos_token, "eos_token", &path)?,
            token_field(&cfg.unk_token, "unk_token", &path)?,
            token_field(&cfg.pad_token, "pad_token", &path)?,
        ];
        for (slot, f) in fields.iter_mut().zip(found) {
            if f.is_some() {
                *slot = f;
            }
        }
        if let Some(len) = cfg.model_max_length {
            // transformers writes a huge number (1e30) for "no limit".
            if (1.0..1e9).contains(&len) {
                s.model_max_length = len as usize;
            }
        }
        if let Some(entries) = cfg.added_tokens_decoder {
            for (id, e) in entries {
                let id: u32 = id.parse().map_err(|_| {
                    DiffusionError::config(
                        &path,
                        format!("added_tokens_decoder: {id:?} is not a token id"),
                    )
                })?;
                let tok = SpecialToken {
                    content: e.content,
                    normalized: e.normalized.unwrap_or(!e.special),
                };
                decoder.push((id, tok, e.special));
            }
        }
    }
    decoder.sort_by_key(|(id, ..)| *id);
    // Older transformers saved added (textual-inversion) tokens here.
    let legacy = dir.join("added_tokens.json");
    if legacy.is_file() {
        let text = std::fs::read_to_string(&legacy).map_err(|e| DiffusionError::io(&legacy, e))?;
        let map: HashMap<String, u32> = serde_json::from_str(&text)
            .map_err(|e| DiffusionError::config(&legacy, e.to_string()))?;
        let mut extra: Vec<(String, u32)> = map.into_iter().collect();
        extra.sort_by_key(|(_, id)| *id);
        for (content, id) in extra {
            if !decoder.iter().any(|(_, t, _)| t.content == content) {
                decoder.push((
                    id,
                    SpecialToken {
                        content,
                        normalized: true,
                    },
                    false,
                ));
            }
        }
    }
    let resolve = |f: &Option<(String, Option<bool>)>, default: &SpecialToken| match f {
        None => default.clone(),
        Some((content, normalized)) => {
            let from_decoder = decoder
                .iter()
                .find(|(_, t, _)| &t.content == content)
                .map(|(_, t, _)| t.normalized);
            SpecialToken {
                content: content.clone(),
                normalized: normalized.or(from_decoder).unwrap_or(false),
            }
        }
    };
    s.bos = resolve(&fields[0], &s.bos);
    s.eos = resolve(&fields[1], &s.eos);
    s.unk = resolve(&fields[2], &s.unk);
    s.pad = resolve(&fields[3], &s.pad);
    s.added = decoder;
    Ok(s)
}
