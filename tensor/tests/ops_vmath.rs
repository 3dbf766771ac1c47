//! The explicit-SIMD math (`ops::vmath`): every vector width this CPU has gives the
//! same bits as the scalar `UnaryOp::apply` / `exp` / `erf` on a dense grid and on
//! special values; the attention's fused-multiply-add exp stays within 2 ulp;
//! `add_bias_act` equals its unfused twin bit for bit on strided inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{any_tensor, err_of, same};
use proptest::prelude::*;
use tensor::ops::act_slice::{act_slice_on, exp_fast_slice_on, Pre};
use tensor::ops::special::exp;
use tensor::ops::unary::UnaryOp;
use tensor::ops::vmath::{has_vector_form, Scalar, Simd};
use tensor::Tensor;

/// Inputs: a dense sweep of [-110, 100] (exp's whole range, erf's both branches and
/// the 0.875 / 4 switch points), powers of two down to the subnormals, specials.
fn grid() -> Vec<f32> {
    let mut xs = Vec::new();
    let mut x = -110.0f32;
    while x < 100.0 {
        xs.push(x);
        x += 1.0 / 512.0 + x.abs() * 1e-5;
    }
    for k in -149..128 {
        let p = 2f32.powi(k);
        xs.extend([p, -p]);
    }
    xs.extend([
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        88.722_84,
        88.722_85,
        -104.0,
        0.875,
        -0.875,
        4.0,
        -4.0,
    ]);
    xs
}

/// Run `check(name, token)` for every vector width this CPU has, one lane included.
fn each_width(mut check: impl FnMut(&str, &dyn Fn(Option<UnaryOp>, Pre<'_>, &[f32], &mut [f32]))) {
    check("scalar", &|a, p, s, d| act_slice_on(Scalar, a, p, s, d));
    #[cfg(target_arch = "x86_64")]
    {
        use tensor::ops::vmath::{Avx2, Avx512};
        if let Some(t) = Avx512::detect() {
            check("avx512", &|a, p, s, d| act_slice_on(t, a, p, s, d));
        }
        if let Some(t) = Avx2::detect() {
            check("avx2", &|a, p, s, d| act_slice_on(t, a, p, s, d));
        }
    }
}

#[test]
fn every_width_matches_apply_bit_for_bit() {
    let xs = grid();
    let vector_ops: Vec<UnaryOp> = UnaryOp::ALL
        .into_iter()
        .filter(|&o| has_vector_form(o))
        .collect();
    assert!(vector_ops.len() >= 9, "{vector_ops:?}");
    each_width(|name, run| {
        for &op in &UnaryOp::ALL {
            let mut out = vec![0.0f32; xs.len()];
            run(Some(op), Pre::Id, &xs, &mut out);
            for (&x, &y) in xs.iter().zip(&out) {
                // Same bits (so -0.0 stays -0.0), any NaN matching any NaN.
                let w = op.apply(x);
                let ok = y.to_bits() == w.to_bits() || (y.is_nan() && w.is_nan());
                assert!(ok, "{name} {}({x:e}) = {y:e}, apply gives {w:e}", op.name());
            }
        }
    });
}

#[test]
fn every_width_fuses_pre_ops_exactly() {
    let xs: Vec<f32> = grid().into_iter().filter(|x| x.abs() < 50.0).collect();
    let bias: Vec<f32> = (0..xs.len())
        .map(|i| (i % 7) as f32 * 0.25 - 0.75)
        .collect();
    let (hi, lo, scale, shift) = (0.5f32, 1e-9f32, 1.7f32, -0.25f32);
    each_width(|name, run| {
        for op in [
            Some(UnaryOp::Gelu),
            Some(UnaryOp::Silu),
            Some(UnaryOp::Tanh),
            None,
        ] {
            let f = |x: f32| op.map_or(x, |o| o.apply(x));
            let mut out = vec![0.0f32; xs.len()];
            run(op, Pre::Add(&bias), &xs, &mut out);
            for i in 0..xs.len() {
                assert!(
                    same(out[i], f(xs[i] + bias[i])),
                    "{name} add {op:?} at {}",
                    xs[i]
                );
            }
            run(op, Pre::AddScalar(0.5), &xs, &mut out);
            for i in 0..xs.len() {
                assert!(same(out[i], f(xs[i] + 0.5)), "{name} add scalar {op:?}");
            }
            run(
                op,
                Pre::Norm {
                    hi,
                    lo,
                    scale,
                    shift,
                },
                &xs,
                &mut out,
            );
            for i in 0..xs.len() {
                let want = f(((xs[i] - hi) - lo) * scale + shift);
                assert!(same(out[i], want), "{name} norm {op:?} at {}", xs[i]);
            }
        }
    });
}

#[test]
fn fast_exp_within_two_ulp_and_exact_at_the_ends() {
    let xs = grid();
    let mut worst = (0.0f64, 0.0f32);
    let mut check = |name: &str, out: &[f32]| {
        for (&x, &y) in xs.iter().zip(out) {
            let want = exp(x);
            if x.is_nan() {
                assert!(y.is_nan(), "{name}");
            } else if want == 0.0 || want.is_infinite() || want < f32::MIN_POSITIVE {
                // Subnormal results may round differently; zero and inf must match.
                assert!(
                    (y - want).abs() <= 2.0 * f32::from_bits(1) || y == want,
                    "{name} {x}: {y} vs {want}"
                );
            } else {
                let ulp = f32::from_bits(want.to_bits() + 1) - want;
                let e = ((y - want) / ulp).abs() as f64;
                if e > worst.0 {
                    worst = (e, x);
                }
            }
        }
        assert_eq!(
            out[xs.iter().position(|&x| x == f32::NEG_INFINITY).unwrap()],
            0.0,
            "{name}: exp(-inf)"
        );
    };
    let mut out = vec![0.0f32; xs.len()];
    exp_fast_slice_on(Scalar, &xs, &mut out);
    check("scalar", &out);
    #[cfg(target_arch = "x86_64")]
    {
        use tensor::ops::vmath::{Avx2, Avx512};
        if let Some(t) = Avx512::detect() {
            exp_fast_slice_on(t, &xs, &mut out);
            check("avx512", &out);
        }
        if let Some(t) = Avx2::detect() {
            exp_fast_slice_on(t, &xs, &mut out);
            check("avx2", &out);
        }
    }
    assert!(worst.0 <= 2.0, "worst {} ulp at {}", worst.0, worst.1);
    // The width-1 token is what the portable build runs: check its lane count.
    assert_eq!(<Scalar as Simd>::LANES, 1);
}

#[test]
fn add_bias_act_errors() {
    let x = Tensor::zeros([2, 3]);
    let e = err_of(x.add_bias_act(&Tensor::zeros([2]), None));
    assert!(
        e.contains("add_bias_act") && e.contains("[2]") && e.contains("[2, 3]"),
        "{e}"
    );
    assert!(err_of(Tensor::scalar(1.0).add_bias_act(&Tensor::zeros([1]), None)).contains("bias"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn add_bias_act_equals_the_unfused_pair(
        x in any_tensor(3, 40),
        op in prop_oneof![Just(None), Just(Some(UnaryOp::Gelu)), Just(Some(UnaryOp::Silu)), Just(Some(UnaryOp::Relu)), Just(Some(UnaryOp::QuickGelu))],
        seed in any::<u64>(),
    ) {
        prop_assume!(x.rank() >= 1);
        let n = *x.dims().last().unwrap();
        let b = Tensor::from_vec(common::values(n, seed), [n]).unwrap();
        let got = x.add_bias_act(&b, op).unwrap();
        let want = x.add_bias_act_naive(&b, op).unwrap();
        prop_assert_eq!(got.dims(), want.dims());
        for (g, w) in got.to_vec().unwrap().iter().zip(want.to_vec().unwrap()) {
            prop_assert!(same(*g, w), "{:?}: {} vs {}", op, g, w);
        }
    }
}

#[test]
fn large_inputs_split_over_threads_give_the_same_bits() {
    // 3 threads whatever the machine has, and inputs above the parallel thresholds,
    // so the chunked (and never-zeroed) output paths run.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        let x = Tensor::from_vec(
            common::Fill::Uniform(6.0).values(3 * 70_001, 5),
            [3, 70_001],
        )
        .unwrap();
        let xv = x.to_vec().unwrap();
        for op in [UnaryOp::Silu, UnaryOp::Gelu, UnaryOp::Exp, UnaryOp::Sigmoid] {
            let y = x.unary(op).unwrap().to_vec().unwrap();
            assert!(
                xv.iter().zip(&y).all(|(&a, &b)| same(b, op.apply(a))),
                "{}",
                op.name()
            );
        }
        let b = Tensor::from_vec(common::values(70_001, 6), [70_001]).unwrap();
        let got = x
            .add_bias_act(&b, Some(UnaryOp::Gelu))
            .unwrap()
            .to_vec()
            .unwrap();
        let want = x
            .add_bias_act_naive(&b, Some(UnaryOp::Gelu))
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(got.iter().zip(&want).all(|(&g, &w)| same(g, w)));
    });
}
