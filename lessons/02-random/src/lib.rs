//! Lesson 02-random: the pieces `main.rs` prints and `tests/claims.rs` checks.
//!
//! The generators themselves live in the library (`tensor/src/random/`); this crate
//! only adds the lesson's histogram: counting normal draws into bins, comparing the
//! counts with the normal density, and drawing them as a PNG.
//!
//! ```
//! use lesson_02_random::Histogram;
//! let h = Histogram::new(&[-0.5, 0.2, 0.7, 3.0], -1.0, 1.0, 2).unwrap();
//! assert_eq!(h.counts, vec![1, 2]);
//! assert_eq!((h.below, h.above), (0, 1));
//! ```

use std::path::Path;

use image::{Rgb, RgbImage};
use tensor::{Result, TensorError};

/// The course's seed for Wichmann-Hill.
pub const SEED: u64 = 457_428_938_475;

/// Counts of values in equal-width bins over `[lo, hi)`, plus those outside.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<usize>,
    pub below: usize,
    pub above: usize,
}

impl Histogram {
    /// Bin `values` into `bins` equal bins over `[lo, hi)`. NaN counts as outside
    /// (`above`).
    pub fn new(values: &[f32], lo: f64, hi: f64, bins: usize) -> Result<Self> {
        if bins == 0 || !lo.is_finite() || !hi.is_finite() || lo >= hi {
            return Err(TensorError::invalid(
                "Histogram::new",
                format!("need bins > 0 and finite lo < hi, got {bins} bins over [{lo}, {hi})"),
            ));
        }
        let mut h = Histogram {
            lo,
            hi,
            counts: vec![0; bins],
            below: 0,
            above: 0,
        };
        let width = h.bin_width();
        for &v in values {
            let v = v as f64;
            if v < lo {
                h.below += 1;
            } else if v >= hi || v.is_nan() {
                h.above += 1;
            } else {
                let i = (((v - lo) / width) as usize).min(bins - 1);
                h.counts[i] += 1;
            }
        }
        Ok(h)
    }

    pub fn bin_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }

    /// Centre of bin `i`.
    pub fn center(&self, i: usize) -> f64 {
        self.lo + (i as f64 + 0.5) * self.bin_width()
    }

    /// Total number of values, inside and outside the range.
    pub fn total(&self) -> usize {
        self.counts.iter().sum::<usize>() + self.below + self.above
    }

    /// Expected count per bin for a standard normal sample of `total()` values
    /// (density at the bin centre times the bin width; error O(width^2)).
    pub fn expected_normal(&self) -> Vec<f64> {
        let n = self.total() as f64;
        (0..self.counts.len())
            .map(|i| n * self.bin_width() * normal_pdf(self.center(i)))
            .collect()
    }

    /// Pearson's chi-square statistic of the counts against [`Histogram::expected_normal`],
    /// over bins expecting at least 5 values.
    pub fn chi_square_vs_normal(&self) -> (f64, usize) {
        let mut chi2 = 0.0;
        let mut used = 0;
        for (&c, e) in self.counts.iter().zip(self.expected_normal()) {
            if e >= 5.0 {
                chi2 += (c as f64 - e).powi(2) / e;
                used += 1;
            }
        }
        (chi2, used)
    }
}

/// The standard normal density.
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Mean and (population) standard deviation, accumulated in f64.
pub fn mean_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const BAR: Rgb<u8> = Rgb([70, 110, 190]);
const BAR_EDGE: Rgb<u8> = Rgb([40, 70, 130]);
const CURVE: Rgb<u8> = Rgb([210, 40, 40]);
const AXIS: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([200, 200, 200]);

/// Draw the histogram as bars with the expected normal curve on top (red), a
/// baseline, and light vertical lines at every integer x (the middle one is x = 0).
pub fn render(h: &Histogram, width: u32, height: u32) -> Result<RgbImage> {
    let margin = 20u32;
    if width < 2 * margin + h.counts.len() as u32 || height < 2 * margin + 10 {
        return Err(TensorError::invalid(
            "render",
            format!("{width}x{height} is too small for {} bins", h.counts.len()),
        ));
    }
    let mut img = RgbImage::from_pixel(width, height, BACKGROUND);
    let plot_w = (width - 2 * margin) as f64;
    let plot_h = (height - 2 * margin) as f64;
    let base = height - margin; // y of the baseline
    let expected = h.expected_normal();
    let peak = h
        .counts
        .iter()
        .map(|&c| c as f64)
        .chain(expected.iter().copied())
        .fold(1.0, f64::max);
    let x_of = |v: f64| margin as f64 + (v - h.lo) / (h.hi - h.lo) * plot_w;
    let y_of = |c: f64| base as f64 - c / peak * plot_h * 0.95;

    // grid at integer x
    let mut gx = h.lo.ceil();
    while gx <= h.hi {
        let px = x_of(gx).round() as u32;
        for y in margin..base {
            if px < width {
                img.put_pixel(px, y, GRID);
            }
        }
        gx += 1.0;
    }
    // bars
    for (i, &c) in h.counts.iter().enumerate() {
        let x0 = x_of(h.lo + i as f64 * h.bin_width()).round() as u32;
        let x1 = (x_of(h.lo + (i + 1) as f64 * h.bin_width()).round() as u32).max(x0 + 1);
        let top = y_of(c as f64).round() as u32;
        for x in x0..x1.min(width) {
            for y in top.min(base)..base {
                let edge = x == x0 || y == top;
                img.put_pixel(x, y, if edge { BAR_EDGE } else { BAR });
            }
        }
    }
    // expected density, drawn 3 px thick, one sample per column
    let mut prev: Option<(i64, i64)> = None;
    for px in margin..width - margin {
        let v = h.lo + (px - margin) as f64 / plot_w * (h.hi - h.lo);
        let c = h.total() as f64 * h.bin_width() * normal_pdf(v);
        let py = y_of(c).round() as i64;
        let (x, y) = (px as i64, py);
        let from = prev.map_or(y, |(_, py0)| py0);
        for yy in from.min(y)..=from.max(y) {
            for d in -1..=1 {
                let yy = yy + d;
                if yy >= 0 && (yy as u32) < height {
                    img.put_pixel(x as u32, yy as u32, CURVE);
                }
            }
        }
        prev = Some((x, y));
    }
    // baseline
    for x in margin..width - margin {
        img.put_pixel(x, base, AXIS);
    }
    Ok(img)
}

/// Write `img` as PNG to `path` atomically (through `tensor::io::write_atomic_with`:
/// a temp file in the same folder, then a rename). Creates the parent folder.
pub fn write_png_atomic(img: &RgbImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TensorError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    tensor::io::write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(|e| TensorError::Format {
                path: path.to_path_buf(),
                msg: format!("encoding PNG: {e}"),
            })
    })
}

/// The histogram as text rows `"  -1.0 | ######"`, one per `group` bins, scaled so the
/// tallest row has `width` marks.
pub fn ascii(h: &Histogram, group: usize, width: usize) -> Vec<String> {
    let group = group.max(1);
    let rows: Vec<(f64, usize)> = h
        .counts
        .chunks(group)
        .enumerate()
        .map(|(i, c)| (h.lo + (i * group) as f64 * h.bin_width(), c.iter().sum()))
        .collect();
    let peak = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    rows.iter()
        .map(|&(x, c)| format!("{x:>6.2} | {:<width$} {c}", "#".repeat(c * width / peak)))
        .collect()
}
