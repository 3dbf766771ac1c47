//! avg_pool2d, max_pool2d, upsample_nearest2d and pad against hand values and naive
//! per-element references, over strided layouts and odd sizes; plus error cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_close, err_of, kind, make, ravel, t, unravel};
use proptest::prelude::*;
use tensor::ops::resize::PadMode;
use tensor::Tensor;

/// Naive pooling over (planes, H, W): `avg` divides by kh*kw (pads count as 0),
/// max skips pads and lets NaN win.
fn pool_ref(
    x: &Tensor,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    avg: bool,
) -> Vec<f32> {
    let d = x.dims();
    let (h, w) = (d[d.len() - 2], d[d.len() - 1]);
    let planes = x.numel() / (h * w);
    let v = x.to_vec().unwrap();
    let oh = (h + 2 * p.0 - k.0) / s.0 + 1;
    let ow = (w + 2 * p.1 - k.1) / s.1 + 1;
    let mut out = Vec::new();
    for pl in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut sum, mut max) = (0.0f64, f32::NEG_INFINITY);
                for ky in 0..k.0 {
                    for kx in 0..k.1 {
                        let iy = (oy * s.0 + ky) as i64 - p.0 as i64;
                        let ix = (ox * s.1 + kx) as i64 - p.1 as i64;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let val = v[(pl * h + iy as usize) * w + ix as usize];
                            sum += val as f64;
                            if val > max || val.is_nan() || max.is_nan() {
                                max = if max.is_nan() { max } else { val };
                            }
                        }
                    }
                }
                out.push(if avg {
                    (sum / (k.0 * k.1) as f64) as f32
                } else {
                    max
                });
            }
        }
    }
    out
}

#[test]
fn avg_pool_counts_padding_in_divisor() {
    let x = t(
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        &[1, 1, 3, 3],
    );
    let y = x.avg_pool2d((2, 2), (2, 2), (1, 1)).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    // Windows {1}, {2,3}, {4,7}, {5,6,8,9}, each over 4.
    assert_eq!(y.to_vec().unwrap(), vec![0.25, 1.25, 2.75, 7.0]);
    let y = x.avg_pool2d((3, 3), (1, 1), (1, 1)).unwrap();
    assert_eq!(y.to_vec().unwrap()[0], 12.0 / 9.0);
    assert_eq!(y.to_vec().unwrap()[4], 5.0);
}

#[test]
fn max_pool_ignores_padding_and_propagates_nan() {
    let x = t(
        &[-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0],
        &[1, 3, 3],
    );
    let y = x.max_pool2d((2, 2), (2, 2), (1, 1)).unwrap();
    assert_eq!(y.dims(), &[1, 2, 2]);
    assert_eq!(y.to_vec().unwrap(), vec![-1.0, -2.0, -4.0, -5.0]);
    let x = t(&[1.0, f32::NAN, 3.0, 4.0], &[1, 1, 2, 2]);
    let y = x
        .max_pool2d((2, 2), (1, 1), (0, 0))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(y[0].is_nan());
}

#[test]
fn pool_errors() {
    let x = Tensor::zeros([1, 1, 4, 4]);
    let e = err_of(x.avg_pool2d((3, 3), (1, 1), (2, 2)));
    assert!(
        e.contains("avg_pool2d") && e.contains("at most half"),
        "{e}"
    );
    let e = err_of(x.max_pool2d((5, 1), (1, 1), (0, 0)));
    assert!(
        e.contains("max_pool2d") && e.contains("larger than the padded input"),
        "{e}"
    );
    let e = err_of(x.max_pool2d((2, 2), (0, 1), (0, 0)));
    assert!(e.contains("stride"), "{e}");
    let e = err_of(x.avg_pool2d((0, 2), (1, 1), (0, 0)));
    assert!(e.contains("kernel"), "{e}");
    let e = err_of(Tensor::zeros([4, 4]).avg_pool2d((2, 2), (2, 2), (0, 0)));
    assert!(e.contains("[4, 4]"), "{e}");
    let e = err_of(Tensor::zeros([1, 1, 0, 4]).max_pool2d((1, 1), (1, 1), (0, 0)));
    assert!(e.contains("empty spatial"), "{e}");
}

#[test]
fn upsample_nearest_hand_values() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 1, 2, 3]);
    let y = x.upsample_nearest2d(3, 2).unwrap();
    // rows floor(y * 2/3) = 0, 0, 1; cols floor(x * 3/2) = 0, 1.
    assert_eq!(y.to_vec().unwrap(), vec![1.0, 2.0, 1.0, 2.0, 4.0, 5.0]);
    let y = x.upsample_nearest2d_scale(2).unwrap();
    assert_eq!(y.dims(), &[1, 1, 4, 6]);
    let want_row0 = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
    assert_eq!(y.to_vec().unwrap()[..6], want_row0);
    assert_eq!(y.to_vec().unwrap()[6..12], want_row0);
    assert_eq!(y.to_vec().unwrap()[12..18], [4.0, 4.0, 5.0, 5.0, 6.0, 6.0]);
}

#[test]
fn upsample_nearest_follows_torch_f32_rule() {
    // torch: F.interpolate(arange(2.).view(1,1,1,2), size=(1,82))[..., 40:43] = [0, 0, 1]:
    // f32 scale 2/82 times 41 rounds below 1, where exact 41*2/82 = 1.
    let x = t(&[0.0, 1.0], &[1, 1, 1, 2]);
    let y = x.upsample_nearest2d(1, 82).unwrap().to_vec().unwrap();
    assert_eq!(y[40..43], [0.0, 0.0, 1.0]);
}

#[test]
fn upsample_errors() {
    let x = Tensor::zeros([1, 1, 2, 2]);
    assert!(err_of(x.upsample_nearest2d(0, 3)).contains("upsample_nearest2d"));
    assert!(err_of(x.upsample_nearest2d_scale(0)).contains("scale factor"));
    assert!(err_of(Tensor::zeros([2]).upsample_nearest2d(2, 2)).contains("[2]"));
}

#[test]
fn pad_modes_hand_values() {
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let r = x.pad_with(&[(2, 2)], PadMode::Reflect).unwrap();
    assert_eq!(r.to_vec().unwrap(), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
    let r = x.pad_with(&[(2, 1)], PadMode::Replicate).unwrap();
    assert_eq!(r.to_vec().unwrap(), vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
    // VAE encoder: pad right and bottom by one with zeros.
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let r = x.pad(&[(0, 1), (0, 1)], 0.0).unwrap();
    assert_eq!(r.dims(), &[1, 1, 3, 3]);
    assert_eq!(
        r.to_vec().unwrap(),
        vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]
    );
    let r = x.pad(&[(1, 0), (0, 0), (0, 1)], -1.0).unwrap();
    assert_eq!(r.dims(), &[1, 2, 2, 3]);
    assert_eq!(r.to_vec().unwrap()[..6], [-1.0, 1.0, 2.0, -1.0, 3.0, 4.0]);
    assert!(r.to_vec().unwrap()[6..].iter().all(|&v| v == -1.0));
}

#[test]
fn pad_errors() {
    let x = Tensor::zeros([2, 3]);
    let e = err_of(x.pad(&[(1, 1), (1, 1), (1, 1)], 0.0));
    assert!(e.contains("pad") && e.contains("[2, 3]"), "{e}");
    let e = err_of(x.pad_with(&[(3, 0)], PadMode::Reflect));
    assert!(e.contains("reflect") && e.contains("dim 1 (size 3)"), "{e}");
    let e = err_of(Tensor::zeros([0]).pad_with(&[(1, 0)], PadMode::Replicate));
    assert!(e.contains("replicate"), "{e}");
}

fn pad_ref(x: &Tensor, pads: &[(usize, usize)], mode: PadMode) -> (Vec<usize>, Vec<f32>) {
    let d = x.dims().to_vec();
    let r = d.len();
    let pad_of = |k: usize| {
        if r - 1 - k < pads.len() {
            pads[r - 1 - k]
        } else {
            (0, 0)
        }
    };
    let od: Vec<usize> = (0..r).map(|k| d[k] + pad_of(k).0 + pad_of(k).1).collect();
    let v = x.to_vec().unwrap();
    let n: usize = od.iter().product();
    let out = (0..n)
        .map(|i| {
            let oi = unravel(i, &od);
            let mut src = Vec::new();
            for k in 0..r {
                let j = oi[k] as i64 - pad_of(k).0 as i64;
                let n = d[k] as i64;
                let j = match mode {
                    PadMode::Constant(_) if j < 0 || j >= n => return None,
                    PadMode::Constant(_) => j,
                    PadMode::Replicate => j.max(0).min(n - 1),
                    PadMode::Reflect => (n - 1) - ((n - 1) - j.abs()).abs(),
                };
                src.push(j as usize);
            }
            Some(v[ravel(&src, &d)])
        })
        .map(|s| match (s, mode) {
            (Some(v), _) => v,
            (None, PadMode::Constant(c)) => c,
            (None, _) => unreachable!(),
        })
        .collect();
    (od, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn pools_match_naive(
        (n, c, h, w) in (0usize..3, 1usize..4, 1usize..12, 1usize..12),
        (kh, kw, sh, sw) in (1usize..5, 1usize..5, 1usize..4, 1usize..4),
        (ph, pw) in (0usize..3, 0usize..3),
        k in kind(),
        seed in any::<u64>(),
    ) {
        let (ph, pw) = (ph.min(kh / 2), pw.min(kw / 2));
        let (h, w) = (h.max(kh.saturating_sub(2 * ph)), w.max(kw.saturating_sub(2 * pw)));
        let x = make(&[n, c, h, w], k, seed);
        for avg in [true, false] {
            let y = if avg {
                x.avg_pool2d((kh, kw), (sh, sw), (ph, pw)).unwrap()
            } else {
                x.max_pool2d((kh, kw), (sh, sw), (ph, pw)).unwrap()
            };
            let want = pool_ref(&x, (kh, kw), (sh, sw), (ph, pw), avg);
            prop_assert_eq!(y.dims()[..2].to_vec(), vec![n, c]);
            assert_close(&y.to_vec().unwrap(), &want, 1e-6, 1e-5, if avg { "avg" } else { "max" });
        }
    }

    #[test]
    fn upsample_matches_index_rule(
        (n, c, h, w) in (0usize..3, 1usize..4, 1usize..9, 1usize..9),
        (oh, ow) in (1usize..23, 1usize..23),
        k in kind(),
        seed in any::<u64>(),
    ) {
        let x = make(&[n, c, h, w], k, seed);
        let y = x.upsample_nearest2d(oh, ow).unwrap();
        prop_assert_eq!(y.dims(), &[n, c, oh, ow]);
        let v = x.to_vec().unwrap();
        let src = |d: usize, i: usize, o: usize| (((d as f32) * (i as f32 / o as f32)).floor() as usize).min(i - 1);
        let want: Vec<f32> = (0..n * c * oh * ow)
            .map(|e| {
                let [p, q, yy, xx] = unravel(e, &[n, c, oh, ow])[..] else { unreachable!() };
                v[ravel(&[p, q, src(yy, h, oh), src(xx, w, ow)], &[n, c, h, w])]
            })
            .collect();
        prop_assert_eq!(y.to_vec().unwrap(), want);
    }

    #[test]
    fn pad_matches_naive(
        dims in prop::collection::vec(0usize..6, 1..4),
        raw in prop::collection::vec((0usize..4, 0usize..4), 0..4),
        mode in 0u8..3,
        k in kind(),
        seed in any::<u64>(),
    ) {
        let pads: Vec<(usize, usize)> = raw.into_iter().take(dims.len()).collect();
        let mode = match mode { 0 => PadMode::Constant(7.5), 1 => PadMode::Replicate, _ => PadMode::Reflect };
        // Make the padded dims big enough for the mode (reflect: pad < size).
        let mut dims = dims;
        let r = dims.len();
        for (i, &(a, b)) in pads.iter().enumerate() {
            let need = match mode { PadMode::Reflect => a.max(b) + 1, PadMode::Replicate => 1, _ => 0 };
            if a + b > 0 { dims[r - 1 - i] = dims[r - 1 - i].max(need); }
        }
        let x = make(&dims, k, seed);
        let y = x.pad_with(&pads, mode).unwrap();
        let (od, want) = pad_ref(&x, &pads, mode);
        prop_assert_eq!(y.dims(), &od[..]);
        prop_assert_eq!(y.to_vec().unwrap(), want);
    }
}
