#!/usr/bin/env python3
"""Generate the golden fixtures under fixtures/ that the Rust tests read.

Run by hand, never by CI (CI has no Python). Each fixture group is one function
below, registered in GROUPS; `--only GROUP` (repeatable) regenerates just those
groups. See fixtures/README.md for the exact command and what each file holds.

    /work/venv/bin/python scripts/gen_fixtures.py              # every group
    /work/venv/bin/python scripts/gen_fixtures.py --only randn # one group

Conventions for every group:
- one safetensors file per group, `fixtures/<file>.safetensors`, float32 unless
  the group says otherwise;
- the file's `__metadata__` holds what the Rust test needs to replay the case
  (a JSON string under the key `cases`), plus the torch version that made it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def _write(name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write atomically (temp file + rename) and report the size."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    meta = {"torch_version": torch.__version__, **metadata}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    print(f"wrote {path.relative_to(ROOT)}: {len(tensors)} tensors, {path.stat().st_size} bytes")
    return path


# ---- group: randn -------------------------------------------------------------------

# Ops: randn / rand (float32), rand_f64 (torch.rand with dtype=torch.float64, stored F64).
# Each case seeds a fresh generator and makes successive calls on it, exactly as
# `g = torch.Generator("cpu").manual_seed(seed); torch.randn(shape, generator=g)`.
# Successive calls check how the generator state advances between calls (the mt19937
# stream, and the cached second Box-Muller value of the double-precision scalar path
# used when numel < 16).
RANDN_CASES: list[dict] = [
    # one call, every numel around the scalar / 16-block boundaries
    *[
        {"name": f"single_n{n}", "seed": 42, "calls": [["randn", [n]]]}
        for n in [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 100, 1000]
    ],
    {"name": "scalar_shape", "seed": 7, "calls": [["randn", []]]},
    {"name": "empty", "seed": 7, "calls": [["randn", [0]], ["randn", [3]]]},
    # the reference check in REFERENCE.md: torch.manual_seed(100); torch.randn(1,4,64,64)
    {"name": "latents_seed100", "seed": 100, "calls": [["randn", [1, 4, 64, 64]]]},
    # diffusers img2img-like: draw latents, then noise of the same shape
    {"name": "latents_then_noise", "seed": 1234, "calls": [["randn", [1, 4, 8, 8]], ["randn", [1, 4, 8, 8]]]},
    # the double-precision cache survives a vectorised call in between
    {
        "name": "cache_across_calls",
        "seed": 0,
        "calls": [["randn", [3]], ["randn", [20]], ["randn", [1]], ["randn", [1]], ["randn", [2, 2]]],
    },
    {"name": "odd_scalar_calls", "seed": 5, "calls": [["randn", [1]], ["randn", [5]], ["randn", [17]], ["randn", [15]]]},
    # torch.rand (float32) and interleavings with randn
    {"name": "rand_only", "seed": 42, "calls": [["rand", [7]], ["rand", [3, 5]], ["rand", [100]]]},
    {"name": "rand_randn_mix", "seed": 9, "calls": [["randn", [1]], ["rand", [4]], ["randn", [1]], ["randn", [16]], ["rand", [1]]]},
    # 64-bit seeds: only the low 32 bits seed mt19937, but the full seed is accepted
    {"name": "big_seed", "seed": 2**40 + 123, "calls": [["randn", [9]], ["randn", [40]]]},
    # float64 uniforms (TorchGenerator's `Rng::uniform`) share the stream with randn
    {"name": "rand_f64", "seed": 3, "calls": [["rand_f64", [5]], ["randn", [3]], ["rand_f64", [2]]]},
    {"name": "max_u32_seed", "seed": 2**32 - 1, "calls": [["randn", [2]], ["rand", [2]]]},
]


def group_randn() -> None:
    tensors: dict[str, torch.Tensor] = {}
    for case in RANDN_CASES:
        g = torch.Generator("cpu").manual_seed(case["seed"])
        for i, (op, shape) in enumerate(case["calls"]):
            fn, dtype = {
                "randn": (torch.randn, torch.float32),
                "rand": (torch.rand, torch.float32),
                "rand_f64": (torch.rand, torch.float64),
            }[op]
            tensors[f"{case['name']}.{i}"] = fn(shape, generator=g, dtype=dtype)
    # the global generator (torch.manual_seed) runs the same algorithm: check, don't store
    torch.manual_seed(100)
    if not torch.equal(torch.randn(1, 4, 64, 64), tensors["latents_seed100.0"]):
        raise SystemExit("torch.manual_seed and torch.Generator disagree")
    _write("torch_randn.safetensors", tensors, {"cases": json.dumps(RANDN_CASES)})


# ---- group: ops_layers ----------------------------------------------------------------

# Golden values for the tensor crate's layer ops (tensor/tests/ops_layers_torch.rs):
# for each case NAME, its inputs (NAME.x, NAME.w, NAME.b, NAME.index) and torch's output
# NAME.y, all float32. The hyper-parameters of each case are repeated in the Rust test;
# keep the two in step.
def group_ops_layers() -> None:
    torch.manual_seed(0)
    r = torch.randn
    out = {}


    def put(name, **tensors):
        for k, v in tensors.items():
            out[f"{name}.{k}"] = v.to(torch.float32).clone().contiguous()


    # conv2d: groups 2, stride (2, 1), padding (1, 2), dilation (1, 2)
    x, w, b = r(2, 6, 9, 7), r(4, 3, 3, 3), r(4)
    put("conv_a", x=x, w=w, b=b, y=F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2))
    # depthwise with multiplier 2, stride 2, padding 1, no bias
    x, w = r(1, 4, 8, 8), r(8, 1, 3, 3)
    put("conv_b", x=x, w=w, y=F.conv2d(x, w, None, stride=2, padding=1, groups=4))
    # 1x1 with bias
    x, w, b = r(1, 5, 6, 6), r(3, 5, 1, 1), r(3)
    put("conv_c", x=x, w=w, b=b, y=F.conv2d(x, w, b))
    # SD-like 3x3 padding 1 on odd sizes
    x, w, b = r(2, 16, 11, 13), r(8, 16, 3, 3), r(8)
    put("conv_d", x=x, w=w, b=b, y=F.conv2d(x, w, b, padding=1))

    x, w, b = r(2, 6, 5, 3) * 3 + 1, r(6), r(6)
    put("group_norm", x=x, w=w, b=b, y=F.group_norm(x, 3, w, b, eps=1e-6))
    x, w, b = r(3, 4, 10) * 2 - 1, r(10), r(10)
    put("layer_norm", x=x, w=w, b=b, y=F.layer_norm(x, (10,), w, b, eps=1e-5))

    x = r(1, 2, 3, 5)
    put("upsample_size", x=x, y=F.interpolate(x, size=(7, 11), mode="nearest"))
    put("upsample_down", x=x, y=F.interpolate(x, size=(2, 3), mode="nearest"))
    put("upsample_x2", x=x, y=F.interpolate(x, scale_factor=2.0, mode="nearest"))

    x = r(1, 2, 7, 8)
    put("avg_pool", x=x, y=F.avg_pool2d(x, 3, stride=2, padding=1))
    put("max_pool", x=x, y=F.max_pool2d(x, 3, stride=2, padding=1))

    x = r(1, 2, 4, 5)
    put("pad_reflect", x=x, y=F.pad(x, (2, 1, 1, 3), mode="reflect"))
    put("pad_replicate", x=x, y=F.pad(x, (2, 1, 1, 3), mode="replicate"))
    put("pad_constant", x=x, y=F.pad(x, (0, 1, 0, 1), value=0.25))

    x = r(3, 5)
    index = torch.tensor([[4, 0, 0, 2], [1, 1, 3, 0], [2, 4, 4, 4]])
    put("gather", x=x, index=index, y=torch.gather(x, 1, index))
    _write("ops_layers.safetensors", out, {})


GROUPS = {
    "randn": group_randn,
    "ops_layers": group_ops_layers,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(GROUPS), help="generate only this group (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.only or list(GROUPS):
        print(f"[{name}]")
        GROUPS[name]()


if __name__ == "__main__":
    main()
