"""The skin texture: how a person's gain pattern is laid out, made, and multiplied onto a drawn face.

Moles, freckles and blotches are what a network can learn and raw pixels cannot use, so every person gets a
pattern of their own. Making it (once per person) and applying it (once per photo) share one convention, a
uint8 gain over a fixed patch of the frontal face plane, which is why both live here and nowhere else.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Texture patch (canonical face plane) resolution and extent in head units.
TEXTURE_SIZE = (64, 52)  # rows, cols
TEXTURE_X = (-1.25, 1.25)
TEXTURE_Y = (-1.45, 1.7)
#: Texture gains are stored as uint8 with this value meaning 1.0 (warping bytes is 4x cheaper than floats).
TEXTURE_ONE = 128


def identity_texture(rng: np.random.Generator, head_w: float) -> np.ndarray:
    """A per-person skin pattern (blotches, cheek colour, moles, freckles), precomputed once per identity.

    Marks like moles and freckles keep their place on the face through any lighting, which makes them the
    cues a network learns and raw pixels cannot use once pose and light move them and change their contrast.
    """
    rows, cols = TEXTURE_SIZE
    coarse = rng.normal(0.0, 1.0, (5, 4, 3)).astype(np.float32)
    coarse[..., :] = coarse[..., :1] * 0.8 + coarse * 0.2  # mostly luminance, a little colour
    texture = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC) * np.float32(rng.uniform(0.06, 0.16))
    # texel centres in head units: x along the columns, y down the rows
    x = TEXTURE_X[0] + (np.arange(cols) + 0.5) / cols * (TEXTURE_X[1] - TEXTURE_X[0])
    y = TEXTURE_Y[0] + (np.arange(rows) + 0.5) / rows * (TEXTURE_Y[1] - TEXTURE_Y[0])
    blush = rng.uniform(0.0, 0.2)
    cheeks = [(side * 0.5, 0.35, np.sqrt(0.05), 1.0) for side in (-1.0, 1.0)]
    cheek = _gaussian_spots(cheeks, x, y)
    texture[..., 2] += blush * cheek
    texture[..., 0] -= 0.5 * blush * cheek
    spots = [(rng.uniform(-0.75, 0.75), rng.uniform(-0.6, 1.1), rng.uniform(0.035, 0.08), rng.uniform(0.35, 0.7))
             for _ in range(int(rng.integers(1, 6)))]
    if rng.uniform() < 0.35:  # freckles over the nose and cheeks
        spots += [(rng.normal(0.0, 0.35), rng.normal(0.2, 0.15), rng.uniform(0.02, 0.03), rng.uniform(0.15, 0.3))
                  for _ in range(int(rng.integers(12, 35)))]
    texture -= _gaussian_spots(spots, x, y)[..., None]
    inside = (x[None, :] / (head_w * 0.95)) ** 2 + (y[:, None] / 1.35) ** 2
    alpha = np.clip((1.0 - inside) / 0.25, 0.0, 1.0).astype(np.float32)
    gain = (1.0 + texture * alpha[..., None]) * TEXTURE_ONE
    return np.clip(np.round(gain), 0, 255).astype(np.uint8)


def _gaussian_spots(spots: list[tuple[float, float, float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sum of ``strength * exp(-((x - cx)² + (y - cy)²) / radius²)`` over ``(cx, cy, radius, strength)`` spots,
    on the grid ``y`` (rows) x ``x`` (columns): float32.

    A round Gaussian is the product of one along x and one along y, so all the spots together are a single
    (rows x spots) @ (spots x columns) product instead of a full-grid exponential per spot.
    """
    cx, cy, radius, strength = (np.asarray(v, dtype=np.float64) for v in zip(*spots))
    along_x = np.exp(-np.square(x[None, :] - cx[:, None]) / np.square(radius)[:, None])
    along_y = np.exp(-np.square(y[None, :] - cy[:, None]) / np.square(radius)[:, None]) * strength[:, None]
    return (along_y.T @ along_x).astype(np.float32)


def apply_texture(canvas: np.ndarray, texture: np.ndarray, corners: np.ndarray, shape: tuple[int, int],
                  offset: tuple[int, int]) -> None:
    """Multiply the canvas by a texture's gain, the texture's corners landing on ``corners`` (TL, TR, BL, BR px).

    The affine map through three corners is the pose's local approximation of the face plane. ``texture`` is
    the part of the whole (``shape`` rows, cols) at ``offset`` (column, row) where the gain is not one, as
    BGRA whose fourth channel is ignored (see :meth:`facestra.synth.sketch.Sketch.texture`), so the warp is
    done only where it changes something: within the bounding box of the four corners, over the texels that
    vary and the one texel around them that bilinear interpolation blends in.
    """
    rows, cols = shape
    src = np.float32([[0.0, 0.0], [cols, 0.0], [0.0, rows]]) - 0.5
    matrix = cv2.getAffineTransform(src, corners[:3].astype(np.float32))
    column, row = offset
    part_rows, part_cols = texture.shape[:2]
    reach = np.array([[column - 1, row - 1], [column + part_cols, row - 1], [column - 1, row + part_rows],
                      [column + part_cols, row + part_rows]], dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
    height, width = canvas.shape[:2]
    x0, y0 = np.clip(np.floor(np.maximum(corners.min(axis=0), reach.min(axis=0))).astype(int), 0, [width, height])
    x1, y1 = np.clip(np.ceil(np.minimum(corners.max(axis=0), reach.max(axis=0))).astype(int) + 1, 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return
    matrix[:, 2] += matrix[:, :2] @ np.array([column, row], dtype=np.float64) - [x0, y0]
    warped = cv2.warpAffine(texture, matrix, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(TEXTURE_ONE,) * 4)
    warped = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
    region = canvas[y0:y1, x0:x1]
    region[...] = cv2.multiply(region, warped, scale=1.0 / TEXTURE_ONE)
