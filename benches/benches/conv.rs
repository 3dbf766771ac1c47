//! conv2d on the Stable Diffusion shapes (batch 1): implicit GEMM (`conv2d`, what
//! every model runs) beside explicit im2col + GEMM (`conv2d_im2col`, the rung before
//! it), with throughput in FLOPs: `2 * N * O * C/groups * kh * kw * H' * W'` per
//! convolution (criterion prints it as "elem/s": read it as FLOP/s).
//!
//! `cargo bench -p benches --bench conv`                     both versions, all shapes
//! `cargo bench -p benches --bench conv -- implicit/unet`    only conv2d on the UNet shapes
//! `RAYON_NUM_THREADS=1 cargo bench -p benches --bench conv`  single-threaded
//!
//! Shapes (name: C -> O, kernel, stride, input size):
//! - `unet_3x3_320`: 320 -> 320, 3x3, stride 1, 64x64 (the UNet's first level; PyTorch
//!   2.x with oneDNN: about 30 ms on one Zen 5 core);
//! - `unet_down_3x3_s2_320`: 320 -> 320, 3x3, stride 2, 64x64 -> 32x32 (downsample);
//! - `unet_1x1_320`: 320 -> 320, 1x1, 64x64 (proj_in / proj_out);
//! - `vae_3x3_512_64`, `vae_3x3_512_128`: 512 -> 512, 3x3, 64x64 and 128x128;
//! - `vae_1x1_512_256`: 512 -> 256, 1x1, 256x256 (a decoder conv_shortcut);
//! - `vae_3x3_128_512`: 128 -> 128, 3x3, 512x512 (the decoder's last level; its
//!   full im2col matrix would be 1.2 GB, neither version builds it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tensor::Tensor;

/// (name, C, O, kernel, stride, padding, input size)
const SHAPES: [(&str, usize, usize, usize, usize, usize, usize); 7] = [
    ("unet_3x3_320", 320, 320, 3, 1, 1, 64),
    ("unet_down_3x3_s2_320", 320, 320, 3, 2, 1, 64),
    ("unet_1x1_320", 320, 320, 1, 1, 0, 64),
    ("vae_3x3_512_64", 512, 512, 3, 1, 1, 64),
    ("vae_3x3_512_128", 512, 512, 3, 1, 1, 128),
    ("vae_1x1_512_256", 512, 256, 1, 1, 0, 256),
    ("vae_3x3_128_512", 128, 128, 3, 1, 1, 512),
];

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

type Conv = fn(
    &Tensor,
    &Tensor,
    Option<&Tensor>,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
) -> tensor::Result<Tensor>;

fn conv2d(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let versions: [(&str, Conv); 2] = [
        ("implicit", Tensor::conv2d),
        ("im2col", Tensor::conv2d_im2col),
    ];
    for (name, c_in, c_out, k, s, p, size) in SHAPES {
        let x = Tensor::from_vec(values(c_in * size * size, 1), [1, c_in, size, size]).unwrap();
        let w = Tensor::from_vec(values(c_out * c_in * k * k, 2), [c_out, c_in, k, k]).unwrap();
        let b = Tensor::from_vec(values(c_out, 3), [c_out]).unwrap();
        let out = (size + 2 * p - k) / s + 1;
        group.throughput(Throughput::Elements(
            (2 * c_out * c_in * k * k * out * out) as u64,
        ));
        for (version, conv) in versions {
            group.bench_with_input(BenchmarkId::new(version, name), &name, |bench, _| {
                bench
                    .iter(|| conv(black_box(&x), &w, Some(&b), (s, s), (p, p), (1, 1), 1).unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, conv2d);
criterion_main!(benches);
