"""arcface_torch's IResNet file layout spelled out independently of facestra: random backbone.pth tensors
under its names and shapes, its forward pass op by op with torch.nn.functional, and its preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

LAYERS = {"iresnet18": [2, 2, 2, 2], "iresnet50": [3, 4, 14, 3]}


def _bn(prefix: str, channels: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": 1 + 0.1 * torch.randn(channels, generator=generator),
        f"{prefix}.bias": 0.1 * torch.randn(channels, generator=generator),
        f"{prefix}.running_mean": 0.1 * torch.randn(channels, generator=generator),
        f"{prefix}.running_var": 0.5 + torch.rand(channels, generator=generator),
        f"{prefix}.num_batches_tracked": torch.tensor(100),
    }


def _conv(key: str, out_c: int, in_c: int, k: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {key: torch.randn(out_c, in_c, k, k, generator=generator) * (2.0 / (in_c * k * k)) ** 0.5}


def arcface_state_dict(arch: str, embedding: int = 512, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the names and shapes of arcface_torch's iresnet (backbones/iresnet.py)."""
    g = torch.Generator().manual_seed(seed)
    state = {**_conv("conv1.weight", 64, 3, 3, g), **_bn("bn1", 64, g), "prelu.weight": torch.full((64,), 0.25)}
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], LAYERS[arch]), start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            state |= _bn(f"{p}.bn1", inplanes, g) | _conv(f"{p}.conv1.weight", planes, inplanes, 3, g)
            state |= _bn(f"{p}.bn2", planes, g) | {f"{p}.prelu.weight": 0.25 + 0.05 * torch.randn(planes, generator=g)}
            state |= _conv(f"{p}.conv2.weight", planes, planes, 3, g) | _bn(f"{p}.bn3", planes, g)
            if block == 0:
                state |= _conv(f"{p}.downsample.0.weight", planes, inplanes, 1, g) | _bn(f"{p}.downsample.1", planes, g)
            inplanes = planes
    state |= _bn("bn2", 512, g)
    state["fc.weight"] = torch.randn(embedding, 512 * 49, generator=g) / (512 * 49) ** 0.5
    state["fc.bias"] = 0.01 * torch.randn(embedding, generator=g)
    state |= _bn("features", embedding, g)
    state["features.weight"] = torch.ones(embedding)  # arcface_torch freezes it at 1
    return state


def functional_forward(state: dict[str, torch.Tensor], arch: str, x: torch.Tensor) -> torch.Tensor:
    """arcface_torch's IResNet.forward in eval mode, op by op on the state dict."""

    def bn(t, p):
        return F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"], state[f"{p}.bias"], False, 0.0, 1e-5)

    def conv(t, key, stride=1, padding=1):
        return F.conv2d(t, state[key], stride=stride, padding=padding)

    t = F.prelu(bn(conv(x, "conv1.weight"), "bn1"), state["prelu.weight"])
    for stage, blocks in enumerate(LAYERS[arch], start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            stride = 2 if block == 0 else 1
            out = F.prelu(bn(conv(bn(t, f"{p}.bn1"), f"{p}.conv1.weight"), f"{p}.bn2"), state[f"{p}.prelu.weight"])
            out = bn(conv(out, f"{p}.conv2.weight", stride=stride), f"{p}.bn3")
            shortcut = bn(conv(t, f"{p}.downsample.0.weight", stride=2, padding=0), f"{p}.downsample.1") if block == 0 else t
            t = out + shortcut
    t = bn(t, "bn2").flatten(1)
    return F.batch_norm(F.linear(t, state["fc.weight"], state["fc.bias"]), state["features.running_mean"],
                        state["features.running_var"], state["features.weight"], state["features.bias"], False, 0.0, 1e-5)


def arcface_inference_input(bgr_images: list[np.ndarray]) -> torch.Tensor:
    """arcface_torch inference.py's preprocessing: BGR -> RGB, HWC -> CHW, (x / 255 - 0.5) / 0.5."""
    batch = np.stack([cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1) for image in bgr_images]).astype(np.float32)
    return torch.from_numpy(batch).div(255).sub(0.5).div(0.5)
