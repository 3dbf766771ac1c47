//! The wgpu backend on a real GPU in one run, for a lent GPU machine where there is
//! no cargo: build here, carry the binary (`benches/peers/gpu_device.sh`).
//!
//! 1. the adapter wgpu picked and its limits;
//! 2. correctness on that device: every matmul rung and block size, conv2d,
//!    attention and a UNet step of `fixtures/tiny-sd` against the CPU;
//! 3. matmul GFLOP/s for square sizes and SD 1.5's linear-layer shapes, every rung;
//! 4. SD 1.5's heaviest layers alone (conv 3x3, attention, group norm);
//! 5. one SD 1.5 UNet step (batch 2, 64 x 64 latents, 77 x 768 context; random
//!    weights) and one VAE decode (64 x 64 -> 512 x 512), with the weights on the GPU.
//!
//! `benches/peers/gpu_torch.py` times torch on the same shapes; `gpu_device.sh`
//! prints both. Every GPU time waits for the device (`Context::synchronize`) and
//! excludes uploads and readback.
//!
//! `cargo run --release -p benches --example gpu_report -- [check] [matmul] [layers] [sd15]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Instant;

use autodiff::Var;
use diffusion::models::{
    AutoencoderKL, AutoencoderKLConfig, UNet2DConditionConfig, UNet2DConditionModel,
};
use nn::{ParamStore, VarBuilder};
use tensor::random::Rng;
use tensor::wgpu::matmul::{
    matmul_body, matmul_tiles, matmul_vec4, matmul_with, vec4_ok, MatmulKernel, Tiles,
};
use tensor::{Device, Tensor};

/// xorshift64: the weights only need to be random-looking, and 860M draws of the
/// course's Wichmann-Hill would take a minute of the GPU lease.
struct Fast(u64);

impl Rng for Fast {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn rand(dims: &[usize], seed: u32) -> Tensor {
    Tensor::from_vec(benches::values(dims.iter().product(), seed), dims.to_vec()).unwrap()
}

fn sync(d: &Device) {
    if let Device::Wgpu(w) = d {
        w.context().synchronize().unwrap();
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Median milliseconds of `f` (which must wait for the GPU), after one warm-up call,
/// over at least 3 calls and about `budget` seconds.
fn time_ms(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed().as_secs_f64() < budget && times.len() < 50) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn report_adapter(d: &Device) {
    let Device::Wgpu(w) = d else { return };
    let info = w.context().adapter_info();
    let limits = w.context().limits();
    println!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    );
    println!(
        "limits: storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB",
        limits.max_storage_buffer_binding_size >> 20,
        limits.max_buffer_size >> 20,
        limits.max_compute_workgroup_storage_size >> 10
    );
}

/// Rung 4's block sizes and whether the k loop is unrolled, timed beside the rungs.
const VARIANTS: [(Tiles, bool); 3] = [
    (
        Tiles {
            bm: 128,
            bn: 128,
            bk: 8,
        },
        true,
    ),
    (
        Tiles {
            bm: 128,
            bn: 64,
            bk: 8,
        },
        true,
    ),
    (
        Tiles {
            bm: 64,
            bn: 64,
            bk: 16,
        },
        false,
    ),
];

const TILES: [Tiles; 6] = [
    Tiles {
        bm: 128,
        bn: 128,
        bk: 8,
    },
    Tiles {
        bm: 128,
        bn: 128,
        bk: 16,
    },
    Tiles {
        bm: 128,
        bn: 128,
        bk: 4,
    },
    Tiles {
        bm: 128,
        bn: 64,
        bk: 8,
    },
    Tiles {
        bm: 64,
        bn: 128,
        bk: 8,
    },
    Tiles {
        bm: 64,
        bn: 64,
        bk: 16,
    },
];

fn check(d: &Device) {
    println!("== correctness against the CPU (max abs diff)");
    let (a, b) = (rand(&[3, 257, 129], 1), rand(&[129, 300], 2));
    let want = a.matmul(&b).unwrap();
    let (ga, gb) = (a.to_device(d).unwrap(), b.to_device(d).unwrap());
    let gbt = b.t().unwrap().contiguous().unwrap().to_device(d).unwrap();
    let gbt = gbt.t().unwrap().broadcast_as([3, 129, 300]).unwrap();
    let gb = gb.broadcast_as([3, 129, 300]).unwrap();
    let (a4, b4) = (rand(&[3, 257, 132], 15), rand(&[132, 300], 16));
    let gb4 = b4
        .to_device(d)
        .unwrap()
        .broadcast_as([3, 132, 300])
        .unwrap();
    let got = matmul_vec4(&a4.to_device(d).unwrap(), &gb4).unwrap();
    let e = max_diff(&got, &a4.matmul(&b4).unwrap());
    println!("matmul Vec4 (rung 5), 3x257x132 @ 132x300: {e:.2e}");
    for k in MatmulKernel::ALL {
        let e1 = max_diff(&matmul_with(k, &ga, &gb).unwrap(), &want);
        let e2 = max_diff(&matmul_with(k, &ga, &gbt).unwrap(), &want);
        println!("matmul {k:?}: {e1:.2e}, B transposed {e2:.2e}");
    }
    for t in TILES {
        let e = max_diff(&matmul_tiles(t, &ga, &gbt).unwrap(), &want);
        println!("matmul {t:?}: {e:.2e}");
    }
    let (x, w, bias) = (
        rand(&[2, 64, 33, 31], 3),
        rand(&[96, 64, 3, 3], 4),
        rand(&[96], 5),
    );
    let want = x
        .conv2d(&w, Some(&bias), (2, 1), (1, 1), (1, 1), 1)
        .unwrap();
    let got = x
        .to_device(d)
        .unwrap()
        .conv2d(
            &w.to_device(d).unwrap(),
            Some(&bias.to_device(d).unwrap()),
            (2, 1),
            (1, 1),
            (1, 1),
            1,
        )
        .unwrap();
    println!("conv2d 3x3 stride (2, 1): {:.2e}", max_diff(&got, &want));
    let q = rand(&[2, 8, 333, 40], 6);
    let kv = rand(&[2, 8, 77, 40], 7);
    let want = q
        .scaled_dot_product_attention(&kv, &kv, None, None, false)
        .unwrap();
    let (gq, gk) = (q.to_device(d).unwrap(), kv.to_device(d).unwrap());
    let got = gq
        .scaled_dot_product_attention(&gk, &gk, None, None, false)
        .unwrap();
    println!(
        "attention (2, 8, 333 x 77, 40): {:.2e}",
        max_diff(&got, &want)
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-sd/unet");
    if !dir.exists() {
        println!("tiny-sd UNet: skipped ({} missing)", dir.display());
        return;
    }
    let cfg: UNet2DConditionConfig =
        diffusion::config::read_config(&dir.join("config.json")).unwrap();
    let store = ParamStore::new();
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    let unet = UNet2DConditionModel::load(&store, &weights, &cfg).unwrap();
    store.eval();
    let (x, ctx) = (rand(&[2, 4, 16, 16], 8), rand(&[2, 77, 32], 9));
    let step = |x: &Tensor, c: &Tensor| {
        autodiff::no_grad(|| {
            unet.forward(&Var::constant(x.clone()), 500.0, &Var::constant(c.clone()))
        })
        .unwrap()
        .value()
        .clone()
    };
    let want = step(&x, &ctx);
    to_gpu(&store, d);
    let got = step(&x.to_device(d).unwrap(), &ctx.to_device(d).unwrap());
    println!("tiny-sd UNet step: {:.2e}", max_diff(&got, &want));
}

fn to_gpu(store: &ParamStore, d: &Device) {
    for p in store.params() {
        p.set(p.value().to_device(d).unwrap()).unwrap();
    }
    sync(d);
}

fn bench_matmul(d: &Device) {
    println!("== matmul, GFLOP/s (median; C = A @ B, or A @ W^T for the linear rows)");
    // (name, batch, m, k, n, B transposed)
    let shapes: [(&str, usize, usize, usize, usize, bool); 8] = [
        ("square 1024", 1, 1024, 1024, 1024, false),
        ("square 2048", 1, 2048, 2048, 2048, false),
        ("square 4096", 1, 4096, 4096, 4096, false),
        ("square 8192", 1, 8192, 8192, 8192, false),
        ("linear 8192x320 @ 320x320^T", 1, 8192, 320, 320, true),
        ("linear 8192x320 @ 320x2560^T", 1, 8192, 320, 2560, true),
        ("linear 2048x1280 @ 1280x1280^T", 1, 2048, 1280, 1280, true),
        ("scores 16x4096x40 @ 16x40x4096", 16, 4096, 40, 4096, false),
    ];
    for (name, batch, m, k, n, transposed) in shapes {
        let a = rand(&[batch, m, k], 10).to_device(d).unwrap();
        let b = if transposed {
            rand(&[batch, n, k], 11)
                .to_device(d)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        } else {
            rand(&[batch, k, n], 11).to_device(d).unwrap()
        };
        let flop = 2.0 * (batch * m * k * n) as f64;
        let gflops = |ms: f64| flop / ms / 1e6;
        let budget = 0.4;
        let mut row = format!("{name:32}");
        for kern in MatmulKernel::ALL {
            let ladder_only = matches!(kern, MatmulKernel::Naive | MatmulKernel::Tiled);
            if ladder_only && m * n * k > 1 << 33 {
                continue;
            }
            let ms = time_ms(budget, || {
                let _c = matmul_with(kern, &a, &b).unwrap();
                sync(d);
            });
            row += &format!(" {kern:?} {:.0}", gflops(ms));
        }
        if vec4_ok(&a, &b) {
            let ms = time_ms(budget, || {
                let _c = matmul_vec4(&a, &b).unwrap();
                sync(d);
            });
            row += &format!(" Vec4 {:.0}", gflops(ms));
        }
        for (t, unroll) in VARIANTS {
            let body = t.source_with(unroll);
            let ms = time_ms(budget, || {
                let _c = matmul_body(&body, [t.bm, t.bn], &a, &b).unwrap();
                sync(d);
            });
            let u = if unroll { "u" } else { "" };
            row += &format!(" {}x{}x{}{u} {:.0}", t.bm, t.bn, t.bk, gflops(ms));
        }
        println!("{row}");
    }
}

/// SD 1.5's heaviest layers at batch 2, 64 x 64 latents: the 3x3 convolutions of
/// each level, self- and cross-attention of the first level (fused kernel and the
/// composite matmul + softmax + matmul), group norm.
fn bench_layers(d: &Device) {
    println!("== SD 1.5 layers, batch 2 (median ms)");
    for (c, hw) in [(320usize, 64usize), (640, 32), (1280, 16), (1280, 8)] {
        let x = rand(&[2, c, hw, hw], 20).to_device(d).unwrap();
        let w = rand(&[c, c, 3, 3], 21).to_device(d).unwrap();
        let b = rand(&[c], 22).to_device(d).unwrap();
        let ms = time_ms(0.5, || {
            let _y = x.conv2d(&w, Some(&b), (1, 1), (1, 1), (1, 1), 1).unwrap();
            sync(d);
        });
        let flop = 2.0 * (2 * c * c * 9 * hw * hw) as f64;
        println!(
            "conv3x3 {c}x{hw}x{hw}: {ms:.3} ms ({:.0} GFLOP/s)",
            flop / ms / 1e6
        );
    }
    for (name, lk) in [("self 4096x4096", 4096usize), ("cross 4096x77", 77)] {
        let q = rand(&[2, 8, 4096, 40], 23).to_device(d).unwrap();
        let k = rand(&[2, 8, lk, 40], 24).to_device(d).unwrap();
        let fused = time_ms(0.5, || {
            let _y = q
                .scaled_dot_product_attention(&k, &k, None, None, false)
                .unwrap();
            sync(d);
        });
        let composite = time_ms(0.5, || {
            let _y = q
                .scaled_dot_product_attention_naive(&k, &k, None, None, false)
                .unwrap();
            sync(d);
        });
        println!(
            "attention {name}, 8 heads of 40: fused {fused:.3} ms, composite {composite:.3} ms"
        );
    }
    for mib in [64usize, 1024] {
        let x = rand(&[mib << 18], 28).to_device(d).unwrap();
        let ms = time_ms(0.5, || {
            let _y = x.mul_scalar(2.0).unwrap();
            sync(d);
        });
        let gbs = 2.0 * (mib << 20) as f64 / ms / 1e6;
        println!("x * 2 over {mib} MiB (read + write): {ms:.3} ms, {gbs:.0} GB/s");
    }
    let x = rand(&[2, 320, 64, 64], 25).to_device(d).unwrap();
    let (g, b) = (
        rand(&[320], 26).to_device(d).unwrap(),
        rand(&[320], 27).to_device(d).unwrap(),
    );
    let ms = time_ms(0.5, || {
        let _y = x.group_norm(32, Some(&g), Some(&b), 1e-5).unwrap();
        sync(d);
    });
    println!("group_norm 320x64x64, 32 groups: {ms:.3} ms");
}

fn config<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name);
    diffusion::config::read_config(&path).unwrap()
}

fn bench_sd15(d: &Device) {
    println!("== SD 1.5, random weights, on the GPU (median ms)");
    let t0 = Instant::now();
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, Fast(1));
    let unet =
        UNet2DConditionModel::new(vb, &config::<UNet2DConditionConfig>("sd15_unet.json")).unwrap();
    store.eval();
    to_gpu(&store, d);
    println!(
        "unet built and uploaded in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let x = Var::constant(rand(&[2, 4, 64, 64], 12).to_device(d).unwrap());
    let ctx = Var::constant(rand(&[2, 77, 768], 13).to_device(d).unwrap());
    let t = Instant::now();
    let y = autodiff::no_grad(|| unet.forward(&x, 500.0, &ctx)).unwrap();
    sync(d);
    println!(
        "unet first step (compiles the pipelines): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(y.dims(), &[2, 4, 64, 64]);
    let ms = time_ms(3.0, || {
        let _y = autodiff::no_grad(|| unet.forward(&x, 500.0, &ctx)).unwrap();
        sync(d);
    });
    println!("unet step, batch 2, 64x64: {ms:.1} ms");
    drop((unet, store));
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, Fast(2));
    let vae = AutoencoderKL::new(vb, &config::<AutoencoderKLConfig>("sd15_vae.json")).unwrap();
    store.eval();
    to_gpu(&store, d);
    let z = Var::constant(rand(&[1, 4, 64, 64], 14).to_device(d).unwrap());
    let ms = time_ms(3.0, || {
        let y = autodiff::no_grad(|| vae.decode(&z)).unwrap();
        sync(d);
        assert_eq!(y.dims(), &[1, 3, 512, 512]);
    });
    println!("vae decode 64x64 -> 512x512: {ms:.1} ms");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = args.is_empty();
    let d = match Device::wgpu() {
        Ok(d) => d,
        Err(e) => {
            println!("no wgpu adapter: {e}");
            std::process::exit(2);
        }
    };
    report_adapter(&d);
    let want = |s: &str| all || args.iter().any(|a| a == s);
    if want("check") {
        check(&d);
    }
    if want("matmul") {
        bench_matmul(&d);
    }
    if want("layers") {
        bench_layers(&d);
    }
    if want("sd15") {
        bench_sd15(&d);
    }
}
