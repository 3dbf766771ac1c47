//! `sd`: Stable Diffusion from the command line.
//!
//! ```text
//! sd generate --prompt "a photo of a cat" --model ./stable-diffusion-v1-5 --steps 25 --seed 42
//! sd generate --prompt "a dress" --init-image shirt.png --strength 0.7 --out dress.png
//! ```
//!
//! Every option is described by `sd generate --help`. Errors are printed as one
//! sentence naming the file, option or size at fault, and the process exits with 1.

mod generate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sd",
    version,
    about = "Stable Diffusion built from its components"
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
