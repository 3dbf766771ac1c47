#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Parameter counts of the full-size models, from their real config.json values,
//! without allocating their weights: every parameter is a zero-stride broadcast of
//! one float. The shapes are discovered from the constructors themselves: build from
//! an (initially empty) map of tensors; a missing key is added with a placeholder,
//! whose shape mismatch then names the shape the module asked for; repeat until the
//! model builds. The numbers are diffusers 0.42.1's (`sum(p.numel())` and
//! `len(state_dict())` of the same configs on the meta device) and REFERENCE.md's.

use std::collections::BTreeMap;

use diffusion::models::{
    AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel,
};
use diffusion::DiffusionError;
use nn::{NnError, ParamStore, VarBuilder};
use tensor::Tensor;

/// A tensor of `shape` that stores one zero.
fn zero_stride(shape: &[usize]) -> Tensor {
    Tensor::zeros(vec![1; shape.len()])
        .broadcast_as(shape.to_vec())
        .unwrap()
}

/// `(name, shape)` of every parameter `build` asks for, in registration order.
fn discover<T>(build: impl Fn(VarBuilder) -> diffusion::Result<T>) -> Vec<(String, Vec<usize>)> {
    let mut map: BTreeMap<String, Tensor> = BTreeMap::new();
    for _ in 0..10_000 {
        let store = ParamStore::new();
        let vb = VarBuilder::from_tensors(&store, map.clone(), "shape discovery");
        match build(vb) {
            Ok(_) => {
                return store
                    .params()
                    .iter()
                    .map(|p| (p.name().to_string(), p.dims().to_vec()))
                    .collect()
            }
            Err(DiffusionError::Nn(NnError::MissingKey { key, .. })) => {
                map.insert(key, zero_stride(&[0]));
            }
            Err(DiffusionError::Nn(NnError::ShapeMismatch { key, expected, .. })) => {
                map.insert(key, zero_stride(&expected));
            }
            Err(e) => panic!("unexpected error while discovering shapes: {e}"),
        }
    }
    panic!("shape discovery did not converge");
}

fn count(shapes: &[(String, Vec<usize>)]) -> (usize, usize) {
    (
        shapes
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum(),
        shapes.len(),
    )
}

fn shape_of<'a>(shapes: &'a [(String, Vec<usize>)], name: &str) -> &'a [usize] {
    &shapes
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .1
}

/// `unet/config.json` of runwayml/stable-diffusion-v1-5 (diffusers 0.6.0 era).
const SD15_UNET: &str = r#"{
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0",
  "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
  "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
  "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;

/// `vae/config.json` of runwayml/stable-diffusion-v1-5.
const SD15_VAE: &str = r#"{
  "_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu",
  "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
  "out_channels": 3, "sample_size": 512,
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
}"#;

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("diffusion_models_count_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn unet_config(text: &str) -> UNet2DConditionConfig {
    UNet2DConditionConfig::from_file(&write_config("unet_config.json", text)).unwrap()
}

#[test]
fn sd15_unet_has_859_520_964_parameters_in_686_tensors() {
    let cfg = unet_config(SD15_UNET);
    let shapes = discover(|vb| UNet2DConditionModel::new(vb, &cfg));
    assert_eq!(count(&shapes), (859_520_964, 686));
    // attention_head_dim 8 = 8 heads: the first level's attention is 320 wide
    let attn = "down_blocks.0.attentions.0.transformer_blocks.0";
    assert_eq!(
        shape_of(&shapes, &format!("{attn}.attn1.to_q.weight")),
        &[320, 320]
    );
    assert_eq!(
        shape_of(&shapes, &format!("{attn}.attn2.to_k.weight")),
        &[320, 768]
    );
    assert_eq!(
        shape_of(&shapes, &format!("{attn}.ff.net.0.proj.weight")),
        &[2560, 320]
    );
    assert_eq!(
        shape_of(&shapes, "down_blocks.0.attentions.0.proj_in.weight"),
        &[320, 320, 1, 1]
    );
    assert_eq!(
        shape_of(&shapes, "up_blocks.1.resnets.2.conv1.weight"),
        &[1280, 1920, 3, 3]
    );
    assert_eq!(
        shape_of(&shapes, "time_embedding.linear_1.weight"),
        &[1280, 320]
    );
}

#[test]
fn sd2_and_inpaint_unet_counts_match_diffusers() {
    // stabilityai/stable-diffusion-2-1: linear projections, per-block heads.
    let sd2 = SD15_UNET
        .replace(r#""attention_head_dim": 8"#, r#""attention_head_dim": [5, 10, 20, 20], "use_linear_projection": true, "upcast_attention": true"#)
        .replace(r#""cross_attention_dim": 768"#, r#""cross_attention_dim": 1024"#);
    let cfg = unet_config(&sd2);
    let shapes = discover(|vb| UNet2DConditionModel::new(vb, &cfg));
    assert_eq!(count(&shapes), (865_910_724, 686));
    assert_eq!(
        shape_of(&shapes, "down_blocks.0.attentions.0.proj_in.weight"),
        &[320, 320]
    );
    let cfg = unet_config(&SD15_UNET.replace(r#""in_channels": 4"#, r#""in_channels": 9"#));
    let shapes = discover(|vb| UNet2DConditionModel::new(vb, &cfg));
    assert_eq!(count(&shapes), (859_535_364, 686));
}

#[test]
fn sd15_vae_has_83_653_863_parameters_in_248_tensors() {
    let cfg = AutoencoderKLConfig::from_file(&write_config("vae_config.json", SD15_VAE)).unwrap();
    assert_eq!(cfg.scaling_factor, 0.18215); // the default
    let shapes = discover(|vb| AutoencoderKL::new(vb, &cfg));
    assert_eq!(count(&shapes), (83_653_863, 248));
    assert_eq!(
        shape_of(&shapes, "decoder.mid_block.attentions.0.to_q.bias"),
        &[512]
    );
    assert!(shapes
        .iter()
        .any(|(n, _)| n == "decoder.up_blocks.0.resnets.2.conv2.weight"));
}

#[test]
fn unsupported_options_are_refused_with_the_field_name() {
    for (field, value) in [
        ("class_embed_type", r#""timestep""#),
        ("addition_embed_type", r#""text_time""#),
        ("dual_cross_attention", "true"),
        ("num_attention_heads", "8"),
        ("resnet_time_scale_shift", r#""scale_shift""#),
    ] {
        let text = SD15_UNET.replacen('{', &format!("{{ \"{field}\": {value},"), 1);
        let cfg = unet_config(&text);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
        let store = ParamStore::new();
        let vb = VarBuilder::from_tensors(&store, BTreeMap::new(), "none");
        assert!(UNet2DConditionModel::new(vb, &cfg).is_err());
    }
}
