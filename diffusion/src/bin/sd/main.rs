//! `sd`: Stable Diffusion from the command line.
//!
//! ```text
//! sd "a sneaker"                               # the shipped Fashion-MNIST model, its defaults
//! sd generate --prompt "a photo of a cat" --model ./stable-diffusion-v1-5 --steps 25 --seed 42
//! sd generate --prompt "a dress" --init-image shirt.png --strength 0.7 --out dress.png
//! sd train-vae --steps 1000 && sd train-unet --steps 3000
//! sd distill --from-steps 64 --to-steps 4 && sd generate --model diffusion/assets/fashion-sd-pd4 "a bag"
//! ```
//!
//! Every option is described by `sd generate --help`. Errors are printed as one
//! sentence naming the file, option or size at fault, and the process exits with 1.

mod compare;
mod distill;
mod edit;
mod edit_report;
mod eval;
mod generate;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sd",
    version,
    about = "Stable Diffusion built from its components",
    after_help = "`sd \"a sneaker\" [OPTIONS]` is short for `sd generate \"a sneaker\" [OPTIONS]`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images from a prompt (txt2img), an init image (img2img) or an
    /// image and a mask (inpainting).
    Generate(Box<generate::GenerateArgs>),
    /// Train the Fashion-MNIST autoencoder (stage 1) and write `vae/`.
    TrainVae(Box<train::TrainVaeArgs>),
    /// Train the text encoder and UNet on the VAE's latents (stage 2) and write the
    /// rest of the model folder.
    TrainUnet(Box<train::TrainUnetArgs>),
    /// Train the evaluation classifier (lesson 05's CNN) on Fashion-MNIST.
    TrainClassifier(eval::TrainClassifierArgs),
    /// Evaluate a Fashion-MNIST model: per-class accuracy, diversity, Frechet distance.
    Eval(Box<eval::EvalArgs>),
    /// Progressive distillation of the DDIM sampler (64 -> 4 steps by halvings).
    Distill(Box<distill::DistillArgs>),
    /// Guided distillation: one evaluation per step instead of CFG's two, then halvings.
    DistillGuided(Box<distill::DistillGuidedArgs>),
    /// Edit an image towards a text with Imagic (embedding optimisation, UNet
    /// fine-tuning, interpolation).
    Edit(Box<edit::EditArgs>),
    /// The Imagic report on Fashion-MNIST: eta sweeps beside img2img, table and strips.
    EditReport(Box<edit_report::EditReportArgs>),
}

fn main() {
    // `sd "a sneaker" --seed 3` is `sd generate "a sneaker" --seed 3`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        use clap::CommandFactory;
        let known = Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == first)
            || ["help", "-h", "--help", "-V", "--version"].contains(&first);
        if !known {
            args.insert(1, "generate".into());
        }
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args),
        Command::TrainVae(args) => train::train_vae_cmd(*args),
        Command::TrainUnet(args) => train::train_unet_cmd(*args),
        Command::TrainClassifier(args) => eval::train_classifier_cmd(args),
        Command::Eval(args) => eval::eval_cmd(*args),
        Command::Distill(args) => distill::distill_cmd(*args),
        Command::DistillGuided(args) => distill::distill_guided_cmd(*args),
        Command::Edit(args) => edit::edit_cmd(*args),
        Command::EditReport(args) => edit_report::edit_report_cmd(*args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
