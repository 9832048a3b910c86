"""Who a synthetic person is, kept apart from how any one photo of them looks.

A data set's identities must differ in many independent ways while every photo of one person keeps them
fixed; sampling them here, as frozen values, is what lets the renderer draw any number of photos of a person
(and recompute their landmarks) from an identity seed alone. :class:`Pose` and :class:`Expression` are the
per-photo counterparts that the rest of the renderer takes alongside an :class:`Identity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facestra.synth.texture import identity_texture

# Colour palettes, BGR in [0, 255].
_SKIN_LIGHT = np.array([196.0, 214.0, 250.0])
_SKIN_DARK = np.array([40.0, 62.0, 100.0])
_HAIR = np.array(
    [
        [20, 20, 25],  # black
        [30, 45, 70],  # dark brown
        [45, 80, 125],  # brown
        [90, 160, 210],  # blonde
        [40, 70, 160],  # red
        [150, 150, 155],  # grey
        [225, 225, 230],  # white
    ],
    dtype=np.float64,
)
_IRIS = np.array(
    [[20, 40, 70], [30, 60, 100], [130, 100, 60], [90, 120, 60], [110, 110, 110], [15, 20, 25]], dtype=np.float64
)


@dataclass(frozen=True)
class Identity:
    """The fixed shape and colour parameters of one synthetic person."""

    head_w: float
    head_h: float
    chin_y: float
    jaw_w: float
    chin_w: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris_r: float
    iris_colour: tuple[float, float, float]
    brow_gap: float
    brow_thick: float
    brow_arch: float
    brow_len: float
    brow_tilt: float
    nose_len: float
    nose_w: float
    nose_depth: float
    mouth_gap: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    lip_colour: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair_colour: tuple[float, float, float]
    hair_volume: float
    hairline: float
    hair_length: float
    fringe: float
    fringe_side: float
    bald: bool
    beard: float
    moustache: bool
    ear_y: float
    ear_size: float
    texture: np.ndarray  # texture.TEXTURE_SIZE x 3 uint8 skin gain, TEXTURE_ONE = 1.0 (and outside the face)


@dataclass(frozen=True)
class Pose:
    """Where the head is in this photo: angles in radians, centre in pixels, scale in pixels per head unit."""

    yaw: float
    pitch: float
    roll: float
    centre: tuple[float, float]
    scale: float


@dataclass(frozen=True)
class Expression:
    """Per-photo expression: 0 is neutral for each."""

    smile: float = 0.0
    mouth_open: float = 0.0
    eyes_closed: float = 0.0
    brows_raised: float = 0.0


def mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """``a`` blended towards ``b`` by ``t`` (0 is ``a``, 1 is ``b``): colours of skin, lips, a beard."""
    return a * (1.0 - t) + b * t


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person. Ranges are wide so that random people differ in many independent ways."""
    u = rng.uniform
    skin = mix(_SKIN_LIGHT, _SKIN_DARK, u(0.0, 1.0) ** 1.3) * rng.uniform(0.92, 1.08, 3)
    hair_index = rng.integers(len(_HAIR))
    hair = _HAIR[hair_index] * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 8, 3)
    iris = _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2, 3)
    lip = mix(skin, np.array([70.0, 60.0, 185.0]), u(0.25, 0.7)) * u(0.7, 1.0)
    head_w = u(0.9, 1.1)
    bald = bool(u() < 0.07)
    return Identity(
        head_w=head_w,
        head_h=u(1.05, 1.25),
        chin_y=u(1.2, 1.45),
        jaw_w=u(0.7, 0.95),
        chin_w=u(0.15, 0.42),
        eye_y=u(-0.12, 0.08),
        eye_dx=u(0.33, 0.46),
        eye_w=u(0.11, 0.17),
        eye_h=u(0.38, 0.62),
        eye_tilt=u(-0.12, 0.12),
        iris_r=u(0.42, 0.62),
        iris_colour=tuple(np.clip(iris, 0, 255)),
        brow_gap=u(0.13, 0.24),
        brow_thick=u(0.022, 0.065),
        brow_arch=u(-0.01, 0.07),
        brow_len=u(1.05, 1.6),
        brow_tilt=u(-0.12, 0.12),
        nose_len=u(0.32, 0.55),
        nose_w=u(0.07, 0.16),
        nose_depth=u(0.18, 0.42),
        mouth_gap=u(0.2, 0.33),
        mouth_w=u(0.18, 0.32),
        lip_upper=u(0.018, 0.05),
        lip_lower=u(0.025, 0.075),
        lip_colour=tuple(np.clip(lip, 0, 255)),
        skin=tuple(np.clip(skin, 0, 255)),
        hair_colour=tuple(np.clip(hair, 0, 255)),
        hair_volume=u(0.04, 0.3),
        hairline=u(-0.95, -0.5),
        hair_length=float(u(-0.5, 1.6)),
        fringe=float(max(0.0, u(-0.6, 1.0))),
        fringe_side=u(-1.0, 1.0),
        bald=bald,
        beard=float(max(0.0, u(-2.5, 1.0))),
        moustache=bool(u() < 0.15),
        ear_y=u(-0.05, 0.2),
        ear_size=u(0.16, 0.26),
        texture=identity_texture(rng, head_w),
    )
