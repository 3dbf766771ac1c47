//! The fused optimizer steps (`ops::optim`) on wgpu against the CPU loop: AdamW
//! with and without decay and with a lerp weight on each side of 0.5; SGD plain,
//! with weight decay, momentum (first and later steps), dampening and Nesterov;
//! the EMA update; operands in permuted and sliced layouts and of 0, 1 and 1000 elements. Within
//! 1e-5 (relative above 1). The CPU loop itself is held to torch bit for bit in
//! `nn/tests/optim_torch.rs`. Without an adapter each test prints that it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gpu::{assert_close, gpu, same_layout};
use common::{make, Kind};
use tensor::ops::optim::{adamw_step, ema_step, sgd_step, AdamWStep, SgdStep};
use tensor::Tensor;

const TOL: f32 = 1e-5;

/// Operands of `dims` in layout `kind`, seeds apart; `v` (a second moment) >= 0.
fn operands(dims: &[usize], kind: Kind) -> [Tensor; 4] {
    let [p, g, m, v] = [1u64, 2, 3, 4].map(|s| make(dims, kind, s));
    let v = v.abs().unwrap().mul_scalar(0.01).unwrap();
    [p, g, m, v]
}

#[test]
fn adamw_step_matches_cpu() {
    let Some(dev) = gpu("adamw_step_matches_cpu") else {
        return;
    };
    for (dims, kind) in [
        (vec![1000], Kind::Contiguous),
        (vec![7, 13], Kind::Permuted),
        (vec![5, 6], Kind::Sliced),
        (vec![1], Kind::Contiguous),
        (vec![0], Kind::Contiguous),
    ] {
        let [p, g, m, v] = operands(&dims, kind);
        for (decay, w1) in [(1.0, 0.1), (0.999, 0.1), (0.99, 0.7)] {
            let s = AdamWStep {
                decay,
                w1,
                beta2: 0.999,
                w2: 0.001,
                eps: 1e-8,
                bc2_sqrt: 0.0447,
                neg_step: -0.01,
            };
            let want = adamw_step(&p, &g, &m, &v, &s).unwrap();
            let on = |t: &Tensor| same_layout(&dev, t);
            let got = adamw_step(&on(&p), &on(&g), &on(&m), &on(&v), &s).unwrap();
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("adamw {dims:?} {kind:?} {s:?} out {k}"), a, b, TOL);
            }
            // A CPU gradient meets GPU state: still one GPU step.
            let mixed = adamw_step(&on(&p), &g, &on(&m), &on(&v), &s).unwrap();
            assert_close("adamw mixed", &mixed[0], &want[0], TOL);
        }
    }
}

#[test]
fn sgd_step_matches_cpu() {
    let Some(dev) = gpu("sgd_step_matches_cpu") else {
        return;
    };
    for (dims, kind) in [
        (vec![1000], Kind::Contiguous),
        (vec![7, 13], Kind::Permuted),
        (vec![5, 6], Kind::Sliced),
        (vec![0], Kind::Contiguous),
    ] {
        let [p, g, b, _] = operands(&dims, kind);
        let on = |t: &Tensor| same_layout(&dev, t);
        for (weight_decay, momentum, damp, nesterov) in [
            (0.0, 0.0, 1.0, false),
            (0.01, 0.0, 1.0, false),
            (0.0, 0.9, 1.0, false),
            (0.01, 0.9, 0.5, false),
            (0.01, 0.9, 1.0, true),
        ] {
            let s = SgdStep {
                lr: 0.05,
                weight_decay,
                momentum,
                damp,
                nesterov,
            };
            for buf in [None, Some(&b)] {
                let (wp, wb) = sgd_step(&p, &g, buf, &s).unwrap();
                let gb = buf.map(on);
                let (gp, gbuf) = sgd_step(&on(&p), &on(&g), gb.as_ref(), &s).unwrap();
                let what = format!("sgd {dims:?} {kind:?} {s:?} buf {}", buf.is_some());
                assert_close(&what, &gp, &wp, TOL);
                assert_eq!(gbuf.is_some(), momentum != 0.0, "{what}: buffer");
                if let (Some(a), Some(b)) = (gbuf, wb) {
                    assert_close(&format!("{what}: buffer"), &a, &b, TOL);
                }
            }
        }
    }
}

#[test]
fn ema_step_matches_cpu() {
    let Some(dev) = gpu("ema_step_matches_cpu") else {
        return;
    };
    for (dims, kind) in [
        (vec![1000], Kind::Contiguous),
        (vec![7, 13], Kind::Permuted),
        (vec![0], Kind::Contiguous),
    ] {
        let [s, p, _, _] = operands(&dims, kind);
        for w in [0.0, 0.001, 0.5, 1.0] {
            let want = ema_step(&s, &p, w).unwrap();
            let got = ema_step(&same_layout(&dev, &s), &same_layout(&dev, &p), w).unwrap();
            assert_close(&format!("ema {dims:?} {kind:?} w {w}"), &got, &want, TOL);
        }
    }
}
