"""Fixture group `models`: tiny random-init UNet2DConditionModel and AutoencoderKL
(diffusers 0.42.1, torch CPU, float32) with their outputs for fixed inputs, read by
`diffusion/tests/models_*.rs`.

Writes
- `fixtures/tiny-sd/unet/` and `fixtures/tiny-sd/vae/` (`save_pretrained`,
  safetensors, weights stored as float16): the SD 1.x-like tiny models the pipelines
  use (cross_attention_dim 32, the tiny text encoder's width);
- `fixtures/models_unet_sd1.safetensors`: inputs and outputs of the tiny-sd UNet
  (square 16x16 latents with per-batch and scalar timesteps, 8x12 latents, 7x9
  latents that need `upsample_size`);
- `fixtures/models_unet_sd2.safetensors`, `models_unet_inpaint.safetensors`: config
  (metadata `config`) + inputs/outputs, weights (float16) in `*.weights.safetensors`, of an SD 2.x-like UNet
  (linear projections, per-block head counts, 3 levels, layers_per_block 2) and an
  inpainting UNet (in_channels 9);
- `fixtures/models_vae_sd1.safetensors`: encode (mean, logvar, std), a posterior
  sample with a seeded generator, decode, and a tiled decode, for the tiny-sd VAE;
- `fixtures/models_vae_old_keys.weights.safetensors`: a float32 VAE whose mid-block
  attention uses the old names (query/key/value as 1x1 conv weights, proj_attn as
  a matrix); `models_vae_old_keys.safetensors`: its config (metadata) and
  encode/decode outputs.

Weights are rounded to float16 *before* the reference outputs are computed, so the
outputs are exact for the stored weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "fixtures"

SD1_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,  # SD 1.x trap: 8 *heads*
    norm_num_groups=32,
)

SD2_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(16, 32, 32),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=24,
    attention_head_dim=[2, 4, 4],  # heads per block, as SD 2's [5, 10, 20, 20]
    use_linear_projection=True,
    upcast_attention=True,  # a no-op in float32
    norm_num_groups=8,
)

INPAINT_UNET = dict(
    sample_size=16,
    in_channels=9,
    out_channels=4,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=2,
    norm_num_groups=8,
)

SD1_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=32,
    sample_size=32,
)

OLD_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(16, 32),
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    latent_channels=4,
    layers_per_block=2,  # decoder up blocks get 3 resnets
    norm_num_groups=8,
    sample_size=32,
)


def _round_f16(model: torch.nn.Module) -> None:
    """Round every parameter to float16 (kept as float32) so that float16 files are exact."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def _f16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}


def _config_json(model) -> str:
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    return json.dumps(cfg)


def _init_unet(cfg: dict, seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg).eval()
    # Random-init GroupNorm/LayerNorm affine params are ones/zeros; perturb every
    # parameter a little so a wrong norm weight or bias cannot go unnoticed.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    _round_f16(unet)
    return unet


def _init_vae(cfg: dict, seed: int, f16: bool) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(**cfg).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    if f16:
        _round_f16(vae)
    return vae


def _unet_cases(unet: UNet2DConditionModel, cross_dim: int, in_ch: int, sizes, seed: int) -> dict:
    """Inputs and outputs for a batch of 2 per latent size: per-batch timesteps and a scalar one."""
    out = {}
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for h, w in sizes:
            tag = f"{h}x{w}"
            sample = torch.randn(2, in_ch, h, w, generator=g)
            ehs = torch.randn(2, 7, cross_dim, generator=g)
            ts = torch.tensor([10.0, 980.5])
            out[f"{tag}.sample"] = sample
            out[f"{tag}.encoder_hidden_states"] = ehs
            out[f"{tag}.timesteps"] = ts
            out[f"{tag}.out_per_batch"] = unet(sample, ts, ehs).sample
            out[f"{tag}.out_t500"] = unet(sample, 500, ehs).sample
    return out


def group(write) -> None:
    torch.set_num_threads(1)
    tiny = FIXTURES / "tiny-sd"

    # ---- SD 1.x-like UNet, saved as the tiny-sd model's unet ----
    unet = _init_unet(SD1_UNET, 0)
    copy.deepcopy(unet).half().save_pretrained(tiny / "unet", safe_serialization=True)
    cases = _unet_cases(unet, 32, 4, [(16, 16), (8, 12), (7, 9)], 1)
    t_emb = unet.time_proj(torch.tensor([10.0, 980.5]))
    cases["time_proj.t10_980_5"] = t_emb
    cases["time_embedding.t10_980_5"] = unet.time_embedding(t_emb).detach()
    write(
        "models_unet_sd1.safetensors",
        cases,
        {"weights": "tiny-sd/unet", "sizes": json.dumps([[16, 16], [8, 12], [7, 9]])},
    )

    # ---- SD 2.x-like and inpainting UNets, weights in the fixture file ----
    for name, cfg, seed, cross, in_ch, sizes in [
        ("sd2", SD2_UNET, 2, 24, 4, [(16, 16), (8, 12)]),
        ("inpaint", INPAINT_UNET, 3, 32, 9, [(8, 8)]),
    ]:
        unet = _init_unet(cfg, seed)
        write(f"models_unet_{name}.weights.safetensors", _f16_state(unet), {})
        write(
            f"models_unet_{name}.safetensors",
            _unet_cases(unet, cross, in_ch, sizes, seed + 10),
            {"config": _config_json(unet), "sizes": json.dumps(sizes)},
        )

    # ---- SD 1.x-like VAE, saved as the tiny-sd model's vae ----
    vae = _init_vae(SD1_VAE, 4, f16=True)
    copy.deepcopy(vae).half().save_pretrained(tiny / "vae", safe_serialization=True)
    g = torch.Generator().manual_seed(5)
    image = torch.rand(2, 3, 32, 24, generator=g) * 2 - 1
    latents = torch.randn(1, 4, 8, 12, generator=g)
    with torch.no_grad():
        post = vae.encode(image).latent_dist
        sample = post.sample(generator=torch.Generator().manual_seed(42))
        decoded = vae.decode(latents).sample
        # tiled decode: same weights, a config with sample_size 16 (latent tiles of 8)
        tiled_cfg = dict(SD1_VAE, sample_size=16)
        vae_t = AutoencoderKL(**tiled_cfg).eval()
        vae_t.load_state_dict(vae.state_dict())
        vae_t.enable_tiling()
        tiled_latents = torch.randn(1, 4, 12, 20, generator=g)
        tiled = vae_t.decode(tiled_latents).sample
    write(
        "models_vae_sd1.safetensors",
        {
            "image": image,
            "mean": post.mean,
            "logvar": post.logvar,
            "std": post.std,
            "sample_seed42": sample,
            "latents": latents,
            "decoded": decoded,
            "tiled.latents": tiled_latents,
            "tiled.decoded": tiled,
        },
        {"weights": "tiny-sd/vae", "tiled_sample_size": "16", "sample_seed": "42"},
    )

    # ---- a float32 VAE with the old attention key names ----
    vae = _init_vae(OLD_VAE, 6, f16=False)
    old = {}
    for k, v in vae.state_dict().items():
        k2 = (
            k.replace(".to_q.", ".query.")
            .replace(".to_k.", ".key.")
            .replace(".to_v.", ".value.")
            .replace(".to_out.0.", ".proj_attn.")
        )
        if k2 != k and k2.endswith("weight") and ".proj_attn." not in k2:
            v = v[:, :, None, None]  # some old files hold q/k/v as 1x1 conv weights
        old[k2] = v.detach().contiguous()
    assert any(".query." in k for k in old), "expected mid-block attention keys to rename"
    g = torch.Generator().manual_seed(7)
    image = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    latents = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        post = vae.encode(image).latent_dist
        decoded = vae.decode(latents).sample
    write("models_vae_old_keys.weights.safetensors", old, {})
    write(
        "models_vae_old_keys.safetensors",
        {"image": image, "mean": post.mean, "logvar": post.logvar, "latents": latents, "decoded": decoded},
        {"config": _config_json(vae)},
    )
