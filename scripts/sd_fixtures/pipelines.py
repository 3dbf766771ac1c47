"""Fixture group `pipelines`: whole Stable Diffusion pipelines on the tiny model folder.

Needs `fixtures/tiny-sd/{text_encoder,unet,vae}` (groups `clip` and `models`). Writes
the rest of the folder (`scheduler/`, `model_index.json`; no `tokenizer/`, see
`make_tokenizer`), two extra
UNets (`fixtures/pipelines_unet9/`: a 9-channel inpainting UNet; `pipelines_unet_v/`:
an SD 2.x-like UNet for v-prediction), and `fixtures/pipelines.safetensors` with, per
case, the final latents, the decoded image (float, before uint8) and the uint8 image
diffusers returns (`output_type="np"` then `* 255` rounded), plus per-step latents
for the callback case. Every case's arguments are in the metadata (`cases`, JSON).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "fixtures"
TINY = FIXTURES / "tiny-sd"

# SD 1.5's scheduler config (runwayml/stable-diffusion-v1-5, scheduler_config.json).
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    trained_betas=None,
    clip_sample=False,
)

SCHEDULERS = {
    "pndm": lambda cfg: PNDMScheduler.from_config(cfg),
    "ddim": lambda cfg: DDIMScheduler.from_config(cfg),
    "lms": lambda cfg: LMSDiscreteScheduler.from_config(cfg),
    "euler": lambda cfg: EulerDiscreteScheduler.from_config(cfg),
    "euler-a": lambda cfg: EulerAncestralDiscreteScheduler.from_config(cfg),
    "dpm++2m": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg),
    "dpm++2m-karras": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True),
}


def make_tokenizer() -> CLIPTokenizer:
    """SD 1.x's tokenizer, from vocab.json + merges.txt built from the BPE file (as
    openai/clip-vit-large-patch14 has them, by the clip group's `write_vocab`). Not
    saved: the tiny folder has no `tokenizer/`, so the Rust side uses the identical
    embedded vocabulary."""
    from sd_fixtures.clip import write_vocab

    with tempfile.TemporaryDirectory() as tmp:
        write_vocab(Path(tmp))
        tok = CLIPTokenizer(
            str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
            pad_token="<|endoftext|>", model_max_length=77,
        )
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    return tok


def derived_unet(name: str, **changes) -> UNet2DConditionModel:
    """The tiny UNet's config with `changes`, random init, saved to fixtures/<name>/
    in float16 (to keep the file small); returned in float32 with those values."""
    cfg = dict(UNet2DConditionModel.load_config(str(TINY / "unet")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(changes)
    torch.manual_seed(7)
    unet = UNet2DConditionModel(**cfg).eval()
    out = FIXTURES / name
    if out.exists():
        shutil.rmtree(out)
    unet.half().save_pretrained(str(out), safe_serialization=True)
    return unet.float()


def pattern_image(h: int, w: int) -> torch.Tensor:
    """A smooth deterministic RGB image in [-1, 1], (1, 3, h, w)."""
    y = torch.linspace(-1, 1, h).view(1, 1, h, 1)
    x = torch.linspace(-1, 1, w).view(1, 1, 1, w)
    c = torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1)
    return torch.sin(3 * x + c) * torch.cos(2 * y - c) * 0.9


def group(write) -> None:
    torch.set_num_threads(1)
    tokenizer = make_tokenizer()
    # The tiny weights are stored as float16; compute in float32 from those values.
    text_encoder = CLIPTextModel.from_pretrained(str(TINY / "text_encoder")).float().eval()
    unet = UNet2DConditionModel.from_pretrained(str(TINY / "unet")).float().eval()
    vae = AutoencoderKL.from_pretrained(str(TINY / "vae")).float().eval()
    # scheduler/ as SD 1.5 publishes it: no `timestep_spacing` key, so a sampler made
    # from it keeps its own default spacing (Euler: linspace), as diffusers' from_config.
    (TINY / "scheduler").mkdir(exist_ok=True)
    (TINY / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", **SD15_SCHEDULER}, indent=2) + "\n"
    )
    pndm = PNDMScheduler.from_pretrained(str(TINY / "scheduler"))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=pndm,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_config(str(TINY))
    pipe.set_progress_bar_config(disable=True)
    unet9 = derived_unet("pipelines_unet9", in_channels=9)
    ch = list(unet.config.block_out_channels)
    unet_v = derived_unet(
        "pipelines_unet_v", use_linear_projection=True, attention_head_dim=[max(c // 16, 1) for c in ch]
    )
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = unet.config.sample_size * factor
    image = pattern_image(size, size)
    mask = torch.zeros(1, 1, size, size)
    mask[:, :, size // 4 : size * 3 // 4, size // 2 :] = 1.0

    out: dict[str, torch.Tensor] = {"image": image, "mask": mask}
    cases: list[dict] = []

    def record(name: str, result, extra: dict) -> None:
        images = torch.from_numpy(result.images).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) in [0, 1]
        out[f"{name}.image"] = images
        cases.append({"name": name, **extra})

    def run(name: str, kind: str, args: dict, pipeline=None, sched_changes: dict | None = None, unet_name: str | None = None, steps_latents: bool = False):
        scheduler = SCHEDULERS[kind](pndm.config)
        if sched_changes:
            scheduler = type(scheduler).from_config(scheduler.config, **sched_changes)
        p = pipeline or StableDiffusionPipeline
        model = {"pipelines_unet9": unet9, "pipelines_unet_v": unet_v}.get(unet_name, unet)
        pl = p(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=model, scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pl.set_progress_bar_config(disable=True)
        seen = []

        def on_step(pipe_, i, t, kw):
            seen.append(kw["latents"].clone())
            return kw

        call = {k: v for k, v in args.items() if k not in ("seed",)}
        if "image" in call:
            call["image"] = image
        if "mask_image" in call:
            call["mask_image"] = mask
        g = torch.Generator("cpu").manual_seed(args["seed"])
        latents = pl(**call, generator=g, output_type="latent", callback_on_step_end=on_step if steps_latents else None).images
        g = torch.Generator("cpu").manual_seed(args["seed"])
        result = pl(**call, generator=g, output_type="np")
        out[f"{name}.latents"] = latents
        if steps_latents:
            out[f"{name}.steps"] = torch.stack(seen)
        record(name, result, {"scheduler": kind, "args": {k: v for k, v in args.items() if k not in ("image", "mask_image")},
                              "scheduler_config": sched_changes or {}, "unet": unet_name, "pipeline": p.__name__,
                              "image": "image" in args, "mask": "mask_image" in args})

    base = dict(height=size, width=size)
    run("txt2img_pndm", "pndm", dict(base, prompt="a photo of a cat", num_inference_steps=5, guidance_scale=7.5, seed=0), steps_latents=True)
    run("txt2img_ddim_batch", "ddim", dict(base, prompt=["a red dress", "an ankle boot"], negative_prompt=["blurry", "a sandal"],
        num_images_per_prompt=2, num_inference_steps=4, guidance_scale=5.0, guidance_rescale=0.7, seed=3))
    run("txt2img_no_cfg_lms", "lms", dict(base, prompt="a bag", num_inference_steps=6, guidance_scale=1.0, seed=11))
    run("txt2img_euler", "euler", dict(base, prompt="a shirt", num_inference_steps=5, guidance_scale=4.0, seed=5))
    run("txt2img_euler_a", "euler-a", dict(base, prompt="a sneaker", num_inference_steps=5, guidance_scale=6.0, seed=12))
    run("txt2img_dpm_karras", "dpm++2m-karras", dict(base, prompt="a coat", num_inference_steps=6, guidance_scale=7.5, seed=2))
    run("txt2img_long_prompt", "dpm++2m", dict(base, prompt=" ".join(["a very long prompt about a shirt"] * 20), num_inference_steps=3, guidance_scale=3.0, seed=4))
    run("txt2img_vpred", "ddim", dict(base, prompt="a pullover", num_inference_steps=4, guidance_scale=5.0, seed=8),
        sched_changes={"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, unet_name="pipelines_unet_v")
    run("img2img_ddim", "ddim", dict(prompt="a trouser", image=True, strength=0.6, num_inference_steps=10, guidance_scale=7.5, seed=21),
        pipeline=StableDiffusionImg2ImgPipeline)
    run("img2img_euler_a", "euler-a", dict(prompt="a dress", image=True, strength=0.8, num_inference_steps=5, guidance_scale=3.0, seed=22),
        pipeline=StableDiffusionImg2ImgPipeline)
    run("inpaint4_pndm", "pndm", dict(base, prompt="a bag", image=True, mask_image=True, num_inference_steps=5, guidance_scale=7.5, seed=31),
        pipeline=StableDiffusionInpaintPipeline)
    run("inpaint4_euler_strength", "euler", dict(base, prompt="a boot", image=True, mask_image=True, strength=0.75, num_inference_steps=8, guidance_scale=5.0, seed=32),
        pipeline=StableDiffusionInpaintPipeline)
    run("inpaint9_ddim", "ddim", dict(base, prompt="a sandal", image=True, mask_image=True, num_inference_steps=4, guidance_scale=7.5, seed=33),
        pipeline=StableDiffusionInpaintPipeline, unet_name="pipelines_unet9")
    write("pipelines.safetensors", out, {"cases": json.dumps(cases), "size": str(size)})
