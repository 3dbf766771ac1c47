"""Group `distill`: a guidance-conditioned UNet (`time_cond_proj_dim`, as LCM and
guided distillation use) and diffusers' guidance-scale embedding.

Writes `fixtures/distill_unet_cond.safetensors`: the UNet's f16-exact weights under
`weights.`, a batch of 2 (sample, per-row timesteps, encoder states), the guidance
embedding of w = [1.5, 6.5] (`LatentConsistencyModelPipeline.get_guidance_scale_embedding`,
dim 16; also dim 7 for the odd-width padding) and the UNet output with and without
`timestep_cond`. Config in the metadata.
"""

from __future__ import annotations

import json

import torch
from diffusers import LatentConsistencyModelPipeline, UNet2DConditionModel

COND_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=8,
    time_cond_proj_dim=16,
)


def group(write) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(20)
    unet = UNet2DConditionModel(**COND_UNET).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
            p.copy_(p.half().float())
    g = torch.Generator().manual_seed(21)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    ehs = torch.randn(2, 7, 16, generator=g)
    ts = torch.tensor([999.0, 249.0])
    w = torch.tensor([1.5, 6.5])
    emb = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=16)
    emb7 = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=7)
    with torch.no_grad():
        out_cond = unet(sample, ts, ehs, timestep_cond=emb).sample
        out_plain = unet(sample, ts, ehs).sample
    tensors = {f"weights.{k}": v.detach().half().contiguous() for k, v in unet.state_dict().items()}
    tensors.update(
        {
            "sample": sample,
            "encoder_hidden_states": ehs,
            "timesteps": ts,
            "w": w,
            "w_embedding": emb,
            "w_embedding_dim7": emb7,
            "out_cond": out_cond,
            "out_plain": out_plain,
        }
    )
    cfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    write("distill_unet_cond.safetensors", tensors, {"config": json.dumps(cfg)})
