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


# ---- group: nn_optim ------------------------------------------------------------------

# Golden values for the nn crate (nn/tests/optim_torch.rs), float32 unless noted:
# - optimizers: for case NAME with params a (3, 4) and b (5,), NAME.{a,b}.p0 (initial),
#   NAME.{a,b}.g{k} (the gradient fed at step k = 1..6) and NAME.{a,b}.p{k} (torch's value
#   after step k); single-tensor code paths (foreach=False). NAME.lr / NAME.momentum (F64)
#   are the lr and momentum/beta1 each step used when a OneCycleLR drives the optimizer.
# - schedules: sched.NAME.lr and sched.NAME.momentum (F64): the value before scheduler
#   step i, for i = 0..=total_steps (OneCycleLR) or 0..=n (CosineAnnealingLR).
# - clip.{max1,max100}: three gradients, the total norm before clipping, the clipped ones.
# - losses: cross_entropy and kl (diffusers' DiagonalGaussianDistribution.kl, batch mean)
#   inputs, values and input gradients.
# - attention: diffusers-style cross-attention and CLIP-style causal self-attention
#   weights under their checkpoint names, inputs and outputs.
# Every hyper-parameter is repeated in the Rust test; keep the two in step.
NN_OPTIM_STEPS = 6


def group_nn_optim() -> None:
    torch.manual_seed(1234)
    out: dict[str, torch.Tensor] = {}
    opt_cases = {
        "sgd_plain": lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=False),
        "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01, foreach=False),
        "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, foreach=False),
        "sgd_dampening": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, dampening=0.3, foreach=False),
        "adamw_default": lambda ps: torch.optim.AdamW(ps, foreach=False),
        "adamw_custom": lambda ps: torch.optim.AdamW(
            ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, foreach=False
        ),
        "adamw_onecycle": lambda ps: torch.optim.AdamW(ps, lr=1.0, weight_decay=0.01, foreach=False),
        "sgd_onecycle": lambda ps: torch.optim.SGD(ps, lr=1.0, momentum=0.9, foreach=False),
    }
    onecycle_max = {"adamw_onecycle": 0.05, "sgd_onecycle": 0.2}
    for name, make in opt_cases.items():
        a = torch.randn(3, 4, requires_grad=True)
        b = torch.randn(5, requires_grad=True)
        out[f"{name}.a.p0"], out[f"{name}.b.p0"] = a.detach().clone(), b.detach().clone()
        opt = make([a, b])
        sched = None
        if name in onecycle_max:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=onecycle_max[name], total_steps=NN_OPTIM_STEPS)
        lrs, moms = [], []
        for k in range(1, NN_OPTIM_STEPS + 1):
            for nm, p in (("a", a), ("b", b)):
                g = torch.randn_like(p) * (1.0 + k)
                p.grad = g
                out[f"{name}.{nm}.g{k}"] = g.clone()
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            moms.append(group["betas"][0] if "betas" in group else group["momentum"])
            opt.step()
            if sched is not None:
                sched.step()
            out[f"{name}.a.p{k}"], out[f"{name}.b.p{k}"] = a.detach().clone(), b.detach().clone()
        if sched is not None:
            out[f"{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
            out[f"{name}.momentum"] = torch.tensor(moms, dtype=torch.float64)

    def record(name, opt, sched, n, key="betas"):
        lrs, moms = [], []
        for i in range(n + 1):
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            moms.append(group["betas"][0] if "betas" in group else group["momentum"])
            if i < n:
                opt.step()
                sched.step()
        out[f"sched.{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
        out[f"sched.{name}.momentum"] = torch.tensor(moms, dtype=torch.float64)

    lr_sched = torch.optim.lr_scheduler
    dummy = lambda: [torch.zeros(1, requires_grad=True)]  # noqa: E731
    opt = torch.optim.AdamW(dummy())
    record("oc_default", opt, lr_sched.OneCycleLR(opt, max_lr=0.1, total_steps=100), 100)
    opt = torch.optim.SGD(dummy(), lr=0.1, momentum=0.9)
    s = lr_sched.OneCycleLR(
        opt, max_lr=1.0, total_steps=37, pct_start=0.25, anneal_strategy="linear",
        div_factor=10.0, final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9,
    )
    record("oc_sgd_linear", opt, s, 37)
    opt = torch.optim.AdamW(dummy())
    record("oc_three", opt, lr_sched.OneCycleLR(opt, max_lr=0.3, total_steps=50, three_phase=True), 50)
    opt = torch.optim.AdamW(dummy())
    record("oc_tiny", opt, lr_sched.OneCycleLR(opt, max_lr=0.01, total_steps=7), 7)
    opt = torch.optim.SGD(dummy(), lr=0.1, momentum=0.5)
    record("cosine", opt, lr_sched.CosineAnnealingLR(opt, T_max=10, eta_min=0.001), 25)
    opt = torch.optim.SGD(dummy(), lr=0.3)
    record("cosine_zero", opt, lr_sched.CosineAnnealingLR(opt, T_max=7), 14)

    for name, max_norm in (("max1", 1.0), ("max100", 100.0)):
        ps = [torch.zeros(4, 3, requires_grad=True), torch.zeros(7, requires_grad=True), torch.zeros(2, 2, 2, requires_grad=True)]
        for i, p in enumerate(ps):
            p.grad = torch.randn_like(p)
            out[f"clip.{name}.g{i}"] = p.grad.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, max_norm, foreach=False)
        out[f"clip.{name}.norm"] = norm.reshape(1).clone()
        for i, p in enumerate(ps):
            out[f"clip.{name}.clipped{i}"] = p.grad.clone()

    logits = (torch.randn(6, 5) * 2).requires_grad_()
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    out["cross_entropy.logits"], out["cross_entropy.targets"] = logits.detach().clone(), targets.float()
    out["cross_entropy.loss"], out["cross_entropy.grad"] = loss.detach().reshape(1), logits.grad.clone()
    mean = torch.randn(3, 2, 4, 4).requires_grad_()
    logvar = (torch.randn(3, 2, 4, 4) * 0.5).requires_grad_()
    kl = (0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=[1, 2, 3])).mean()
    kl.backward()
    out["kl.mean"], out["kl.logvar"], out["kl.loss"] = mean.detach().clone(), logvar.detach().clone(), kl.detach().reshape(1)
    out["kl.grad_mean"], out["kl.grad_logvar"] = mean.grad.clone(), logvar.grad.clone()

    # diffusers Attention(query_dim=12, cross_attention_dim=10, heads=3, dim_head=4)
    w = {
        "xattn.to_q.weight": torch.randn(12, 12) * 0.3,
        "xattn.to_k.weight": torch.randn(12, 10) * 0.3,
        "xattn.to_v.weight": torch.randn(12, 10) * 0.3,
        "xattn.to_out.0.weight": torch.randn(12, 12) * 0.3,
        "xattn.to_out.0.bias": torch.randn(12) * 0.1,
    }
    x, ctx = torch.randn(2, 5, 12), torch.randn(2, 7, 10)

    def heads(t, h):
        bsz, n, d = t.shape
        return t.reshape(bsz, n, h, d // h).transpose(1, 2)

    q = heads(x @ w["xattn.to_q.weight"].T, 3)
    k = heads(ctx @ w["xattn.to_k.weight"].T, 3)
    v = heads(ctx @ w["xattn.to_v.weight"].T, 3)
    o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 12)
    out.update({f"attention.{k_}": v_ for k_, v_ in w.items()})
    out["attention.xattn.x"], out["attention.xattn.context"] = x, ctx
    out["attention.xattn.y"] = o @ w["xattn.to_out.0.weight"].T + w["xattn.to_out.0.bias"]
    # CLIPAttention(embed_dim=8, heads=2) with a causal mask
    w = {}
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        w[f"clip.{proj}.weight"] = torch.randn(8, 8) * 0.3
        w[f"clip.{proj}.bias"] = torch.randn(8) * 0.1
    x = torch.randn(1, 6, 8)
    mask = torch.full((6, 6), float("-inf")).triu(1)
    lin = lambda t, p: t @ w[f"clip.{p}.weight"].T + w[f"clip.{p}.bias"]  # noqa: E731
    q, k, v = (heads(lin(x, p), 2) for p in ("q_proj", "k_proj", "v_proj"))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(1, 6, 8)
    out.update({f"attention.{k_}": v_ for k_, v_ in w.items()})
    out["attention.clip.x"], out["attention.clip.mask"], out["attention.clip.y"] = x, mask, lin(o, "out_proj")
    _write("nn_optim.safetensors", out, {})


def _sd_group(module: str):
    """A group that lives in `scripts/sd_fixtures/<module>.py` as `group(write)`.

    The Stable Diffusion groups (tiny diffusers/transformers models) are long, so each
    has its own file; it receives `_write` and may also write model folders under
    `fixtures/`. Imported lazily, so the small groups need only torch.
    """

    def run() -> None:
        import importlib
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        importlib.import_module(f"sd_fixtures.{module}").group(_write)

    return run


GROUPS = {
    "randn": group_randn,
    "ops_layers": group_ops_layers,
    "nn_optim": group_nn_optim,
    "clip": _sd_group("clip"),
    "models": _sd_group("models"),
    "schedulers": _sd_group("schedulers"),
    "pipelines": _sd_group("pipelines"),
    "distill": _sd_group("distill"),
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
