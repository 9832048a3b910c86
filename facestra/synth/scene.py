"""One synthetic photograph: a person from :mod:`facestra.synth.face` plus the nuisance real photos have.

A photo is first *sampled* (:func:`sample_photo`: every random choice, as a small frozen dataclass) and then
*rendered* (:func:`render_photo`). The split lets a resumed job recompute the true landmarks of an image that is
already on disk without drawing it again (:func:`photo_landmarks`), and keeps rendering a pure function of the
sampled values.

The nuisance, each scaled by ``difficulty`` (1.0 is the calibrated default): head pose (yaw, pitch, roll), scale
and position; expression; light direction, ambient level, colour and exposure; glasses, a hat or a hand over the
face; a cluttered background and clothes; sometimes a second, smaller face; blur, low resolution, sensor noise
and JPEG quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facestra.synth.face import FaceParts, draw_face, landmarks_3d
from facestra.synth.identity import Expression, Identity, Pose, sample_identity
from facestra.synth.projection import Projector
from facestra.synth.sketch import fill, line


@dataclass(frozen=True)
class Lighting:
    """Directional light (unit vector in camera space, z towards the camera), ambient share, colour gains."""

    direction: tuple[float, float, float]
    ambient: float
    gains: tuple[float, float, float]


@dataclass(frozen=True)
class Photo:
    """Every random choice of one image of a person."""

    size: int
    pose: Pose
    expression: Expression
    lighting: Lighting
    clothes: tuple[float, float, float]
    occluder: str  # "", "glasses", "sunglasses", "hat", "hand"
    occluder_seed: int
    background_seed: int
    distractor: Identity | None
    distractor_pose: Pose | None
    blur_sigma: float
    downscale: float
    noise_sigma: float
    noise_seed: int
    jpeg_quality: int


def _clamp(value: float, bound: float) -> float:
    """``value`` limited to [-bound, bound] (``np.clip`` costs microseconds on a scalar)."""
    return min(max(value, -bound), bound)


def _maybe(rng: np.random.Generator, probability: float, value: float) -> float:
    return value if rng.uniform() < probability else 0.0


def sample_photo(rng: np.random.Generator, size: int = 250, difficulty: float = 1.0) -> Photo:
    """Draw the nuisance of one photo; ``difficulty`` scales pose ranges and how often things go wrong."""
    d = float(difficulty)
    unit = size / 250.0
    pose = Pose(
        yaw=_clamp(float(rng.normal(0.0, 0.32 * d)), 0.75),
        pitch=_clamp(float(rng.normal(0.0, 0.14 * d)), 0.4),
        roll=_clamp(float(rng.normal(0.0, 0.12 * d)), 0.45),
        centre=(float(size * 0.5 + rng.normal(0.0, 6.0 * d * unit)), float(size * 0.47 + rng.normal(0.0, 6.0 * d * unit))),
        scale=float(size * rng.uniform(0.19 - 0.025 * d, 0.19 + 0.03 * d)),
    )
    expression = Expression(
        smile=_maybe(rng, 0.4 * d, rng.uniform(0.2, 1.0)),
        mouth_open=_maybe(rng, 0.25 * d, rng.uniform(0.2, 1.0)),
        eyes_closed=_maybe(rng, 0.12 * d, rng.uniform(0.4, 1.0)),
        brows_raised=_maybe(rng, 0.2 * d, rng.uniform(0.3, 1.0)),
    )
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    elevation = rng.uniform(0.0, min(1.4, 0.9 * d))
    direction = (math.sin(elevation) * math.cos(azimuth), math.sin(elevation) * math.sin(azimuth), math.cos(elevation))
    lighting = Lighting(
        direction=(float(direction[0]), float(direction[1]), float(direction[2])),
        ambient=float(rng.uniform(max(0.15, 0.6 - 0.4 * d), 0.75)),
        gains=tuple(np.exp(rng.normal(0.0, 0.1 * d, 3) + rng.normal(0.05, 0.22 * d)).tolist()),
    )
    roll = rng.uniform()
    occluder = ""
    if roll < 0.1 * d:
        occluder = "glasses"
    elif roll < 0.14 * d:
        occluder = "sunglasses"
    elif roll < 0.22 * d:
        occluder = "hat"
    elif roll < 0.3 * d:
        occluder = "hand"
    distractor = distractor_pose = None
    if rng.uniform() < 0.15 * d:
        distractor = sample_identity(rng)
        corner_x = rng.choice([0.12, 0.88]) * size
        distractor_pose = Pose(
            yaw=float(rng.normal(0.0, 0.3)), pitch=float(rng.normal(0.0, 0.1)), roll=float(rng.normal(0.0, 0.1)),
            centre=(float(corner_x + rng.normal(0, 5 * unit)), float(size * rng.uniform(0.15, 0.4))),
            scale=float(pose.scale * rng.uniform(0.3, 0.55)),
        )
    return Photo(
        size=size,
        pose=pose,
        expression=expression,
        lighting=lighting,
        clothes=tuple(rng.uniform(0, 255, 3).tolist()),
        occluder=occluder,
        occluder_seed=int(rng.integers(2**31)),
        background_seed=int(rng.integers(2**31)),
        distractor=distractor,
        distractor_pose=distractor_pose,
        blur_sigma=_maybe(rng, 0.35 * d, rng.uniform(0.6, 1.8)),
        downscale=_maybe(rng, 0.2 * d, rng.uniform(1.5, 3.5)),
        noise_sigma=_maybe(rng, 0.5 * d, rng.uniform(2.0, 12.0)),
        noise_seed=int(rng.integers(2**31)),
        jpeg_quality=int(rng.integers(max(20, int(95 - 65 * d)), 96)),
    )


def photo_landmarks(identity: Identity, photo: Photo) -> np.ndarray:
    """The five true landmarks (pixels) of the main face, without drawing anything."""
    projector = Projector(photo.pose, identity)
    return projector.project(landmarks_3d(identity, photo.expression, projector))


def render_photo(identity: Identity, photo: Photo, parts: FaceParts | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw the photo: a BGR uint8 image (before JPEG) and the main face's five landmarks (5x2 float pixels).

    ``parts``: ``face_parts(identity)``, built once when drawing many photos of the person.
    """
    size = photo.size
    canvas = _background(size, np.random.default_rng(photo.background_seed))
    if photo.distractor is not None and photo.distractor_pose is not None:
        draw_face(canvas, photo.distractor, photo.distractor_pose, Expression(), _dim(photo.clothes))
    landmarks = draw_face(canvas, identity, photo.pose, photo.expression, photo.clothes, parts=parts)
    if photo.occluder:
        _draw_occluder(canvas, identity, photo, np.random.default_rng(photo.occluder_seed))
    image = _light(canvas, identity, photo)
    image = _degrade(image, photo)
    return image, landmarks


def _dim(colour) -> tuple[float, float, float]:
    return tuple(float(c) * 0.7 for c in colour)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A cheap cluttered scene: a colour gradient, a blotchy texture and a few random shapes."""
    corners = rng.uniform(20, 235, (2, 2, 3)).astype(np.float32)
    coarse = cv2.resize(corners, (6, 6), interpolation=cv2.INTER_LINEAR) + rng.normal(0.0, 25.0, (6, 6, 3)).astype(np.float32)
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    canvas = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(3, 12))):
        colour = tuple(rng.uniform(0, 255, 3).tolist())
        kind = int(rng.integers(4))
        a = rng.uniform(-0.1, 1.1, 2) * size
        b = a + rng.normal(0.0, 0.3, 2) * size
        (ax, ay), (bx, by) = a.tolist(), b.tolist()
        if kind == 0:
            cv2.rectangle(canvas, (int(ax), int(ay)), (int(bx), int(by)), colour, -1)
        elif kind == 1:
            cv2.circle(canvas, (int(ax), int(ay)), int(abs(bx - ax) * 0.5) + 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            cv2.line(canvas, (int(ax), int(ay)), (int(bx), int(by)), colour, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            triangle = (a + rng.normal(0.0, 0.15, (3, 2)) * size).astype(np.int32)
            cv2.fillPoly(canvas, [triangle], colour, cv2.LINE_AA)
    return canvas


def _draw_occluder(canvas: np.ndarray, identity: Identity, photo: Photo, rng: np.random.Generator) -> None:
    i = identity
    p = Projector(photo.pose, identity)
    colour = tuple(float(v) for v in rng.uniform(0, 200, 3))
    if photo.occluder in ("glasses", "sunglasses"):
        half = i.eye_w * rng.uniform(1.3, 1.7)
        tall = half * rng.uniform(0.55, 0.9)
        t = np.linspace(0.0, 2.0 * np.pi, 14, endpoint=False)
        for side in (-1.0, 1.0):
            lens = np.column_stack([side * i.eye_dx + half * np.cos(t), i.eye_y + 0.02 + tall * np.sin(t)])
            points = p.project(p.lift(lens, 0.12))
            if photo.occluder == "sunglasses":
                fill(canvas, points, (25, 25, 25))
            line(canvas, points, colour, max(1.0, 0.03 * p.scale), closed=True)
            arm = np.array([[side * (i.eye_dx + half), i.eye_y, 0.5], [side * i.head_w, i.eye_y, -0.1]])
            line(canvas, p.project(arm), colour, max(1.0, 0.025 * p.scale))
        bridge = np.array([[-i.eye_dx + half, i.eye_y], [i.eye_dx - half, i.eye_y]])
        line(canvas, p.project(p.lift(bridge, 0.15)), colour, max(1.0, 0.03 * p.scale))
    elif photo.occluder == "hat":
        low = i.eye_y - i.brow_gap - rng.uniform(0.12, 0.3)
        theta = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
        rows = []
        axes = np.array([i.head_w + 0.12, i.head_h + 0.15, 1.12])
        for level in np.linspace(-1.0, low / axes[1], 5):
            r = np.sqrt(max(0.0, 1.0 - level**2))
            rows.append(np.column_stack([axes[0] * r * np.cos(theta), np.full_like(theta, axes[1] * level - 0.15),
                                         axes[2] * r * np.sin(theta)]))
        crown = p.project(np.vstack(rows))
        fill(canvas, cv2.convexHull(crown.astype(np.float32)).reshape(-1, 2), colour)
        brim_r = rng.uniform(1.2, 1.7)
        brim = np.column_stack([axes[0] * brim_r * np.cos(theta), np.full_like(theta, low),
                                axes[2] * brim_r * np.sin(theta) + 0.1])
        fill(canvas, p.project(brim), tuple(c * 0.8 for c in colour))
    else:  # a hand over part of the face
        landmarks = p.project(landmarks_3d(i, photo.expression, p))
        target = landmarks[rng.integers(5)] + rng.normal(0.0, 0.25, 2) * p.scale
        skin = tuple(float(v) for v in rng.uniform([40, 60, 100], [200, 215, 250]))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        palm = np.column_stack([np.cos(np.linspace(0, 2 * np.pi, 16)), np.sin(np.linspace(0, 2 * np.pi, 16))])
        radius = p.scale * rng.uniform(0.3, 0.45)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = target - rot @ np.array([0.0, -radius * 1.2])
        fill(canvas, (palm * [radius, radius * 1.2]) @ rot.T + centre, skin)
        for finger in range(4):
            offset = (finger - 1.5) * radius * 0.45
            base = np.array([offset, -radius * 0.9])
            tip = np.array([offset * 1.2, -radius * (2.0 + 0.2 * (finger % 3))])
            line(canvas, np.vstack([base, tip]) @ rot.T + centre, skin, radius * 0.38)
            line(canvas, np.vstack([tip, tip + [0.0, 1.0]]) @ rot.T + centre, tuple(c * 0.8 for c in skin), 1.0)


#: Lighting is smooth: it is computed on this many grid cells a side and resized to the photo.
_LIGHT_GRID = 24


def _light(canvas: np.ndarray, identity: Identity, photo: Photo) -> np.ndarray:
    """Shade the head as a lit ellipsoid (screen-space normals of its outline) and tint the whole photo.

    The shading is smooth, so it is computed on a coarse grid, encoded as uint8 gains (128 = 1.0) and applied
    with one saturating ``cv2.multiply``. Grid coordinates are whitened by the Cholesky factor L of the
    outline's ellipse (outline = centre + L * unit circle), which makes the outline the unit circle; L is
    lower triangular, so each whitened coordinate is a sum of a row and a column term.
    """
    size = photo.size
    lit = photo.lighting
    p = Projector(photo.pose, identity)
    (cx, cy), ((a, b), (_, c)) = p.silhouette_ellipse(
        (identity.head_w, (identity.head_h + identity.chin_y) * 0.5, 1.0), (0.0, 0.1, 0.0))
    l11 = math.sqrt(a)
    l21 = b / l11
    l22 = math.sqrt(c - l21 * l21)
    coords = (np.arange(_LIGHT_GRID) + 0.5) * (size / _LIGHT_GRID)
    across = ((coords - cx) / l11)[None, :]  # whitened x: columns only
    down = ((coords - cy) / l22)[:, None] - (l21 / l22) * across  # whitened y
    r2 = across * across + down * down
    nz = np.sqrt(np.maximum(1.0 - r2, 0.0))
    lx, ly, lz = lit.direction
    diffuse = np.maximum(across * lx + down * ly + nz * lz, 0.0)
    face = lit.ambient + (1.0 - lit.ambient) * 1.15 * diffuse
    relative = coords / size - 0.5
    scene = 0.55 + 0.45 * lit.ambient + (1.0 - lit.ambient) * (relative[None, :] * lx + relative[:, None] * ly)
    weight = np.minimum(np.maximum((1.25 - r2) / 0.3, 0.0), 1.0)
    shade = (face * weight + scene * (1.0 - weight))[..., None] * np.asarray(lit.gains)
    gains = np.minimum(np.maximum(shade * 128.0, 0.0), 255.0).astype(np.uint8)
    gains = cv2.resize(gains, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(canvas, gains, scale=1.0 / 128.0)


def _degrade(image: np.ndarray, photo: Photo) -> np.ndarray:
    size = photo.size
    if photo.downscale > 0.0:
        small = max(8, int(size / photo.downscale))
        image = cv2.resize(cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                           interpolation=cv2.INTER_LINEAR)
    if photo.blur_sigma > 0.0:
        image = gaussian_blur(image, photo.blur_sigma)
    if photo.noise_sigma > 0.0:
        # triangular noise from random bytes (the difference of two uniform bytes has std 104.5): several
        # times cheaper than Gaussian draws, and indistinguishable once blurred by JPEG
        half = (size + 1) // 2
        # random_raw's 64-bit words are the very bytes Generator.bytes returns, without its detour through
        # 32-bit integers (twice the time)
        words = np.random.default_rng(photo.noise_seed).bit_generator.random_raw(-(-2 * half * half * 3 // 8))
        raw = words.view(np.uint8)[: 2 * half * half * 3].reshape(2, half, half, 3)
        noise = (np.subtract(raw[0], raw[1], dtype=np.int16) * np.float32(photo.noise_sigma / 104.5)).astype(np.int16)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_NEAREST)
        image = cv2.add(image, noise, dtype=cv2.CV_8U)
    return image


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur(image, (0, 0), sigma)`` but twice as fast for bytes: the same kernel (six sigmas wide)
    as one separable float filter instead of OpenCV's bit-exact fixed-point one; pixels differ by at most 1."""
    kernel = cv2.getGaussianKernel(int(round(sigma * 6.0 + 1.0)) | 1, sigma)
    return cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes at ``quality`` (the photo's own), the last degradation."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()
