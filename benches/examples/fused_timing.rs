//! Timings (and peak extra memory) of the fused kernels against their naive twins,
//! on SD shapes. Run interleaved with `benches/peers/torch_fused.py`:
//!
//! `cargo run --release -p benches --example fused_timing -- [threads] [repeats] [filter]`
//! (`filter` is a substring of the case names, or `=name` for one case exactly;
//! `SKIP=a,b` leaves out the cases whose names contain `a` or `b`)
//!
//! Prints `name  best_ms  median_ms  peak_extra_MiB` per case. Peak extra memory is
//! measured with a counting global allocator: the highest number of live heap
//! bytes during the call, minus the bytes live before it and minus the output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use tensor::ops::unary::UnaryOp;
use tensor::Tensor;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn randn(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            // sum of 4 uniforms, centred and scaled: close enough to a normal
            let mut acc = 0.0f32;
            for _ in 0..4 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                acc += (s >> 40) as f32 / (1u64 << 24) as f32;
            }
            (acc - 2.0) * 1.732
        })
        .collect();
    Tensor::from_vec(v, dims.to_vec()).unwrap()
}

fn bench(name: &str, filter: &str, repeats: usize, f: &dyn Fn() -> Tensor) {
    let wanted = match filter.strip_prefix('=') {
        Some(exact) => name == exact,
        None => name.contains(filter),
    };
    let skipped = std::env::var("SKIP")
        .is_ok_and(|s| s.split(',').any(|k| !k.is_empty() && name.contains(k)));
    if !wanted || skipped {
        return;
    }
    let warm = f();
    let out_bytes = warm.numel() * 4;
    drop(warm);
    let mut ts = Vec::new();
    let mut peak = 0usize;
    for _ in 0..repeats {
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let t0 = Instant::now();
        let y = f();
        ts.push(t0.elapsed().as_secs_f64() * 1e3);
        peak = peak.max(PEAK.load(Relaxed).saturating_sub(before + out_bytes));
        drop(y);
    }
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<40} {:9.2} {:9.2} {:9.3}",
        ts[0],
        ts[ts.len() / 2],
        peak as f64 / (1 << 20) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).map_or(1, |a| a.parse().unwrap());
    let repeats: usize = args.get(2).map_or(5, |a| a.parse().unwrap());
    let filter = args.get(3).cloned().unwrap_or_default();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .unwrap();
    let f = filter.as_str();
    println!("threads {threads}, repeats {repeats}: name, best ms, median ms, peak extra MiB");

    for (name, lq, lk, d) in [
        ("sdpa 2x8x4096x40", 4096, 4096, 40),
        ("sdpa 2x8x4096x40 k77", 4096, 77, 40),
        ("sdpa 2x8x1024x80", 1024, 1024, 80),
    ] {
        let q = randn(&[2, 8, lq, d], 1);
        let k = randn(&[2, 8, lk, d], 2);
        let v = randn(&[2, 8, lk, d], 3);
        bench(name, f, repeats, &|| {
            q.scaled_dot_product_attention(&k, &v, None, None, false)
                .unwrap()
        });
        bench(&format!("{name} naive"), f, repeats.min(2), &|| {
            q.scaled_dot_product_attention_naive(&k, &v, None, None, false)
                .unwrap()
        });
    }
    // Norms and activations on SD shapes; "naive" is the scalar f64 twin (the code
    // before this change) or the unfused pair; "scalar map" is UnaryOp::apply one
    // element at a time (no vmath lanes).
    let x = randn(&[2, 320, 64, 64], 5);
    let (w, b) = (randn(&[320], 6), randn(&[320], 7));
    bench("group_norm 2x320x64x64 g32", f, repeats, &|| {
        x.group_norm(32, Some(&w), Some(&b), 1e-5).unwrap()
    });
    bench("group_norm 2x320x64x64 g32 naive", f, repeats, &|| {
        x.group_norm_naive(32, Some(&w), Some(&b), 1e-5).unwrap()
    });
    bench("group_norm_silu 2x320x64x64", f, repeats, &|| {
        x.group_norm_silu(32, Some(&w), Some(&b), 1e-5).unwrap()
    });
    bench("group_norm_silu 2x320x64x64 unfused", f, repeats, &|| {
        x.group_norm(32, Some(&w), Some(&b), 1e-5)
            .unwrap()
            .silu()
            .unwrap()
    });
    let y = randn(&[2, 4096, 320], 8);
    bench("layer_norm 2x4096x320", f, repeats, &|| {
        y.layer_norm(&[320], Some(&w), Some(&b), 1e-5).unwrap()
    });
    bench("layer_norm 2x4096x320 naive", f, repeats, &|| {
        y.layer_norm_naive(&[320], Some(&w), Some(&b), 1e-5)
            .unwrap()
    });
    let z = randn(&[2, 4096, 1280], 9);
    let bias = randn(&[1280], 10);
    for (shape, t) in [("2x320x64x64", &x), ("2x4096x1280", &z)] {
        for op in [UnaryOp::Silu, UnaryOp::Gelu, UnaryOp::Sigmoid, UnaryOp::Exp] {
            bench(&format!("{} {shape}", op.name()), f, repeats, &|| {
                t.unary(op).unwrap()
            });
            bench(
                &format!("{} {shape} scalar map", op.name()),
                f,
                repeats,
                &|| tensor::ops::unary::map(t, |v| op.apply(v)).unwrap(),
            );
        }
    }
    bench("bias+gelu 2x4096x1280", f, repeats, &|| {
        z.add_bias_act(&bias, Some(UnaryOp::Gelu)).unwrap()
    });
    bench("bias+gelu 2x4096x1280 unfused", f, repeats, &|| {
        z.add_bias_act_naive(&bias, Some(UnaryOp::Gelu)).unwrap()
    });
    let sm = randn(&[16, 1024, 1024], 11);
    bench("softmax 16x1024x1024", f, repeats, &|| {
        sm.softmax(-1).unwrap()
    });

    // The UNet's layout: (B, L, H*D) projections viewed as (B, H, L, D) in place.
    let qkv = randn(&[2, 4096, 3, 8, 40], 4);
    let view = |i: usize| {
        qkv.narrow(2, i, 1)
            .unwrap()
            .squeeze(2)
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
    };
    let (q, k, v) = (view(0), view(1), view(2));
    bench("sdpa 2x8x4096x40 strided", f, repeats, &|| {
        q.scaled_dot_product_attention(&k, &v, None, None, false)
            .unwrap()
    });
}
