"""The one image pipeline: every network input, in training, validation, embed and verify, is made here.

decode (a cut-short file is refused, not half-decoded) -> fit to the input size -> BGR to RGB -> normalise.

Fitting is the paper's preprocessing (appendix B.2): the shorter edge is resized to the input size and the
centre cropped, so a 128x112 image keeps its proportions. Training fits every image; embed and verify fit
only when asked (``--resize``) and otherwise refuse an image of another size, which is almost always a face
that was never aligned. Because both paths call :func:`load_pixels`, a validation or verify run sees
exactly the pixels a training step would see for the same file.

Normalisation is ``(x - mean) / std`` on RGB, with the model's own :class:`InputConvention`: facestra's
networks take ``(x - 127.5) / 128``, arcface_torch's weights ``(x/255 - 0.5) / 0.5``; the model file says
which (:mod:`facestra.models.registry`). Workers hand over uint8 pixels (a quarter of the bytes of
floats) and :func:`normalize` runs on a whole batch on the model's device; :func:`image_to_tensor` is the
same arithmetic for one image. This module imports torch only inside the functions that make tensors, so
that the alignment workers, which only decode, start without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facestra.data.truncation import truncation_problem
from facestra.errors import UserError
from facestra.io import read_file

if TYPE_CHECKING:
    import torch

PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0


@dataclass(frozen=True)
class InputConvention:
    """How RGB pixels in [0, 255] become a network's input: ``(x - mean) / std``.

    It belongs to the weights, not to the architecture: an iresnet50 trained by facestra takes facestra's
    convention, the same network holding arcface_torch's weights takes arcface_torch's.
    """

    mean: float = PIXEL_MEAN
    std: float = PIXEL_SCALE

    def as_dict(self) -> dict[str, float | str]:
        return {"colour": "RGB", "mean": float(self.mean), "std": float(self.std)}


FACESTRA_INPUT = InputConvention(PIXEL_MEAN, PIXEL_SCALE)
ARCFACE_INPUT = InputConvention(127.5, 127.5)  # arcface_torch's (x / 255 - 0.5) / 0.5
RAW_INPUT = InputConvention(0.0, 1.0)  # mxnet-era ONNX models that subtract and scale inside the graph


class ImageSizeError(UserError):
    """An image of another size than the network's input, where fitting it was not asked for."""


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Encoded bytes -> BGR uint8; a :class:`UserError` naming ``source`` if they are cut short or unreadable."""
    import cv2

    problem = truncation_problem(data)
    if problem is not None:
        raise UserError(f"{source}: {problem}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    except cv2.error as error:  # a header OpenCV refuses (above CV_IO_MAX_IMAGE_PIXELS, or a bad size)
        raise UserError(f"{source}: not a readable image ({_opencv_reason(error)})") from None
    if image is None:
        raise UserError(f"{source}: not a readable image (empty, truncated or unknown format)")
    return image


def _opencv_reason(error: Exception) -> str:
    text = str(error)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return "its header declares more pixels than OpenCV decodes"
    return text.strip().splitlines()[-1] if text.strip() else "OpenCV refused it"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as BGR uint8; a missing or undecodable file is a :class:`UserError`."""
    path = Path(path)
    try:
        data = read_file(path)
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    return decode_image(data, str(path))


def fit_to_size(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize so the image covers ``size`` (H, W), then centre-crop: the shorter-edge resize + crop."""
    height, width = size
    if bgr.shape[0] == height and bgr.shape[1] == width:
        return bgr
    import cv2

    scale = max(height / bgr.shape[0], width / bgr.shape[1])
    resized_h, resized_w = max(height, round(bgr.shape[0] * scale)), max(width, round(bgr.shape[1] * scale))
    resized = cv2.resize(bgr, (resized_w, resized_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (resized_h - height) // 2, (resized_w - width) // 2
    return resized[top : top + height, left : left + width]


def load_pixels(data: bytes, source: str, size: tuple[int, int], *, fit: bool = True, flip: bool = False) -> np.ndarray:
    """Encoded image -> H x W x 3 RGB uint8 at ``size``, mirrored when ``flip``: what the network sees.

    With ``fit=False`` an image of another size is an :class:`ImageSizeError` instead of being fitted.
    """
    image = decode_image(data, source)
    height, width = size
    if image.shape[:2] != (height, width):
        if not fit:
            raise ImageSizeError(
                f"{source}: image is {image.shape[1]}x{image.shape[0]} but the model takes {width}x{height}; "
                "align the faces first with `facestra align` (or pass --resize)"
            )
        image = fit_to_size(image, size)
    rgb = image[:, ::-1, ::-1] if flip else image[:, :, ::-1]
    return np.ascontiguousarray(rgb)


def normalize(pixels: torch.Tensor, convention: InputConvention = FACESTRA_INPUT) -> torch.Tensor:
    """... x H x W x 3 RGB uint8 -> ... x 3 x H x W float: ``(x - mean) / std`` (facestra's by default).

    For a batch the result is channels-last in memory for free, since the pixels already are.
    """
    return (pixels.movedim(-1, -3).float() - convention.mean) / convention.std


def image_to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """One H x W x 3 BGR uint8 image (as OpenCV decodes it) -> its normalised 3 x H x W RGB tensor."""
    import torch

    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {bgr.shape}")
    return normalize(torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1]))).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`image_to_tensor` (for figures): 3 x H x W normalised RGB -> H x W x 3 BGR uint8."""
    rgb = (tensor.detach().cpu().float() * PIXEL_SCALE + PIXEL_MEAN).clamp(0, 255).round().byte().numpy()
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1])
