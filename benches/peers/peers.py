#!/usr/bin/env python3
"""Peer comparison: this project's CPU kernels against numpy (OpenBLAS), torch (CPU)
and the Rust `gemm` crate, on the same shapes, machine and thread counts, in one go.

    /work/venv/bin/python benches/peers/peers.py            # everything, 1 and 2 threads
    /work/venv/bin/python benches/peers/peers.py --only "mm " --rounds 5

It builds and starts the Rust runner (`benches/src/bin/peers.rs`, which times
`tensor::matmul::gemm`, `Tensor::conv2d`, attention and the `gemm` crate), and one
numpy and one torch worker process per thread count, each kept alive for the whole
run. The thread count of a process is fixed at its start: OPENBLAS_NUM_THREADS for
numpy (set before numpy is imported, so it is exact; threadpoolctl is not needed),
torch.set_num_threads for torch, a rayon pool of that size for the Rust side.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from every worker's environment
so OpenBLAS picks its kernel for this CPU itself; the kernel it picked is reported.

Measurements are interleaved: for each round, each case and each thread count, every
implementation is timed in turn (the order rotates between rounds), so a noisy
moment (other jobs on the machine) hits all of them; each figure is the best over
rounds of the best of `--samples` batches of at least `--min-time` seconds. Between
two requests the driver idles `--pause` seconds: OpenBLAS, OpenMP and rayon threads
spin for a while after a call, and would otherwise steal the next worker's cores.

Prints one table (GFLOP/s, higher is better): ours, each peer, ours / best peer, and
ours on N threads / ours on 1 thread. `--json FILE` also writes every measurement.

Attention: if `Tensor::scaled_dot_product_attention` exists in tensor/src, the runner
is built with `--features attention` and times it; otherwise (or if that build fails)
it times a matmul + softmax composite, and the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "target" / "release" / "peers"
IMPLS = ["ours", "gemm", "numpy", "torch"]
# Which implementations exist for each kind of case.
HAS = {
    "matmul": {"ours", "gemm", "numpy", "torch"},
    "conv": {"ours", "torch"},
    "attention": {"ours", "torch"},
}


# ---- workers (numpy / torch): JSON request per line in, JSON result per line out ----


def _openblas_info() -> dict:
    """The OpenBLAS numpy loaded: its library, config string, core kernel, threads."""
    import ctypes

    info: dict = {}
    try:
        import threadpoolctl  # optional

        for pool in threadpoolctl.threadpool_info():
            if pool.get("internal_api") == "openblas":
                return {
                    "via": "threadpoolctl",
                    "library": pool.get("filepath"),
                    "version": pool.get("version"),
                    "corename": pool.get("architecture"),
                    "threads": pool.get("num_threads"),
                }
    except ImportError:
        pass
    with open("/proc/self/maps") as f:
        libs = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in [("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")]:
            try:
                get_config = getattr(lib, f"{prefix}openblas_get_config{suffix}")
                get_core = getattr(lib, f"{prefix}openblas_get_corename{suffix}")
                get_threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
            except AttributeError:
                continue
            get_config.restype = ctypes.c_char_p
            get_core.restype = ctypes.c_char_p
            info = {
                "via": "ctypes",
                "library": Path(path).name,
                "config": get_config().decode(),
                "corename": get_core().decode(),
                "threads": get_threads(),
            }
            return info
    return info


def _calibrate_and_time(f, samples: int, min_time: float) -> float:
    """Best seconds per call over `samples` batches of about `min_time` seconds (at
    most 3 batches when one call takes over 0.2 s), as the Rust runner does."""
    f()  # warm-up
    t0 = time.perf_counter()
    f()
    one = time.perf_counter() - t0
    if one > 0.2:
        samples = min(samples, 3)
    iters = max(1, min(100_000, int(min_time / max(one, 1e-9) + 0.999)))
    best = one
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(iters):
            f()
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def _aligned_empty(np, shape):
    """A float32 array whose data starts on a 64-byte boundary (like the Rust side)."""
    size = 1
    for d in shape:
        size *= d
    buf = np.empty(size + 16, dtype=np.float32)
    off = (-buf.ctypes.data % 64) // 4
    return buf[off : off + size].reshape(shape)


def worker(lib: str, threads: int) -> None:
    """Serve timing requests for `lib` ("numpy" or "torch") on stdin/stdout."""
    import numpy as np

    if lib == "numpy":
        info = {"numpy": np.__version__, "openblas": _openblas_info()}
        torch = None
    else:
        import torch

        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        info = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "blas": re.search(r"BLAS_INFO=(\w+)", torch.__config__.show()).group(1),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
    print(json.dumps({"info": info}), flush=True)

    cached_name, inputs = None, None
    for line in sys.stdin:
        req = json.loads(line)
        spec = req["spec"]
        kind = spec["kind"]
        if req["case"] != cached_name:
            rng = np.random.default_rng(0)
            inputs = None  # free the previous case first

            def rand(*shape):
                return rng.random(shape, dtype=np.float32) - 0.5

            if kind == "matmul":
                m, k, n = spec["m"], spec["k"], spec["n"]
                # B^T stored row-major (n x k) and read through a transposed view,
                # as attention's Q K^T does: no copy, the library absorbs it.
                a, b = rand(m, k), (rand(n, k) if spec["b_transposed"] else rand(k, n))
                if torch is None:
                    inputs = (a, b.T if spec["b_transposed"] else b, _aligned_empty(np, (m, n)))
                else:
                    a, b = torch.from_numpy(a), torch.from_numpy(b)
                    inputs = (a, b.T if spec["b_transposed"] else b, torch.empty(m, n))
            elif kind == "conv":
                x = rand(1, spec["c_in"], spec["h"], spec["w"])
                w = rand(spec["c_out"], spec["c_in"], spec["kernel"], spec["kernel"])
                inputs = (x, w, rand(spec["c_out"]))
            else:
                shape = (spec["batch"], spec["heads"], spec["seq"], spec["d"])
                inputs = (rand(*shape), rand(*shape), rand(*shape))
            if torch is not None and kind != "matmul":
                inputs = tuple(torch.from_numpy(t) for t in inputs)
            cached_name = req["case"]

        f = None
        if kind == "matmul":
            a, b, c = inputs
            if torch is None:
                f = lambda: np.matmul(a, b, out=c)  # noqa: E731
            else:
                f = lambda: torch.matmul(a, b, out=c)  # noqa: E731
        elif kind == "conv" and torch is not None:
            x, w, bias = inputs
            pad = spec["kernel"] // 2
            f = lambda: torch.nn.functional.conv2d(x, w, bias, padding=pad)  # noqa: E731
        elif kind == "attention" and torch is not None:
            q, k, v = inputs
            f = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
        if f is None:
            print("null", flush=True)
            continue
        secs = _calibrate_and_time(f, req["samples"], req["min_time"])
        print(json.dumps({"seconds": secs}), flush=True)


# ---- the driver -----------------------------------------------------------------------


def worker_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE"]:
        env.pop(var, None)
    for var in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"]:
        env[var] = str(threads)
    env.pop("RAYON_NUM_THREADS", None)
    return env


def build(attention: bool) -> bool:
    cmd = ["cargo", "build", "--release", "-p", "benches", "--bin", "peers"]
    if attention:
        cmd += ["--features", "attention"]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode == 0


class Proc:
    """A long-lived worker process answering one JSON (or TSV) line per request."""

    def __init__(self, cmd: list[str], threads: int, has_info: bool):
        self.p = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=worker_env(threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.info = json.loads(self.p.stdout.readline())["info"] if has_info else None

    def ask(self, line: str):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline()
        if not reply:
            raise RuntimeError(f"worker {self.p.args} died")
        return json.loads(reply)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--samples", type=int, default=10,
                    help="timed batches per request, 3 for calls over 0.2 s (default 10)")
    ap.add_argument("--min-time", type=float, default=0.02, help="seconds per batch (default 0.02)")
    ap.add_argument("--pause", type=float, default=0.15,
                    help="seconds of idle between requests, so the previous worker's "
                         "threads stop spinning (OpenBLAS, OpenMP, rayon) (default 0.15)")
    ap.add_argument("--only", default="", help="only cases whose name contains this (alternatives separated by |)")
    ap.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    ap.add_argument("--no-build", action="store_true", help="use the runner already built")
    ap.add_argument("--json", help="also write every measurement to this file (JSON lines)")
    ap.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.worker:
        worker(args.worker, threads[0])
        return

    src = "\n".join(p.read_text() for p in (ROOT / "tensor" / "src").rglob("*.rs"))
    want_attention = "fn scaled_dot_product_attention" in src
    attention_built = False
    if not args.no_build:
        if want_attention and build(True):
            attention_built = True
        elif not build(False):
            sys.exit("cargo build failed")
        if want_attention and not attention_built:
            print("note: Tensor::scaled_dot_product_attention exists but the runner did not "
                  "build with --features attention (see attention_ours in "
                  "benches/src/bin/peers.rs); timing the composite instead", file=sys.stderr)

    cases = [json.loads(line) for line in subprocess.run(
        [str(RUNNER), "list"], capture_output=True, text=True, check=True).stdout.splitlines()]
    cases = [c for c in cases if any(o in c["case"] for o in args.only.split("|"))]
    rust_info = json.loads(subprocess.run(
        [str(RUNNER), "info"], capture_output=True, text=True, check=True).stdout)
    impls = [i for i in IMPLS if i in args.impls.split(",")]

    me = [sys.executable, str(Path(__file__).resolve())]
    procs: dict[tuple[str, int], Proc] = {}
    for t in threads:
        rust = Proc([str(RUNNER), "serve", "--threads", str(t)], t, has_info=False)
        procs[("ours", t)] = rust
        procs[("gemm", t)] = rust
        if "numpy" in impls:
            procs[("numpy", t)] = Proc(me + ["--worker", "numpy", "--threads", str(t)], t, True)
        if "torch" in impls:
            procs[("torch", t)] = Proc(me + ["--worker", "torch", "--threads", str(t)], t, True)

    load = os.getloadavg()
    print(f"# machine: {os.cpu_count()} CPUs, load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"# ours: micro-kernel {rust_info['ours_kernel']}; attention: {rust_info['attention']}")
    print(f"# gemm crate: {rust_info['gemm_crate']}")
    for t in threads:
        if ("numpy", t) in procs:
            print(f"# numpy ({t} thr): {json.dumps(procs[('numpy', t)].info)}")
        if ("torch", t) in procs:
            print(f"# torch ({t} thr): {json.dumps(procs[('torch', t)].info)}")
    print(f"# {args.rounds} rounds x {args.samples} batches of >= {args.min_time} s, "
          "interleaved; best kept", flush=True)

    best: dict[tuple[str, int, str], float] = {}
    records = []
    for rnd in range(args.rounds):
        for case in cases:
            avail = [i for i in impls if i in HAS[case["kind"]]]
            for t in threads:
                order = avail[rnd % len(avail):] + avail[: rnd % len(avail)]
                for imp in order:
                    proc = procs[(imp, t)]
                    time.sleep(args.pause)
                    if imp in ("ours", "gemm"):
                        r = proc.ask(f"{imp}\t{case['case']}\t{args.samples}\t{args.min_time}")
                    else:
                        r = proc.ask(json.dumps({"case": case["case"], "spec": case,
                                                 "samples": args.samples,
                                                 "min_time": args.min_time}))
                    if r is None:
                        continue
                    key = (case["case"], t, imp)
                    best[key] = min(best.get(key, float("inf")), r["seconds"])
                    records.append({"round": rnd, "case": case["case"], "threads": t,
                                    "impl": imp, "seconds": r["seconds"],
                                    "gflops": case["flops"] / r["seconds"] / 1e9})
        print(f"# round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    for p in {id(p): p for p in procs.values()}.values():
        p.close()
    load = os.getloadavg()

    header = ["case", "thr"] + impls + ["ours/best peer", "ours vs 1 thr"]
    rows = []
    for case in cases:
        for t in threads:
            g = {}
            for imp in impls:
                s = best.get((case["case"], t, imp))
                g[imp] = None if s is None else case["flops"] / s / 1e9
            peers = [g[i] for i in impls if i != "ours" and g[i] is not None]
            ratio = (g["ours"] / max(peers)) if g.get("ours") and peers else None
            one = best.get((case["case"], threads[0], "ours"))
            mine = best.get((case["case"], t, "ours"))
            scale = (one / mine) if (one and mine and t != threads[0]) else None
            rows.append([case["case"], str(t)] + [fmt(g[i]) for i in impls]
                        + ["-" if ratio is None else f"{ratio:.2f}",
                           "-" if scale is None else f"{scale:.2f}x"])
    print()
    print("GFLOP/s (best of interleaved runs; higher is better)")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(f"# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
