"""One SD 1.5 UNet step (batch 2, 64x64 latents) and one VAE decode (to 512x512):
this project vs diffusers on torch CPU, single-threaded, random weights, same machine.

Each measurement runs in its own process (so peak RSS is that component's), ours and
torch interleaved, `--rounds` times; prints the best time of each, the ratio
ours / torch, and both peak RSS figures (VmHWM / ru_maxrss).

    /work/venv/bin/python benches/peers/sd_step.py --rounds 1 --repeats 2
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "benches", "configs")


def torch_child(which: str, repeats: int) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    best = float("inf")
    with torch.inference_mode():
        if which == "unet":
            cfg = json.load(open(os.path.join(CONFIGS, "sd15_unet.json")))
            model = UNet2DConditionModel.from_config(cfg).eval()
            x, ctx = torch.randn(2, 4, 64, 64, generator=g), torch.randn(2, 77, 768, generator=g)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x, 500, encoder_hidden_states=ctx)
                best = min(best, (time.perf_counter() - t0) * 1e3)
        else:
            cfg = json.load(open(os.path.join(CONFIGS, "sd15_vae.json")))
            model = AutoencoderKL.from_config(cfg).eval()
            z = torch.randn(1, 4, 64, 64, generator=g)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.decode(z)
                best = min(best, (time.perf_counter() - t0) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{which} {best:.1f} {peak:.0f}")


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    _, ms, rss = out.stdout.strip().splitlines()[-1].split()
    return float(ms), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["unet", "vae"])
    ap.add_argument("--child", choices=["unet", "vae"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return torch_child(a.child, a.repeats)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "benches", "--example", "sd_step"], cwd=ROOT, check=True)
    ours_bin = os.path.join(ROOT, "target", "release", "examples", "sd_step")
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    print(f"load: {os.getloadavg()[0]:.2f}")
    print(f"{'component':10} {'ours ms':>10} {'torch ms':>10} {'ratio':>6} {'ours MiB':>9} {'torch MiB':>9}")
    for which in [a.only] if a.only else ["unet", "vae"]:
        ours, theirs = [], []
        for _ in range(a.rounds):
            theirs.append(run([sys.executable, __file__, "--child", which, "--repeats", str(a.repeats)]))
            ours.append(run([ours_bin, which, str(a.repeats)], env=env))
        o, t = min(ours), min(theirs)
        print(f"{which:10} {o[0]:10.0f} {t[0]:10.0f} {o[0] / t[0]:6.2f} {max(r for _, r in ours):9.0f} {max(r for _, r in theirs):9.0f}")


if __name__ == "__main__":
    main()
