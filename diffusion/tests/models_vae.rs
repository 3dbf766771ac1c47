#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! AutoencoderKL against diffusers 0.42.1 (fixtures from
//! `scripts/gen_fixtures.py --only models`): the tiny-sd VAE (float16 file) encode
//! (mean, clamped logvar, std), a posterior sample with a seeded generator, decode,
//! and tiled decode against `enable_tiling()`; a float32 VAE stored with the old
//! attention key names (q/k/v as 1x1 conv weights) and two layers per block (three
//! resnets per decoder block). Tolerance: max abs diff 1e-4.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use autodiff::{no_grad, Var};
use diffusion::models::unet_2d_condition::OneOrMany;
use diffusion::models::vae::{AutoencoderKL, AutoencoderKLConfig};
use nn::ParamStore;
use tensor::io::SafeTensorsFile;
use tensor::random::TorchGenerator;
use tensor::Tensor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn load(name: &str) -> (BTreeMap<String, Tensor>, HashMap<String, String>) {
    let f = SafeTensorsFile::open(fixtures().join(name)).unwrap();
    let meta = f.metadata().cloned().unwrap_or_default();
    (f.load_all().unwrap(), meta)
}

fn assert_close(name: &str, a: &Var, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{name}: shapes differ");
    let (x, y) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    let d = x
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    println!("{name}: max abs diff {d:e}");
    assert!(d <= 1e-4, "{name}: max abs diff {d}");
}

#[test]
fn tiny_sd_vae_matches_diffusers() {
    let (t, meta) = load("models_vae_sd1.safetensors");
    let store = ParamStore::new();
    let vae = AutoencoderKL::from_pretrained(&store, &fixtures().join("tiny-sd/vae")).unwrap();
    assert_eq!(vae.config().scaling_factor, 0.18215);
    assert_eq!(vae.config().latent_channels, 4);
    let image = Var::constant(t["image"].clone());
    no_grad(|| {
        let post = vae.encode(&image).unwrap();
        assert_close("mean", &post.mean, &t["mean"]);
        assert_close("logvar", &post.logvar, &t["logvar"]);
        assert_close("std", &post.std, &t["std"]);
        assert_eq!(meta["sample_seed"], "42");
        let mut g = TorchGenerator::manual_seed(42);
        assert_close("sample", &post.sample(&mut g).unwrap(), &t["sample_seed42"]);
        let decoded = vae.decode(&Var::constant(t["latents"].clone())).unwrap();
        assert_close("decoded", &decoded, &t["decoded"]);
    });
}

#[test]
fn tiled_decode_matches_diffusers_enable_tiling() {
    let (t, meta) = load("models_vae_sd1.safetensors");
    let dir = fixtures().join("tiny-sd/vae");
    let mut cfg = AutoencoderKLConfig::from_file(&dir.join("config.json")).unwrap();
    cfg.sample_size = OneOrMany::One(meta["tiled_sample_size"].parse().unwrap());
    let store = ParamStore::new();
    let vae = AutoencoderKL::load(
        &store,
        &dir.join("diffusion_pytorch_model.safetensors"),
        &cfg,
    )
    .unwrap();
    assert_eq!(vae.tile_sizes(), (16, 8));
    let z = Var::constant(t["tiled.latents"].clone());
    assert_eq!(z.dims(), &[1, 4, 12, 20]); // 2 x 3 tiles of 8 latents every 6
    let tiled = no_grad(|| vae.decode_tiled(&z)).unwrap();
    assert_close("tiled decode", &tiled, &t["tiled.decoded"]);
    // Tiling is an approximation: it must differ from the whole decode somewhere.
    let whole = no_grad(|| vae.decode(&z)).unwrap();
    let diff = whole
        .sub(&tiled)
        .unwrap()
        .abs()
        .unwrap()
        .max(&[0, 1, 2, 3], false)
        .unwrap()
        .to_vec()
        .unwrap()[0];
    assert!(
        diff > 1e-3,
        "tiled decode equals plain decode ({diff}); the test would not see the blending"
    );
}

#[test]
fn old_attention_key_names_load_and_match() {
    let (t, meta) = load("models_vae_old_keys.safetensors");
    let cfg: AutoencoderKLConfig = serde_json::from_str(&meta["config"]).unwrap();
    assert_eq!(cfg.layers_per_block, 2);
    let path = fixtures().join("models_vae_old_keys.weights.safetensors");
    let file = SafeTensorsFile::open(&path).unwrap();
    let q = file
        .info("decoder.mid_block.attentions.0.query.weight")
        .expect("old key in the file");
    assert_eq!(q.shape, vec![32, 32, 1, 1]);
    let store = ParamStore::new();
    let vae = AutoencoderKL::load(&store, &path, &cfg).unwrap();
    assert!(store
        .get("decoder.mid_block.attentions.0.to_q.weight")
        .is_some());
    assert_eq!(vae.decoder.up_blocks[0].resnets.len(), 3);
    no_grad(|| {
        let post = vae.encode(&Var::constant(t["image"].clone())).unwrap();
        assert_close("old-keys mean", &post.mean, &t["mean"]);
        assert_close("old-keys logvar", &post.logvar, &t["logvar"]);
        let dec = vae.decode(&Var::constant(t["latents"].clone())).unwrap();
        assert_close("old-keys decoded", &dec, &t["decoded"]);
    });
}

/// The same modules train: encode, sample, decode, a reconstruction loss plus the KL
/// term, and a backward pass that reaches every parameter.
#[test]
fn every_vae_parameter_gets_a_gradient() {
    let (t, _) = load("models_vae_sd1.safetensors");
    let store = ParamStore::new();
    let vae = AutoencoderKL::from_pretrained(&store, &fixtures().join("tiny-sd/vae")).unwrap();
    let image = Var::constant(t["image"].clone());
    let post = vae.encode(&image).unwrap();
    let z = post.sample(&mut TorchGenerator::manual_seed(0)).unwrap();
    let rec = vae.decode(&z).unwrap();
    let kl = post.kl().unwrap();
    assert_eq!(kl.dims(), &[2]);
    let loss = nn::mse_loss(&rec, &image)
        .unwrap()
        .add(&kl.mean_all().unwrap().mul_scalar(1e-6).unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    for p in store.params() {
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
fn logvar_clamp_passes_gradient_only_inside_the_range() {
    use diffusion::models::DiagonalGaussianDistribution;
    let m =
        Var::leaf(Tensor::from_vec(vec![0.0, 0.0, 0.0, 25.0, -35.0, 1.0], [1, 6, 1, 1]).unwrap());
    let d = DiagonalGaussianDistribution::new(&m).unwrap();
    assert_eq!(d.logvar.to_vec().unwrap(), vec![20.0, -30.0, 1.0]);
    let g = d.logvar.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        g.get(&m).unwrap().to_vec().unwrap(),
        vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    );
}
