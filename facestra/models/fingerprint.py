"""Which weights a model holds, as one digest: what a calibration or a report records to name its model.

A calibration is valid for the weights it was measured with and no other. Hashing the file would change
when the same weights are saved again (with a calibration inside, say), so a network's digest covers its
state dict: each tensor's name, dtype, shape and bytes, in key order. An ONNX model, whose weights live
in the graph, is named by the digest of its file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an ONNX model is named without torch
    from torch import nn


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model: nn.Module) -> str:
    """The digest of ``model``'s weights (see the module's docstring); the same on any device and in any
    memory format."""
    onnx_path = getattr(model, "path", None)
    if onnx_path is not None and getattr(model, "session", None) is not None:
        return file_sha256(onnx_path)
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
