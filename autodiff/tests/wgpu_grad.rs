//! Backward on the GPU: a small conv / group norm / attention / linear graph whose
//! leaves live on wgpu gets the same gradients as on the CPU (1e-4). Every
//! backward is made of tensor ops (conv2d's gradients included), so they run where
//! their inputs live, the elementwise derivatives included (`tensor::ops::derivative`:
//! a WGSL kernel each, no trip through the CPU). Without an adapter each test prints
//! that it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use autodiff::Var;
use tensor::{Device, Tensor};

fn rand(dims: &[usize], seed: u32) -> Tensor {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    let n = dims.iter().product();
    let v = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    Tensor::from_vec(v, dims.to_vec()).unwrap()
}

/// Leaves (x, conv weight, conv bias, norm weight, norm bias, linear weight) and
/// the loss of the graph on them.
fn loss(leaves: &[Var]) -> Var {
    let [x, w, b, gw, gb, lw] = leaves else {
        panic!("six leaves")
    };
    let y = x.conv2d(w, Some(b), (1, 1), (1, 1), (1, 1), 1).unwrap();
    let y = y
        .group_norm(2, Some(gw), Some(gb), 1e-5)
        .unwrap()
        .silu()
        .unwrap();
    // (2, 8, 6, 6) -> tokens (2, 36, 8), self-attention, a linear layer.
    let t = y.reshape([2, 8, 36]).unwrap().transpose(1, 2).unwrap();
    let a = Var::scaled_dot_product_attention(&t, &t, &t, None, None).unwrap();
    let z = a.matmul(&lw.transpose(0, 1).unwrap()).unwrap();
    z.sqr().unwrap().mean(&[0, 1, 2], false).unwrap()
}

#[test]
fn a_backward_pass_on_wgpu_matches_the_cpu() {
    let gpu = match Device::wgpu() {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no wgpu adapter ({e})");
            return;
        }
    };
    let values = [
        rand(&[2, 3, 6, 6], 1),
        rand(&[8, 3, 3, 3], 2),
        rand(&[8], 3),
        rand(&[8], 4),
        rand(&[8], 5),
        rand(&[5, 8], 6),
    ];
    let cpu: Vec<Var> = values.iter().map(|v| Var::leaf(v.clone())).collect();
    let on_gpu: Vec<Var> = values
        .iter()
        .map(|v| Var::leaf(v.to_device(&gpu).unwrap()))
        .collect();
    let (lc, lg) = (loss(&cpu), loss(&on_gpu));
    assert!(lg.value().is_gpu());
    let (want, got) = (lc.backward().unwrap(), lg.backward().unwrap());
    let d = (lc.value().to_vec().unwrap()[0] - lg.value().to_vec().unwrap()[0]).abs();
    assert!(d <= 1e-5, "loss differs by {d}");
    assert_same_gradients("graph", &cpu, &on_gpu, &want, &got);
}

/// Each leaf's gradient on the GPU stayed there and is within 1e-4 (relative above
/// 1) of the CPU's, and the CPU's is not all zero.
fn assert_same_gradients(
    what: &str,
    cpu: &[Var],
    on_gpu: &[Var],
    want: &autodiff::Grads,
    got: &autodiff::Grads,
) {
    for (i, (c, g)) in cpu.iter().zip(on_gpu).enumerate() {
        let (a, b) = (want.get(c).unwrap(), got.get(g).unwrap());
        assert!(b.is_gpu(), "{what}: gradient {i} left the GPU");
        let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        let scale = a.iter().map(|x| x.abs()).fold(0.0, f32::max);
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{what}: gradient {i}: {diff} (scale {scale})"
        );
        assert!(scale > 0.0, "{what}: gradient {i} is all zero");
    }
}

type Op = fn(&Var, &Var) -> autodiff::Result<Var>;

/// Every elementwise op's gradient with its leaves on wgpu: the unary ops and
/// `powf`, `clamp` on `a` (kept positive for log, sqrt and the powers), and the
/// broadcasting `div` and `pow` (b of shape (1, 5) against a's (4, 5)).
#[test]
fn every_elementwise_gradient_on_wgpu_matches_the_cpu() {
    let Ok(gpu) = Device::wgpu() else {
        println!("skipped: no wgpu adapter");
        return;
    };
    let a = rand(&[4, 5], 7).mul_scalar(4.0).unwrap();
    let pos = a.abs().unwrap().add_scalar(0.3).unwrap();
    let b = rand(&[1, 5], 8).add_scalar(1.0).unwrap();
    let ops: [(&str, Op, bool); 21] = [
        ("neg", |a, _| a.neg(), false),
        ("exp", |a, _| a.exp(), false),
        ("log", |a, _| a.log(), true),
        ("sqrt", |a, _| a.sqrt(), true),
        ("tanh", |a, _| a.tanh(), false),
        ("sigmoid", |a, _| a.sigmoid(), false),
        ("silu", |a, _| a.silu(), false),
        ("gelu", |a, _| a.gelu(), false),
        ("quick_gelu", |a, _| a.quick_gelu(), false),
        ("relu", |a, _| a.relu(), false),
        ("abs", |a, _| a.abs(), false),
        ("recip", |a, _| a.recip(), true),
        ("sqr", |a, _| a.sqr(), false),
        ("sin", |a, _| a.sin(), false),
        ("cos", |a, _| a.cos(), false),
        ("powf", |a, _| a.powf(1.5), true),
        ("powf -2", |a, _| a.powf(-2.0), true),
        ("clamp", |a, _| a.clamp(-0.5, 1.0), false),
        ("div", |a, b| a.div(b), false),
        ("pow", |a, b| a.pow(b), true),
        ("mul", |a, b| a.mul(b), false),
    ];
    for (name, op, positive) in ops {
        let x = if positive { &pos } else { &a };
        let vals = [x.clone(), b.clone()];
        let cpu: Vec<Var> = vals.iter().map(|v| Var::leaf(v.clone())).collect();
        let on_gpu: Vec<Var> = vals
            .iter()
            .map(|v| Var::leaf(v.to_device(&gpu).unwrap()))
            .collect();
        // Weight the outputs so that each element's gradient differs.
        let w = rand(&[4, 5], 9);
        let loss = |v: &[Var], dev: &Device| {
            let y = op(&v[0], &v[1]).unwrap();
            let w = Var::leaf(w.to_device(dev).unwrap());
            y.mul(&w).unwrap().sum_all().unwrap()
        };
        let (want, got) = (
            loss(&cpu, &Device::Cpu).backward().unwrap(),
            loss(&on_gpu, &gpu).backward().unwrap(),
        );
        let uses_b = matches!(name, "div" | "pow" | "mul");
        let n = if uses_b { 2 } else { 1 };
        assert_same_gradients(name, &cpu[..n], &on_gpu[..n], &want, &got);
    }
}
