//! One test per claim of `lessons/09-unet/README.md`, on the shipped model
//! `diffusion/assets/fashion-sd` and the shipped classifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diffusion::pipelines::StableDiffusion;
use diffusion::train::captions::{caption, eval_prompt};
use lesson_09_unet::{
    generate_classes, load_classifier, mean_abs, predict_noise, prompt_accuracy, shipped_model_dir,
};
use tensor::random::{TorchGenerator, WichmannHill};

fn model() -> StableDiffusion {
    StableDiffusion::load(shipped_model_dir()).unwrap()
}

#[test]
fn claim_1_captions_name_the_class_and_some_are_empty() {
    let mut rng = WichmannHill::seed(9);
    let boots: Vec<String> = (0..50)
        .map(|_| caption(9, &mut rng, 0.0).unwrap())
        .collect();
    assert!(boots.iter().all(|c| c.contains("boot")), "{boots:?}");
    let n = 4000;
    let empty = (0..n)
        .filter(|i| caption(i % 10, &mut rng, 0.15).unwrap().is_empty())
        .count();
    let frac = empty as f64 / n as f64;
    assert!((frac - 0.15).abs() < 0.02, "empty fraction {frac}");
}

#[test]
fn claim_2_the_shipped_model_is_a_small_stable_diffusion() {
    let sd = model();
    let unet = sd.unet_params.num_elements();
    let text = sd.text_encoder_params.num_elements();
    let vae = sd.vae_params.num_elements();
    eprintln!("parameters: unet {unet}, text encoder {text}, vae {vae}");
    assert!(unet > 1_000_000 && unet < 5_000_000, "unet {unet}");
    assert!(
        text > 49408 * 64,
        "text encoder {text} (the token table alone is 49408 x 64)"
    );
    assert_eq!(sd.vae_scale_factor(), 4);
    assert_eq!(sd.default_size(), (32, 32));
    let bytes: u64 = ["unet", "vae", "text_encoder"]
        .iter()
        .flat_map(|c| std::fs::read_dir(shipped_model_dir().join(c)).unwrap())
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes <= 20 * 1024 * 1024, "weights take {bytes} bytes");
}

#[test]
fn claim_3_cross_attention_carries_the_prompt() {
    let sd = model();
    let x = TorchGenerator::manual_seed(0).randn([1, 4, 8, 8]).unwrap();
    let x2 = tensor::Tensor::cat(&[&x, &x, &x], 0).unwrap();
    let prompts = vec![
        eval_prompt(7).unwrap(),
        eval_prompt(8).unwrap(),
        String::new(),
    ];
    let eps = predict_noise(&sd, &x2, 500.0, &prompts).unwrap();
    let rows: Vec<_> = (0..3).map(|i| eps.narrow(0, i, 1).unwrap()).collect();
    let scale = mean_abs(&rows[0]).unwrap();
    let sneaker_vs_bag = mean_abs(&rows[0].sub(&rows[1]).unwrap()).unwrap();
    let sneaker_vs_empty = mean_abs(&rows[0].sub(&rows[2]).unwrap()).unwrap();
    eprintln!(
        "|eps| {scale:.3}; sneaker vs bag {sneaker_vs_bag:.3}; vs empty {sneaker_vs_empty:.3}"
    );
    assert!(sneaker_vs_bag > 0.02 * scale && sneaker_vs_empty > 0.02 * scale);
}

#[test]
fn claim_4_guidance_raises_prompt_accuracy() {
    let sd = model();
    let classifier = load_classifier().unwrap();
    let (plain, labels) = generate_classes(&sd, 8, 1.0, 20, 1).unwrap();
    let (guided, _) = generate_classes(&sd, 8, 4.0, 20, 1).unwrap();
    let a1 = prompt_accuracy(&classifier, &plain, &labels).unwrap();
    let a4 = prompt_accuracy(&classifier, &guided, &labels).unwrap();
    eprintln!("prompt accuracy, 80 images: guidance 1 {a1:.3}, guidance 4 {a4:.3}");
    assert!(a4 >= 0.75, "guidance 4: {a4}");
    assert!(a4 > a1 + 0.1, "guidance 1 {a1} vs 4 {a4}");
}
