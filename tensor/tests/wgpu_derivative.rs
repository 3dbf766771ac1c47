//! The elementwise derivative kernels autodiff records ([`Derivative`]) on wgpu
//! against the CPU: every variant, on three operands of any shapes that broadcast
//! together and any layouts (permuted, sliced, broadcast; proptest), within 1e-4
//! (relative above 1: `common::gpu::max_diff`). The CPU formulas themselves are
//! checked against central differences in `autodiff/tests/grad_elementwise.rs`.
//! Without an adapter each test prints "skipped: no wgpu adapter" and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::gpu::{assert_close, gpu, same_layout};
use common::{dims, operand_dims, tensor_of};
use proptest::prelude::*;
use tensor::ops::derivative::Derivative;
use tensor::ops::unary::UnaryOp;
use tensor::{Storage, Tensor};

const TOL: f32 = 1e-4;

/// Every variant, `Powf` at the CPU's fast-path exponents and others.
fn every_derivative() -> Vec<Derivative> {
    let mut all: Vec<Derivative> = UnaryOp::ALL.into_iter().map(Derivative::Unary).collect();
    for e in [0.0, 0.5, -0.5, 2.0, 3.0, -1.0, 1.7] {
        all.push(Derivative::Powf(e));
    }
    all.extend([
        Derivative::Clamp(-0.5, 1.0),
        Derivative::PowBase,
        Derivative::PowExponent,
        Derivative::DivRhs,
    ]);
    all
}

/// `t` with its stored values mapped (same layout), e.g. into a positive domain.
fn map_storage(t: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    let data = t.cpu_storage().unwrap().iter().map(|&v| f(v)).collect();
    Tensor::from_storage(Arc::new(Storage::Cpu(data)), t.layout().clone()).unwrap()
}

/// Whether `d` reads `x` through log or a fractional power, where WGSL leaves
/// negative inputs undefined: such tests take `|x| + 0.25`.
fn needs_positive_x(d: Derivative) -> bool {
    matches!(
        d,
        Derivative::Unary(UnaryOp::Log)
            | Derivative::Powf(_)
            | Derivative::PowBase
            | Derivative::PowExponent
    )
}

/// Three operands that broadcast together, each in an arbitrary layout.
fn operands() -> impl Strategy<Value = (Tensor, Tensor, Tensor)> {
    dims(3, 5).prop_flat_map(|out| {
        (
            operand_dims(out.clone()).prop_flat_map(tensor_of),
            operand_dims(out.clone()).prop_flat_map(tensor_of),
            operand_dims(out).prop_flat_map(tensor_of),
        )
    })
}

fn check(d: Derivative, dev: &tensor::Device, g: &Tensor, x: &Tensor, z: &Tensor) {
    let x = if needs_positive_x(d) {
        map_storage(x, |v| v.abs() + 0.25)
    } else {
        x.clone()
    };
    let want = d.backward(g, &x, z).unwrap();
    let (gg, gx, gz) = (
        same_layout(dev, g),
        same_layout(dev, &x),
        same_layout(dev, z),
    );
    let got = d.backward(&gg, &gx, &gz).unwrap();
    assert_close(&format!("{d:?}"), &got, &want, TOL);
    // Mixed residency: a CPU gradient with GPU operands also runs on the GPU.
    let mixed = d.backward(g, &gx, z).unwrap();
    assert_close(&format!("{d:?} (mixed)"), &mixed, &want, TOL);
}

/// Hand-picked values at the kinks and bounds (0, clamp's bounds, a zero
/// exponent), where the two backends must make the same choice.
#[test]
fn derivatives_at_kinks_match_cpu() {
    let Some(dev) = gpu("derivatives_at_kinks_match_cpu") else {
        return;
    };
    let x = Tensor::from_slice(&[-2.0, -0.5, 0.0, 0.25, 1.0, 3.0], [6]).unwrap();
    let g = Tensor::from_slice(&[1.0, -2.0, 3.0, 0.5, 0.0, 4.0], [6]).unwrap();
    let z = Tensor::from_slice(&[0.0, 1.0, 2.0, 0.0, -1.0, 0.5], [6]).unwrap();
    for d in every_derivative() {
        check(d, &dev, &g, &x, &z);
    }
    let relu = Derivative::Unary(UnaryOp::Relu);
    let got = relu.backward(&g.to_device(&dev).unwrap(), &x, &z).unwrap();
    assert_eq!(got.to_vec().unwrap(), vec![0.0, 0.0, 0.0, 0.5, 0.0, 4.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn every_derivative_matches_cpu_on_any_layout((g, x, z) in operands()) {
        let Some(dev) = gpu("every_derivative_matches_cpu_on_any_layout") else { return Ok(()) };
        for d in every_derivative() {
            check(d, &dev, &g, &x, &z);
        }
    }
}
