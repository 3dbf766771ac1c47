//! ClipTokenizer against transformers' CLIPTokenizer (fixtures/clip_tokenizer.json,
//! made by scripts/sd_fixtures/clip.py): every prompt of the corpus, under the
//! embedded vocabulary and under three tokenizer folders (bare, SD 1.x, SD 2.x).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use diffusion::clip::ClipTokenizer;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(root().join("fixtures/clip_tokenizer.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A fresh temporary folder for this test.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("clip_tokenizer_test_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// vocab.json + merges.txt as HuggingFace ships them, written independently of the
/// crate's BPE code (the construction of OpenAI's `SimpleTokenizer`).
fn write_vocab_files(dir: &Path) {
    let gz = std::fs::read(root().join("diffusion/assets/bpe_simple_vocab_16e6.txt.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let merges: Vec<&str> = text.split('\n').skip(1).take(48894).collect();
    let mut printable: Vec<u32> = (0x21..=0x7e)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars: Vec<char> = printable
        .iter()
        .map(|&b| char::from_u32(b).unwrap())
        .collect();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(char::from_u32(256 + n).unwrap());
            n += 1;
        }
    }
    let mut vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    vocab.extend(chars.iter().map(|c| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|m| m.replace(' ', "")));
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    assert_eq!(vocab.len(), 49408);
    let map: serde_json::Map<String, Value> = vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, Value::from(i)))
        .collect();
    std::fs::write(dir.join("vocab.json"), serde_json::to_string(&map).unwrap()).unwrap();
    std::fs::write(
        dir.join("merges.txt"),
        format!("#version: 0.2\n{}\n", merges.join("\n")),
    )
    .unwrap();
}

/// The fixture's three folders: `base` (vocab only), `sd1`, `sd2` (under folders
/// named after `test`, as tests run in parallel).
fn tokenizer_dirs(fx: &Value, test: &str) -> HashMap<String, ClipTokenizer> {
    let mut out = HashMap::new();
    let base = temp_dir(&format!("{test}_vocab"));
    write_vocab_files(&base);
    for (name, files) in fx["configs"].as_object().unwrap() {
        let dir = temp_dir(&format!("{test}_{name}"));
        for f in ["vocab.json", "merges.txt"] {
            std::fs::copy(base.join(f), dir.join(f)).unwrap();
        }
        for (fname, text) in files.as_object().unwrap() {
            std::fs::write(dir.join(fname), text.as_str().unwrap()).unwrap();
        }
        out.insert(name.clone(), ClipTokenizer::from_dir(&dir).unwrap());
    }
    out
}

#[test]
fn reference_examples() {
    let tok = ClipTokenizer::embedded().unwrap();
    assert_eq!(tok.len(), 49408);
    let padded = |s: &str| {
        let mut v = vec![49406];
        v.extend(tok.encode(s).unwrap());
        v.push(49407);
        v
    };
    assert_eq!(
        padded("a photo of a cat"),
        [49406, 320, 1125, 539, 320, 2368, 49407]
    );
    assert_eq!(
        padded("a photograph of an astronaut riding a horse"),
        [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    );
    assert_eq!(padded(""), [49406, 49407]);
    let e = tok.encode_padded("", 77).unwrap();
    assert_eq!(e.ids[..2], [49406, 49407]);
    assert!(e.ids[2..].iter().all(|&i| i == 49407) && e.ids.len() == 77 && !e.truncated);
}

#[test]
fn corpus_matches_transformers() {
    let fx = fixture();
    let dirs = tokenizer_dirs(&fx, "corpus");
    let embedded = ClipTokenizer::embedded().unwrap();
    assert_eq!(
        (
            dirs["sd1"].pad_id(),
            dirs["sd2"].pad_id(),
            embedded.pad_id()
        ),
        (49407, 0, 49407)
    );
    assert_eq!(dirs["sd1"].model_max_length(), 77);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() > 400, "the corpus has {} prompts", cases.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let base = ids(&case["ids"]);
        let mut check = |what: &str, got: String, want: String| {
            checked += 1;
            if got != want {
                failures.push(format!("{prompt:?} {what}:\n  got  {got}\n  want {want}"));
            }
        };
        check(
            "embedded",
            format!("{:?}", embedded.encode(prompt).unwrap()),
            format!("{base:?}"),
        );
        for name in ["base", "sd1", "sd2"] {
            let want = case.get(name).map_or(base.clone(), ids);
            check(
                name,
                format!("{:?}", dirs[name].encode(prompt).unwrap()),
                format!("{want:?}"),
            );
            if let Some(p) = case.get(format!("padded_{name}")) {
                let enc = dirs[name].encode_padded(prompt, 77).unwrap();
                check("padded", format!("{:?}", enc.ids), format!("{:?}", ids(p)));
                let content = dirs[name].encode(prompt).unwrap().len();
                check(
                    "truncated",
                    enc.truncated.to_string(),
                    (content > 75).to_string(),
                );
            }
        }
        let full: Vec<u32> = [49406]
            .into_iter()
            .chain(base.iter().copied())
            .chain([49407])
            .collect();
        check(
            "decode",
            embedded.decode(&full, false).unwrap(),
            case["decode"].as_str().unwrap().into(),
        );
        check(
            "decode_skip",
            embedded.decode(&full, true).unwrap(),
            case["decode_skip"].as_str().unwrap().into(),
        );
        let removed = embedded.truncated_text(prompt, 77).unwrap();
        check(
            "removed_text",
            format!("{removed:?}"),
            format!("{:?}", case["removed_text"].as_str()),
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The corpus does exercise truncation and the SD 2.x pad token.
    assert!(
        cases
            .iter()
            .filter(|c| c.get("removed_text").is_some())
            .count()
            >= 8
    );
    assert!(cases.iter().filter(|c| c.get("sd2").is_some()).count() >= 10);
}

#[test]
fn added_tokens_match_transformers() {
    let fx = fixture();
    let mut tok = tokenizer_dirs(&fx, "added").remove("sd1").unwrap();
    for (i, t) in fx["added_tokens"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            tok.add_token(t.as_str().unwrap()).unwrap(),
            49408 + i as u32
        );
    }
    for case in fx["added_cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(prompt).unwrap(), want, "{prompt:?}");
        let full: Vec<u32> = [49406].into_iter().chain(want).chain([49407]).collect();
        assert_eq!(
            tok.decode(&full, false).unwrap(),
            case["decode"].as_str().unwrap(),
            "{prompt:?}"
        );
        assert_eq!(
            tok.decode(&full, true).unwrap(),
            case["decode_skip"].as_str().unwrap(),
            "{prompt:?}"
        );
    }
    let err = tok.add_token("<cat-toy>").unwrap_err().to_string();
    assert!(
        err.contains("already in the vocabulary") && err.contains("49408"),
        "{err}"
    );
    assert!(tok
        .add_token("cat</w>")
        .unwrap_err()
        .to_string()
        .contains("2368"));
    assert!(tok.add_token("  ").is_err());
}

#[test]
fn truncation_reports_the_cut_words() {
    let tok = ClipTokenizer::embedded().unwrap();
    let prompt = format!("{}horse riding astronaut", "a ".repeat(74));
    let enc = tok.encode_padded(&prompt, 77).unwrap();
    assert!(enc.truncated);
    assert_eq!(enc.ids[75], 4558); // "horse", the 75th content token
    assert_eq!(enc.ids[76], 49407);
    let cut = tok.truncated_text(&prompt, 77).unwrap();
    assert_eq!(cut.as_deref(), Some("riding astronaut"));
    assert_eq!(tok.truncated_text("a photo of a cat", 77).unwrap(), None);
    let err = tok.encode_padded("x", 1).unwrap_err().to_string();
    assert!(err.contains("max_len 1"), "{err}");
}

#[test]
fn folder_errors_name_the_file() {
    let err = ClipTokenizer::from_dir("/nonexistent/tokenizer")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/tokenizer"), "{err}");

    let empty = temp_dir("empty");
    let err = ClipTokenizer::from_dir(&empty).unwrap_err().to_string();
    assert!(err.contains("vocab.json and merges.txt"), "{err}");

    let only_vocab = temp_dir("only_vocab");
    std::fs::write(only_vocab.join("vocab.json"), "{}").unwrap();
    let err = ClipTokenizer::from_dir(&only_vocab)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("merges.txt") && err.contains("missing"),
        "{err}"
    );

    let corrupt = temp_dir("corrupt");
    std::fs::write(corrupt.join("vocab.json"), "{\"a\": 0,").unwrap();
    std::fs::write(corrupt.join("merges.txt"), "#version: 0.2\n").unwrap();
    let err = ClipTokenizer::from_dir(&corrupt).unwrap_err().to_string();
    assert!(err.contains("vocab.json") && err.contains("JSON"), "{err}");

    let bad_merge = temp_dir("bad_merge");
    std::fs::write(
        bad_merge.join("vocab.json"),
        r#"{"a": 0, "b": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}"#,
    )
    .unwrap();
    std::fs::write(bad_merge.join("merges.txt"), "#version: 0.2\na b c\n").unwrap();
    let err = ClipTokenizer::from_dir(&bad_merge).unwrap_err().to_string();
    assert!(
        err.contains("merges.txt") && err.contains("line 2"),
        "{err}"
    );

    std::fs::write(bad_merge.join("merges.txt"), "#version: 0.2\na b\n").unwrap();
    let err = ClipTokenizer::from_dir(&bad_merge).unwrap_err().to_string();
    assert!(
        err.contains("\"ab\"") && err.contains("not in the vocabulary"),
        "{err}"
    );

    std::fs::write(bad_merge.join("merges.txt"), "#version: 0.2\n").unwrap();
    std::fs::write(
        bad_merge.join("special_tokens_map.json"),
        r#"{"pad_token": "<pad>"}"#,
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(&bad_merge).unwrap_err().to_string();
    assert!(err.contains("pad token \"<pad>\""), "{err}");

    std::fs::write(
        bad_merge.join("special_tokens_map.json"),
        r#"{"pad_token": 3"#,
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(&bad_merge).unwrap_err().to_string();
    assert!(err.contains("special_tokens_map.json"), "{err}");

    let gz = temp_dir("gz");
    std::fs::write(gz.join("bpe_simple_vocab_16e6.txt.gz"), b"not gzip").unwrap();
    let err = ClipTokenizer::from_dir(&gz).unwrap_err().to_string();
    assert!(
        err.contains("bpe_simple_vocab_16e6.txt.gz") && err.contains("gzip"),
        "{err}"
    );
}

#[test]
fn openai_merges_file_in_a_folder_and_decode_errors() {
    let dir = temp_dir("openai");
    std::fs::copy(
        root().join("diffusion/assets/bpe_simple_vocab_16e6.txt.gz"),
        dir.join("bpe_simple_vocab_16e6.txt.gz"),
    )
    .unwrap();
    std::fs::write(dir.join("special_tokens_map.json"), r#"{"pad_token": "!"}"#).unwrap();
    let tok = ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.pad_id(), 0);
    assert_eq!(tok.encode("a cat!").unwrap(), [320, 2368, 0]); // "!" is now the pad token
    let e = tok.encode_padded("a cat", 8).unwrap();
    assert_eq!(e.ids, [49406, 320, 2368, 49407, 0, 0, 0, 0]);
    let err = tok.decode(&[320, 49408], false).unwrap_err().to_string();
    assert!(err.contains("49408"), "{err}");
}

/// transformers 5 saves a tokenizer as `tokenizer.json` + `tokenizer_config.json` only
/// (a diffusers pipeline saved today has no vocab.json/merges.txt).
#[test]
fn transformers5_saved_folders_match() {
    let fx = fixture();
    let base = temp_dir("saved_vocab");
    write_vocab_files(&base);
    let vocab: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("vocab.json")).unwrap()).unwrap();
    let merges: Vec<Value> = std::fs::read_to_string(base.join("merges.txt"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            Value::from(vec![a, b])
        })
        .collect();
    for (name, saved) in fx["saved"].as_object().unwrap() {
        let dir = temp_dir(name);
        for (fname, text) in saved["files"].as_object().unwrap() {
            let mut text = text.as_str().unwrap().to_string();
            if fname == "tokenizer.json" {
                let mut tj: Value = serde_json::from_str(&text).unwrap();
                tj["model"]["vocab"] = vocab.clone();
                tj["model"]["merges"] = Value::from(merges.clone());
                text = serde_json::to_string(&tj).unwrap();
            }
            std::fs::write(dir.join(fname), text).unwrap();
        }
        assert!(!dir.join("vocab.json").exists());
        let tok = ClipTokenizer::from_dir(&dir).unwrap();
        assert_eq!(
            tok.pad_id() as u64,
            saved["pad_id"].as_u64().unwrap(),
            "{name}"
        );
        let cases = saved["cases"].as_array().unwrap();
        assert!(cases.len() > 100);
        for case in cases {
            let prompt = case["prompt"].as_str().unwrap();
            assert_eq!(
                tok.encode(prompt).unwrap(),
                ids(&case["ids"]),
                "{name}: {prompt:?}"
            );
        }
    }
    // The added token survived the save: <cat-toy> is 49408 in the SD 1 folder.
    let sd1 = &fx["saved"]["sd1_saved"]["cases"];
    let cat = sd1
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["prompt"] == "a <cat-toy> photo")
        .unwrap();
    assert_eq!(ids(&cat["ids"]), [320, 49408, 1125]);

    let bad = temp_dir("saved_bad");
    std::fs::write(
        bad.join("tokenizer.json"),
        r#"{"model": {"type": "WordPiece", "vocab": {}, "merges": []}}"#,
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(&bad).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("not a CLIP tokenizer"),
        "{err}"
    );
}

#[test]
fn legacy_added_tokens_json() {
    let dir = temp_dir("legacy_added");
    write_vocab_files(&dir);
    std::fs::write(dir.join("added_tokens.json"), r#"{"<cat-toy>": 49408}"#).unwrap();
    let tok = ClipTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.len(), 49409);
    assert_eq!(tok.encode("A <Cat-Toy> photo").unwrap(), [320, 49408, 1125]);
}
