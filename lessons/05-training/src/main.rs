//! `cargo run --release -p lesson-05-training`: train the MLP and the CNN on
//! Fashion-MNIST with progress bars and print their test accuracy.

use lesson_05_training::{train, Arch, Recipe};
use tensor::data::FashionMnist;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = FashionMnist::load()?;
    for arch in [Arch::Mlp, Arch::Cnn] {
        let recipe = Recipe::default_for(arch);
        println!(
            "{arch:?}: {} parameters, {} epochs, batch {}, AdamW + one-cycle to lr {}",
            arch.parameters(),
            recipe.epochs,
            recipe.batch_size,
            recipe.max_lr
        );
        let r = train(&data, arch, recipe, true)?;
        println!(
            "{arch:?}: test accuracy {:.2}% after {} steps in {:.1} s\n",
            100.0 * r.test_accuracy,
            r.steps,
            r.train_seconds
        );
    }
    Ok(())
}
