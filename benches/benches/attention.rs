//! Scaled dot-product attention (tensor/src/ops/attention.rs): the flash kernel
//! against the materialising twin, on SD shapes, with throughput in FLOPs
//! (`4 * B * H * Lq * Lk * D`: two products of `2 * Lq * Lk * D` each; criterion
//! prints "elem/s", read it as FLOP/s).
//!
//! `cargo bench -p benches --bench attention`              every case
//! `cargo bench -p benches --bench attention -- flash/`    only the flash kernel
//!
//! The full SD self-attention `(2, 8, 4096, 40)` runs only in the flash version:
//! its naive twin needs 2 GiB of scores and about ten seconds; the smaller
//! `(2, 8, 1024, 80)` shows both. Peak memory is measured by
//! `cargo run --release -p benches --example fused_timing`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tensor::Tensor;

fn values(dims: &[usize], seed: u32) -> Tensor {
    let n: usize = dims.iter().product();
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    let v = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, dims.to_vec()).unwrap()
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    // (label, B, H, Lq, Lk, D, run the naive twin too)
    let cases = [
        ("self_2x8x4096x40", 2, 8, 4096, 4096, 40, false),
        ("cross_2x8x4096x77x40", 2, 8, 4096, 77, 40, true),
        ("self_2x8x1024x80", 2, 8, 1024, 1024, 80, true),
        ("self_2x8x256x160", 2, 8, 256, 256, 160, true),
    ];
    for (label, b, h, lq, lk, d, naive) in cases {
        let q = values(&[b, h, lq, d], 1);
        let k = values(&[b, h, lk, d], 2);
        let v = values(&[b, h, lk, d], 3);
        group.throughput(Throughput::Elements((4 * b * h * lq * lk * d) as u64));
        group.bench_with_input(BenchmarkId::new("flash", label), &(), |bench, _| {
            bench.iter(|| {
                black_box(&q)
                    .scaled_dot_product_attention(&k, &v, None, None, false)
                    .unwrap()
            })
        });
        if naive {
            group.bench_with_input(BenchmarkId::new("naive", label), &(), |bench, _| {
                bench.iter(|| {
                    black_box(&q)
                        .scaled_dot_product_attention_naive(&k, &v, None, None, false)
                        .unwrap()
                })
            });
        }
    }
    // The UNet's layout: q, k, v are (B, L, H, D) projections viewed as (B, H, L, D).
    let qkv = values(&[2, 4096, 3, 8, 40], 4);
    let view = |i: usize| {
        qkv.narrow(2, i, 1)
            .unwrap()
            .squeeze(2)
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
    };
    let (q, k, v) = (view(0), view(1), view(2));
    group.throughput(Throughput::Elements(4 * 2 * 8 * 4096 * 4096 * 40u64));
    group.bench_function("flash/self_2x8x4096x40_strided", |bench| {
        bench.iter(|| {
            black_box(&q)
                .scaled_dot_product_attention(&k, &v, None, None, false)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
