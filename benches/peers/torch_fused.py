"""Torch CPU timings for the fused kernels (attention, norms, activations).

Run by hand (CI never runs Python):
    /work/venv/bin/python benches/peers/torch_fused.py [threads] [repeats]
Prints one line per case: `name  best_ms  median_ms`. Compare with
`cargo run --release -p benches --example fused_timing -- [threads]`, run
interleaved with this script on the same machine.
"""
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
only = sys.argv[3] if len(sys.argv) > 3 else ""
torch.set_num_threads(threads)
torch.manual_seed(0)


def bench(name, f):
    if only and only not in name:
        return
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    print(f"{name:<34} {ts[0]:9.2f} {ts[len(ts) // 2]:9.2f}", flush=True)


def attn(b, h, lq, lk, d):
    q = torch.randn(b, h, lq, d)
    k = torch.randn(b, h, lk, d)
    v = torch.randn(b, h, lk, d)
    return lambda: F.scaled_dot_product_attention(q, k, v)


with torch.no_grad():
    bench("sdpa 2x8x4096x40", attn(2, 8, 4096, 4096, 40))
    bench("sdpa 2x8x4096x40 k77", attn(2, 8, 4096, 77, 40))
    bench("sdpa 2x8x1024x80", attn(2, 8, 1024, 1024, 80))
    x = torch.randn(2, 320, 64, 64)
    w, bb = torch.randn(320), torch.randn(320)
    bench("group_norm 2x320x64x64 g32", lambda: F.group_norm(x, 32, w, bb, 1e-5))
    bench("group_norm_silu 2x320x64x64", lambda: F.silu(F.group_norm(x, 32, w, bb, 1e-5)))
    y = torch.randn(2, 4096, 320)
    bench("layer_norm 2x4096x320", lambda: F.layer_norm(y, (320,), w, bb, 1e-5))
    bench("silu 2x320x64x64", lambda: F.silu(x))
    bench("gelu 2x320x64x64", lambda: F.gelu(x))
    z = torch.randn(2, 4096, 1280)
    bench("silu 2x4096x1280", lambda: F.silu(z))
    bench("gelu 2x4096x1280", lambda: F.gelu(z))
    bench("sigmoid 2x4096x1280", lambda: torch.sigmoid(z))
    bench("exp 2x4096x1280", lambda: torch.exp(z))
    bias = torch.randn(1280)
    bench("bias+gelu 2x4096x1280", lambda: F.gelu(z + bias))
    s = torch.randn(16, 1024, 1024)
    bench("softmax 16x1024x1024", lambda: torch.softmax(s, -1))
