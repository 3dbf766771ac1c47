//! `cargo run --release -p lesson-09-unet [-- --per-class N --steps S --out DIR]`:
//! measures the claims of the README on the shipped model and writes
//! `out/09-guidance.png` (rows: guidance 1, 2, 4, 8; columns: the ten classes).

use diffusion::pipelines::StableDiffusion;
use lesson_09_unet::{generate_classes, load_classifier, prompt_accuracy, shipped_model_dir};
use tensor::io::image::{image_grid, save_image_unit};
use tensor::Tensor;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let per_class: usize = value("--per-class").map_or(Ok(16), |v| v.parse())?;
    let steps: usize = value("--steps").map_or(Ok(30), |v| v.parse())?;
    let out = std::path::PathBuf::from(value("--out").unwrap_or_else(|| "out".into()));
    std::fs::create_dir_all(&out)?;
    let sd = StableDiffusion::load(shipped_model_dir())?;
    let classifier = load_classifier()?;
    println!(
        "shipped model: unet {} / text encoder {} / vae {} parameters",
        sd.unet_params.num_elements(),
        sd.text_encoder_params.num_elements(),
        sd.vae_params.num_elements()
    );
    let mut rows = Vec::new();
    for g in [1.0, 2.0, 4.0, 8.0] {
        let (images, labels) = generate_classes(&sd, per_class, g, steps, 1)?;
        let acc = prompt_accuracy(&classifier, &images, &labels)?;
        println!(
            "guidance {g}: prompt accuracy {acc:.3} over {} images",
            labels.len()
        );
        // the first image of each class, for the picture
        let firsts: Vec<Tensor> = (0..10)
            .map(|c| images.narrow(0, c * per_class, 1))
            .collect::<Result<_, _>>()?;
        rows.push(Tensor::cat(&firsts, 0)?);
    }
    let grid = image_grid(&Tensor::cat(&rows, 0)?, 4, 10)?;
    save_image_unit(out.join("09-guidance.png"), &grid)?;
    println!("wrote {}/09-guidance.png", out.display());
    Ok(())
}
