//! GroupNorm, LayerNorm, activations and bias + activation (tensor/src/ops/norm.rs,
//! vmath.rs, bias_act.rs) on SD shapes, fast kernels against their naive twins or
//! unfused pairs. Throughput is in elements of the input (criterion's "elem/s").
//!
//! `cargo bench -p benches --bench norm`                   every case
//! `cargo bench -p benches --bench norm -- group_norm`     one family
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tensor::ops::unary::UnaryOp;
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

fn norm(c: &mut Criterion) {
    let mut group = c.benchmark_group("norm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let x = values(&[2, 320, 64, 64], 1);
    let (w, b) = (values(&[320], 2), values(&[320], 3));
    group.throughput(Throughput::Elements(x.numel() as u64));
    let id = "2x320x64x64_g32";
    group.bench_function(BenchmarkId::new("group_norm", id), |bench| {
        bench.iter(|| {
            black_box(&x)
                .group_norm(32, Some(&w), Some(&b), 1e-5)
                .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("group_norm_naive", id), |bench| {
        bench.iter(|| {
            black_box(&x)
                .group_norm_naive(32, Some(&w), Some(&b), 1e-5)
                .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("group_norm_silu", id), |bench| {
        bench.iter(|| {
            black_box(&x)
                .group_norm_silu(32, Some(&w), Some(&b), 1e-5)
                .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("group_norm_then_silu", id), |bench| {
        bench.iter(|| {
            black_box(&x)
                .group_norm(32, Some(&w), Some(&b), 1e-5)
                .unwrap()
                .silu()
                .unwrap()
        })
    });
    let y = values(&[2, 4096, 320], 4);
    group.throughput(Throughput::Elements(y.numel() as u64));
    group.bench_function(BenchmarkId::new("layer_norm", "2x4096x320"), |bench| {
        bench.iter(|| {
            black_box(&y)
                .layer_norm(&[320], Some(&w), Some(&b), 1e-5)
                .unwrap()
        })
    });
    group.bench_function(
        BenchmarkId::new("layer_norm_naive", "2x4096x320"),
        |bench| {
            bench.iter(|| {
                black_box(&y)
                    .layer_norm_naive(&[320], Some(&w), Some(&b), 1e-5)
                    .unwrap()
            })
        },
    );
    let z = values(&[2, 4096, 1280], 5);
    for (label, t) in [("2x320x64x64", &x), ("2x4096x1280", &z)] {
        group.throughput(Throughput::Elements(t.numel() as u64));
        for op in [UnaryOp::Silu, UnaryOp::Gelu] {
            group.bench_function(BenchmarkId::new(op.name(), label), |bench| {
                bench.iter(|| black_box(t).unary(op).unwrap())
            });
            let scalar = format!("{}_scalar_map", op.name());
            group.bench_function(BenchmarkId::new(scalar, label), |bench| {
                bench.iter(|| tensor::ops::unary::map(black_box(t), |v| op.apply(v)).unwrap())
            });
        }
    }
    let bias = values(&[1280], 6);
    group.throughput(Throughput::Elements(z.numel() as u64));
    group.bench_function(BenchmarkId::new("add_bias_gelu", "2x4096x1280"), |bench| {
        bench.iter(|| {
            black_box(&z)
                .add_bias_act(&bias, Some(UnaryOp::Gelu))
                .unwrap()
        })
    });
    group.bench_function(
        BenchmarkId::new("add_bias_gelu_unfused", "2x4096x1280"),
        |bench| {
            bench.iter(|| {
                black_box(&z)
                    .add_bias_act_naive(&bias, Some(UnaryOp::Gelu))
                    .unwrap()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, norm);
criterion_main!(benches);
