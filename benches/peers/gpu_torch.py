"""torch on CUDA, the peer of `benches/examples/gpu_report.rs`: the same matmul shapes
(GFLOP/s, fp32 with TF32 off, which is torch's default for matmul, and with TF32 on)
and one SD 1.5 UNet step and VAE decode with random weights (diffusers), fp32, with
cuDNN's TF32 convolutions off (strict fp32, like the WGSL kernels) and on (torch's
default). Median of CUDA-synchronised wall times, like the Rust side.

    python3 benches/peers/gpu_torch.py [matmul] [layers] [sd15]
"""
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "benches", "configs")

# (name, batch, m, k, n, B transposed): gpu_report.rs's list.
SHAPES = [
    ("square 1024", 1, 1024, 1024, 1024, False),
    ("square 2048", 1, 2048, 2048, 2048, False),
    ("square 4096", 1, 4096, 4096, 4096, False),
    ("square 8192", 1, 8192, 8192, 8192, False),
    ("linear 8192x320 @ 320x320^T", 1, 8192, 320, 320, True),
    ("linear 8192x320 @ 320x2560^T", 1, 8192, 320, 2560, True),
    ("linear 2048x1280 @ 1280x1280^T", 1, 2048, 1280, 1280, True),
    ("scores 16x4096x40 @ 16x40x4096", 16, 4096, 40, 4096, False),
]


def time_ms(f, budget=0.4):
    f()
    torch.cuda.synchronize()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget and len(times) < 50):
        t = time.perf_counter()
        f()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def matmul():
    print("== torch matmul, GFLOP/s (median)")
    for name, batch, m, k, n, transposed in SHAPES:
        a = torch.rand(batch, m, k, device="cuda") - 0.5
        b = (torch.rand(batch, n, k, device="cuda") - 0.5).transpose(1, 2) if transposed \
            else torch.rand(batch, k, n, device="cuda") - 0.5
        flop = 2.0 * batch * m * k * n
        row = f"{name:32}"
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ms = time_ms(lambda: torch.matmul(a, b))
            row += f" {'tf32' if tf32 else 'fp32'} {flop / ms / 1e6:.0f}"
        torch.backends.cuda.matmul.allow_tf32 = False
        print(row)


def layers():
    import torch.nn.functional as F

    print("== torch SD 1.5 layers, batch 2, fp32, TF32 off (median ms)")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.inference_mode():
        for c, hw in [(320, 64), (640, 32), (1280, 16), (1280, 8)]:
            x = torch.rand(2, c, hw, hw, device="cuda") - 0.5
            w = torch.rand(c, c, 3, 3, device="cuda") - 0.5
            b = torch.rand(c, device="cuda") - 0.5
            ms = time_ms(lambda: F.conv2d(x, w, b, padding=1), budget=0.5)
            print(f"conv3x3 {c}x{hw}x{hw}: {ms:.3f} ms ({2 * 2 * c * c * 9 * hw * hw / ms / 1e6:.0f} GFLOP/s)")
        for name, lk in [("self 4096x4096", 4096), ("cross 4096x77", 77)]:
            q = torch.rand(2, 8, 4096, 40, device="cuda") - 0.5
            k = torch.rand(2, 8, lk, 40, device="cuda") - 0.5
            fused = time_ms(lambda: F.scaled_dot_product_attention(q, k, k), budget=0.5)
            composite = time_ms(lambda: torch.softmax(q @ k.transpose(-1, -2) / 40 ** 0.5, -1) @ k, budget=0.5)
            print(f"attention {name}, 8 heads of 40: fused {fused:.3f} ms, composite {composite:.3f} ms")
        x = torch.rand(2, 320, 64, 64, device="cuda") - 0.5
        g, b = torch.rand(320, device="cuda"), torch.rand(320, device="cuda")
        ms = time_ms(lambda: F.group_norm(x, 32, g, b, 1e-5), budget=0.5)
        print(f"group_norm 320x64x64, 32 groups: {ms:.3f} ms")


def sd15():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    print("== torch SD 1.5, random weights (median ms)")
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.inference_mode():
        unet = UNet2DConditionModel.from_config(json.load(open(os.path.join(CONFIGS, "sd15_unet.json"))))
        unet = unet.to("cuda").eval()
        x = torch.randn(2, 4, 64, 64, device="cuda", generator=g)
        ctx = torch.randn(2, 77, 768, device="cuda", generator=g)
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            ms = time_ms(lambda: unet(x, 500, encoder_hidden_states=ctx), budget=3.0)
            print(f"unet step, batch 2, 64x64, cudnn tf32 {'on' if tf32 else 'off'}: {ms:.1f} ms")
        del unet
        vae = AutoencoderKL.from_config(json.load(open(os.path.join(CONFIGS, "sd15_vae.json"))))
        vae = vae.to("cuda").eval()
        z = torch.randn(1, 4, 64, 64, device="cuda", generator=g)
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            ms = time_ms(lambda: vae.decode(z), budget=3.0)
            print(f"vae decode 64x64 -> 512x512, cudnn tf32 {'on' if tf32 else 'off'}: {ms:.1f} ms")


if __name__ == "__main__":
    want = sys.argv[1:] or ["matmul", "layers", "sd15"]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    if "matmul" in want:
        matmul()
    if "layers" in want:
        layers()
    if "sd15" in want:
        sd15()
