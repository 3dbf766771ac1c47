#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! UNet2DConditionModel against diffusers 0.42.1 (fixtures from
//! `scripts/gen_fixtures.py --only models`): the tiny-sd SD 1.x-like UNet (conv
//! projections, `attention_head_dim` = heads) on square, non-square and odd latents
//! with per-batch and scalar timesteps; an SD 2.x-like UNet (linear projections,
//! per-block head counts, three levels, two layers per block); an inpainting UNet
//! (`in_channels` 9). Tolerance: max abs diff 1e-4.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use autodiff::{no_grad, Var};
use diffusion::models::embeddings::get_timestep_embedding;
use diffusion::models::{UNet2DConditionConfig, UNet2DConditionModel};
use nn::ParamStore;
use tensor::io::SafeTensorsFile;
use tensor::Tensor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn load(
    name: &str,
) -> (
    BTreeMap<String, Tensor>,
    std::collections::HashMap<String, String>,
) {
    let f = SafeTensorsFile::open(fixtures().join(name)).unwrap();
    let meta = f.metadata().cloned().unwrap_or_default();
    (f.load_all().unwrap(), meta)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_cases(
    unet: &UNet2DConditionModel,
    t: &BTreeMap<String, Tensor>,
    sizes: &[(usize, usize)],
) {
    for &(h, w) in sizes {
        let tag = format!("{h}x{w}");
        let sample = Var::constant(t[&format!("{tag}.sample")].clone());
        let ehs = Var::constant(t[&format!("{tag}.encoder_hidden_states")].clone());
        let ts: Vec<f64> = t[&format!("{tag}.timesteps")]
            .to_vec()
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let out = no_grad(|| unet.forward(&sample, &ts, &ehs)).unwrap();
        let d = max_abs_diff(out.value(), &t[&format!("{tag}.out_per_batch")]);
        println!("{tag} per-batch timesteps: max abs diff {d:e}");
        assert!(d <= 1e-4, "{tag} per-batch: {d}");
        let out = no_grad(|| unet.forward(&sample, 500.0, &ehs)).unwrap();
        let d = max_abs_diff(out.value(), &t[&format!("{tag}.out_t500")]);
        println!("{tag} t=500: max abs diff {d:e}");
        assert!(d <= 1e-4, "{tag} t=500: {d}");
    }
}

fn sizes(meta: &std::collections::HashMap<String, String>) -> Vec<(usize, usize)> {
    let v: Vec<[usize; 2]> = serde_json::from_str(&meta["sizes"]).unwrap();
    v.into_iter().map(|[h, w]| (h, w)).collect()
}

#[test]
fn timestep_embedding_matches_diffusers() {
    let (t, _) = load("models_unet_sd1.safetensors");
    let e = get_timestep_embedding(&[10.0, 980.5], 32, true, 0.0, 1.0, 10000.0).unwrap();
    let d = max_abs_diff(&e, &t["time_proj.t10_980_5"]);
    assert!(d <= 1e-6, "time_proj: {d}");
    let store = ParamStore::new();
    let unet =
        UNet2DConditionModel::from_pretrained(&store, &fixtures().join("tiny-sd/unet")).unwrap();
    let emb = no_grad(|| {
        unet.time_embedding
            .forward(&unet.time_proj.forward(&[10.0, 980.5]).unwrap())
    })
    .unwrap();
    let d = max_abs_diff(emb.value(), &t["time_embedding.t10_980_5"]);
    assert!(d <= 1e-5, "time_embedding: {d}");
}

#[test]
fn sd1_tiny_unet_matches_diffusers() {
    let (t, meta) = load("models_unet_sd1.safetensors");
    let store = ParamStore::new();
    let unet =
        UNet2DConditionModel::from_pretrained(&store, &fixtures().join("tiny-sd/unet")).unwrap();
    assert_eq!(unet.config().block_out_channels, vec![32, 64]);
    // attention_head_dim 8 means 8 heads: head size 64 / 8 = 8 in the second level.
    assert_eq!(
        unet.down_blocks[1].attentions[0].transformer_blocks[0]
            .attn1
            .heads,
        8
    );
    assert_eq!(
        unet.down_blocks[1].attentions[0].transformer_blocks[0]
            .attn1
            .head_dim,
        8
    );
    let s = sizes(&meta);
    assert_eq!(s, vec![(16, 16), (8, 12), (7, 9)]);
    check_cases(&unet, &t, &s);
}

fn config_from_meta(meta: &std::collections::HashMap<String, String>) -> UNet2DConditionConfig {
    serde_json::from_str(&meta["config"]).unwrap()
}

#[test]
fn sd2_like_unet_matches_diffusers() {
    let (t, meta) = load("models_unet_sd2.safetensors");
    let cfg = config_from_meta(&meta);
    assert!(cfg.use_linear_projection);
    let store = ParamStore::new();
    let unet = UNet2DConditionModel::load(
        &store,
        &fixtures().join("models_unet_sd2.weights.safetensors"),
        &cfg,
    )
    .unwrap();
    // per-block heads [2, 4, 4]: the first level has 2 heads of 8
    assert_eq!(
        unet.down_blocks[0].attentions[0].transformer_blocks[0]
            .attn1
            .heads,
        2
    );
    assert_eq!(
        unet.down_blocks[0].attentions[0].proj_in.weight.dims(),
        &[16, 16]
    );
    check_cases(&unet, &t, &sizes(&meta));
}

#[test]
fn inpaint_unet_matches_diffusers() {
    let (t, meta) = load("models_unet_inpaint.safetensors");
    let cfg = config_from_meta(&meta);
    assert_eq!(cfg.in_channels, 9);
    let store = ParamStore::new();
    let unet = UNet2DConditionModel::load(
        &store,
        &fixtures().join("models_unet_inpaint.weights.safetensors"),
        &cfg,
    )
    .unwrap();
    check_cases(&unet, &t, &sizes(&meta));
}

/// The same modules train: a backward pass through the tiny-sd UNet reaches every
/// parameter with a finite, somewhere non-zero gradient.
#[test]
fn every_unet_parameter_gets_a_gradient() {
    let (t, _) = load("models_unet_sd1.safetensors");
    let store = ParamStore::new();
    let unet =
        UNet2DConditionModel::from_pretrained(&store, &fixtures().join("tiny-sd/unet")).unwrap();
    let sample = Var::constant(t["8x12.sample"].clone());
    let ehs = Var::constant(t["8x12.encoder_hidden_states"].clone());
    let out = unet.forward(&sample, &[10.0, 980.5][..], &ehs).unwrap();
    let loss = nn::mse_loss(&out, &Var::constant(Tensor::zeros(out.dims().to_vec()))).unwrap();
    let grads = loss.backward().unwrap();
    let params = store.params();
    assert_eq!(params.len(), store.names().len());
    for p in &params {
        let g = grads
            .get(&p.var())
            .unwrap_or_else(|| panic!("no gradient for {}", p.name()));
        let v = g.to_vec().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{}: non-finite gradient",
            p.name()
        );
        assert!(
            v.iter().any(|&x| x != 0.0),
            "{}: all-zero gradient",
            p.name()
        );
    }
}

#[test]
fn bad_weights_and_inputs_are_errors_naming_what() {
    let dir = fixtures().join("tiny-sd/unet");
    let mut cfg = UNet2DConditionConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // a config that disagrees with the file: the misshapen key is named
    cfg.cross_attention_dim = diffusion::models::OneOrMany::One(48);
    let err = UNet2DConditionModel::load(&ParamStore::new(), &weights, &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("attn2.to_k.weight"), "{err}");
    // a file with keys the model does not use: strict loading names them
    let sd2 = fixtures().join("models_unet_sd2.weights.safetensors");
    let cfg1 = UNet2DConditionConfig::from_file(&dir.join("config.json")).unwrap();
    assert!(UNet2DConditionModel::load(&ParamStore::new(), &sd2, &cfg1).is_err());
    // wrong inputs
    let unet = UNet2DConditionModel::from_pretrained(&ParamStore::new(), &dir).unwrap();
    let ctx = Var::constant(Tensor::zeros([1, 7, 32]));
    let err = unet
        .forward(&Var::constant(Tensor::zeros([1, 9, 8, 8])), 1.0, &ctx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("in_channels"), "{err}");
    let err = unet
        .forward(
            &Var::constant(Tensor::zeros([2, 4, 8, 8])),
            &[1.0, 2.0, 3.0][..],
            &Var::constant(Tensor::zeros([2, 7, 32])),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 timesteps"), "{err}");
    let err = unet
        .forward(&Var::constant(Tensor::zeros([2, 4, 8, 8])), 1.0, &ctx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder_hidden_states"), "{err}");
}
