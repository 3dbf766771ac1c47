"""Fixture group `schedulers`: step-by-step trajectories of diffusers' schedulers.

Writes `fixtures/schedulers_trajectories.safetensors`, read by
`diffusion/tests/schedulers_trajectories.rs`. Needs scipy (diffusers' LMS integrates its
coefficients with `scipy.integrate.quad`): if the venv has none,
`pip install --target /tmp/pyextra scipy` and run with `PYTHONPATH=/tmp/pyextra`.

Every case builds `<Class>.from_config(config)` (so the per-class defaults of keys that
are absent from `config` are diffusers'), calls `set_timesteps(n)`, and runs the full
loop on one (1, 4, 8, 8) sample with the fake model
`model(x_in, t) = 0.1 * x_in + float32(sin(t / 100))`, `x_in = scale_model_input(x, t)`,
and a `torch.Generator().manual_seed(seed)` passed to `step` where it takes one.

Tensors (float32 unless said):
- `x_init`: the sample before `* init_noise_sigma` (randn, seed 7), shared by all cases;
  `noise_init`: the img2img noise (randn, seed 8); `orig_init`: the img2img clean latents
  (randn, seed 9).
- `{case}.timesteps` (float64), `{case}.init_noise_sigma` (float64, shape [1]),
  `{case}.sigmas` (if the scheduler has sigmas),
  `{case}.prev` (N, 1, 4, 8, 8): every `prev_sample`,
  `{case}.scaled` (N, 1, 4, 8, 8): every `scale_model_input` output (k-diffusion ones),
  `{case}.pred_x0` (N, 1, 4, 8, 8): every `pred_original_sample` (where `x0` is set),
  `{case}.add_noise.{i}`: `add_noise(orig_init, noise_init, timesteps[i])` for i in
  `add_noise` (a fresh scheduler after `set_timesteps`).
- `alphas_cumprod.{name}`: four noise schedules, to compare bit for bit.
Metadata `cases`: JSON list of {name, kind (CLI name), config, n, seed, eta?, x0?, add_noise?}.
"""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import torch

SD15 = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
KINDS = ["ddpm", "ddim", "pndm", "lms", "euler", "euler-a", "dpm++2m"]
K_DIFFUSION = {"lms", "euler", "euler-a"}


def _classes():
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LMSDiscreteScheduler,
        PNDMScheduler,
    )

    return {
        "ddpm": DDPMScheduler,
        "ddim": DDIMScheduler,
        "pndm": PNDMScheduler,
        "lms": LMSDiscreteScheduler,
        "euler": EulerDiscreteScheduler,
        "euler-a": EulerAncestralDiscreteScheduler,
        "dpm++2m": DPMSolverMultistepScheduler,
        "dpm++2m-karras": DPMSolverMultistepScheduler,
    }


def _cases() -> list[dict]:
    cases = []
    for kind in KINDS:
        k = kind.replace("+", "p").replace("-", "_")
        # SD 1.5's published config: no timestep_spacing key (class default applies)
        cases.append({"name": f"{k}_sd15_eps_10", "kind": kind, "config": SD15, "n": 10, "seed": 0,
                      "add_noise": [0, 2, 5, 9], "x0": kind in ("ddim", "euler", "lms")})
        # v-prediction with trailing spacing
        cases.append({"name": f"{k}_sd15_v_trailing_10", "kind": kind, "n": 10, "seed": 1,
                      "config": {**SD15, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}})
        # a re-saved SD 1.5 config carries "timestep_spacing": "leading": every class keeps it
        cases.append({"name": f"{k}_sd15_leading_25", "kind": kind, "n": 25, "seed": 2,
                      "config": {**SD15, "timestep_spacing": "leading"}})
    cases += [
        {"name": "dpm_karras_sd15_25", "kind": "dpm++2m-karras", "config": SD15, "n": 25, "seed": 0},
        {"name": "euler_karras_10", "kind": "euler", "n": 10, "seed": 0,
         "config": {**SD15, "use_karras_sigmas": True}},
        {"name": "lms_karras_10", "kind": "lms", "n": 10, "seed": 0, "config": {**SD15, "use_karras_sigmas": True}},
        {"name": "pndm_prk_linspace_10", "kind": "pndm", "n": 10, "seed": 0,
         "config": {**SD15, "skip_prk_steps": False, "timestep_spacing": "linspace"}},
        {"name": "ddim_eta_10", "kind": "ddim", "n": 10, "seed": 3, "eta": 0.5, "config": SD15},
        {"name": "ddim_zero_snr_v_10", "kind": "ddim", "n": 10, "seed": 0,
         "config": {**SD15, "_class_name": "DDIMScheduler", "rescale_betas_zero_snr": True,
                    "timestep_spacing": "trailing", "prediction_type": "v_prediction", "set_alpha_to_one": True}},
        {"name": "euler_zero_snr_v_10", "kind": "euler", "n": 10, "seed": 0,
         "config": {**SD15, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
                    "prediction_type": "v_prediction"}},
        {"name": "ddpm_cos_sample_10", "kind": "ddpm", "n": 10, "seed": 4,
         "config": {"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2",
                    "prediction_type": "sample", "clip_sample": True, "variance_type": "fixed_small_log"}},
        {"name": "ddpm_linear_large_10", "kind": "ddpm", "n": 10, "seed": 5,
         "config": {"_class_name": "DDPMScheduler", "variance_type": "fixed_large", "timestep_spacing": "linspace"}},
        {"name": "dpm_sde_10", "kind": "dpm++2m", "n": 10, "seed": 6,
         "config": {**SD15, "algorithm_type": "sde-dpmsolver++"}},
        {"name": "dpm_order3_10", "kind": "dpm++2m", "n": 10, "seed": 0, "config": {**SD15, "solver_order": 3}},
        {"name": "dpm_heun_sigma_min_10", "kind": "dpm++2m", "n": 10, "seed": 0,
         "config": {**SD15, "solver_type": "heun", "final_sigmas_type": "sigma_min", "lower_order_final": False}},
        {"name": "dpm_order3_20", "kind": "dpm++2m", "n": 20, "seed": 0,
         "config": {**SD15, "solver_order": 3, "prediction_type": "v_prediction"}},
        {"name": "euler_loglinear_sigma_min_10", "kind": "euler", "n": 10, "seed": 0,
         "config": {**SD15, "interpolation_type": "log_linear", "final_sigmas_type": "sigma_min"}},
    ]
    return cases


def _model(x_in: torch.Tensor, t: float) -> torch.Tensor:
    return 0.1 * x_in + float(np.float32(math.sin(float(t) / 100.0)))


def _run(case: dict, classes, x_init, orig, noise, out: dict) -> None:
    cls = classes[case["kind"]]
    kw = {"use_karras_sigmas": True} if case["kind"] == "dpm++2m-karras" else {}
    sch = cls.from_config(dict(case["config"]), **kw)
    sch.set_timesteps(case["n"])
    name = case["name"]
    out[f"{name}.timesteps"] = sch.timesteps.to(torch.float64)
    out[f"{name}.init_noise_sigma"] = torch.tensor([float(sch.init_noise_sigma)], dtype=torch.float64)
    if hasattr(sch, "sigmas") and case["kind"] not in ("ddpm", "ddim", "pndm"):
        out[f"{name}.sigmas"] = sch.sigmas.to(torch.float32)
    for i in case.get("add_noise", []):
        fresh = cls.from_config(dict(case["config"]), **kw)
        fresh.set_timesteps(case["n"])
        out[f"{name}.add_noise.{i}"] = fresh.add_noise(orig, noise, fresh.timesteps[i : i + 1])
    g = torch.Generator().manual_seed(case["seed"])
    params = inspect.signature(sch.step).parameters
    x = x_init * sch.init_noise_sigma
    prevs, scaled, x0s = [], [], []
    for t in sch.timesteps:
        x_in = sch.scale_model_input(x, t)
        scaled.append(x_in)
        kwargs = {}
        if "generator" in params:
            kwargs["generator"] = g
        if "eta" in case:
            kwargs["eta"] = case["eta"]
        res = sch.step(_model(x_in, t), t, x, **kwargs)
        x = res.prev_sample
        prevs.append(x)
        x0s.append(getattr(res, "pred_original_sample", None))
    out[f"{name}.prev"] = torch.stack(prevs)
    if case["kind"] in K_DIFFUSION:
        out[f"{name}.scaled"] = torch.stack(scaled)
    if case.get("x0"):
        out[f"{name}.pred_x0"] = torch.stack(x0s)


def group(write) -> None:
    torch.set_num_threads(1)
    from diffusers import DDIMScheduler

    classes = _classes()
    out: dict[str, torch.Tensor] = {}
    x_init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    orig = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    out["x_init"], out["noise_init"], out["orig_init"] = x_init, noise, orig
    cases = _cases()
    for case in cases:
        _run(case, classes, x_init, orig, noise, out)
    schedules = {
        "sd15": dict(SD15),
        "linear": {},
        "cos": {"beta_schedule": "squaredcos_cap_v2"},
        "sd15_zero_snr": {**SD15, "rescale_betas_zero_snr": True},
    }
    for key, cfg in schedules.items():
        out[f"alphas_cumprod.{key}"] = DDIMScheduler.from_config(cfg).alphas_cumprod.clone()
    meta_cases = [{**c, "config": json.dumps(c["config"])} for c in cases]
    write("schedulers_trajectories.safetensors", out,
          {"cases": json.dumps(meta_cases), "schedules": json.dumps(schedules)})
