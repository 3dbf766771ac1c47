//! CPU against wgpu, one criterion group per kernel: matmul (every rung of the GPU
//! ladder beside the CPU's `Tensor::matmul`), conv2d, attention, one UNet step of
//! the tiny model in `fixtures/tiny-sd`, and the host <-> GPU transfers.
//!
//! Compute and transfers are timed apart: the `*/wgpu*` rows have their inputs on
//! the GPU already and wait for the GPU to finish (`Context::synchronize`) without
//! reading the result back; the `transfer` group times upload and download alone.
//! Without an adapter only the CPU rows run (the GPU rows print that they skipped).
//! On a machine without a GPU, Mesa's lavapipe is a *software* Vulkan device: its
//! numbers measure the CPU running shaders, not a GPU.
//!
//! `cargo bench -p benches --bench wgpu`
//! `cargo bench -p benches --bench wgpu -- matmul/`   one group
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use autodiff::Var;
use benches::values;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffusion::models::{UNet2DConditionConfig, UNet2DConditionModel};
use nn::ParamStore;
use tensor::wgpu::matmul::{matmul_with, MatmulKernel};
use tensor::{Device, Tensor};

fn rand(dims: &[usize], seed: u32) -> Tensor {
    Tensor::from_vec(values(dims.iter().product(), seed), dims.to_vec()).unwrap()
}

fn gpu() -> Option<Device> {
    match Device::wgpu() {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipped the wgpu rows: no wgpu adapter ({e})");
            None
        }
    }
}

/// Wait for the GPU (no readback).
fn sync(d: &Device) {
    if let Device::Wgpu(w) = d {
        w.context().synchronize().unwrap();
    }
}

fn matmul(c: &mut Criterion) {
    let gpu = gpu();
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for n in [128usize, 256, 512] {
        let (a, b) = (rand(&[n, n], 1), rand(&[n, n], 2));
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        group.bench_with_input(BenchmarkId::new("cpu", n), &n, |bch, _| {
            bch.iter(|| black_box(a.matmul(&b).unwrap()))
        });
        if let Some(d) = &gpu {
            let (ga, gb) = (a.to_device(d).unwrap(), b.to_device(d).unwrap());
            for k in MatmulKernel::ALL {
                let name = format!("wgpu_{k:?}").to_lowercase();
                group.bench_with_input(BenchmarkId::new(name, n), &n, |bch, _| {
                    bch.iter(|| {
                        let c = matmul_with(k, &ga, &gb).unwrap();
                        sync(d);
                        black_box(c)
                    })
                });
            }
        }
    }
    group.finish();
}

fn conv2d(c: &mut Criterion) {
    let gpu = gpu();
    let mut group = c.benchmark_group("conv2d");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    // (C = O, H = W): a 3x3, stride 1, padding 1 convolution, batch 1.
    for (ch, hw) in [(64usize, 32usize), (128, 32)] {
        let (x, w) = (rand(&[1, ch, hw, hw], 3), rand(&[ch, ch, 3, 3], 4));
        let id = format!("{ch}x{hw}x{hw}");
        group.throughput(Throughput::Elements((2 * ch * ch * 9 * hw * hw) as u64));
        group.bench_function(BenchmarkId::new("cpu", &id), |bch| {
            bch.iter(|| black_box(x.conv2d(&w, None, (1, 1), (1, 1), (1, 1), 1).unwrap()))
        });
        if let Some(d) = &gpu {
            let (gx, gw) = (x.to_device(d).unwrap(), w.to_device(d).unwrap());
            group.bench_function(BenchmarkId::new("wgpu", &id), |bch| {
                bch.iter(|| {
                    let y = gx.conv2d(&gw, None, (1, 1), (1, 1), (1, 1), 1).unwrap();
                    sync(d);
                    black_box(y)
                })
            });
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    let gpu = gpu();
    let mut group = c.benchmark_group("attention");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    // (B, H, L, D): SD's first-level self-attention at a 32x32 latent is (2, 8, 1024, 40).
    for (b, h, l, dd) in [(1usize, 8usize, 256usize, 40usize), (2, 8, 1024, 40)] {
        let q = rand(&[b, h, l, dd], 5);
        let id = format!("{b}x{h}x{l}x{dd}");
        group.throughput(Throughput::Elements((4 * b * h * l * l * dd) as u64));
        group.bench_function(BenchmarkId::new("cpu", &id), |bch| {
            bch.iter(|| {
                black_box(
                    q.scaled_dot_product_attention(&q, &q, None, None, false)
                        .unwrap(),
                )
            })
        });
        if let Some(d) = &gpu {
            let gq = q.to_device(d).unwrap();
            group.bench_function(BenchmarkId::new("wgpu", &id), |bch| {
                bch.iter(|| {
                    let y = gq
                        .scaled_dot_product_attention(&gq, &gq, None, None, false)
                        .unwrap();
                    sync(d);
                    black_box(y)
                })
            });
        }
    }
    group.finish();
}

fn unet_step(c: &mut Criterion) {
    let gpu = gpu();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-sd/unet");
    let cfg: UNet2DConditionConfig =
        diffusion::config::read_config(&dir.join("config.json")).unwrap();
    let store = ParamStore::new();
    let unet = UNet2DConditionModel::load(
        &store,
        &dir.join("diffusion_pytorch_model.safetensors"),
        &cfg,
    )
    .unwrap();
    store.eval();
    let x = rand(&[2, 4, 16, 16], 6);
    let ctx = rand(&[2, 77, 32], 7);
    let mut group = c.benchmark_group("unet_step");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let step = |x: &Tensor, ctx: &Tensor| {
        autodiff::no_grad(|| {
            unet.forward(
                &Var::constant(x.clone()),
                500.0,
                &Var::constant(ctx.clone()),
            )
            .unwrap()
            .value()
            .clone()
        })
    };
    group.bench_function("cpu/tiny-sd", |bch| bch.iter(|| black_box(step(&x, &ctx))));
    if let Some(d) = &gpu {
        for p in store.params() {
            p.set(p.value().to_device(d).unwrap()).unwrap();
        }
        let (gx, gc) = (x.to_device(d).unwrap(), ctx.to_device(d).unwrap());
        group.bench_function("wgpu/tiny-sd", |bch| {
            bch.iter(|| {
                let y = step(&gx, &gc);
                sync(d);
                black_box(y)
            })
        });
    }
    group.finish();
}

fn transfer(c: &mut Criterion) {
    let Some(d) = gpu() else { return };
    let mut group = c.benchmark_group("transfer");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let n = 1 << 20; // 4 MiB
    let x = rand(&[n], 8);
    let g = x.to_device(&d).unwrap();
    group.throughput(Throughput::Bytes(4 * n as u64));
    group.bench_function("upload_4MiB", |bch| {
        bch.iter(|| {
            let g = x.to_device(&d).unwrap();
            sync(&d);
            black_box(g)
        })
    });
    group.bench_function("download_4MiB", |bch| {
        bch.iter(|| black_box(g.to_vec().unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = matmul, conv2d, attention, unet_step, transfer
}
criterion_main!(benches);
