//! The matmul ladder (tensor/src/matmul/): every rung at square sizes 64..1024, then
//! the products Stable Diffusion 1.5 spends its time in (`benches::cases`, the same
//! shapes as the peer comparison in `benches/peers/`), with throughput in FLOPs
//! (2 * m * n * k per product; criterion prints it as "elem/s", read it as FLOP/s).
//!
//! `cargo bench -p benches --bench matmul`                  all groups
//! `cargo bench -p benches --bench matmul -- /512`           only N = 512
//! `cargo bench -p benches --bench matmul -- matmul_sd`      only the SD shapes
//!
//! Group names end in `_flops` because criterion can only say "elem/s": one element
//! here is one floating-point operation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use benches::{cases, values, Case};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tensor::matmul::kernels::Kernel;
use tensor::matmul::{self, blocked, naive, parallel, reorder, simd, MatRef};
use tensor::Tensor;

type Rung = fn(MatRef<'_>, MatRef<'_>, &mut [f32]);

const RUNGS: [(&str, Rung); 6] = [
    ("naive", naive::gemm),
    ("reorder", reorder::gemm),
    ("blocked", blocked::gemm),
    ("simd", simd::gemm),
    ("parallel", parallel::gemm),
    ("gemm_dispatch", matmul::gemm),
];

fn ladder(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_flops");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [64usize, 128, 256, 512, 1024] {
        let a = values(n * n, 1);
        let b = values(n * n, 2);
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        for (name, rung) in RUNGS {
            if name == "naive" && n > 512 {
                continue; // about 1 s a product; the other rungs make the point
            }
            group.bench_with_input(BenchmarkId::new(name, n), &n, |bench, &n| {
                let am = MatRef::row_major(&a, n, n).unwrap();
                let bm = MatRef::row_major(&b, n, n).unwrap();
                bench.iter(|| rung(black_box(am), black_box(bm), &mut out));
            });
        }
        // The SIMD rung with each micro-kernel this CPU has.
        for kernel in Kernel::available() {
            let id = BenchmarkId::new(format!("simd_{}", kernel.name()), n);
            group.bench_with_input(id, &n, |bench, &n| {
                let am = MatRef::row_major(&a, n, n).unwrap();
                let bm = MatRef::row_major(&b, n, n).unwrap();
                bench.iter(|| simd::gemm_with(kernel, black_box(am), black_box(bm), &mut out));
            });
        }
        // The packing absorbs a transposed B: no copy, same speed.
        group.bench_with_input(BenchmarkId::new("simd_b_transposed", n), &n, |bench, &n| {
            let am = MatRef::row_major(&a, n, n).unwrap();
            let bt = MatRef::row_major(&b, n, n).unwrap().t();
            bench.iter(|| simd::gemm(black_box(am), black_box(bt), &mut out));
        });
    }
    group.finish();

    // Tensor::matmul on a batch (attention-like: 8 heads of 256 x 64 @ 64 x 256).
    let mut group = c.benchmark_group("tensor_matmul_flops");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let (bh, t, d) = (8usize, 256usize, 64usize);
    let q = Tensor::from_vec(values(bh * t * d, 3), [bh, t, d]).unwrap();
    let k = Tensor::from_vec(values(bh * t * d, 4), [bh, t, d]).unwrap();
    let kt = k.transpose(-2, -1).unwrap();
    group.throughput(Throughput::Elements((2 * bh * t * t * d) as u64));
    group.bench_function("q_kT_8x256x64", |bench| {
        bench.iter(|| black_box(&q).matmul(black_box(&kt)).unwrap());
    });
    group.finish();
}

/// The SD 1.5 products (linear layers, attention's `Q K^T` with K read transposed
/// and `P V`): the SIMD rung on one thread and the `gemm` entry point on all.
fn sd_shapes(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_sd_flops");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for case in cases() {
        let Case::Matmul {
            m,
            k,
            n,
            b_transposed,
        } = case.case
        else {
            continue;
        };
        if !case.name.starts_with("sd ") {
            continue;
        }
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        let am = MatRef::row_major(&a, m, k).unwrap();
        let bm = if b_transposed {
            MatRef::row_major(&b, n, k).unwrap().t()
        } else {
            MatRef::row_major(&b, k, n).unwrap()
        };
        let id = format!("{m}x{k}x{n}{}", if b_transposed { "_bT" } else { "" });
        group.throughput(Throughput::Elements(case.flops() as u64));
        group.bench_function(BenchmarkId::new("simd", &id), |bench| {
            bench.iter(|| simd::gemm(black_box(am), black_box(bm), &mut out));
        });
        group.bench_function(BenchmarkId::new("gemm_dispatch", &id), |bench| {
            bench.iter(|| matmul::gemm(black_box(am), black_box(bm), &mut out));
        });
    }
    group.finish();
}

criterion_group!(benches, ladder, sd_shapes);
criterion_main!(benches);
