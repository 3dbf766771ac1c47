//! One test per numbered claim of lessons/05-training/README.md. The runs train on the
//! real Fashion-MNIST (installed in CI); they take about a minute in the test profile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lesson_05_training::{train, Arch, Recipe};
use tensor::data::FashionMnist;

fn data() -> FashionMnist {
    FashionMnist::load().expect("Fashion-MNIST (apt-get install dataset-fashion-mnist)")
}

#[test]
fn claim_1_mlp_reaches_85_percent_in_two_epochs() {
    let recipe = Recipe::default_for(Arch::Mlp);
    assert_eq!((recipe.epochs, recipe.batch_size), (2, 128));
    let r = train(&data(), Arch::Mlp, recipe, false).unwrap();
    eprintln!("MLP: {r:?}");
    assert_eq!(r.steps, 2 * 469);
    assert!(r.train_loss[1] < r.train_loss[0], "{:?}", r.train_loss);
    assert!(
        r.test_accuracy >= 0.85,
        "MLP test accuracy {}",
        r.test_accuracy
    );
}

#[test]
fn claim_2_cnn_reaches_90_percent_in_three_epochs() {
    let recipe = Recipe::default_for(Arch::Cnn);
    assert_eq!((recipe.epochs, recipe.batch_size), (3, 128));
    let r = train(&data(), Arch::Cnn, recipe, false).unwrap();
    eprintln!("CNN: {r:?}");
    assert_eq!(r.steps, 3 * 469);
    assert!(
        r.test_accuracy >= 0.90,
        "CNN test accuracy {}",
        r.test_accuracy
    );
}

#[test]
fn claim_3_a_run_is_reproducible_from_its_seed() {
    let data = data();
    let recipe = Recipe {
        epochs: 1,
        ..Recipe::default_for(Arch::Mlp)
    };
    let a = train(&data, Arch::Mlp, recipe, false).unwrap();
    let b = train(&data, Arch::Mlp, recipe, false).unwrap();
    assert_eq!(a.train_loss[0].to_bits(), b.train_loss[0].to_bits());
    assert_eq!(a.test_accuracy, b.test_accuracy);
    let c = train(&data, Arch::Mlp, Recipe { seed: 2, ..recipe }, false).unwrap();
    assert_ne!(a.train_loss[0].to_bits(), c.train_loss[0].to_bits());
}
