"""Test helper for the alignment tests: a smooth synthetic face rendered under any similarity transform.

The face is a function of template coordinates (Gaussian blobs on the five ArcFace points over a smooth
oval), so it can be rendered directly into the 112x112 crop or into a larger image at a known transform,
with OpenCV's pixel convention (pixel (row i, col j) sits at x=j, y=i).
"""

from __future__ import annotations

import numpy as np

from facestra.align.geometry import ARCFACE_TEMPLATE_112

BLOB_COLOURS = np.array(
    [[20, 40, 200], [20, 200, 40], [200, 40, 20], [180, 180, 30], [30, 160, 180]], dtype=np.float64
)


def face_value(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BGR float image of the face at template coordinates (u, v) (arrays of equal shape)."""
    oval = np.exp(-(((u - 56.0) / 38.0) ** 2 + ((v - 68.0) / 48.0) ** 2) ** 2)
    out = np.empty(u.shape + (3,), dtype=np.float64)
    out[...] = 40.0 + 120.0 * oval[..., None]
    for (cx, cy), colour in zip(ARCFACE_TEMPLATE_112, BLOB_COLOURS):
        blob = np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * 3.5**2))
        out += blob[..., None] * (colour - 60.0)
    return out


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    """2x3 matrix mapping template coordinates to image coordinates."""
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, [[tx], [ty]]])


def render(transform: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The face as seen through ``transform`` (template -> image) in an image of ``shape`` (H, W), uint8."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    linear, shift = transform[:, :2], transform[:, 2]
    inverse = np.linalg.inv(linear)
    u = inverse[0, 0] * (xs - shift[0]) + inverse[0, 1] * (ys - shift[1])
    v = inverse[1, 0] * (xs - shift[0]) + inverse[1, 1] * (ys - shift[1])
    return np.clip(np.rint(face_value(u, v)), 0, 255).astype(np.uint8)


def landmarks_under(transform: np.ndarray) -> np.ndarray:
    """Where the template's five points land under ``transform`` (5x2)."""
    return ARCFACE_TEMPLATE_112 @ transform[:, :2].T + transform[:, 2]
