//! Textual inversion (Gal et al., arXiv 2208.01618): a new word for a concept, learned
//! as one (or a few) token-embedding vectors, loaded as diffusers'
//! `TextualInversionLoaderMixin.load_textual_inversion` does
//! (`diffusers/loaders/textual_inversion.py`).
//!
//! A `learned_embeds.safetensors` holds one tensor named by its token:
//! `{"<cat-toy>": (D,)}` or `(1, D)`; a `(n, D)` tensor is a multi-vector word whose
//! tokens are `<tok>`, `<tok>_1`, ..., `<tok>_{n-1}`, and a prompt's `<tok>` is then
//! spelled `<tok> <tok>_1 ...` ([`expand_multi_vector_tokens`], diffusers'
//! `maybe_convert_prompt`). A token given by the caller overrides the file's name
//! (A1111 `.safetensors` embeddings name theirs `emb_params`). Part of
//! `lessons/10-stable-diffusion`.
//!
//! ```
//! use diffusion::clip::{expand_multi_vector_tokens, ClipTokenizer};
//! let mut tok = ClipTokenizer::embedded().unwrap();
//! assert_eq!(tok.add_token("<style>").unwrap(), 49408);
//! assert_eq!(tok.add_token("<style>_1").unwrap(), 49409);
//! let prompt = expand_multi_vector_tokens(&tok, "a cat in <style>").unwrap();
//! assert_eq!(prompt, "a cat in <style> <style>_1");
//! assert_eq!(tok.encode(&prompt).unwrap(), [320, 2368, 530, 49408, 49409]);
//! ```

use std::path::Path;

use tensor::io::SafeTensorsFile;
use tensor::Tensor;

use super::text_model::ClipTextModel;
use super::tokenizer::ClipTokenizer;
use crate::error::{DiffusionError, Result};

/// The token and vectors `(n, D)` of a textual-inversion file (`token` overrides the
/// name stored in it).
pub fn read_textual_inversion(
    path: impl AsRef<Path>,
    token: Option<&str>,
) -> Result<(String, Tensor)> {
    let path = path.as_ref();
    let file = SafeTensorsFile::open(path)?;
    let names = file.names();
    let [name] = names.as_slice() else {
        return Err(DiffusionError::io(
            path,
            format!(
                "a textual-inversion file holds exactly one tensor named by its token, found {} ({:?})",
                names.len(),
                names
            ),
        ));
    };
    let emb = file.get(name)?;
    let emb = match *emb.dims() {
        [d] => emb.reshape([1, d])?,
        [_, _] => emb,
        ref other => {
            return Err(DiffusionError::io(
                path,
                format!("tensor {name:?} has shape {other:?}; expected (D,) or (n, D)"),
            ))
        }
    };
    Ok((token.unwrap_or(name).to_string(), emb))
}

/// Load a textual-inversion file into `tokenizer` and `model`; returns the tokens
/// added (`["<cat-toy>"]`, or `["<tok>", "<tok>_1", ...]` for `n` vectors). A token
/// already known to the tokenizer, a width other than the model's hidden size, or a
/// tokenizer and model whose vocabularies differ in size is an error, and nothing is
/// added then.
pub fn load_textual_inversion(
    path: impl AsRef<Path>,
    token: Option<&str>,
    tokenizer: &mut ClipTokenizer,
    model: &mut ClipTextModel,
) -> Result<Vec<String>> {
    let path = path.as_ref();
    let (token, emb) = read_textual_inversion(path, token)?;
    let op = "load_textual_inversion";
    let (n, d) = (emb.dims()[0], emb.dims()[1]);
    if d != model.config.hidden_size {
        return Err(DiffusionError::invalid(
            op,
            format!(
                "{}: embeddings of width {d}, but the text encoder's hidden size is {}",
                path.display(),
                model.config.hidden_size
            ),
        ));
    }
    let tokens: Vec<String> = std::iter::once(token.clone())
        .chain((1..n).map(|i| format!("{token}_{i}")))
        .collect();
    for t in tokens.iter().chain(std::iter::once(&format!("{token}_1"))) {
        if let Some(id) = tokenizer.token_to_id(t) {
            return Err(DiffusionError::invalid(
                op,
                format!("token {t:?} is already in the tokenizer's vocabulary (id {id}); pass another token name"),
            ));
        }
    }
    let model_rows = model.embeddings.vocab_size() + model.embeddings.added.len();
    if tokenizer.len() != model_rows {
        return Err(DiffusionError::invalid(
            op,
            format!(
                "the tokenizer has {} ids but the text encoder {model_rows} embedding rows",
                tokenizer.len()
            ),
        ));
    }
    for (i, t) in tokens.iter().enumerate() {
        let id = tokenizer.add_token(t)?;
        let row = model.add_token_embedding(&emb.narrow(0, i, 1)?)?;
        if id != row {
            return Err(DiffusionError::invalid(
                op,
                format!(
                    "token {t:?} got id {id} in the tokenizer but row {row} in the text encoder"
                ),
            ));
        }
    }
    Ok(tokens)
}

/// diffusers' `maybe_convert_prompt`: every added token `<tok>` of the prompt that
/// has siblings `<tok>_1`, `<tok>_2`, ... is replaced by `<tok> <tok>_1 <tok>_2 ...`.
pub fn expand_multi_vector_tokens(tokenizer: &ClipTokenizer, prompt: &str) -> Result<String> {
    let mut ids = tokenizer.encode(prompt)?;
    ids.sort_unstable();
    ids.dedup();
    let mut out = prompt.to_string();
    for id in ids {
        let Some(added) = tokenizer.added_tokens().iter().find(|a| a.id == id) else {
            continue;
        };
        let token = added.content.clone();
        let mut replacement = token.clone();
        let mut i = 1;
        while let Some(next) = tokenizer
            .added_tokens()
            .iter()
            .find(|a| a.content == format!("{token}_{i}"))
        {
            replacement.push(' ');
            replacement.push_str(&next.content);
            i += 1;
        }
        if i > 1 {
            out = out.replace(&token, &replacement);
        }
    }
    Ok(out)
}
