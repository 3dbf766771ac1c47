"""Write a Stable Diffusion 1.5 model folder with random weights (diffusers layout,
float32 safetensors, about 4.3 GB) for speed and memory runs without downloads:

    /work/venv/bin/python benches/peers/random_sd15.py /tmp/sd15-random
    /usr/bin/time -v target/release/sd generate --model /tmp/sd15-random --prompt "a cat" --steps 2

Configs are SD 1.5's (benches/configs/*.json); the tokenizer is SD 1.x's, built from the
CLIP BPE file the diffusion crate embeds.
"""
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def main(out: str) -> None:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sd_fixtures.pipelines import SD15_SCHEDULER, make_tokenizer

    cfg = lambda name: json.load(open(os.path.join(ROOT, "benches", "configs", name)))  # noqa: E731
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg("sd15_unet.json"))
    vae = AutoencoderKL.from_config(cfg("sd15_vae.json"))
    te = CLIPTextModel(CLIPTextConfig(**cfg("sd15_text_encoder.json")))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=make_tokenizer(), unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sd15-random")
