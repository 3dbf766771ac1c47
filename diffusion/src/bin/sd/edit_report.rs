//! `sd edit-report`: Imagic on Fashion-MNIST test images, measured. For each
//! (source class, target class) pair it edits the first `--images-per-pair` test
//! images of the source class towards "a photo of {target}", sweeps eta, runs plain
//! img2img (`generate` with the image and strength s, the same sampler, steps,
//! guidance and seed) on the same grid of s, and scores every output with
//! `diffusion::imagic::metrics` (target-class probability, pixel similarity, feature
//! cosine), and Imagic without stage B (the paper's ablation). It writes one strip
//! PNG per pair (per image: the Imagic row `input | eta 0 ... 1`, the img2img row
//! `input | s 0 ... 1` below) and a markdown report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use diffusion::eval::classifier::FashionClassifier;
use diffusion::imagic::loss::{reconstruction_loss, LossDraws};
use diffusion::imagic::metrics::{score_edits, EditScore};
use diffusion::imagic::{fit_image, stage_c_scheduler, Imagic, ImagicConfig, Stage};
use diffusion::pipelines::{GenerateParams, StableDiffusion};
use diffusion::schedulers::betas::NoiseSchedule;
use diffusion::train::captions::{eval_prompt, CLASS_NAMES};
use diffusion::{DiffusionError, Result};
use nn::ParamStore;
use tensor::data::FashionMnist;
use tensor::io::image::{image_grid, save_image_pm1};
use tensor::random::TorchGenerator;
use tensor::Tensor;

use crate::edit::{ImagicArgs, StageBars};

#[derive(Args, Debug)]
pub struct EditReportArgs {
    #[arg(long, default_value = "diffusion/assets/fashion-sd")]
    model: PathBuf,
    #[arg(
        long,
        default_value = "diffusion/assets/fashion-classifier.safetensors"
    )]
    classifier: PathBuf,
    /// source:target class labels (0 t-shirt, 1 trousers, 2 pullover, 3 dress, 4 coat,
    /// 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot).
    #[arg(long, value_delimiter = ',', default_value = "6:3,7:9,0:2")]
    pairs: Vec<String>,
    /// Test images per pair (the first ones of the source class).
    #[arg(long, default_value_t = 4)]
    images_per_pair: usize,
    /// The eta grid (and img2img's strength grid).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
    )]
    etas: Vec<f64>,
    /// Where the strips and `imagic.md` go.
    #[arg(long, default_value = "diffusion/assets/eval")]
    out_dir: PathBuf,
    #[command(flatten)]
    imagic: ImagicArgs,
}

fn parse_pair(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        DiffusionError::invalid(
            "--pairs",
            format!("{s:?} is not source:target with labels 0..9 (e.g. 6:3, shirt to dress)"),
        )
    };
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let (a, b) = (
        a.trim().parse::<usize>().map_err(|_| bad())?,
        b.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if a > 9 || b > 9 || a == b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Scores summed over images, per grid point, for the means.
#[derive(Default, Clone)]
struct Sums {
    imagic: Vec<[f64; 4]>,
    img2img: Vec<[f64; 4]>,
    /// Imagic without stage B (the original UNet at the same embeddings).
    no_b: Vec<[f64; 4]>,
    n: usize,
}

fn add(acc: &mut Vec<[f64; 4]>, scores: &[EditScore]) {
    acc.resize(scores.len(), [0.0; 4]);
    for (a, s) in acc.iter_mut().zip(scores) {
        a[0] += s.p_target;
        a[1] += s.p_source;
        a[2] += s.pixel_similarity;
        a[3] += s.feature_cosine;
    }
}

/// img2img of `image` towards `prompt` at each strength of `grid` (strength 0: no
/// step runs, the VAE's reconstruction of the image).
fn img2img_row(
    sd: &StableDiffusion,
    image: &Tensor,
    prompt: &str,
    grid: &[f64],
    cfg: &ImagicConfig,
) -> Result<Tensor> {
    let mut rows = Vec::with_capacity(grid.len());
    for &s in grid {
        if s <= 0.0 {
            let z = sd.encode_image(image, &mut TorchGenerator::manual_seed(cfg.seed))?;
            rows.push(sd.decode_latents(&z, false)?);
            continue;
        }
        let mut sched = stage_c_scheduler(sd, cfg)?;
        let params = GenerateParams {
            prompts: vec![prompt.to_string()],
            num_inference_steps: cfg.num_inference_steps,
            guidance_scale: cfg.guidance_scale,
            seed: cfg.seed,
            init_image: Some(image.clone()),
            strength: s,
            ..Default::default()
        };
        let out = sd.generate(&params, sched.as_mut(), None)?;
        rows.push(
            out.images
                .ok_or_else(|| DiffusionError::invalid("img2img", "no images decoded"))?,
        );
    }
    Ok(Tensor::cat(&rows, 0)?)
}

pub fn edit_report_cmd(args: EditReportArgs) -> Result<()> {
    let t_all = Instant::now();
    let pairs: Vec<(usize, usize)> = args
        .pairs
        .iter()
        .map(|s| parse_pair(s))
        .collect::<Result<_>>()?;
    let cfg = args.imagic.config()?;
    let mut sd = StableDiffusion::load(&args.model)?;
    let store = ParamStore::new();
    let clf = FashionClassifier::load(&store, &args.classifier)?;
    let data = FashionMnist::load()?;
    let schedule = NoiseSchedule::new(&sd.scheduler_config)?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| DiffusionError::io(&args.out_dir, e))?;
    let grid = &args.etas;
    let cols = grid.len() + 1;
    let mut report = String::new();
    let mut times = Vec::new();
    let mut losses = Vec::new();
    let mut all = Sums::default();
    for &(src, tgt) in &pairs {
        let prompt = eval_prompt(tgt)?;
        let chosen: Vec<usize> = data
            .test
            .labels()
            .iter()
            .enumerate()
            .filter(|(_, &l)| usize::from(l) == src)
            .map(|(i, _)| i)
            .take(args.images_per_pair)
            .collect();
        let mut sums = Sums::default();
        let mut strip = Vec::new();
        for &i in &chosen {
            let pixels = data
                .test
                .image(i)
                .ok_or_else(|| DiffusionError::invalid("edit-report", format!("no image {i}")))?;
            let unit: Vec<f32> = pixels.iter().map(|&v| f32::from(v) / 255.0).collect();
            let (h, w) = (data.test.height(), data.test.width());
            let img = Tensor::from_vec(unit, [1, h, w])?;
            let input = fit_image(&img, sd.default_size(), sd.vae.config().in_channels)?;
            println!("{} -> {prompt:?}: test image {i}", CLASS_NAMES[src]);
            let bars = StageBars::new(&cfg, !args.imagic.no_progress)?;
            let mut progress = |s: Stage, k: usize, n: usize, l: f32| bars.update(s, k, n, l);
            let mut imagic = Imagic::fit(&sd, &input, &prompt, &cfg, Some(&mut progress))?;
            let draws = LossDraws::stratified_for(
                &imagic.latents,
                64,
                cfg.seed + 1,
                &schedule,
                sd.scheduler_config.prediction_type,
            )?;
            losses.push([
                reconstruction_loss(&sd.unet, &draws, &imagic.e_tgt)?,
                reconstruction_loss(&sd.unet, &draws, &imagic.e_opt)?,
                reconstruction_loss(&imagic.unet, &draws, &imagic.e_opt)?,
            ]);
            let t_c = Instant::now();
            let edits = imagic.generate(&mut sd, grid, &cfg)?;
            let t_c = t_c.elapsed().as_secs_f64();
            let t_i = Instant::now();
            let i2i = img2img_row(&sd, &input, &prompt, grid, &cfg)?;
            let t_i = t_i.elapsed().as_secs_f64();
            let no_b = imagic.generate_without_finetuning(&sd, grid, &cfg)?;
            times.push([imagic.seconds.0, imagic.seconds.1, t_c, t_i]);
            add(
                &mut sums.imagic,
                &score_edits(&clf, &edits, &input, src, tgt)?,
            );
            add(
                &mut sums.img2img,
                &score_edits(&clf, &i2i, &input, src, tgt)?,
            );
            add(&mut sums.no_b, &score_edits(&clf, &no_b, &input, src, tgt)?);
            sums.n += 1;
            strip.extend([input.clone(), edits, input.clone(), i2i]);
        }
        if sums.n == 0 {
            return Err(DiffusionError::invalid(
                "edit-report",
                format!("no test image of class {src}"),
            ));
        }
        let refs: Vec<&Tensor> = strip.iter().collect();
        let png = image_grid(&Tensor::cat(&refs, 0)?, 2 * sums.n, cols)?;
        let d = png.dims().to_vec();
        let png = png.unsqueeze(0)?.upsample_nearest2d(2 * d[1], 2 * d[2])?;
        let name = format!(
            "imagic-{}-to-{}.png",
            CLASS_NAMES[src].replace(' ', "-"),
            CLASS_NAMES[tgt].replace(' ', "-")
        );
        save_image_pm1(args.out_dir.join(&name), &png)?;
        let title = format!("{} -> \"{prompt}\"", CLASS_NAMES[src]);
        table(&mut report, &title, grid, &sums, &name);
        merge(&mut all, &sums);
    }
    table(&mut report, "all pairs", grid, &all, "");
    ablation(&mut report, grid, &all);
    let n = times.len().max(1) as f64;
    let mean = |k: usize| times.iter().map(|t| t[k]).sum::<f64>() / n;
    let lmean = |k: usize| losses.iter().map(|l| l[k]).sum::<f64>() / n;
    let _ = writeln!(
        report,
        "Reconstruction loss of the input (epsilon MSE over 64 fixed draws, t spread over \
         0..999), mean of {} images: original UNet with e_tgt {:.4}; with e_opt (after \
         stage A) {:.4}; fine-tuned UNet with e_opt (after stage B) {:.4}.\n",
        times.len(),
        lmean(0),
        lmean(1),
        lmean(2)
    );
    let _ = writeln!(
        report,
        "Time per image (mean of {}): stage A {:.1} s, stage B {:.1} s, stage C ({} etas) \
         {:.2} s; img2img row {:.2} s. Whole report {:.0} s.",
        times.len(),
        mean(0),
        mean(1),
        grid.len(),
        mean(2),
        mean(3),
        t_all.elapsed().as_secs_f64()
    );
    let _ = writeln!(report, "\nSettings: {cfg:?}");
    let path = args.out_dir.join("imagic.md");
    tensor::io::write_atomic(&path, report.as_bytes())?;
    println!("{report}");
    println!("wrote {}", path.display());
    Ok(())
}

fn merge(all: &mut Sums, s: &Sums) {
    for (acc, part) in [
        (&mut all.imagic, &s.imagic),
        (&mut all.img2img, &s.img2img),
        (&mut all.no_b, &s.no_b),
    ] {
        acc.resize(part.len(), [0.0; 4]);
        for (a, p) in acc.iter_mut().zip(part) {
            for k in 0..4 {
                a[k] += p[k];
            }
        }
    }
    all.n += s.n;
}

/// The ablation table: Imagic with and without stage B, means of all images.
fn ablation(out: &mut String, grid: &[f64], s: &Sums) {
    let n = s.n.max(1) as f64;
    let _ = writeln!(
        out,
        "**Ablation: stage B left out** (the original UNet at the same e(eta), {} images)\n",
        s.n
    );
    let _ = writeln!(
        out,
        "| eta | P(target) with B | P(target) without B | P(source) with B | P(source) \
         without B | pixel sim. with B | pixel sim. without B | feature cos. with B | \
         feature cos. without B |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    paired_rows(out, grid, &s.imagic, &s.no_b, n);
    let _ = writeln!(out);
}

/// Table rows: per grid point, the four metrics' means (sums / `n`) of `a` and `b`
/// side by side.
fn paired_rows(out: &mut String, grid: &[f64], a: &[[f64; 4]], b: &[[f64; 4]], n: f64) {
    for ((g, a), b) in grid.iter().zip(a).zip(b) {
        let cells: String = (0..4)
            .map(|m| format!(" {:.3} | {:.3} |", a[m] / n, b[m] / n))
            .collect();
        let _ = writeln!(out, "| {g} |{cells}");
    }
}

/// One markdown table: per grid point, the means of both methods.
fn table(out: &mut String, title: &str, grid: &[f64], s: &Sums, png: &str) {
    let n = s.n.max(1) as f64;
    let _ = writeln!(out, "**{title}** ({} images)\n", s.n);
    let _ = writeln!(
        out,
        "| eta = strength | P(target) Imagic | P(target) img2img | P(source) Imagic | \
         P(source) img2img | pixel sim. Imagic | pixel sim. img2img | feature cos. Imagic | \
         feature cos. img2img |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    paired_rows(out, grid, &s.imagic, &s.img2img, n);
    if !png.is_empty() {
        let _ = writeln!(out, "\n![{title}]({png})");
    }
    let _ = writeln!(out);
}
