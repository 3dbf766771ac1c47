//! `sd eval --run DIR:STEPS ...`: one table comparing model folders and step counts
//! (issue 8: the teacher at 64, 8 and 4 DDIM steps against the distilled students),
//! with UNet evaluations and wall time per image, a grid per run and, for a
//! guidance-distilled student, a guidance sweep grid (`--sweep-of`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use diffusion::eval::classifier::FashionClassifier;
use diffusion::eval::sampling::{evaluate_samples, SampleEval, SampleSpec};
use diffusion::pipelines::StableDiffusion;
use diffusion::{DiffusionError, Result};
use tensor::io::image::{image_grid, save_image_unit};
use tensor::Tensor;

pub struct CompareOptions<'a> {
    pub runs: &'a [String],
    pub sweep_of: Option<&'a str>,
    pub sweep: &'a [f64],
    pub guidance: f64,
    pub samples_per_class: usize,
    pub seed: u64,
    pub out_dir: &'a Path,
    pub report: &'a str,
    pub n_real: usize,
}

/// `DIR:STEPS` -> (dir, steps).
fn parse_run(spec: &str) -> Result<(PathBuf, usize)> {
    let bad = || {
        DiffusionError::invalid(
            "sd eval --run",
            format!("{spec:?} is not DIR:STEPS (e.g. diffusion/assets/fashion-sd-pd4:4)"),
        )
    };
    let (dir, steps) = spec.rsplit_once(':').ok_or_else(bad)?;
    let steps: usize = steps.parse().map_err(|_| bad())?;
    if steps == 0 || dir.is_empty() {
        return Err(bad());
    }
    Ok((PathBuf::from(dir), steps))
}

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string())
}

fn row(name: &str, sampler: &str, e: &SampleEval) -> String {
    format!(
        "| {name} | {sampler} | {} | {} | {} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} |",
        e.spec.steps,
        e.spec.guidance,
        e.unet_evals_per_image,
        e.mean_accuracy(),
        e.min_accuracy(),
        e.mean_diversity(),
        e.fid,
        1000.0 * e.seconds_per_image()
    )
}

const HEAD: &str = "| model | sampler | steps | guidance | UNet evals / image | mean accuracy | min accuracy | diversity | Frechet distance | ms / image |\n|---|---|---|---|---|---|---|---|---|---|";

pub fn compare(clf: &FashionClassifier, real_f: &[f32], o: &CompareOptions) -> Result<()> {
    std::fs::create_dir_all(o.out_dir).map_err(|e| DiffusionError::io(o.out_dir, e))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} samples per class (prompt \"a photo of {{class}}\"), seed {}, Frechet distance \
         to {} real test images in the classifier's feature space; each model with its \
         folder's scheduler.\n\n{HEAD}",
        o.samples_per_class, o.seed, o.n_real
    );
    // Grid file names already written by this report: two folders with the same
    // name (two `teacher-ddim`s) get `-2`, `-3`.. instead of overwriting.
    let mut grids = std::collections::HashSet::new();
    for spec in o.runs {
        let (dir, steps) = parse_run(spec)?;
        let sd = StableDiffusion::load(&dir)?;
        let sampler = sd.scheduler_config.class_name.clone().unwrap_or_default();
        let e = evaluate_samples(
            &sd,
            clf,
            real_f,
            SampleSpec {
                steps,
                guidance: o.guidance,
                samples_per_class: o.samples_per_class,
                seed: o.seed,
            },
        )?;
        let name = name_of(&dir);
        let line = row(&name, &sampler, &e);
        println!("{line}");
        let _ = writeln!(s, "{line}");
        let k = 8.min(o.samples_per_class);
        let mut file = format!("grid-{name}-{steps}.png");
        for i in 2.. {
            if grids.insert(file.clone()) {
                break;
            }
            file = format!("grid-{name}-{steps}-{i}.png");
        }
        save_image_unit(o.out_dir.join(&file), &image_grid(&e.grid, 10, k)?)?;
        println!("grid of {}: {file}", dir.display());
    }
    if let Some(spec) = o.sweep_of {
        sweep(clf, real_f, o, spec, &mut s)?;
    }
    println!("{s}");
    let path = o.out_dir.join(format!("{}.md", o.report));
    tensor::io::write_atomic(&path, s.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The guidance sweep of one run: a table and `sweep-<name>.png`, one row per scale
/// with the first image of every class.
fn sweep(
    clf: &FashionClassifier,
    real_f: &[f32],
    o: &CompareOptions,
    spec: &str,
    s: &mut String,
) -> Result<()> {
    let (dir, steps) = parse_run(spec)?;
    let sd = StableDiffusion::load(&dir)?;
    let sampler = sd.scheduler_config.class_name.clone().unwrap_or_default();
    let name = name_of(&dir);
    let _ = writeln!(
        s,
        "\nGuidance sweep of `{name}` at {steps} steps:\n\n{HEAD}"
    );
    let mut rows = Vec::new();
    for &g in o.sweep {
        let e = evaluate_samples(
            &sd,
            clf,
            real_f,
            SampleSpec {
                steps,
                guidance: g,
                samples_per_class: o.samples_per_class,
                seed: o.seed,
            },
        )?;
        let line = row(&name, &sampler, &e);
        println!("{line}");
        let _ = writeln!(s, "{line}");
        let k = 8.min(o.samples_per_class);
        let firsts: Vec<Tensor> = (0..10)
            .map(|c| e.grid.narrow(0, c * k, 1))
            .collect::<std::result::Result<_, _>>()?;
        rows.push(Tensor::cat(&firsts, 0)?);
    }
    let all = Tensor::cat(&rows, 0)?;
    let path = o.out_dir.join(format!("sweep-{name}.png"));
    save_image_unit(&path, &image_grid(&all, o.sweep.len(), 10)?)?;
    let _ = writeln!(
        s,
        "\n`{}`: rows guidance {:?}, columns the ten classes (same seeds).",
        path.display(),
        o.sweep
    );
    Ok(())
}
