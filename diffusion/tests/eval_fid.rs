//! The Frechet distance and its Jacobi eigen-decomposition against numpy (LAPACK).
//! Golden values from `/work/venv/bin/python` (numpy 2):
//!
//! ```text
//! a = [[sin(0.37*i*(j+1)+j) for j in range(5)] for i in range(40)]   (as float32)
//! b = [[cos(0.23*i*(j+2))*1.5+0.2*j for j in range(5)] for i in range(30)]
//! s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
//! |m1-m2|^2 + tr s1 + tr s2 - 2 sum(sqrt(np.linalg.eigvals(s1 @ s2)))  -> 2.1763673057859165
//! S = [[4,1,.5],[1,3,.2],[.5,.2,2]]: np.linalg.eigh -> w, and V diag(sqrt w) V^T
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diffusion::eval::fid::{frechet_distance_of, jacobi_eigen, mean_cov, sqrtm_psd};
use diffusion::eval::mean_pairwise_distance;

fn sets() -> (Vec<f32>, Vec<f32>) {
    let a = (0..40)
        .flat_map(|i| {
            (0..5)
                .map(move |j| (0.37 * f64::from(i) * f64::from(j + 1) + f64::from(j)).sin() as f32)
        })
        .collect();
    let b = (0..30)
        .flat_map(|i| {
            (0..5).map(move |j| {
                ((0.23 * f64::from(i) * f64::from(j + 2)).cos() * 1.5 + 0.2 * f64::from(j)) as f32
            })
        })
        .collect();
    (a, b)
}

#[test]
fn frechet_distance_matches_numpy() {
    let (a, b) = sets();
    let d = frechet_distance_of(&a, &b, 5).unwrap();
    assert!((d - 2.176_367_305_785_916_5).abs() < 1e-9, "{d}");
    // Identical sets are at distance 0 (up to rounding).
    assert!(frechet_distance_of(&a, &a, 5).unwrap().abs() < 1e-9);
}

#[test]
fn jacobi_eigen_and_sqrtm_match_numpy() {
    let s = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
    let (mut w, v) = jacobi_eigen(&s, 3).unwrap();
    // Eigenvectors: A v = w v for each column.
    for k in 0..3 {
        for i in 0..3 {
            let av: f64 = (0..3).map(|j| s[i * 3 + j] * v[j * 3 + k]).sum();
            assert!((av - w[k] * v[i * 3 + k]).abs() < 1e-12);
        }
    }
    w.sort_by(f64::total_cmp);
    let want = [
        1.880_086_902_915_052_9,
        2.398_343_019_336_996_6,
        4.721_570_077_747_95,
    ];
    for (x, y) in w.iter().zip(want) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    let r = sqrtm_psd(&s, 3).unwrap();
    let want = [
        1.976_580_656_375_757_3,
        0.269_220_449_324_860_17,
        0.143_698_498_622_982_65,
        0.269_220_449_324_860_3,
        1.710_216_521_724_212_5,
        0.051_766_770_102_559_805,
        0.143_698_498_622_982_62,
        0.051_766_770_102_559_77,
        1.405_941_301_408_649_7,
    ];
    for (x, y) in r.iter().zip(want) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    assert!(jacobi_eigen(&s, 2).is_err());
}

#[test]
fn covariance_and_diversity() {
    let (mu, cov) = mean_cov(&[1.0, 2.0, 3.0, 6.0], 2).unwrap();
    assert_eq!(mu, [2.0, 4.0]);
    assert_eq!(cov, [2.0, 4.0, 4.0, 8.0]);
    assert!(mean_cov(&[1.0, 2.0], 2).is_err());
    // Two points at distance 5, and one point alone.
    assert_eq!(mean_pairwise_distance(&[0.0, 0.0, 3.0, 4.0], 2), 5.0);
    assert_eq!(mean_pairwise_distance(&[1.0, 1.0], 2), 0.0);
}
