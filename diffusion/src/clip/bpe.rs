//! Byte-level byte-pair encoding: the vocabulary, the merge ranks and the merge loop
//! that turn one pre-tokenized word into token ids (OpenAI CLIP's `simple_tokenizer.py`,
//! and the `BPE` model of HuggingFace `tokenizers` with `end_of_word_suffix="</w>"`
//! that transformers' `CLIPTokenizer` builds).
//!
//! - Bytes, not characters: a word's UTF-8 bytes are first mapped one to one onto 256
//!   printable characters ([`bytes_to_unicode`]: `a` stays `a`, the space byte 0x20
//!   becomes `Ġ`), so every byte sequence has a spelling and nothing is unknown.
//! - The word's last symbol carries the end-of-word marker: `cat` starts as the
//!   symbols `c`, `a`, `t</w>`. The vocabulary therefore holds each byte character
//!   twice (ids 0..256 plain, 256..512 with `</w>`), then one token per merge.
//! - The merge loop: among adjacent symbol pairs, merge the pair whose merge was learned
//!   first (lowest rank), every occurrence left to right; repeat until no adjacent pair
//!   is a merge. `c a t</w>` -> `c at</w>` -> `cat</w>` (id 2368).
//!
//! Results per word are cached (as both implementations do); the cache stops growing
//! at [`CACHE_CAPACITY`] words. Part of `lessons/10-stable-diffusion`'s tokenizer.
//!
//! ```
//! use diffusion::clip::ClipTokenizer;
//! let tok = ClipTokenizer::embedded().unwrap();
//! let bpe = tok.bpe();
//! assert_eq!(bpe.vocab_size(), 49408);
//! assert_eq!(bpe.encode_word("cat"), [2368]);              // cat</w>
//! assert_eq!(bpe.encode_word("astronaut"), [18376]);       // one token
//! assert_eq!(bpe.encode_word("qwxzjv").len(), 4);          // a rare word: 4 pieces
//! assert_eq!(bpe.id_to_token(320), Some("a</w>"));
//! assert_eq!(bpe.id_to_token(0), Some("!"));               // the first byte character
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::error::{DiffusionError, Result};

/// The end-of-word marker appended to a word's last symbol.
pub const END_OF_WORD: &str = "</w>";

/// Words kept in the per-tokenizer cache (then it stops growing, like `tokenizers`).
pub const CACHE_CAPACITY: usize = 10_000;

/// GPT-2/CLIP's reversible byte -> printable character table: the 188 printable
/// Latin-1 bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) map to themselves, the other 68
/// bytes to `U+0100 + n` in byte order. Index = byte.
pub fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

/// The byte characters in CLIP's vocabulary order: the printable bytes first (in byte
/// order), then the remapped ones — the order of the `dict` `bytes_to_unicode()`
/// returns in Python, which is the order of ids 0..256.
pub fn byte_vocab_order() -> Vec<char> {
    let table = bytes_to_unicode();
    let mut chars: Vec<char> = table.to_vec();
    chars.sort_by_key(|&c| (u32::from(c) > 0xff, u32::from(c)));
    chars
}

/// Vocabulary, merges and the merge loop.
pub struct Bpe {
    encoder: HashMap<String, u32>,
    decoder: HashMap<u32, String>,
    /// `(left id, right id) -> (rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_encoder: [char; 256],
    byte_decoder: HashMap<char, u8>,
    unk_id: Option<u32>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bpe")
            .field("vocab", &self.encoder.len())
            .field("merges", &self.merges.len())
            .finish()
    }
}

impl Bpe {
    /// A BPE from a token -> id vocabulary and merges in rank order (`("c", "at</w>")`).
    /// Every merge's two parts and their concatenation must be in the vocabulary;
    /// `source` names the files in errors. `unk` is the token emitted for a symbol
    /// missing from the vocabulary (none can be missing with a byte-level vocabulary).
    pub fn new(
        encoder: HashMap<String, u32>,
        merges: &[(String, String)],
        unk: Option<&str>,
        source: &str,
    ) -> Result<Bpe> {
        let mut decoder = HashMap::with_capacity(encoder.len());
        for (token, &id) in &encoder {
            if let Some(other) = decoder.insert(id, token.clone()) {
                return Err(DiffusionError::Tokenizer(format!(
                    "{source}: id {id} is given to both {other:?} and {token:?}"
                )));
            }
        }
        let lookup = |t: &str, line: usize| {
            encoder.get(t).copied().ok_or_else(|| {
                DiffusionError::Tokenizer(format!(
                    "{source}: merge {} ({t:?}) uses a token that is not in the vocabulary",
                    line + 1
                ))
            })
        };
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let merged = lookup(&format!("{a}{b}"), rank)?;
            let key = (lookup(a, rank)?, lookup(b, rank)?);
            // A repeated merge keeps its first (lowest) rank, as `tokenizers` does.
            ranks.entry(key).or_insert((rank as u32, merged));
        }
        let unk_id = match unk {
            Some(t) => Some(encoder.get(t).copied().ok_or_else(|| {
                DiffusionError::Tokenizer(format!(
                    "{source}: the unknown token {t:?} is not in the vocabulary"
                ))
            })?),
            None => None,
        };
        let byte_encoder = bytes_to_unicode();
        let byte_decoder = byte_encoder
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Bpe {
            encoder,
            decoder,
            merges: ranks,
            byte_encoder,
            byte_decoder,
            unk_id,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// CLIP's own construction from `bpe_simple_vocab_16e6.txt`: skip the header
    /// line, take the next `num_merges` merges; the vocabulary is the 256 byte
    /// characters, the same with `</w>`, every merge joined, then `specials`.
    pub fn from_merges_file(
        text: &str,
        num_merges: usize,
        specials: &[&str],
        source: &str,
    ) -> Result<Bpe> {
        let mut merges = Vec::with_capacity(num_merges);
        for (i, line) in text.lines().skip(1).take(num_merges).enumerate() {
            merges.push(parse_merge(line, i + 2, source)?);
        }
        if merges.len() != num_merges {
            return Err(DiffusionError::Tokenizer(format!(
                "{source}: expected {num_merges} merges after the header line, found {}",
                merges.len()
            )));
        }
        let bytes = byte_vocab_order();
        let mut vocab: Vec<String> = bytes.iter().map(char::to_string).collect();
        vocab.extend(bytes.iter().map(|c| format!("{c}{END_OF_WORD}")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend(specials.iter().map(|s| s.to_string()));
        let mut encoder = HashMap::with_capacity(vocab.len());
        for (id, token) in vocab.into_iter().enumerate() {
            if encoder.insert(token.clone(), id as u32).is_some() {
                return Err(DiffusionError::Tokenizer(format!(
                    "{source}: the token {token:?} appears twice in the vocabulary"
                )));
            }
        }
        Bpe::new(encoder, &merges, None, source)
    }

    /// The number of ids (`len(tokenizer.get_vocab())` before added tokens).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// The id of a vocabulary token (`"cat</w>"` -> 2368).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.encoder.get(token).copied()
    }

    /// The token of an id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.decoder.get(&id).map(String::as_str)
    }

    /// The number of merges.
    pub fn num_merges(&self) -> usize {
        self.merges.len()
    }

    /// Token ids of one pre-tokenized word (its raw text: bytes are mapped here).
    pub fn encode_word(&self, word: &str) -> Vec<u32> {
        if word.is_empty() {
            return Vec::new();
        }
        let cache = || self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ids) = cache().get(word) {
            return ids.clone();
        }
        let ids = self.merge_word(word);
        let mut c = cache();
        if c.len() < CACHE_CAPACITY {
            c.insert(word.to_string(), ids.clone());
        }
        ids
    }

    fn merge_word(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word
            .bytes()
            .map(|b| self.byte_encoder[b as usize])
            .collect();
        let last = chars.len() - 1;
        let mut symbols: Vec<u32> = Vec::with_capacity(chars.len());
        for (i, c) in chars.iter().enumerate() {
            let s = if i == last {
                format!("{c}{END_OF_WORD}")
            } else {
                c.to_string()
            };
            match (self.encoder.get(&s), self.unk_id) {
                (Some(&id), _) | (None, Some(id)) => symbols.push(id),
                (None, None) => {}
            }
        }
        loop {
            // The adjacent pair with the lowest rank.
            let best = symbols
                .windows(2)
                .filter_map(|w| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(r, m)| (r, w[0], w[1], m))
                })
                .min_by_key(|&(r, ..)| r);
            let Some((_, a, b, merged)) = best else {
                break;
            };
            let mut out = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    out.push(merged);
                    i += 2;
                } else {
                    out.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = out;
        }
        symbols
    }

    /// Bytes of a token's text (the inverse of the byte mapping; characters outside
    /// the table, as in added tokens, keep their UTF-8 bytes).
    pub fn token_bytes(&self, token: &str, out: &mut Vec<u8>) {
        for c in token.chars() {
            match self.byte_decoder.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

/// One merges line `"c at</w>"` -> `("c", "at</w>")`; `line_no` is 1-based.
pub fn parse_merge(line: &str, line_no: usize, source: &str) -> Result<(String, String)> {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
            Ok((a.to_string(), b.to_string()))
        }
        _ => Err(DiffusionError::Tokenizer(format!(
            "{source}: line {line_no} is not a merge of two tokens: {line:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_clip() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ'); // U+0120: the 33rd remapped byte
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xad], 'Ń'); // the soft hyphen is remapped, last of all
        let order = byte_vocab_order();
        assert_eq!(order[0], '!');
        assert_eq!(order[93], '~');
        assert_eq!(order[94], '¡');
        assert_eq!(order[188], 'Ā');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn merge_loop_on_a_toy_vocabulary() {
        let vocab = ["c", "a", "t", "t</w>", "at</w>", "cat</w>", "ca"];
        let encoder = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        // "c a" is learned after "a t</w>": the loop must take the lower rank first.
        let merges = vec![
            ("a".to_string(), "t</w>".to_string()),
            ("c".to_string(), "at</w>".to_string()),
            ("c".to_string(), "a".to_string()),
        ];
        let bpe = Bpe::new(encoder, &merges, None, "toy").unwrap();
        assert_eq!(bpe.encode_word("cat"), vec![5]);
        assert_eq!(bpe.encode_word("cat"), vec![5]); // from the cache
                                                     // "a</w>" is not in the vocabulary and there is no unknown token: dropped.
        assert_eq!(bpe.encode_word("ca"), vec![0]);
        let bad = vec![("c".to_string(), "x".to_string())];
        let enc = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let err = Bpe::new(enc, &bad, None, "toy").unwrap_err().to_string();
        assert!(err.contains("merge 1"), "{err}");
    }
}
