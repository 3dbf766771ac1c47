"""Golden values from PyTorch for the tensor crate's layer ops (tensor/tests/ops_layers_torch.rs).

Run by hand from the repository root (CI never runs Python):

    /work/venv/bin/python scripts/fixtures_ops_layers.py

Writes fixtures/ops_layers.safetensors: for each case NAME, its inputs (NAME.x, NAME.w,
NAME.b, NAME.index) and torch's output NAME.y, all float32. The hyper-parameters of each
case are repeated in the Rust test; keep the two in step.
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

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

save_file(out, "fixtures/ops_layers.safetensors")
print(f"wrote {len(out)} tensors")
