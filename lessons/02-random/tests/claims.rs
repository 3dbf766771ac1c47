//! One test per numbered claim in lessons/02-random/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lesson_02_random::{mean_std, render, write_png_atomic, Histogram, SEED};
use tensor::random::{draw_in_forked_child, NaiveWichmannHill, TorchGenerator, WichmannHill};
use tensor::{Rng, Tensor};

#[test]
fn claim_1_wichmann_hill_matches_the_course() {
    let mut rng = NaiveWichmannHill::seed(SEED);
    assert_eq!(rng.state(), (4976, 20238, 499));
    let ten: Vec<f64> = (0..10).map(|_| rng.uniform()).collect();
    assert_eq!(
        ten,
        [
            0.7645251082582081,
            0.7920889799553945,
            0.06912886811267205,
            0.9559050644103264,
            0.840065633394744,
            0.15532781424845843,
            0.003930264311536424,
            0.11930314528605379,
            0.716222457198862,
            0.390378014310544
        ]
    );
    assert_eq!(rng.state(), (15778, 21375, 4968));
    // the library's fork-safe generator gives the same stream in its own process
    let mut safe = WichmannHill::seed(SEED);
    let mean = (0..10_000).map(|_| safe.uniform()).sum::<f64>() / 10_000.0;
    assert_eq!(format!("{mean:.14}"), "0.50118776801666");
}

#[test]
fn claim_2_a_copied_state_repeats_the_stream_after_fork() {
    let mut rng = NaiveWichmannHill::seed(SEED);
    for _ in 0..3 {
        rng.uniform();
    }
    let (_, child) = draw_in_forked_child(&mut rng).unwrap();
    assert_eq!(child, 0.9559050644103264);
    assert_eq!(rng.uniform(), 0.9559050644103264);
}

#[test]
fn claim_3_fork_safe_child_gets_its_own_reproducible_stream() {
    let mut rng = WichmannHill::seed(SEED);
    for _ in 0..3 {
        rng.uniform();
    }
    let (pid, child) = draw_in_forked_child(&mut rng).unwrap();
    assert_ne!(child, 0.9559050644103264);
    assert_eq!(rng.uniform(), 0.9559050644103264);
    assert_eq!(WichmannHill::seed(SEED).forked_stream(pid).uniform(), child);
    // split streams: deterministic and distinct
    let firsts = |seed| {
        let mut root = WichmannHill::seed(seed);
        (0..3).map(|_| root.split().uniform()).collect::<Vec<f64>>()
    };
    let a = firsts(SEED);
    assert_eq!(a, firsts(SEED));
    assert_eq!(
        a,
        [0.8606352234985455, 0.4948800401805049, 0.9796941450020558]
    );
}

#[test]
fn claim_4_box_muller_normals_have_mean_0_and_std_1() {
    let x = Tensor::randn([10_000], &mut WichmannHill::seed(SEED))
        .unwrap()
        .to_vec()
        .unwrap();
    let (mean, std) = mean_std(&x);
    // the numbers the README shows
    assert!((mean - -0.0025).abs() < 5e-5, "{mean}");
    assert!((std - 1.0037).abs() < 5e-5, "{std}");
    let within = |k: f32| x.iter().filter(|v| v.abs() < k).count();
    assert_eq!((within(1.0), within(2.0), within(3.0)), (6809, 9544, 9975));
    // and what they should be: within 3 standard errors of 0 and 1
    assert!(mean.abs() < 3.0 / 100.0);
    assert!((std - 1.0).abs() < 3.0 / (2.0f64 * 10_000.0).sqrt());
}

#[test]
fn claim_5_torch_compatible_randn() {
    let x = TorchGenerator::manual_seed(100)
        .randn([1, 4, 64, 64])
        .unwrap();
    let head = &x.to_vec().unwrap()[..4];
    for (a, b) in head
        .iter()
        .zip([0.1268493f32, 1.3563979, 0.5632231, -0.1039286])
    {
        assert!((a - b).abs() < 1e-6, "{head:?}");
    }
    // a second call continues the stream, as diffusers' noise after its latents
    let mut g = TorchGenerator::manual_seed(100);
    let first = g.randn([1, 4, 64, 64]).unwrap().to_vec().unwrap();
    let second = g.randn([1, 4, 64, 64]).unwrap().to_vec().unwrap();
    assert_ne!(first, second);
}

#[test]
fn claim_6_the_histogram_follows_the_normal_density() {
    let x = Tensor::randn([10_000], &mut WichmannHill::seed(SEED))
        .unwrap()
        .to_vec()
        .unwrap();
    let h = Histogram::new(&x, -4.0, 4.0, 40).unwrap();
    assert_eq!(h.total(), 10_000);
    // one draw of 10,000 lands beyond 4 std (expected: 0.6)
    assert_eq!(h.below + h.above, 1);
    let (chi2, bins) = h.chi_square_vs_normal();
    assert_eq!(bins, 32);
    // chi-square with 31 degrees of freedom: 99.9th percentile is 61.1
    assert!(chi2 < 61.1, "chi2 {chi2}");
    assert!((chi2 - 37.6).abs() < 0.05, "README shows 37.6, got {chi2}");
    // the peak is at 0 (within sampling noise) and the halves balance
    let top = (0..40).max_by_key(|&i| h.counts[i]).unwrap();
    assert!(
        h.center(top).abs() < 0.5,
        "tallest bin {top} at {}",
        h.center(top)
    );
    let left: usize = h.counts[..20].iter().sum();
    assert!((left as f64 - 5000.0).abs() < 3.0 * 50.0, "{left} below 0");

    let dir = std::env::temp_dir().join(format!("lesson02-claim6-{}", std::process::id()));
    let path = dir.join("nested").join("hist.png");
    write_png_atomic(&render(&h, 800, 450).unwrap(), &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 450));
    // inside the bar right of 0, near the baseline: bar colour; the top corner is background
    assert_eq!(img.get_pixel(405, 420).0, [70, 110, 190]);
    assert_eq!(img.get_pixel(5, 5).0, [255, 255, 255]);
    // no temp file left behind
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("hist.png")]);
    std::fs::remove_dir_all(&dir).unwrap();
}
