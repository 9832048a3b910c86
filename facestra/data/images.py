"""The one pixel convention every model input goes through, in training, embedding and verification.

Images are decoded by OpenCV as BGR uint8; networks take RGB float tensors normalised as in the paper
(appendix B.2): ``(x - 127.5) / 128``. Keeping this in one place is what makes a checkpoint trained by
``facestra train`` give the same embeddings in ``facestra embed`` and ``facestra verify``.
"""

from __future__ import annotations

import numpy as np
import torch

PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0


def image_to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """HxWx3 BGR uint8 image -> 3xHxW float32 RGB tensor, normalised."""
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {bgr.shape}")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))
    return (torch.from_numpy(rgb).float() - PIXEL_MEAN) / PIXEL_SCALE


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`image_to_tensor` (for figures): 3xHxW normalised RGB -> HxWx3 BGR uint8."""
    rgb = (tensor.detach().cpu().float() * PIXEL_SCALE + PIXEL_MEAN).clamp(0, 255).round().byte().numpy()
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1])
