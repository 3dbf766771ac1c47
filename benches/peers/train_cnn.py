"""Training-step speed of lesson 05's CNN: this project vs PyTorch CPU, one thread.

Same architecture (conv 1->32->64->128, 3x3 stride 2 pad 1, ReLU; flatten; linear
2048->10), batch 128 of 1x28x28, cross-entropy, AdamW (lr 1e-3, wd 1e-2), a fixed
batch, 5 warm-up steps then N timed steps. Runs ours (the `bench_train` example,
RAYON_NUM_THREADS=1) and torch interleaved, `--rounds` times, and prints the best
time per batch of each and the ratio ours / torch.

    /work/venv/bin/python benches/peers/train_cnn.py --batches 50 --rounds 3
"""
import argparse
import os
import subprocess
import time

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH = 128


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 10))


def torch_run(batches):
    torch.manual_seed(1)
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2)
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.tensor([(i * 7) % 10 for i in range(BATCH)])
    fwd = bwd = upd = 0.0
    for step in range(batches + 5):
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(m(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if step >= 5:
            fwd += t1 - t0
            bwd += t2 - t1
            upd += t3 - t2
    ms = lambda s: 1e3 * s / batches
    return ms(fwd + bwd + upd), ms(fwd), ms(bwd), ms(upd)


def ours_run(exe, batches):
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run([exe, "--batches", str(batches)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    vals = {out[i]: float(out[i + 1]) for i in range(0, len(out), 2)}
    return vals["ms_per_batch"], vals["forward"], vals["backward"], vals["optimizer"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lesson-05-training",
                    "--example", "bench_train"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "examples", "bench_train")
    ours, theirs = [], []
    for _ in range(a.rounds):
        ours.append(ours_run(exe, a.batches))
        theirs.append(torch_run(a.batches))
    o, t = min(ours), min(theirs)
    print(f"load: {os.getloadavg()[0]:.2f}; {a.batches} batches of {BATCH}, best of {a.rounds}")
    for name, r in (("ours ", o), ("torch", t)):
        print(f"{name}: {r[0]:8.2f} ms/batch (forward {r[1]:.2f}, backward {r[2]:.2f}, "
              f"optimizer {r[3]:.2f})")
    print(f"ratio ours/torch: {o[0] / t[0]:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
