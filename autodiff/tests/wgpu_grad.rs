//! Backward on the GPU: a small conv / group norm / attention / linear graph whose
//! leaves live on wgpu gets the same gradients as on the CPU (1e-4). Every
//! backward is made of tensor ops (conv2d's gradients included), so they run where
//! their inputs live. Without an adapter the test prints that it skipped.
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
    for (i, (c, g)) in cpu.iter().zip(&on_gpu).enumerate() {
        let (a, b) = (want.get(c).unwrap(), got.get(g).unwrap());
        assert!(b.is_gpu(), "gradient {i} stayed on the GPU");
        let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        let scale = a.iter().map(|x| x.abs()).fold(0.0, f32::max);
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "gradient {i}: {diff} (scale {scale})"
        );
        assert!(scale > 0.0, "gradient {i} is not all zero");
    }
}
