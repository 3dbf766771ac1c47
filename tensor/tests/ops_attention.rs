//! Flash attention (`scaled_dot_product_attention`) against its materialising twin
//! (`scaled_dot_product_attention_naive`) and hand values: odd lengths (1, primes,
//! not multiples of the 192-key block or of the query tile), head dims 1..300, cross
//! attention, masks, causal, transposed / sliced / broadcast q, k, v, every
//! micro-kernel this CPU has; edge cases and errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{assert_close, err_of, make, values, Kind};
use proptest::prelude::*;
use tensor::matmul::kernels::Kernel;
use tensor::Tensor;

/// Attention in f64 with explicit loops, for hand-sized cases.
fn reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&[f32]>,
    scale: f64,
    causal: bool,
) -> Vec<f32> {
    let (lq, d) = (q.dims()[0], q.dims()[1]);
    let (lk, dv) = (k.dims()[0], v.dims()[1]);
    let (q, k, v) = (
        q.to_vec().unwrap(),
        k.to_vec().unwrap(),
        v.to_vec().unwrap(),
    );
    let mut out = vec![0.0f32; lq * dv];
    for i in 0..lq {
        let s: Vec<f64> = (0..lk)
            .map(|j| {
                let dot: f64 = (0..d).map(|p| (q[i * d + p] * k[j * d + p]) as f64).sum();
                let m = mask.map_or(0.0, |m| m[i * lk + j] as f64);
                if causal && j > i {
                    f64::NEG_INFINITY
                } else {
                    dot * scale + m
                }
            })
            .collect();
        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
        let sum: f64 = e.iter().sum();
        for c in 0..dv {
            let o: f64 = (0..lk).map(|j| e[j] * v[j * dv + c] as f64).sum();
            out[i * dv + c] = (o / sum) as f32;
        }
    }
    out
}

fn rand(dims: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(values(dims.iter().product(), seed), dims.to_vec()).unwrap()
}

#[test]
fn hand_values_two_keys() {
    // q = [1, 0], keys [1, 5] and [3, 7]: scores 1 and 3 (scale 1).
    let q = Tensor::from_vec(vec![1.0, 0.0], [1, 2]).unwrap();
    let k = Tensor::from_vec(vec![1.0, 5.0, 3.0, 7.0], [2, 2]).unwrap();
    let v = Tensor::from_vec(vec![10.0, -1.0, 20.0, 1.0], [2, 2]).unwrap();
    let w0 = 1.0 / (1.0 + 2f32.exp()); // softmax([1, 3])[0] = 0.11920292
    assert!((w0 - 0.119_202_92).abs() < 1e-7);
    for kernel in Kernel::available() {
        let o = q
            .scaled_dot_product_attention_with(kernel, &k, &v, None, Some(1.0), false)
            .unwrap();
        assert_eq!(o.dims(), &[1, 2]);
        let want = [10.0 * w0 + 20.0 * (1.0 - w0), -w0 + (1.0 - w0)];
        assert_close(&o.to_vec().unwrap(), &want, 1e-5, 1e-6, kernel.name());
    }
}

#[test]
fn matches_f64_loops_with_mask_and_causal() {
    let (lq, lk, d, dv) = (37, 29, 5, 3);
    let (q, k, v) = (rand(&[lq, d], 1), rand(&[lk, d], 2), rand(&[lk, dv], 3));
    let mvals = values(lq * lk, 4);
    let mask = Tensor::from_vec(mvals.clone(), [lq, lk]).unwrap();
    for causal in [false, true] {
        for m in [None, Some(&mask)] {
            let want = reference(&q, &k, &v, m.map(|_| &mvals[..]), 0.7, causal);
            let got = q.scaled_dot_product_attention(&k, &v, m, Some(0.7), causal);
            let what = format!("causal {causal}, mask {}", m.is_some());
            assert_close(&got.unwrap().to_vec().unwrap(), &want, 1e-5, 1e-5, &what);
            let naive = q.scaled_dot_product_attention_naive(&k, &v, m, Some(0.7), causal);
            assert_close(
                &naive.unwrap().to_vec().unwrap(),
                &want,
                1e-5,
                1e-5,
                "naive",
            );
        }
    }
}

/// Fast (every kernel) against naive, with a tolerance for the different summation.
fn check(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool, what: &str) {
    let want = q
        .scaled_dot_product_attention_naive(k, v, mask, None, causal)
        .unwrap();
    for kernel in Kernel::available() {
        let got = q
            .scaled_dot_product_attention_with(kernel, k, v, mask, None, causal)
            .unwrap();
        assert_eq!(got.dims(), want.dims(), "{what}");
        let w = want.to_vec().unwrap();
        let what = format!("{what} ({})", kernel.name());
        assert_close(&got.to_vec().unwrap(), &w, 2e-5, 1e-4, &what);
    }
}

#[test]
fn many_query_tiles_and_key_blocks() {
    // 1100 queries: two full 512-query tasks and a ragged one; 401 keys: two full
    // 192-key blocks and a ragged one.
    let (q, k, v) = (
        rand(&[2, 1100, 24], 5),
        rand(&[2, 401, 24], 6),
        rand(&[2, 401, 17], 7),
    );
    check(&q, &k, &v, None, false, "tiles");
    check(&q, &k, &v, None, true, "tiles causal");
    // On 3 threads the queries are cut into smaller tiles: the same values.
    let one = q
        .scaled_dot_product_attention(&k, &v, None, None, true)
        .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let three = pool.install(|| {
        q.scaled_dot_product_attention(&k, &v, None, None, true)
            .unwrap()
    });
    assert_close(
        &three.to_vec().unwrap(),
        &one.to_vec().unwrap(),
        1e-6,
        1e-6,
        "3 threads",
    );
}

#[test]
fn head_dims_beyond_one_depth_chunk() {
    // D = 300 > 256: the score product sums two depth chunks; Dv = 300 needs 50
    // six-dim slivers.
    let (q, k, v) = (
        rand(&[67, 300], 8),
        rand(&[211, 300], 9),
        rand(&[211, 300], 10),
    );
    check(&q, &k, &v, None, false, "d300");
}

#[test]
fn sd_cross_attention_shape_in_unet_layout() {
    // (B, L, H, D) projections viewed as (B, H, L, D); 77 text tokens as keys.
    let q = make(&[2, 130, 4, 40], Kind::Contiguous, 11)
        .permute(&[0, 2, 1, 3])
        .unwrap();
    let k = make(&[2, 77, 4, 40], Kind::Contiguous, 12)
        .permute(&[0, 2, 1, 3])
        .unwrap();
    let v = make(&[2, 77, 4, 40], Kind::Contiguous, 13)
        .permute(&[0, 2, 1, 3])
        .unwrap();
    assert!(!q.is_contiguous());
    check(&q, &k, &v, None, false, "cross");
}

#[test]
fn edge_cases() {
    // No keys: an empty sum, zeros (as the naive matmul with k = 0).
    let (q, k0, v0) = (
        rand(&[3, 4], 1),
        Tensor::zeros([0, 4]),
        Tensor::zeros([0, 2]),
    );
    let o = q
        .scaled_dot_product_attention(&k0, &v0, None, None, false)
        .unwrap();
    assert_eq!(
        (o.dims(), o.to_vec().unwrap()),
        (&[3usize, 2][..], vec![0.0; 6])
    );
    // No queries, and zero-width values.
    let (k, v) = (rand(&[5, 4], 2), rand(&[5, 2], 3));
    let o = Tensor::zeros([0, 4]).scaled_dot_product_attention(&k, &v, None, None, false);
    assert_eq!(o.unwrap().dims(), &[0, 2]);
    let o = q.scaled_dot_product_attention(&k, &Tensor::zeros([5, 0]), None, None, false);
    assert_eq!(o.unwrap().dims(), &[3, 0]);
    // D = 0: every score is 0, so the output is the mean of v (default scale 1).
    let o = Tensor::zeros([2, 0])
        .scaled_dot_product_attention(&Tensor::zeros([5, 0]), &v, None, None, false)
        .unwrap()
        .to_vec()
        .unwrap();
    let vv = v.to_vec().unwrap();
    let mean0 = (0..5).map(|j| vv[j * 2]).sum::<f32>() / 5.0;
    assert!((o[0] - mean0).abs() < 1e-6 && (o[2] - mean0).abs() < 1e-6);
    // A fully masked row gives NaN in both versions (softmax of all -inf), the
    // other rows are untouched; a -inf that only hides some keys is fine.
    let mut m = vec![0.0f32; 3 * 5];
    m[5..10].fill(f32::NEG_INFINITY);
    m[0] = f32::NEG_INFINITY;
    let mask = Tensor::from_vec(m, [3, 5]).unwrap();
    for f in [
        Tensor::scaled_dot_product_attention,
        Tensor::scaled_dot_product_attention_naive,
    ] {
        let o = f(&q, &k, &v, Some(&mask), None, false)
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(o[2].is_nan() && o[3].is_nan(), "{o:?}");
        assert!(o[0].is_finite() && o[4].is_finite(), "{o:?}");
    }
    // Huge scores do not overflow: the max is subtracted first.
    let big = Tensor::from_vec(vec![100.0, 0.0], [1, 2]).unwrap();
    let kk = Tensor::from_vec(vec![1.0, 0.0, 0.99, 0.0], [2, 2]).unwrap();
    let vv = Tensor::from_vec(vec![1.0, 3.0], [2, 1]).unwrap();
    let o = big
        .scaled_dot_product_attention(&kk, &vv, None, Some(1.0), false)
        .unwrap();
    let w = 1.0 / (1.0 + (-1.0f32).exp()); // scores 100 and 99
    assert!((o.to_vec().unwrap()[0] - (w + 3.0 * (1.0 - w))).abs() < 1e-5);
}

#[test]
fn errors_name_the_shapes() {
    let q = Tensor::zeros([2, 3, 4]);
    let e = err_of(q.scaled_dot_product_attention(
        &Tensor::zeros([2, 5, 3]),
        &Tensor::zeros([2, 5, 4]),
        None,
        None,
        false,
    ));
    assert!(
        e.contains("head dims differ") && e.contains("[2, 5, 3]"),
        "{e}"
    );
    let e = err_of(q.scaled_dot_product_attention(
        &Tensor::zeros([2, 5, 4]),
        &Tensor::zeros([2, 6, 4]),
        None,
        None,
        false,
    ));
    assert!(
        e.contains("lengths differ") && e.contains("[2, 6, 4]"),
        "{e}"
    );
    let e = err_of(q.scaled_dot_product_attention(
        &Tensor::zeros([3, 5, 4]),
        &Tensor::zeros([3, 5, 4]),
        None,
        None,
        false,
    ));
    assert!(e.contains("scaled_dot_product_attention"), "{e}");
    let e = err_of(Tensor::zeros([4]).scaled_dot_product_attention(&q, &q, None, None, false));
    assert!(e.contains("(.., L, D)"), "{e}");
    let (k, v) = (Tensor::zeros([2, 5, 4]), Tensor::zeros([2, 5, 4]));
    let e =
        err_of(q.scaled_dot_product_attention(&k, &v, Some(&Tensor::zeros([3, 4])), None, false));
    assert!(e.contains("mask [3, 4]") && e.contains("[2, 3, 5]"), "{e}");
    let e = err_of(q.scaled_dot_product_attention(&k, &v, None, Some(f32::NAN), false));
    assert!(e.contains("scale"), "{e}");
}

/// A `(b, h, l, d)` tensor in one of three layouts: contiguous, made by
/// transposing `(b, l, h, d)` (the UNet's), or narrowed out of a wider buffer.
fn qkv(b: usize, h: usize, l: usize, d: usize, layout: u8, seed: u64) -> Tensor {
    match layout {
        0 => make(&[b, h, l, d], Kind::Contiguous, seed),
        1 => make(&[b, l, h, d], Kind::Contiguous, seed)
            .permute(&[0, 2, 1, 3])
            .unwrap(),
        _ => make(&[b, h, l, d + 3], Kind::Contiguous, seed)
            .narrow(3, 2, d)
            .unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fast_matches_naive(
        (b, h) in (1usize..3, 1usize..3),
        lq in prop_oneof![Just(1usize), Just(2), Just(7), Just(31), Just(33), Just(67), Just(131)],
        lk in prop_oneof![Just(1usize), Just(5), Just(13), Just(77), Just(191), Just(197)],
        d in prop_oneof![Just(1usize), Just(3), Just(8), Just(40), Just(64)],
        dv in prop_oneof![Just(0usize), Just(1), Just(7)],
        (lq_l, lk_l, v_l) in (0u8..3, 0u8..3, 0u8..3),
        mask_kind in 0u8..4,
        causal in any::<bool>(),
        kv_broadcast in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let dv = if dv == 7 { d } else { dv * 5 + 1 }; // Dv = D, 1 or 6
        let q = qkv(b, h, lq, d, lq_l, seed);
        // k and v optionally shared by every head (a broadcast batch dim).
        let hk = if kv_broadcast { 1 } else { h };
        let k = qkv(b, hk, lk, d, lk_l, seed ^ 1);
        let v = qkv(b, hk, lk, dv, v_l, seed ^ 2);
        let mask = match mask_kind {
            0 => None,
            1 => Some(make(&[lk], Kind::Contiguous, seed ^ 3)), // per key
            2 => Some(make(&[b, 1, lq, lk], Kind::Contiguous, seed ^ 3)),
            _ => Some(make(&[lq, lk], Kind::Permuted, seed ^ 3).affine(4.0, 0.0).unwrap()),
        };
        check(&q, &k, &v, mask.as_ref(), causal, &format!("{b}x{h}x{lq}x{lk}x{d}x{dv}"));
    }
}
