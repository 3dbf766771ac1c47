#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The guidance-conditioned UNet (`time_cond_proj_dim`, `time_embedding.cond_proj`)
//! and `get_guidance_scale_embedding` against diffusers 0.42.1
//! (`scripts/gen_fixtures.py --only distill`). Tolerance: max abs diff 1e-4 (UNet
//! output), 1e-6 (embedding).

use std::collections::BTreeMap;
use std::path::Path;

use autodiff::{no_grad, Var};
use diffusion::models::embeddings::get_guidance_scale_embedding;
use diffusion::models::{UNet2DConditionConfig, UNet2DConditionModel};
use nn::{ParamStore, VarBuilder};
use tensor::io::SafeTensorsFile;
use tensor::Tensor;

fn fixture() -> (BTreeMap<String, Tensor>, UNet2DConditionConfig) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/distill_unet_cond.safetensors");
    let f = SafeTensorsFile::open(path).unwrap();
    let meta = f.metadata().cloned().unwrap_or_default();
    let cfg: UNet2DConditionConfig = serde_json::from_str(&meta["config"]).unwrap();
    (f.load_all().unwrap(), cfg)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn build(t: &BTreeMap<String, Tensor>, cfg: &UNet2DConditionConfig) -> UNet2DConditionModel {
    let weights: BTreeMap<String, Tensor> = t
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("weights.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let store = ParamStore::new();
    let vb = VarBuilder::from_tensors(&store, weights, "fixture");
    let unet = UNet2DConditionModel::new(vb.clone(), cfg).unwrap();
    vb.finish().unwrap();
    unet
}

#[test]
fn guidance_scale_embedding_matches_diffusers() {
    let (t, _) = fixture();
    let w: Vec<f64> = t["w"]
        .to_vec()
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    for (dim, key) in [(16, "w_embedding"), (7, "w_embedding_dim7")] {
        let e = get_guidance_scale_embedding(&w, dim).unwrap();
        let d = max_abs_diff(&e, &t[key]);
        println!("dim {dim}: max abs diff {d:e}");
        assert!(d <= 1e-6, "{key}: {d}");
    }
    assert!(get_guidance_scale_embedding(&w, 3).is_err());
}

#[test]
fn unet_with_time_cond_proj_matches_diffusers() {
    let (t, cfg) = fixture();
    assert_eq!(cfg.time_cond_proj_dim, Some(16));
    let unet = build(&t, &cfg);
    assert!(unet.time_embedding.cond_proj.is_some());
    let sample = Var::constant(t["sample"].clone());
    let ehs = Var::constant(t["encoder_hidden_states"].clone());
    let ts: Vec<f64> = t["timesteps"]
        .to_vec()
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let cond = Var::constant(t["w_embedding"].clone());
    let out = no_grad(|| unet.forward_with_cond(&sample, &ts, &ehs, Some(&cond))).unwrap();
    let d = max_abs_diff(out.value(), &t["out_cond"]);
    println!("with timestep_cond: max abs diff {d:e}");
    assert!(d <= 1e-4, "out_cond: {d}");
    // Without a condition diffusers skips the projection; so do we.
    let out = no_grad(|| unet.forward(&sample, &ts, &ehs)).unwrap();
    let d = max_abs_diff(out.value(), &t["out_plain"]);
    assert!(d <= 1e-4, "out_plain: {d}");
    // The condition changes the output (the test would catch an ignored cond_proj).
    assert!(max_abs_diff(&t["out_cond"], &t["out_plain"]) > 1e-2);
}

#[test]
fn a_wrong_condition_is_refused() {
    let (t, cfg) = fixture();
    let unet = build(&t, &cfg);
    let sample = Var::constant(t["sample"].clone());
    let ehs = Var::constant(t["encoder_hidden_states"].clone());
    let bad = Var::constant(Tensor::zeros([2, 8]));
    let err = no_grad(|| unet.forward_with_cond(&sample, 10.0, &ehs, Some(&bad))).unwrap_err();
    assert!(err.to_string().contains("timestep_cond"), "{err}");
    // A plain UNet refuses a condition instead of ignoring it.
    let mut plain_cfg = cfg.clone();
    plain_cfg.time_cond_proj_dim = None;
    let mut w = t.clone();
    w.remove("weights.time_embedding.cond_proj.weight");
    let plain = build(&w, &plain_cfg);
    let cond = Var::constant(t["w_embedding"].clone());
    assert!(no_grad(|| plain.forward_with_cond(&sample, 10.0, &ehs, Some(&cond))).is_err());
}
