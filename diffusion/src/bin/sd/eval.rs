//! `sd train-classifier` and `sd eval`: the evaluation of the Fashion-MNIST model
//! (see `diffusion::eval`). `sd eval` generates `--samples-per-class` images for each
//! class with the prompt "a photo of {class}", classifies them, and reports per-class
//! accuracy, diversity (mean pairwise distance of classifier features, next to the
//! same for real test images) and the Frechet distance to real test images, for the
//! default guidance and a sweep; it writes a PNG grid per guidance and a markdown
//! report.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use diffusion::eval::classifier::{padded, train_classifier, FashionClassifier, FEATURES};
use diffusion::eval::fid::frechet_distance_of;
use diffusion::eval::mean_pairwise_distance;
use diffusion::eval::sampling::{evaluate_samples, features_of, SampleSpec};
use diffusion::pipelines::StableDiffusion;
use diffusion::train::captions::{eval_prompt, CLASS_NAMES};
use diffusion::{DiffusionError, Result};
use nn::ParamStore;
use tensor::data::FashionMnist;
use tensor::io::image::{image_grid, save_image_unit};
use tensor::Tensor;

#[derive(Args, Debug)]
pub struct TrainClassifierArgs {
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    #[arg(
        long,
        default_value = "diffusion/assets/fashion-classifier.safetensors"
    )]
    out: PathBuf,
    #[arg(long)]
    no_progress: bool,
}

pub fn train_classifier_cmd(args: TrainClassifierArgs) -> Result<()> {
    let data = FashionMnist::load()?;
    let r = train_classifier(&data, args.epochs, &args.out, !args.no_progress)?;
    println!(
        "classifier: {} steps in {:.1} s, test accuracy {:.4}; wrote {}",
        r.steps,
        r.train_seconds,
        r.test_accuracy,
        args.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long, default_value = "diffusion/assets/fashion-sd")]
    model: PathBuf,
    #[arg(
        long,
        default_value = "diffusion/assets/fashion-classifier.safetensors"
    )]
    classifier: PathBuf,
    #[arg(long, default_value_t = 64)]
    samples_per_class: usize,
    /// Denoising steps (the default of `sd generate`).
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// The default guidance (that of `sd generate`).
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    /// Guidance scales of the sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    sweep: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Real test images for the Frechet distance and the real diversity.
    #[arg(long, default_value_t = 2000)]
    real_images: usize,
    /// Where the grids and the report go.
    #[arg(long, default_value = "diffusion/assets/eval")]
    out_dir: PathBuf,
    /// Compare settings instead: `DIR:STEPS` (repeatable), each model folder sampled
    /// with its own scheduler at --guidance; one table row per run (accuracy,
    /// Frechet distance, UNet evaluations and seconds per image), `compare.md`.
    #[arg(long = "run")]
    runs: Vec<String>,
    /// With --run: also sweep this `DIR:STEPS` over the --sweep scales and write
    /// `sweep-<name>.png` (rows: scales, columns: classes).
    #[arg(long)]
    sweep_of: Option<String>,
    /// With --run: the name of the report (`<name>.md` in --out-dir).
    #[arg(long, default_value = "compare")]
    report: String,
}

/// What one guidance scale gave.
struct Row {
    guidance: f64,
    accuracy: Vec<f64>,
    diversity: Vec<f64>,
    /// `confusion[c][p]`: samples prompted as class `c` that the classifier called `p`.
    confusion: Vec<[usize; 10]>,
    fid: f64,
    seconds: f64,
}

pub fn eval_cmd(args: EvalArgs) -> Result<()> {
    let store = ParamStore::new();
    let clf = FashionClassifier::load(&store, &args.classifier)?;
    let data = FashionMnist::load()?;
    let n_real = args.real_images.min(data.test.len());
    let real = padded(&data.test)?.narrow(0, 0, n_real)?;
    let (real_f, real_pred) = features_of(&clf, &real)?;
    if !args.runs.is_empty() {
        let opts = crate::compare::CompareOptions {
            runs: &args.runs,
            sweep_of: args.sweep_of.as_deref(),
            sweep: &args.sweep,
            guidance: args.guidance,
            samples_per_class: args.samples_per_class,
            seed: args.seed,
            out_dir: &args.out_dir,
            report: &args.report,
            n_real,
        };
        return crate::compare::compare(&clf, &real_f, &opts);
    }
    let sd = StableDiffusion::load(&args.model)?;
    let labels = &data.test.labels()[..n_real];
    let real_acc: Vec<f64> = (0..10)
        .map(|c| {
            let of_c: Vec<usize> = labels
                .iter()
                .zip(&real_pred)
                .filter(|(&l, _)| usize::from(l) == c)
                .map(|(_, &p)| p)
                .collect();
            of_c.iter().filter(|&&p| p == c).count() as f64 / of_c.len().max(1) as f64
        })
        .collect();
    let real_div: Vec<f64> = (0..10)
        .map(|c| {
            let rows: Vec<f32> = real_f
                .chunks(FEATURES)
                .zip(labels)
                .filter(|(_, &l)| usize::from(l) == c)
                .flat_map(|(r, _)| r.to_vec())
                .collect();
            mean_pairwise_distance(&rows, FEATURES)
        })
        .collect();
    std::fs::create_dir_all(&args.out_dir).map_err(|e| DiffusionError::io(&args.out_dir, e))?;
    let refs = reference_distances(&sd, &clf, &data, n_real, &real_f, &args.out_dir)?;
    println!(
        "reference: real vs real {:.2}, VAE reconstructions vs real {:.2}",
        refs.0, refs.1
    );
    let mut scales = vec![args.guidance];
    scales.extend(args.sweep.iter().copied().filter(|g| *g != args.guidance));
    let n = args.samples_per_class;
    let mut rows = Vec::new();
    for &g in &scales {
        let spec = SampleSpec {
            steps: args.steps,
            guidance: g,
            samples_per_class: n,
            seed: args.seed,
        };
        let e = evaluate_samples(&sd, &clf, &real_f, spec)?;
        let grid = image_grid(&e.grid, 10, 8.min(n))?;
        let path = args.out_dir.join(format!("grid-guidance-{g}.png"));
        save_image_unit(&path, &grid)?;
        let row = Row {
            guidance: g,
            accuracy: e.accuracy,
            diversity: e.diversity,
            confusion: e.confusion,
            fid: e.fid,
            seconds: e.seconds,
        };
        println!("{}", summary(&row));
        rows.push(row);
    }
    let mut report = render(&args, &rows, &real_div, &real_acc, n_real);
    let _ = writeln!(
        report,
        "\nReferences: Frechet distance of {n} other real test images to the same real set {:.2}; \
         of their VAE reconstructions {:.2} (what the autoencoder alone costs).",
        refs.0,
        refs.1,
        n = refs.2
    );
    println!("{report}");
    let path = args.out_dir.join("eval.md");
    tensor::io::write_atomic(&path, report.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Frechet distances to `real_f` of other real test images (the floor) and of their
/// VAE reconstructions (the autoencoder's cost); writes a grid of 16 originals above
/// their reconstructions. Returns `(real, reconstructed, images used)`.
fn reference_distances(
    sd: &StableDiffusion,
    clf: &FashionClassifier,
    data: &FashionMnist,
    n_real: usize,
    real_f: &[f32],
    out_dir: &std::path::Path,
) -> Result<(f64, f64, usize)> {
    let m = n_real.min(data.test.len() - n_real);
    let other = padded(&data.test)?.narrow(0, n_real, m)?;
    let (other_f, _) = features_of(clf, &other)?;
    let mut recon = Vec::new();
    let mut start = 0;
    while start < m {
        let len = 250.min(m - start);
        let x = autodiff::Var::constant(other.narrow(0, start, len)?.affine(2.0, -1.0)?);
        let y = autodiff::no_grad(|| sd.vae.decode(&sd.vae.encode(&x)?.mode()))?;
        recon.push(y.value().affine(0.5, 0.5)?.clamp(0.0, 1.0)?);
        start += len;
    }
    let recon = Tensor::cat(&recon, 0)?;
    let (recon_f, _) = features_of(clf, &recon)?;
    let k = 16.min(m);
    let pair = Tensor::cat(&[other.narrow(0, 0, k)?, recon.narrow(0, 0, k)?], 0)?;
    save_image_unit(
        out_dir.join("vae-reconstructions.png"),
        &image_grid(&pair, 2, k)?,
    )?;
    Ok((
        frechet_distance_of(&other_f, real_f, FEATURES)?,
        frechet_distance_of(&recon_f, real_f, FEATURES)?,
        m,
    ))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn summary(r: &Row) -> String {
    format!(
        "guidance {}: mean accuracy {:.3} (min {:.3}), diversity {:.2}, FD {:.2}, {:.1} s",
        r.guidance,
        mean(&r.accuracy),
        r.accuracy.iter().copied().fold(1.0, f64::min),
        mean(&r.diversity),
        r.fid,
        r.seconds
    )
}

fn render(
    args: &EvalArgs,
    rows: &[Row],
    real_div: &[f64],
    real_acc: &[f64],
    n_real: usize,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Model `{}`, {} samples per class, {} steps, scheduler from the folder, seed {}.\n",
        args.model.display(),
        args.samples_per_class,
        args.steps,
        args.seed
    );
    let _ = writeln!(s, "Per-class accuracy of the classifier on generated images (g: guidance; div: diversity, the mean pairwise feature distance within the class; `real`: the same on the {n_real} real test images, i.e. the classifier's own accuracy and the data's diversity):\n");
    let mut head = "| class | prompt |".to_string();
    let mut sep = "|---|---|".to_string();
    for r in rows {
        let _ = write!(head, " acc g={} | div g={} |", r.guidance, r.guidance);
        sep += "---|---|";
    }
    let _ = writeln!(s, "{head} div real | acc real |\n{sep}---|---|");
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        let mut line = format!("| {name} | {} |", eval_prompt(c).unwrap_or_default());
        for r in rows {
            let _ = write!(line, " {:.3} | {:.2} |", r.accuracy[c], r.diversity[c]);
        }
        let _ = writeln!(s, "{line} {:.2} | {:.3} |", real_div[c], real_acc[c]);
    }
    if let Some(r) = rows.first() {
        let _ = writeln!(s, "\nWhat the classifier called the samples at g={} (prompted class: the labels it gave, with counts out of {}):\n", r.guidance, args.samples_per_class);
        for (c, name) in CLASS_NAMES.iter().enumerate() {
            let mut others: Vec<(usize, usize)> = r.confusion[c]
                .iter()
                .copied()
                .enumerate()
                .filter(|&(p, k)| p != c && k > 0)
                .collect();
            others.sort_by_key(|a| std::cmp::Reverse(a.1));
            let list: Vec<String> = others
                .iter()
                .map(|&(p, k)| format!("{} {k}", CLASS_NAMES[p]))
                .collect();
            let _ = writeln!(
                s,
                "- {name}: {name} {}{}{}",
                r.confusion[c][c],
                if list.is_empty() { "" } else { ", " },
                list.join(", ")
            );
        }
    }
    let _ = writeln!(s, "\n| guidance | mean accuracy | min accuracy | mean diversity | Frechet distance (vs {n_real} real) | seconds |\n|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} |",
            r.guidance,
            mean(&r.accuracy),
            r.accuracy.iter().copied().fold(1.0, f64::min),
            mean(&r.diversity),
            r.fid,
            r.seconds
        );
    }
    s
}
