//! Byte-pair encoding from scratch: learning merges from a corpus, applying them to
//! a word, and CLIP's byte-level vocabulary built from its 48,894 merges.
//!
//! Training (Sennrich et al. 2016): split every word into characters, the last one
//! marked with `</w>`; count adjacent symbol pairs over the corpus (weighted by word
//! frequency); merge the most frequent pair everywhere; repeat. The merges, in the
//! order learned, are the model: their index is the *rank*.
//!
//! Encoding a word: start from its symbols; while some adjacent pair is a learned
//! merge, merge the pair of lowest rank (every occurrence, left to right).
//!
//! CLIP works on UTF-8 *bytes* mapped to 256 printable characters
//! (`bytes_to_unicode`), so no word is ever unknown. Its vocabulary is the 256 byte
//! characters, the same 256 with `</w>`, one token per merge, then
//! `<|startoftext|>` (49406) and `<|endoftext|>` (49407): 256 + 256 + 48,894 + 2 =
//! 49,408 ids. The library's version is `diffusion/src/clip/bpe.rs`.

use std::collections::HashMap;

use diffusion::Result;

/// The end-of-word marker.
pub const EOW: &str = "</w>";

/// A word as BPE symbols before any merge: its characters, the last with `</w>`.
pub fn initial_symbols(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i + 1 == n {
                format!("{c}{EOW}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Merge every occurrence of `(a, b)` in `symbols`, left to right.
pub fn merge_pair(symbols: &[String], a: &str, b: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    while i < symbols.len() {
        if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
            out.push(format!("{a}{b}"));
            i += 2;
        } else {
            out.push(symbols[i].clone());
            i += 1;
        }
    }
    out
}

/// One learned merge and how often its pair occurred when it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    pub left: String,
    pub right: String,
    pub count: usize,
}

/// Learn up to `num_merges` merges from `(word, frequency)` pairs. Ties in count go to
/// the pair that sorts first, so training is deterministic. Stops early when no
/// pair is left.
pub fn train_bpe(words: &[(&str, usize)], num_merges: usize) -> Vec<Merge> {
    let mut corpus: Vec<(Vec<String>, usize)> = words
        .iter()
        .map(|&(w, f)| (initial_symbols(w), f))
        .collect();
    let mut merges = Vec::new();
    for _ in 0..num_merges {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for (symbols, f) in &corpus {
            for pair in symbols.windows(2) {
                *counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_insert(0) += f;
            }
        }
        let best = counts
            .into_iter()
            .max_by(|(pa, ca), (pb, cb)| ca.cmp(cb).then_with(|| pb.cmp(pa)));
        let Some(((a, b), count)) = best else { break };
        for (symbols, _) in corpus.iter_mut() {
            *symbols = merge_pair(symbols, &a, &b);
        }
        merges.push(Merge {
            left: a,
            right: b,
            count,
        });
    }
    merges
}

/// Count words of a text (lower-cased, split on anything that is not a letter).
pub fn word_counts(text: &str) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in text
        .to_lowercase()
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Applies merges by rank.
pub struct BpeEncoder {
    ranks: HashMap<(String, String), usize>,
}

impl BpeEncoder {
    /// Merges in rank order (the first learned has rank 0).
    pub fn new(merges: &[(String, String)]) -> BpeEncoder {
        let mut ranks = HashMap::with_capacity(merges.len());
        for (r, (a, b)) in merges.iter().enumerate() {
            ranks.entry((a.clone(), b.clone())).or_insert(r);
        }
        BpeEncoder { ranks }
    }

    /// The symbols of `word` (already a string of symbol characters) after merging.
    pub fn encode_word(&self, word: &str) -> Vec<String> {
        let mut symbols = initial_symbols(word);
        loop {
            let best = symbols
                .windows(2)
                .filter_map(|p| {
                    self.ranks
                        .get(&(p[0].clone(), p[1].clone()))
                        .map(|&r| (r, p))
                })
                .min_by_key(|(r, _)| *r)
                .map(|(_, p)| (p[0].clone(), p[1].clone()));
            match best {
                Some((a, b)) => symbols = merge_pair(&symbols, &a, &b),
                None => return symbols,
            }
        }
    }
}

/// GPT-2/CLIP's byte -> character table, written from its definition: the bytes
/// `!`..`~`, `¡`..`¬` and `®`..`ÿ` stand for themselves; the 68 others (controls,
/// space, DEL, NBSP, soft hyphen...) get `U+0100`, `U+0101`, ... in byte order.
pub fn bytes_to_unicode() -> Vec<char> {
    let keep =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    (0..256u32)
        .map(|b| {
            let code = if keep(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(code).unwrap_or('?')
        })
        .collect()
}

/// CLIP's merges file, as shipped with the library (`diffusion/assets`).
const CLIP_BPE_GZ: &[u8] = include_bytes!("../../../diffusion/assets/bpe_simple_vocab_16e6.txt.gz");

/// The merges CLIP uses: lines 2 .. 48,895 of `bpe_simple_vocab_16e6.txt`.
pub fn clip_merges() -> Result<Vec<(String, String)>> {
    let text = diffusion::clip::files::decode_bpe_bytes(
        CLIP_BPE_GZ,
        true,
        std::path::Path::new("bpe_simple_vocab_16e6.txt.gz"),
    )?;
    Ok(text
        .lines()
        .skip(1)
        .take(diffusion::clip::files::NUM_MERGES)
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect())
}

/// CLIP's tokenizer from scratch: the vocabulary in id order and the merges.
pub struct ClipBpe {
    pub encoder: BpeEncoder,
    pub vocab: HashMap<String, u32>,
    pub byte_chars: Vec<char>,
}

/// `<|startoftext|>` and `<|endoftext|>`.
pub const BOS_ID: u32 = 49406;
pub const EOS_ID: u32 = 49407;

impl ClipBpe {
    /// ids 0..256: the byte characters in code-point order; 256..512 the same with
    /// `</w>`; then each merge's joined token; then the two specials.
    pub fn new(merges: &[(String, String)]) -> ClipBpe {
        let byte_chars = bytes_to_unicode();
        let mut order = byte_chars.clone();
        order.sort();
        let mut tokens: Vec<String> = order.iter().map(char::to_string).collect();
        tokens.extend(order.iter().map(|c| format!("{c}{EOW}")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push("<|startoftext|>".into());
        tokens.push("<|endoftext|>".into());
        let vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        ClipBpe {
            encoder: BpeEncoder::new(merges),
            vocab,
            byte_chars,
        }
    }

    /// One pre-tokenized word -> its BPE tokens (as strings of byte characters).
    pub fn word_tokens(&self, word: &str) -> Vec<String> {
        let mapped: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
        self.encoder.encode_word(&mapped)
    }

    /// A prompt -> `[BOS, ids..., EOS]`. Normalising and splitting into words reuse the
    /// library's `diffusion::clip::text` (lower case, CLIP's word regex).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let re = diffusion::clip::text::word_regex()?;
        let norm = diffusion::clip::text::normalize(text);
        let mut ids = vec![BOS_ID];
        for w in diffusion::clip::text::pre_tokenize(&re, norm.trim()) {
            for t in self.word_tokens(w) {
                let id = self.vocab.get(&t).copied().ok_or_else(|| {
                    diffusion::DiffusionError::Tokenizer(format!("token {t:?} not in vocabulary"))
                })?;
                ids.push(id);
            }
        }
        ids.push(EOS_ID);
        Ok(ids)
    }

    /// As Stable Diffusion feeds the encoder: at most `max_len - 2` content ids between
    /// BOS and EOS, then EOS repeated up to `max_len` (SD 1.x pads with `<|endoftext|>`).
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        let ids = self.encode(text)?;
        let content = &ids[1..ids.len() - 1];
        let keep = content.len().min(max_len.saturating_sub(2));
        let mut out = vec![BOS_ID];
        out.extend_from_slice(&content[..keep]);
        out.resize(max_len.max(2), EOS_ID);
        Ok(out)
    }
}
