"""Small face-like training data for the training tests: each identity is a shape in a colour, drawn with
random jitter (position, size, rotation, colour, noise), so that identities are learnable but no two
images are alike."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SMALL = dict(arch="resnet18", width=0.125, input_size=(32, 32), embedding_size=32, workers=0, log_every=1, device="cpu", threads=1)
SMALL_CLI = "--arch resnet18 --width 0.125 --input-size 32 --embedding-size 32 --workers 0 --device cpu --threads 1 --quiet".split()
"""The smallest network the training tests train, as ``TrainConfig`` keywords and as ``facestra train`` flags."""

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ((40, 40, 220), (40, 200, 40), (220, 60, 40), (30, 200, 230), (200, 40, 200), (230, 230, 230))


def draw_identity(identity: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One BGR image of ``identity`` (shape = identity % 4, colour = identity // 4 % 6)."""
    shape = SHAPES[identity % len(SHAPES)]
    colour = np.array(COLOURS[(identity // len(SHAPES)) % len(COLOURS)], dtype=np.float64)
    colour = np.clip(colour + rng.normal(0, 15, 3), 0, 255)
    background = rng.uniform(70, 130)
    image = np.full((size, size, 3), background, dtype=np.float64)
    centre = np.array([size / 2, size / 2]) + rng.uniform(-3, 3, 2)
    radius = size * rng.uniform(0.25, 0.33)
    angle = rng.uniform(-0.3, 0.3)
    canvas = image.copy()
    c = tuple(float(v) for v in colour)
    if shape == "circle":
        cv2.circle(canvas, tuple(int(v) for v in centre), int(radius), c, -1)
    else:
        if shape == "square":
            base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.8
        elif shape == "triangle":
            base = np.array([[0, -1.1], [1, 0.8], [-1, 0.8]], dtype=np.float64)
        else:
            t = 0.35
            base = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t]])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (base @ rotation.T) * radius + centre
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], c)
    canvas += rng.normal(0, 6, canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def make_image_folder(root: Path, identities: range | list[int], per_identity: int, *, seed: int = 0, size: int = 32) -> Path:
    """``root/id<k>/<n>.png`` for each identity."""
    rng = np.random.default_rng(seed)
    for identity in identities:
        folder = root / f"id{identity:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_identity):
            cv2.imwrite(str(folder / f"{n:03d}.png"), draw_identity(identity, rng, size))
    return root


def make_pairs(identities: list[int], num_pairs: int, *, seed: int = 1, size: int = 32) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Half same-identity and half different-identity image pairs of ``identities`` (fresh draws)."""
    rng = np.random.default_rng(seed)
    first, second, same = [], [], []
    for n in range(num_pairs):
        a = int(rng.choice(identities))
        is_same = n % 2 == 0
        b = a if is_same else int(rng.choice([i for i in identities if i != a]))
        first.append(draw_identity(a, rng, size))
        second.append(draw_identity(b, rng, size))
        same.append(is_same)
    return first, second, np.array(same)


def encode_pairs(first: list[np.ndarray], second: list[np.ndarray]) -> list[bytes]:
    """The images of ``make_pairs`` as a ``.bin`` holds them: PNG bytes, the two of each pair in turn."""
    return [cv2.imencode(".png", image)[1].tobytes() for pair in zip(first, second) for image in pair]


def make_training_set(
    root: Path, identities: range, per_identity: int, pair_identities: range, num_pairs: int
) -> tuple[Path, list[bytes], np.ndarray]:
    """``root/train`` (an identity folder) and, of other identities, the images and labels of a held-out ``.bin``."""
    data = make_image_folder(root / "train", identities, per_identity)
    first, second, same = make_pairs(list(pair_identities), num_pairs)
    return data, encode_pairs(first, second), same
