//! Text before BPE: added-token extraction, normalisation and the pre-tokenizer split,
//! in the order transformers' `CLIPTokenizer` (a `tokenizers` pipeline) applies them.
//!
//! 1. Added tokens whose `normalized` flag is off (`<|startoftext|>`, `<|endoftext|>`
//!    in a bare vocabulary) are cut out of the raw text first, leftmost-longest.
//! 2. Each remaining piece is normalised: Unicode NFC, every run of whitespace
//!    (Unicode `White_Space`) becomes one space, then each character is lower-cased on
//!    its own (so a final `Σ` becomes `σ`, not `ς`).
//! 3. Added tokens with `normalized` on (textual-inversion tokens, SD 1.x's special
//!    tokens) are cut out of the normalised text, matched against their normalised form.
//! 4. The rest is split by CLIP's pattern [`PATTERN`]: the matches are the words and
//!    everything between them (whitespace) is dropped. `it's 12 cats!` ->
//!    `it`, `'s`, `1`, `2`, `cats`, `!`.
//! 5. The byte-level pre-tokenizer that follows in `tokenizers` splits with GPT-2's
//!    pattern again; on CLIP's words that changes only a literal special token that was
//!    not cut out in step 1 or 3 (typed in another case): `<|startoftext|>` becomes
//!    `<|`, `startoftext`, `|>`.
//!
//! Part of `lessons/10-stable-diffusion`'s tokenizer.
//!
//! ```
//! use diffusion::clip::text::{normalize, pre_tokenize, word_regex};
//! let text = normalize("A  Café, isn't it?\n");
//! assert_eq!(text, "a café, isn't it? ");
//! assert_eq!(pre_tokenize(&word_regex().unwrap(), &text), ["a", "café", ",", "isn", "'t", "it", "?"]);
//! ```

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::{DiffusionError, Result};

/// CLIP's word pattern (`simple_tokenizer.py`, and the `Split` pre-tokenizer of
/// transformers' `CLIPTokenizer`).
pub const PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The special-token literals that GPT-2's pattern splits in three.
const SPECIAL_LITERALS: [(&str, &str); 2] = [
    ("<|startoftext|>", "startoftext"),
    ("<|endoftext|>", "endoftext"),
];

/// Compile [`PATTERN`].
pub fn word_regex() -> Result<Regex> {
    Regex::new(PATTERN).map_err(|e| DiffusionError::Tokenizer(format!("word pattern: {e}")))
}

/// NFC, whitespace runs to one space, per-character lower case.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.nfc() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            in_space = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The words of normalised text (step 4 and 5 of the module docs).
pub fn pre_tokenize<'t>(re: &Regex, text: &'t str) -> Vec<&'t str> {
    let mut words = Vec::new();
    for m in re.find_iter(text) {
        let w = m.as_str();
        match SPECIAL_LITERALS.iter().find(|(lit, _)| *lit == w) {
            Some((_, inner)) => {
                let open = 2; // "<|"
                words.push(&w[..open]);
                words.push(&w[open..open + inner.len()]);
                words.push(&w[open + inner.len()..]);
            }
            None => words.push(w),
        }
    }
    words
}

/// A piece of text after cutting out added tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'t> {
    Text(&'t str),
    Token(u32),
}

/// Cut `(pattern, id)` occurrences out of `text`, leftmost first and, among those
/// starting at the same place, longest first (`tokenizers`' added-vocabulary split).
pub fn split_added<'t>(text: &'t str, patterns: &[(String, u32)]) -> Vec<Piece<'t>> {
    let mut pieces = Vec::new();
    if patterns.is_empty() {
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        return pieces;
    }
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let best = patterns
            .iter()
            .filter(|(p, _)| !p.is_empty() && rest.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((p, id)) => {
                if start < i {
                    pieces.push(Piece::Text(&text[start..i]));
                }
                pieces.push(Piece::Token(*id));
                i += p.len();
                start = i;
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    if start < text.len() {
        pieces.push(Piece::Text(&text[start..]));
    }
    pieces
}

/// Python's `str.isspace` (White_Space plus the four information separators
/// U+001C..U+001F), used where transformers calls `.strip()`.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_split() {
        let re = word_regex().unwrap();
        let n = normalize("  It's 12  CATS!\t\n");
        assert_eq!(n, " it's 12 cats! ");
        assert_eq!(pre_tokenize(&re, &n), ["it", "'s", "1", "2", "cats", "!"]);
        // NFC composes e + U+0301; a final capital sigma lower-cases to σ.
        assert_eq!(normalize("e\u{301}ΟΔΟΣ"), "\u{e9}οδοσ");
        assert_eq!(
            pre_tokenize(&re, "<|endoftext|>x"),
            ["<|", "endoftext", "|>", "x"]
        );
    }

    #[test]
    fn added_tokens_leftmost_longest() {
        let pats = vec![("<a>".to_string(), 1), ("<a><b>".to_string(), 2)];
        assert_eq!(
            split_added("x<a><b>y<a>", &pats),
            [
                Piece::Text("x"),
                Piece::Token(2),
                Piece::Text("y"),
                Piece::Token(1)
            ]
        );
        assert!(split_added("", &pats).is_empty());
    }
}
