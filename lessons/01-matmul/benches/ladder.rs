//! Every version of lesson 01's ladder under criterion, so the speed-up table can be
//! reproduced with statistics: `cargo bench -p lesson-01-matmul`. Throughput is in
//! FLOPs (2 * N^3 per product; criterion prints "elem/s", read FLOP/s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use lesson_01_matmul::{
    matmul_broadcast, matmul_einsum, matmul_elementwise, matmul_loops, Matrix, LIBRARY_RUNGS,
};
use tensor::matmul::MatRef;

type CourseFn = fn(&Matrix, &Matrix) -> tensor::Result<Matrix>;

fn ladder(c: &mut Criterion) {
    let course: [(&str, CourseFn); 4] = [
        ("1_loops", matmul_loops),
        ("2_elementwise", matmul_elementwise),
        ("3_broadcast", matmul_broadcast),
        ("4_einsum", matmul_einsum),
    ];
    let library = [
        "5_lib_naive",
        "6_lib_reorder",
        "7_lib_blocked",
        "8_lib_simd",
        "9_lib_parallel",
    ];
    let mut group = c.benchmark_group("lesson01_matmul_flops");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [64usize, 256] {
        let a = Matrix::random(n, n, 1);
        let b = Matrix::random(n, n, 2);
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        for (name, f) in course {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |bench, _| {
                bench.iter(|| f(black_box(&a), black_box(&b)).unwrap());
            });
        }
        let (af, bf) = (a.to_flat(), b.to_flat());
        let mut out = vec![0.0f32; n * n];
        for (name, (_, rung)) in library.iter().zip(LIBRARY_RUNGS) {
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |bench, &n| {
                let am = MatRef::row_major(&af, n, n).unwrap();
                let bm = MatRef::row_major(&bf, n, n).unwrap();
                bench.iter(|| rung(black_box(am), black_box(bm), &mut out));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ladder);
criterion_main!(benches);
