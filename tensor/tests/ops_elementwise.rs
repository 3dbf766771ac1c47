//! Elementwise ops (strided copy, unary, scalar, binary, where) against naive
//! references on permuted, narrowed and broadcast layouts; exact values; errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    any_tensor, bcast_get, build, close, dims, naive_values, operand_dims, recipe, same, unravel,
    WIDE,
};
use proptest::prelude::*;
use tensor::ops::binary::BinaryOp;
use tensor::ops::reduce::ReduceOp;
use tensor::ops::special::{erf, exp, WGSL_HELPERS};
use tensor::ops::strided::StridedRuns;
use tensor::ops::unary::UnaryOp;
use tensor::{Tensor, TensorError};

/// erf in f64: Taylor series for |x| <= 3, continued fraction for erfc beyond.
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    let r = if a <= 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-18 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = exp(-a^2)/sqrt(pi) / (a + (1/2)/(a + 1/(a + (3/2)/(a + ...))))
        let mut f = a;
        for k in (1..80).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

#[test]
fn erf64_reference_matches_python_math_erf() {
    // Values printed by Python's math.erf.
    for (x, want) in [
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (2.0, 0.9953222650189527),
        (-0.3, -0.3286267594591274),
        (3.5, 0.9999992569016276),
        (1e-3, 0.0011283787909692365),
    ] {
        assert!(
            (erf64(x) - want).abs() < 1e-15,
            "erf64({x}) = {} vs {want}",
            erf64(x)
        );
    }
}

#[test]
fn erf_f32_within_two_ulp_of_f64_on_a_dense_grid() {
    let mut worst = (0.0f64, 0.0f32);
    let mut x = -6.0f32;
    while x <= 6.0 {
        let want = erf64(x as f64);
        let err = ulps(erf(x), want);
        if err > worst.0 {
            worst = (err, x);
        }
        x += 1.0 / 4096.0 + x.abs() * 1e-6;
    }
    // Tiny arguments: erf(x) ~ 2x/sqrt(pi), relative accuracy must hold there too.
    for k in 1..60 {
        let x = 0.5f32.powi(k);
        let want = erf64(x as f64);
        assert!(
            ((erf(x) as f64 - want) / want).abs() < 2.0 * f32::EPSILON as f64,
            "x = {x}"
        );
    }
    assert!(
        worst.0 <= 2.0,
        "worst error {} ulp at x = {}",
        worst.0,
        worst.1
    );
    assert!(erf(f32::NAN).is_nan());
    assert_eq!(erf(f32::INFINITY), 1.0);
    assert_eq!(erf(f32::NEG_INFINITY), -1.0);
}

/// Error of `got` in units of the f32 spacing at the exact value `want`.
fn ulps(got: f32, want: f64) -> f64 {
    let w = (want.abs() as f32).min(f32::MAX);
    let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
    (got as f64 - want).abs() / ulp
}

#[test]
fn exp_f32_within_one_ulp_including_subnormals() {
    let mut worst = (0.0f64, 0.0f32);
    let mut x = -104.0f32;
    while x < 88.72 {
        let e = ulps(exp(x), (x as f64).exp());
        if e > worst.0 {
            worst = (e, x);
        }
        x += 1.0 / 1024.0 + x.abs() * 1e-5;
    }
    assert!(
        worst.0 <= 1.0,
        "worst error {} ulp at x = {}",
        worst.0,
        worst.1
    );
    assert_eq!(exp(0.0), 1.0);
    assert_eq!(exp(1.0), std::f32::consts::E);
    assert_eq!(exp(88.8), f32::INFINITY);
    assert_eq!(exp(f32::INFINITY), f32::INFINITY);
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp(-200.0), 0.0);
    assert!(exp(f32::NAN).is_nan());
    assert!(ulps(exp(88.72), (88.72f32 as f64).exp()) <= 1.0);
}

#[test]
fn activation_known_values() {
    let x = Tensor::from_slice(&[1.0, -1.0, 0.0, 3.0], [4]).unwrap();
    let gelu = x.gelu().unwrap().to_vec().unwrap();
    // torch.nn.functional.gelu(torch.tensor([1., -1., 0., 3.]))
    for (g, want) in gelu
        .iter()
        .zip([0.841_344_7, -0.158_655_25, 0.0, 2.995_950_2])
    {
        assert!((g - want).abs() < 2e-7, "{g} vs {want}");
    }
    let qg = x.quick_gelu().unwrap().to_vec().unwrap();
    let silu = x.silu().unwrap().to_vec().unwrap();
    for (i, &v) in [1.0f64, -1.0, 0.0, 3.0].iter().enumerate() {
        let q = v / (1.0 + (-1.702 * v).exp());
        let s = v / (1.0 + (-v).exp());
        let g = 0.5 * v * (1.0 + erf64(v / 2f64.sqrt()));
        assert!(
            close(qg[i], q, 1e-7, 1e-6) && close(silu[i], s, 1e-7, 1e-6),
            "{v}"
        );
        assert!(close(gelu[i], g, 1e-7, 1e-6), "{v}");
    }
    let big = Tensor::from_slice(&[-100.0, 100.0, f32::NAN, -f32::INFINITY], [4]).unwrap();
    assert_eq!(big.sigmoid().unwrap().to_vec().unwrap()[..2], [0.0, 1.0]);
    assert_eq!(big.silu().unwrap().to_vec().unwrap()[..2], [-0.0, 100.0]);
    assert_eq!(big.gelu().unwrap().to_vec().unwrap()[..2], [-0.0, 100.0]);
    let r = big.relu().unwrap().to_vec().unwrap();
    assert!(r[0] == 0.0 && r[1] == 100.0 && r[2].is_nan() && r[3] == 0.0);
}

#[test]
fn unary_ops_match_f64_formulas() {
    let xs: Vec<f32> = (0..401).map(|i| -8.0 + i as f32 * 0.04).collect();
    for op in UnaryOp::ALL {
        let f: fn(f64) -> f64 = match op {
            UnaryOp::Neg => |x| -x,
            UnaryOp::Exp => f64::exp,
            UnaryOp::Log => f64::ln,
            UnaryOp::Sqrt => f64::sqrt,
            UnaryOp::Tanh => f64::tanh,
            UnaryOp::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Silu => |x| x / (1.0 + (-x).exp()),
            UnaryOp::Gelu => |x| 0.5 * x * (1.0 + erf64(x / 2f64.sqrt())),
            UnaryOp::QuickGelu => |x| x / (1.0 + (-1.702 * x).exp()),
            UnaryOp::Relu => |x| x.max(0.0),
            UnaryOp::Abs => f64::abs,
            UnaryOp::Recip => |x| 1.0 / x,
            UnaryOp::Sqr => |x| x * x,
            UnaryOp::Sin => f64::sin,
            UnaryOp::Cos => f64::cos,
        };
        for &x in &xs {
            let (got, want) = (op.apply(x), f(x as f64));
            assert!(
                close(got, want, 1e-6, 4e-7),
                "{} ({x}) = {got}, want {want}",
                op.name()
            );
        }
    }
}

#[test]
fn wgsl_snippets_name_their_variables_and_helpers_exist() {
    for op in UnaryOp::ALL {
        let w = op.wgsl();
        assert!(
            w.contains('x') && w.matches('(').count() == w.matches(')').count(),
            "{w}"
        );
    }
    for op in BinaryOp::ALL {
        let w = op.wgsl();
        assert!(w.contains('a') && w.contains('b'), "{w}");
    }
    assert!(UnaryOp::Gelu.wgsl().contains("erf_f32("));
    assert!(WGSL_HELPERS.contains("fn erf_f32(x: f32) -> f32"));
    assert!(BinaryOp::Pow.wgsl().contains("pow_f32(") && WGSL_HELPERS.contains("fn pow_f32("));
}

/// Every WGSL snippet, wrapped in a function next to the helpers, must pass wgpu's own
/// front end and validator (the `naga` crate, in process, so this always runs). Where
/// Dawn's `tint` is installed it must accept the module too (it is stricter about
/// constant inf/NaN); its absence is printed, and naga's check still stands.
#[test]
fn wgsl_snippets_validate_with_naga_and_tint() {
    use std::process::Command;
    let mut src = WGSL_HELPERS.to_string();
    let mut body = String::new();
    for op in UnaryOp::ALL {
        src += &format!(
            "fn u_{}(x: f32) -> f32 {{ return {}; }}\n",
            op.name(),
            op.wgsl()
        );
        body += &format!("    v = v + u_{}(v);\n", op.name());
    }
    for op in BinaryOp::ALL {
        src += &format!(
            "fn b_{}(a: f32, b: f32) -> f32 {{ return {}; }}\n",
            op.name(),
            op.wgsl()
        );
        body += &format!("    v = v + b_{}(v, 0.5);\n", op.name());
    }
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
        src += &format!(
            "fn r_{}(acc: f32, x: f32) -> f32 {{ return {}; }}\n",
            op.name(),
            op.wgsl()
        );
        body += &format!("    v = v + r_{}(v, 1.0);\n", op.name());
    }
    src += "@group(0) @binding(0) var<storage, read_write> buf: array<f32>;\n";
    src +=
        "@compute @workgroup_size(64)\nfn main(@builtin(global_invocation_id) id: vec3<u32>) {\n";
    src += &format!("    var v = buf[id.x];\n{body}    buf[id.x] = v;\n}}\n");
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "naga cannot parse the snippets:\n{}\n{src}",
            e.emit_to_string(&src)
        )
    });
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("naga rejects the snippets: {e:?}\n{src}"));
    let dir = std::env::temp_dir();
    let path = dir.join(format!("ops_wgsl_{}.wgsl", std::process::id()));
    let tint_out = dir.join(format!("ops_wgsl_{}_tint.wgsl", std::process::id()));
    std::fs::write(&path, &src).unwrap();
    let mut checked = 1; // naga, above
    for (tool, args) in [(
        "tint",
        vec![
            path.as_os_str(),
            "--format".as_ref(),
            "wgsl".as_ref(),
            "-o".as_ref(),
            tint_out.as_os_str(),
        ],
    )] {
        let Ok(out) = Command::new(tool).args(&args).output() else {
            eprintln!("skipped {tool}: not installed, WGSL not validated by it");
            continue;
        };
        checked += 1;
        assert!(
            out.status.success(),
            "{tool} rejected the snippets:\n{}{}\n{src}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&tint_out);
    eprintln!("WGSL snippets validated by {checked} of 2 validators (naga crate, tint)");
}

#[test]
fn binary_and_scalar_known_values() {
    let a = Tensor::from_slice(&[-2.0, -2.0, 0.0, 0.0, f32::NAN, 1.0], [6]).unwrap();
    let b = Tensor::from_slice(&[3.0, 0.5, 0.0, -1.0, 0.0, f32::NAN], [6]).unwrap();
    let p = a.pow(&b).unwrap().to_vec().unwrap(); // torch.pow: -8, nan, 1, inf
    assert!(p[0] == -8.0 && p[1].is_nan() && p[2] == 1.0 && p[3] == f32::INFINITY);
    let mx = a.maximum(&b).unwrap().to_vec().unwrap();
    assert!(mx[..4] == [3.0, 0.5, 0.0, 0.0] && mx[4].is_nan() && mx[5].is_nan());
    let mn = a.minimum(&b).unwrap().to_vec().unwrap();
    assert!(mn[..4] == [-2.0, -2.0, 0.0, -1.0] && mn[4].is_nan() && mn[5].is_nan());
    assert_eq!(
        a.eq(&b).unwrap().to_vec().unwrap(),
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        a.ne(&b).unwrap().to_vec().unwrap(),
        [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(
        a.le(&b).unwrap().to_vec().unwrap(),
        [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    );
    let c = Tensor::from_slice(&[f32::NAN, 1.0, 5.0, -5.0], [4]).unwrap();
    let cl = c.clamp(3.0, 2.0).unwrap().to_vec().unwrap(); // torch: min > max gives max
    assert!(cl[0].is_nan() && cl[1..] == [2.0, 2.0, 2.0]);
    assert_eq!(
        c.clamp(-1.0, 2.0).unwrap().to_vec().unwrap()[1..],
        [1.0, 2.0, -1.0]
    );
    let x = Tensor::from_slice(&[4.0, 0.25, -2.0], [3]).unwrap();
    assert_eq!(x.powf(0.5).unwrap().to_vec().unwrap()[..2], [2.0, 0.5]);
    assert_eq!(
        x.powf(-2.0).unwrap().to_vec().unwrap(),
        [0.0625, 16.0, 0.25]
    );
    assert_eq!(
        x.powf(3.0).unwrap().to_vec().unwrap(),
        [64.0, 0.015625, -8.0]
    );
    assert_eq!(
        x.affine(2.0, -1.0).unwrap().to_vec().unwrap(),
        [7.0, -0.5, -5.0]
    );
}

#[test]
fn bad_broadcast_names_both_shapes() {
    let a = Tensor::zeros([2, 3]);
    let b = Tensor::zeros([4]);
    match a.add(&b) {
        Err(TensorError::Broadcast { op, lhs, rhs }) => {
            assert_eq!((op, lhs, rhs), ("add", vec![2, 3], vec![4]));
        }
        other => panic!("expected a broadcast error, got {other:?}"),
    }
    let msg = a.mul(&b).unwrap_err().to_string();
    assert!(
        msg.contains("[2, 3]") && msg.contains("[4]") && msg.contains("mul"),
        "{msg}"
    );
    let cond = Tensor::zeros([3]);
    match cond.where_cond(&Tensor::zeros([2, 3]), &Tensor::zeros([5, 1, 1])) {
        Ok(t) => assert_eq!(t.dims(), &[5, 2, 3]),
        Err(e) => panic!("{e}"),
    }
    match cond.where_cond(&Tensor::zeros([2, 3]), &Tensor::zeros([2, 4])) {
        Err(TensorError::Broadcast { lhs, rhs, .. }) => {
            assert_eq!((lhs, rhs), (vec![2, 3], vec![2, 4]))
        }
        other => panic!("expected a broadcast error, got {other:?}"),
    }
}

#[test]
fn large_mixed_layouts_use_every_run_kind() {
    // Big enough to be split over threads, with runs cut mid-row.
    let a = Tensor::from_vec(WIDE.values(301 * 263, 7), [301, 263])
        .unwrap()
        .t()
        .unwrap();
    let b = Tensor::from_vec(WIDE.values(301, 8), [301]).unwrap();
    let c = Tensor::from_vec(WIDE.values(263, 9), [263, 1]).unwrap();
    let (va, vb, vc) = (naive_values(&a), naive_values(&b), naive_values(&c));
    let out = a.add(&b).unwrap().mul(&c).unwrap().to_vec().unwrap();
    let tanh = a.tanh().unwrap().to_vec().unwrap();
    for i in 0..263 * 301 {
        let (r, k) = (i / 301, i % 301);
        assert_eq!(out[i], (va[i] + vb[k]) * vc[r]);
        assert_eq!(tanh[i], va[i].tanh());
    }
    let cont = a.contiguous().unwrap();
    assert!(cont.is_contiguous() && cont.to_vec().unwrap() == va);
    // Batched transposes (the tiled copy), with an offset, small and large.
    for dims in [[3usize, 70, 41, 5], [2, 3, 33, 65], [1, 2, 3, 4]] {
        let n: usize = dims.iter().product();
        let base = Tensor::from_vec(WIDE.values(n, 10), dims).unwrap();
        for perm in [[0, 2, 3, 1], [0, 3, 1, 2], [3, 2, 1, 0], [1, 0, 3, 2]] {
            let p = base.permute(&perm).unwrap();
            let s1 = p.dims()[1];
            let t = p.narrow(1, s1 / 2, s1 - s1 / 2).unwrap();
            let t2 = base
                .narrow(2, 1, dims[2] - 1)
                .unwrap()
                .permute(&perm)
                .unwrap();
            assert_eq!(t.to_vec().unwrap(), naive_values(&t), "{dims:?} {perm:?}");
            assert_eq!(t2.to_vec().unwrap(), naive_values(&t2), "{dims:?} {perm:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn strided_copy_and_runs_match_index_arithmetic(t in any_tensor(4, 5), a in 0usize..200, b in 0usize..200) {
        let want = naive_values(&t);
        prop_assert_eq!(t.to_vec().unwrap(), want.clone());
        prop_assert_eq!(t.layout().offsets().map(|o| t.cpu_storage().unwrap()[o]).collect::<Vec<_>>(), want.clone());
        // Any sub-range of runs, as a thread would see it.
        let n = t.numel();
        let (lo, hi) = (a.min(b).min(n), a.max(b).min(n));
        let runs = StridedRuns::new("test", [t.layout()]).unwrap();
        let [s] = runs.inner_strides();
        let data = t.cpu_storage().unwrap();
        let mut got = vec![];
        runs.for_each_run(lo..hi, |pos, [o], len| {
            assert_eq!(pos, lo + got.len());
            got.extend((0..len).map(|i| data[o + i * s]));
        });
        prop_assert_eq!(&got[..], &want[lo..hi]);
    }

    #[test]
    fn unary_ops_match_naive(t in any_tensor(4, 5)) {
        let vals = naive_values(&t);
        for op in UnaryOp::ALL {
            let got = t.unary(op).unwrap();
            prop_assert_eq!(got.dims(), t.dims());
            prop_assert!(got.is_contiguous());
            for (g, &v) in got.to_vec().unwrap().iter().zip(&vals) {
                prop_assert!(same(*g, op.apply(v)), "{}({}) = {}", op.name(), v, g);
            }
        }
    }

    #[test]
    fn scalar_ops_match_naive(t in any_tensor(3, 5), m in -3.0f32..3.0, c in -3.0f32..3.0, e in prop_oneof![Just(2.0f32), Just(0.5), Just(-1.0), Just(1.7), Just(3.0)]) {
        let vals = naive_values(&t);
        let check = |out: Tensor, f: &dyn Fn(f32) -> f32| {
            for (g, &v) in out.to_vec().unwrap().iter().zip(&vals) {
                assert!(same(*g, f(v)), "{v}: {g} vs {}", f(v));
            }
        };
        check(t.affine(m, c).unwrap(), &|v| v * m + c);
        check(t.add_scalar(c).unwrap(), &|v| v + c);
        check(t.mul_scalar(m).unwrap(), &|v| v * m);
        check(t.clamp(m.min(c), m.max(c)).unwrap(), &|v| v.max(m.min(c)).min(m.max(c)));
        let p = t.powf(e).unwrap().to_vec().unwrap();
        for (g, &v) in p.iter().zip(&vals) {
            prop_assert!(close(*g, (v as f64).powf(e as f64), 1e-6, 1e-6), "{}^{} = {}", v, e, g);
        }
    }

    #[test]
    fn binary_ops_broadcast_like_numpy(
        (out, ad, bd) in dims(4, 4).prop_flat_map(|d| (Just(d.clone()), operand_dims(d.clone()), operand_dims(d))),
        swap in any::<bool>(),
        ra in recipe(4), rb in recipe(4),
    ) {
        let (ad, bd) = if swap { (bd, ad) } else { (ad, bd) };
        let a = build(&ad, &ra.clone().truncate(ad.len()));
        let b = build(&bd, &rb.clone().truncate(bd.len()));
        let (va, vb) = (naive_values(&a), naive_values(&b));
        let odims = tensor::Shape::broadcast("t", a.shape(), b.shape()).unwrap();
        prop_assert!(odims.rank() <= out.len());
        for op in BinaryOp::ALL {
            let got = a.binary(op, &b).unwrap();
            prop_assert_eq!(got.dims(), odims.dims());
            for (i, g) in got.to_vec().unwrap().iter().enumerate() {
                let idx = unravel(i, odims.dims());
                let want = op.apply(bcast_get(&va, &ad, &idx), bcast_get(&vb, &bd, &idx));
                prop_assert!(same(*g, want), "{} at {:?}: {} vs {}", op.name(), idx, g, want);
            }
        }
    }

    #[test]
    fn where_cond_broadcasts_three_ways(
        (out, cd, td, fd) in dims(3, 4).prop_flat_map(|d| (Just(d.clone()), operand_dims(d.clone()), operand_dims(d.clone()), operand_dims(d))),
        rc in recipe(3), rt in recipe(3), rf in recipe(3),
    ) {
        let c = build(&cd, &rc.clone().truncate(cd.len())).gt(&Tensor::scalar(0.0)).unwrap();
        let t = build(&td, &rt.clone().truncate(td.len()));
        let f = build(&fd, &rf.clone().truncate(fd.len()));
        let got = c.where_cond(&t, &f).unwrap();
        let (vc, vt, vf) = (naive_values(&c), naive_values(&t), naive_values(&f));
        let odims = got.dims().to_vec();
        prop_assert!(odims.len() <= out.len());
        for (i, g) in got.to_vec().unwrap().iter().enumerate() {
            let idx = unravel(i, &odims);
            let want = if bcast_get(&vc, &cd, &idx) != 0.0 { bcast_get(&vt, &td, &idx) } else { bcast_get(&vf, &fd, &idx) };
            prop_assert_eq!(*g, want);
        }
    }
}
