//! group_norm, group_norm_silu and layer_norm against hand values, a naive f64
//! reference and their scalar twins (`*_naive`), over strided layouts and odd sizes
//! (vector bodies and tails); accuracy with a large offset; error cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_close, err_of, kind, make, t, Kind};
use proptest::prelude::*;
use tensor::Tensor;

/// Normalise consecutive blocks of `block` elements; element `i` of a block uses
/// affine index `chan(i)`.
fn norm_ref(
    x: &[f32],
    block: usize,
    chan: impl Fn(usize, usize) -> usize,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f64,
) -> Vec<f32> {
    let mut out = Vec::new();
    for (bi, blk) in x.chunks(block.max(1)).enumerate() {
        let n = blk.len() as f64;
        let mean = blk.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = blk.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        for (i, &v) in blk.iter().enumerate() {
            let c = chan(bi, i);
            let y = (v as f64 - mean) / (var + eps).sqrt();
            let y = y * w.map_or(1.0, |w| w[c] as f64) + b.map_or(0.0, |b| b[c] as f64);
            out.push(y as f32);
        }
    }
    out
}

#[test]
fn group_norm_hand_values() {
    // One sample, 4 channels of 2 pixels, 2 groups: group 0 = [0, 2, 4, 6].
    let x = t(&[0.0, 2.0, 4.0, 6.0, 1.0, 1.0, 1.0, 1.0], &[1, 4, 2]);
    let w = t(&[1.0, 2.0, 1.0, 1.0], &[4]);
    let b = t(&[0.0, 0.0, 0.5, -0.5], &[4]);
    let y = x
        .group_norm(2, Some(&w), Some(&b), 0.0)
        .unwrap()
        .to_vec()
        .unwrap();
    // mean 3, var 5: (x - 3)/sqrt(5); channel 1 doubled. Group 1 is constant: var 0,
    // eps 0 would divide by zero, so check group 0 here and group 1 with eps below.
    let s = 5f32.sqrt();
    let want = [-3.0 / s, -1.0 / s, 2.0 / s, 6.0 / s];
    assert_close(&y[..4], &want, 1e-6, 1e-6, "group 0");
    let y = x
        .group_norm(2, Some(&w), Some(&b), 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(y[4..], [0.5, 0.5, -0.5, -0.5]);
}

#[test]
fn layer_norm_hand_values_over_two_dims() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0], &[2, 2, 2]);
    let w = t(&[1.0, 1.0, 2.0, 2.0], &[2, 2]);
    let b = t(&[0.0, 1.0, 0.0, 1.0], &[2, 2]);
    let y = x
        .layer_norm(&[2, 2], Some(&w), Some(&b), 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    let r = (1.25f32 + 1e-5).sqrt();
    let want = [
        -1.5 / r,
        -0.5 / r + 1.0,
        1.0 / r,
        3.0 / r + 1.0,
        0.0,
        1.0,
        0.0,
        1.0,
    ];
    assert_close(&y, &want, 1e-6, 1e-6, "layer_norm");
}

#[test]
fn norms_are_accurate_with_a_large_offset() {
    // Values 1e5 + j/64 for j in [0, 1, 2, 3, 4, 5, 6, 8] (exact in f32). Their mean
    // 1e5 + 29/512 falls between f32 neighbours (1/128 apart), so `x - mean` in f32 is
    // off by 5% of the std (torch 2.x prints -1.4018 for the first value); a one-pass
    // E[x^2] - E[x]^2 in f32 loses the variance entirely.
    let js = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0];
    let data: Vec<f32> = (0..64).map(|k| 1e5 + js[k % 8] / 64.0).collect();
    let x = t(&data, &[2, 4, 8]);
    let y = x
        .layer_norm(&[8], None, None, 0.0)
        .unwrap()
        .to_vec()
        .unwrap();
    let want = norm_ref(&data, 8, |_, i| i, None, None, 0.0);
    assert_close(&y, &want, 1e-5, 1e-5, "layer_norm offset");
    let y = x.group_norm(2, None, None, 0.0).unwrap().to_vec().unwrap();
    let want = norm_ref(&data, 16, |_, i| i, None, None, 0.0);
    assert_close(&y, &want, 1e-5, 1e-5, "group_norm offset");
    // Exact (f64) normalised ends of js: -1.4518159, 1.7521916.
    assert!((y[0] + 1.451_815_9).abs() < 1e-5, "{}", y[0]);
    assert!((y[7] - 1.752_191_6).abs() < 1e-5, "{}", y[7]);
}

#[test]
fn group_norm_silu_hand_values() {
    // Two groups of [0, 2, 4, 6] / sqrt(5)-normalised values, then SiLU.
    let x = t(&[0.0, 2.0, 4.0, 6.0, 5.0, 5.0, 1.0, 9.0], &[1, 4, 2]);
    let y = x
        .group_norm_silu(2, None, None, 0.0)
        .unwrap()
        .to_vec()
        .unwrap();
    let silu = |v: f64| v / (1.0 + (-v).exp());
    let s5 = 5f64.sqrt();
    let g1 = [0.0, 0.0, -1.0, 1.0].map(|v: f64| v * 4.0 / 8f64.sqrt()); // mean 5, var 8
    let want: Vec<f32> = [-3.0 / s5, -1.0 / s5, 1.0 / s5, 3.0 / s5]
        .iter()
        .chain(&g1)
        .map(|&v| silu(v) as f32)
        .collect();
    assert_close(&y, &want, 1e-6, 1e-6, "group_norm_silu");
}

#[test]
fn sd_sized_group_norm_matches_its_twin() {
    // SD's ResnetBlock GroupNorm: 32 groups of 10 channels; 13 x 11 pixels so every
    // channel row ends in a vector tail. Values offset by 50 to stress `x - mean`.
    let x = make(&[2, 320, 13, 11], Kind::Contiguous, 7)
        .affine(3.0, 50.0)
        .unwrap();
    let (w, b) = (
        make(&[320], Kind::Contiguous, 8),
        make(&[320], Kind::Contiguous, 9),
    );
    let want = x
        .group_norm_naive(32, Some(&w), Some(&b), 1e-6)
        .unwrap()
        .to_vec()
        .unwrap();
    let got = x
        .group_norm(32, Some(&w), Some(&b), 1e-6)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&got, &want, 2e-6, 2e-6, "group_norm");
    let silu: Vec<f32> = want.iter().map(|&v| v / (1.0 + (-v).exp())).collect();
    let got = x
        .group_norm_silu(32, Some(&w), Some(&b), 1e-6)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&got, &silu, 2e-6, 2e-6, "group_norm_silu");
    // The same on 3 threads (the parallel split into whole groups).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let got3 = pool.install(|| x.group_norm_silu(32, Some(&w), Some(&b), 1e-6).unwrap());
    assert_eq!(got3.to_vec().unwrap(), got);
    let y = make(&[3, 77, 320], Kind::Permuted, 10);
    let want = y
        .layer_norm_naive(&[320], Some(&w), Some(&b), 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    let got = y
        .layer_norm(&[320], Some(&w), Some(&b), 1e-5)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&got, &want, 2e-6, 2e-6, "layer_norm");
    let got3 = pool.install(|| y.layer_norm(&[320], Some(&w), Some(&b), 1e-5).unwrap());
    assert_eq!(got3.to_vec().unwrap(), got);
}

#[test]
fn norm_errors() {
    let x = Tensor::zeros([2, 6, 3]);
    let e = err_of(x.group_norm(4, None, None, 1e-5));
    assert!(
        e.contains("group_norm") && e.contains("6 channels") && e.contains("4 groups"),
        "{e}"
    );
    assert!(err_of(x.group_norm(0, None, None, 1e-5)).contains("0 groups"));
    let e = err_of(x.group_norm(3, Some(&Tensor::zeros([3])), None, 1e-5));
    assert!(
        e.contains("weight must have shape [6]") && e.contains("[3]"),
        "{e}"
    );
    let e = err_of(x.group_norm(3, None, Some(&Tensor::zeros([6, 1])), 1e-5));
    assert!(e.contains("bias"), "{e}");
    assert!(err_of(Tensor::zeros([6]).group_norm(3, None, None, 1e-5)).contains("(N, C, *)"));
    assert!(err_of(x.group_norm(3, None, None, f64::NAN)).contains("eps"));
    let e = err_of(x.layer_norm(&[6], None, None, 1e-5));
    assert!(
        e.contains("layer_norm") && e.contains("[6]") && e.contains("[2, 6, 3]"),
        "{e}"
    );
    assert!(err_of(x.layer_norm(&[], None, None, 1e-5)).contains("non-empty"));
    let e = err_of(x.layer_norm(&[6, 3], Some(&Tensor::zeros([18])), None, 1e-5));
    assert!(e.contains("weight must have shape [6, 3]"), "{e}");
    assert!(err_of(x.layer_norm(&[3], None, None, -1.0)).contains("eps"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn group_norm_matches_reference(
        (n, g, cg) in (0usize..3, 1usize..4, 1usize..4),
        spatial in prop::collection::vec(prop_oneof![Just(1usize), Just(2), Just(3), Just(5), Just(7)], 0..3),
        (kx, kw, kb) in (kind(), kind(), kind()),
        affine in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let c = g * cg;
        let mut dims = vec![n, c];
        dims.extend(&spatial);
        let x = make(&dims, kx, seed);
        let w = make(&[c], kw, seed ^ 1);
        let b = make(&[c], kb, seed ^ 2);
        let (wo, bo) = if affine { (Some(&w), Some(&b)) } else { (None, None) };
        let y = x.group_norm(g, wo, bo, 1e-5).unwrap();
        prop_assert_eq!(y.dims(), &dims[..]);
        let s: usize = spatial.iter().product();
        let (wv, bv) = (w.to_vec().unwrap(), b.to_vec().unwrap());
        let want = norm_ref(
            &x.to_vec().unwrap(),
            cg * s,
            |bi, i| (bi % g) * cg + i / s,
            affine.then_some(&wv[..]),
            affine.then_some(&bv[..]),
            1e-5,
        );
        assert_close(&y.to_vec().unwrap(), &want, 2e-4, 1e-4, "group_norm");
    }

    #[test]
    fn layer_norm_matches_reference(
        lead in prop::collection::vec(0usize..4, 0..3),
        norm in prop::collection::vec(prop_oneof![Just(1usize), Just(2), Just(3), Just(7), Just(13)], 1..3),
        (kx, kw, kb) in (kind(), kind(), kind()),
        affine in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut dims = lead.clone();
        dims.extend(&norm);
        let x = make(&dims, kx, seed);
        let w = make(&norm, kw, seed ^ 1);
        let b = make(&norm, kb, seed ^ 2);
        let (wo, bo) = if affine { (Some(&w), Some(&b)) } else { (None, None) };
        let y = x.layer_norm(&norm, wo, bo, 1e-5).unwrap();
        prop_assert_eq!(y.dims(), &dims[..]);
        let row: usize = norm.iter().product();
        let (wv, bv) = (w.to_vec().unwrap(), b.to_vec().unwrap());
        let want = norm_ref(
            &x.to_vec().unwrap(),
            row,
            |_, i| i,
            affine.then_some(&wv[..]),
            affine.then_some(&bv[..]),
            1e-5,
        );
        assert_close(&y.to_vec().unwrap(), &want, 2e-4, 1e-4, "layer_norm");
    }

    #[test]
    fn fast_norms_match_their_twins(
        (n, g, cg) in (1usize..3, 1usize..5, 1usize..4),
        spatial in prop_oneof![Just(1usize), Just(15), Just(16), Just(17), Just(33), Just(70)],
        kx in kind(),
        affine in any::<bool>(),
        offset in prop_oneof![Just(0.0f32), Just(1e3)],
        seed in any::<u64>(),
    ) {
        let c = g * cg;
        let x = make(&[n, c, spatial], kx, seed).add_scalar(offset).unwrap();
        let w = make(&[c], Kind::Contiguous, seed ^ 1);
        let b = make(&[c], Kind::Contiguous, seed ^ 2);
        let (wo, bo) = if affine { (Some(&w), Some(&b)) } else { (None, None) };
        let want = x.group_norm_naive(g, wo, bo, 1e-5).unwrap().to_vec().unwrap();
        let got = x.group_norm(g, wo, bo, 1e-5).unwrap().to_vec().unwrap();
        assert_close(&got, &want, 1e-5, 1e-5, "group_norm vs twin");
        let silu: Vec<f32> = want.iter().map(|&v| v / (1.0 + (-v).exp())).collect();
        let got = x.group_norm_silu(g, wo, bo, 1e-5).unwrap().to_vec().unwrap();
        assert_close(&got, &silu, 1e-5, 1e-5, "group_norm_silu vs twin + silu");
        let row = [c, spatial];
        let w2 = make(&row, Kind::Contiguous, seed ^ 3);
        let b2 = make(&row, Kind::Contiguous, seed ^ 4);
        let (wo, bo) = if affine { (Some(&w2), Some(&b2)) } else { (None, None) };
        let want = x.layer_norm_naive(&row, wo, bo, 1e-5).unwrap().to_vec().unwrap();
        let got = x.layer_norm(&row, wo, bo, 1e-5).unwrap().to_vec().unwrap();
        assert_close(&got, &want, 1e-5, 1e-5, "layer_norm vs twin");
    }
}
