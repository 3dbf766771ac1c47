//! ClipTextModel against transformers' CLIPTextModel (fixtures/clip_text_model.safetensors
//! and fixtures/tiny-sd/text_encoder, made by scripts/sd_fixtures/clip.py): the tiny
//! random model's last_hidden_state for SD 1.x-like (quick_gelu) and SD 2.x-like
//! (gelu, pad "!") prompts, clip_skip, the transformers-5 key layout, and textual
//! inversion loaded as diffusers does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use diffusion::clip::{
    expand_multi_vector_tokens, load_textual_inversion, ClipTextConfig, ClipTextModel,
    ClipTokenizer,
};
use nn::{ParamStore, VarBuilder};
use serde_json::Value;
use tensor::io::{DType, SafeTensorsFile};
use tensor::Tensor;

/// transformers and this crate run the same f32 math in different orders.
const TOL: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text_encoder_dir() -> PathBuf {
    root().join("fixtures/tiny-sd/text_encoder")
}

struct Fixture {
    file: SafeTensorsFile,
    cases: Vec<Value>,
}

fn fixture() -> Fixture {
    let file = SafeTensorsFile::open(root().join("fixtures/clip_text_model.safetensors")).unwrap();
    let meta = file.metadata().unwrap();
    let cases: Vec<Value> = serde_json::from_str(&meta["cases"]).unwrap();
    Fixture { file, cases }
}

impl Fixture {
    fn case(&self, name: &str) -> &Value {
        self.cases.iter().find(|c| c["name"] == name).unwrap()
    }
    fn config(&self, key: &str) -> ClipTextConfig {
        serde_json::from_str(&self.file.metadata().unwrap()[key]).unwrap()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "clip_text_model_test_{}_{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// SD 2.x's tokenizer: the embedded vocabulary with pad token "!".
fn sd2_tokenizer() -> ClipTokenizer {
    let dir = temp_dir("sd2_tokenizer");
    std::fs::copy(
        root().join("diffusion/assets/bpe_simple_vocab_16e6.txt.gz"),
        dir.join("bpe_simple_vocab_16e6.txt.gz"),
    )
    .unwrap();
    std::fs::write(dir.join("special_tokens_map.json"), r#"{"pad_token": "!"}"#).unwrap();
    ClipTokenizer::from_dir(&dir).unwrap()
}

fn ids_of(case: &Value) -> Vec<u32> {
    case["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Tokenize the case's prompts with `tok` (checking the ids transformers used), run
/// the model, compare with the stored hidden state.
fn check(fx: &Fixture, name: &str, tok: &ClipTokenizer, model: &ClipTextModel) -> f32 {
    let case = fx.case(name);
    let want_ids = ids_of(case);
    let batch = case["batch"].as_u64().unwrap() as usize;
    let mut ids = Vec::new();
    for p in case["prompts"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        if case["padded"].as_bool().unwrap() {
            ids.extend(tok.encode_padded(p, 77).unwrap().ids);
        } else {
            ids.push(tok.bos_id());
            ids.extend(tok.encode(p).unwrap());
            ids.push(tok.eos_id());
        }
    }
    assert_eq!(ids, want_ids, "{name}: token ids");
    let skip = case["clip_skip"].as_u64().unwrap() as usize;
    let h = autodiff::no_grad(|| model.forward_clip_skip(&ids, batch, skip)).unwrap();
    let want = fx.file.get(name).unwrap();
    assert_eq!(h.dims(), want.dims(), "{name}");
    let diff = max_abs_diff(h.value(), &want);
    assert!(diff <= TOL, "{name}: max abs diff {diff:e} > {TOL:e}");
    diff
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn sd1_like_hidden_states_match_transformers() {
    let fx = fixture();
    let store = ParamStore::new();
    let model = ClipTextModel::from_dir(text_encoder_dir(), &store).unwrap();
    assert_eq!(model.config, fx.config("config_quick_gelu"));
    // 2 layers x 16 tensors + 2 embeddings + final norm; position_ids is skipped.
    assert_eq!(store.len(), 36);
    let tok = ClipTokenizer::embedded().unwrap();
    let mut worst = 0.0f32;
    for name in [
        "sd1_empty",
        "sd1_cat",
        "sd1_long",
        "sd1_batch2",
        "sd1_unpadded",
        "sd1_clip_skip1",
    ] {
        worst = worst.max(check(&fx, name, &tok, &model));
    }
    println!("quick_gelu cases: max abs diff {worst:e}");
    // The long prompt was cut to 75 content tokens.
    let long = fx.case("sd1_long")["prompts"][0].as_str().unwrap();
    assert!(tok.encode_padded(long, 77).unwrap().truncated);
}

#[test]
fn sd2_like_gelu_and_pad_token_match_transformers() {
    let fx = fixture();
    let cfg = fx.config("config_gelu");
    let store = ParamStore::new();
    let vb =
        VarBuilder::from_safetensors(&store, text_encoder_dir().join("model.safetensors")).unwrap();
    let model = ClipTextModel::new(vb.clone(), &cfg).unwrap();
    vb.finish().unwrap();
    let tok = sd2_tokenizer();
    for name in ["sd2_batch2", "sd2_long"] {
        check(&fx, name, &tok, &model);
    }
    // The pad id 0 is in the input of the SD 2 case.
    assert_eq!(*ids_of(fx.case("sd2_batch2")).last().unwrap(), 0);
}

#[test]
fn transformers5_layout_without_text_model_prefix() {
    let fx = fixture();
    let src = SafeTensorsFile::open(text_encoder_dir().join("model.safetensors")).unwrap();
    let dir = temp_dir("flat");
    std::fs::copy(
        text_encoder_dir().join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let tensors: Vec<(String, Tensor)> = src
        .names()
        .into_iter()
        .filter(|k| !k.ends_with("position_ids"))
        .map(|k| {
            (
                k.strip_prefix("text_model.").unwrap().to_string(),
                src.get(k).unwrap(),
            )
        })
        .collect();
    tensor::io::save(
        dir.join("model.safetensors"),
        tensors.iter().map(|(k, t)| (k.as_str(), t)),
        DType::F32,
    )
    .unwrap();
    let store = ParamStore::new();
    let model = ClipTextModel::from_dir(&dir, &store).unwrap();
    assert!(store.names().iter().all(|n| !n.starts_with("text_model.")));
    check(
        &fx,
        "sd1_batch2",
        &ClipTokenizer::embedded().unwrap(),
        &model,
    );
}

#[test]
fn textual_inversion_matches_diffusers() {
    let fx = fixture();
    let store = ParamStore::new();
    let mut model = ClipTextModel::from_dir(text_encoder_dir(), &store).unwrap();
    let mut tok = ClipTokenizer::embedded().unwrap();
    let single = root().join("fixtures/clip_learned_embeds.safetensors");
    let multi = root().join("fixtures/clip_learned_embeds_multi.safetensors");
    assert_eq!(
        load_textual_inversion(&single, None, &mut tok, &mut model).unwrap(),
        ["<cat-toy>"]
    );
    assert_eq!(
        load_textual_inversion(&multi, None, &mut tok, &mut model).unwrap(),
        ["<style>", "<style>_1", "<style>_2"]
    );
    assert_eq!(tok.len(), 49412);
    assert_eq!(
        model.embeddings.token_embedding_weight().unwrap().dims(),
        &[49412, 32]
    );
    // The new rows are parameters of their own, under the token table's name.
    assert_eq!(
        store.names().last().unwrap(),
        "text_model.embeddings.token_embedding.added.3"
    );

    let case = fx.case("ti_batch2");
    let raw: Vec<&str> = case["raw_prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let converted: Vec<String> = raw
        .iter()
        .map(|p| expand_multi_vector_tokens(&tok, p).unwrap())
        .collect();
    let want: Vec<&str> = case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(converted, want);
    check(&fx, "ti_batch2", &tok, &model);

    // The same file twice: its token exists now.
    let err = load_textual_inversion(&single, None, &mut tok, &mut model)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("<cat-toy>") && err.contains("already"),
        "{err}"
    );
    // Under another name it loads again (diffusers' `token=` argument).
    let added = load_textual_inversion(&single, Some("<cat-toy-2>"), &mut tok, &mut model).unwrap();
    assert_eq!(added, ["<cat-toy-2>"]);
    assert_eq!(tok.encode("<cat-toy-2>").unwrap(), [49412]);
}

#[test]
fn textual_inversion_errors() {
    let store = ParamStore::new();
    let mut model = ClipTextModel::from_dir(text_encoder_dir(), &store).unwrap();
    let mut tok = ClipTokenizer::embedded().unwrap();
    let dir = temp_dir("ti_errors");
    let wide = dir.join("wide.safetensors");
    tensor::io::save(&wide, [("<wide>", &Tensor::zeros([768]))], DType::F32).unwrap();
    let err = load_textual_inversion(&wide, None, &mut tok, &mut model)
        .unwrap_err()
        .to_string();
    assert!(err.contains("width 768") && err.contains("32"), "{err}");
    let two = dir.join("two.safetensors");
    let z = Tensor::zeros([32]);
    tensor::io::save(&two, [("<a>", &z), ("<b>", &z)], DType::F32).unwrap();
    let err = load_textual_inversion(&two, None, &mut tok, &mut model)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exactly one tensor"), "{err}");
    let cat = dir.join("cat.safetensors");
    tensor::io::save(&cat, [("cat</w>", &z)], DType::F32).unwrap();
    let err = load_textual_inversion(&cat, None, &mut tok, &mut model)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2368"), "{err}");
    // Nothing was added by the failed loads.
    assert_eq!((tok.len(), model.embeddings.added.len()), (49408, 0));
    // A tokenizer that is ahead of the model.
    tok.add_token("<only-in-tokenizer>").unwrap();
    let ok = dir.join("ok.safetensors");
    tensor::io::save(&ok, [("<ok>", &z)], DType::F32).unwrap();
    let err = load_textual_inversion(&ok, None, &mut tok, &mut model)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("49409 ids") && err.contains("49408 embedding rows"),
        "{err}"
    );
}

#[test]
fn forward_checks_its_input() {
    let store = ParamStore::new();
    let model = ClipTextModel::from_dir(text_encoder_dir(), &store).unwrap();
    let err = model.forward(&[1, 2, 3], 2).unwrap_err().to_string();
    assert!(err.contains("3 ids") && err.contains("2"), "{err}");
    let err = model.forward(&[49408], 1).unwrap_err().to_string();
    assert!(err.contains("49408"), "{err}");
    let err = model.forward(&[0; 78], 1).unwrap_err().to_string();
    assert!(
        err.contains("78") && err.contains("max_position_embeddings 77"),
        "{err}"
    );
    let err = model
        .forward_clip_skip(&[0; 5], 1, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("clip_skip 2"), "{err}");
    let err = model.forward(&[], 1).unwrap_err().to_string();
    assert!(err.contains("0 ids"), "{err}");
}

#[test]
fn causal_mask_makes_earlier_positions_independent_of_later_ones() {
    let store = ParamStore::new();
    let model = ClipTextModel::from_dir(text_encoder_dir(), &store).unwrap();
    let a = autodiff::no_grad(|| model.forward(&[49406, 320, 2368, 49407], 1)).unwrap();
    let b = autodiff::no_grad(|| model.forward(&[49406, 320, 1929, 49407], 1)).unwrap();
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(a[..64], b[..64]); // positions 0 and 1 see the same prefix
    assert!(a[64..96] != b[64..96]); // position 2 holds "cat" vs "dog"
}

#[test]
fn config_errors_name_the_file() {
    let dir = temp_dir("bad_config");
    std::fs::write(dir.join("config.json"), r#"{"hidden_act": "relu"}"#).unwrap();
    let err = ClipTextModel::from_dir(&dir, &ParamStore::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json") && err.contains("relu"), "{err}");
    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": 30, "num_attention_heads": 4}"#,
    )
    .unwrap();
    let err = ClipTextModel::from_dir(&dir, &ParamStore::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("num_attention_heads 4"),
        "{err}"
    );
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let err = ClipTextModel::from_dir(&dir, &ParamStore::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("missing"),
        "{err}"
    );
    // Weights of another size: the misshapen key is named.
    std::fs::copy(
        text_encoder_dir().join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = ClipTextModel::from_dir(&dir, &ParamStore::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("token_embedding.weight"), "{err}");
}

#[test]
fn sd1_config_has_the_reference_parameter_count() {
    // REFERENCE.md: CLIP ViT-L/14's text model has 123,060,480 parameters in 196 tensors.
    // A constant "generator": drawing 123M real random numbers takes 20 s here.
    struct Constant;
    impl tensor::Rng for Constant {
        fn uniform(&mut self) -> f64 {
            0.25
        }
    }
    let store = ParamStore::new();
    let model = ClipTextModel::new(
        VarBuilder::from_init(&store, Constant),
        &ClipTextConfig::sd1(),
    )
    .unwrap();
    assert_eq!((store.num_elements(), store.len()), (123_060_480, 196));
    let t = std::time::Instant::now();
    let ids: Vec<u32> = ClipTokenizer::embedded()
        .unwrap()
        .encode_padded("a photo of a cat", 77)
        .unwrap()
        .ids;
    let ids: Vec<u32> = ids.iter().chain(&ids).copied().collect();
    let h = autodiff::no_grad(|| model.forward(&ids, 2)).unwrap();
    assert_eq!(h.dims(), &[2, 77, 768]);
    println!(
        "SD 1.x text encoder, batch 2: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn textual_inversion_training_reaches_only_the_new_row() {
    let store = ParamStore::new();
    let mut model = ClipTextModel::from_dir(text_encoder_dir(), &store).unwrap();
    let mut tok = ClipTokenizer::embedded().unwrap();
    let single = root().join("fixtures/clip_learned_embeds.safetensors");
    load_textual_inversion(&single, None, &mut tok, &mut model).unwrap();
    // Textual-inversion training: everything frozen except the added rows.
    store.freeze("text_model").unwrap();
    assert_eq!(
        store
            .unfreeze("text_model.embeddings.token_embedding.added")
            .unwrap(),
        1
    );
    let ids = tok.encode_padded("a <cat-toy> toy", 77).unwrap().ids;
    let loss = model
        .forward(&ids, 1)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let row = &model.embeddings.added[0];
    let g = grads.get(&row.var()).unwrap().to_vec().unwrap();
    assert_eq!(g.len(), 32);
    assert!(g.iter().any(|v| *v != 0.0));
    assert_eq!(store.trainable().len(), 1);
    assert!(grads
        .get_id(model.embeddings.token_embedding.weight.id())
        .is_none());
}
