"""Head units to pixels: the person's face surface, the head's rotation and the camera.

The face is modelled in 3-D so that a turned head foreshortens and occludes like a real one instead of being a
2-D warp of a frontal picture, and so that the five landmarks are the projections of the very points the
drawing uses. Head units: half the cranium width is about 1; x right, y down, z towards the camera.
"""

from __future__ import annotations

import numpy as np

from facestra.synth.identity import Identity, Pose

#: Perspective: camera distance in head units (weak perspective; large = nearly orthographic).
CAMERA_DISTANCE = 9.0


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation: yaw about the vertical axis, then pitch about the horizontal one, then in-plane roll."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return r_roll @ r_pitch @ r_yaw


def lift_onto_face(identity: Identity, xy: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
    """Frontal (x, y) points onto the person's face surface, ``depth`` further towards the camera (Nx3).

    The surface is the person's alone, not the pose's, which is what lets
    :func:`~facestra.synth.face.face_parts` lift the shapes every photo of them shares once.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = np.empty((len(xy), 3))
    out[:, :2] = xy
    inside = 1.0 - np.square(xy[:, 0] * (1.0 / identity.head_w)) - np.square(xy[:, 1] * (1.0 / (identity.chin_y * 1.04)))
    out[:, 2] = np.sqrt(np.maximum(inside, 0.0)) * 0.95 + depth
    return out


def ellipse_outline(centre: np.ndarray, covariance: np.ndarray, count: int = 48) -> np.ndarray:
    """``count`` points around the ellipse {centre + L u : |u| = 1} whose matrix L L^T is ``covariance`` (2x2).

    The 2x2 eigen-decomposition in closed form: ``np.linalg.eigh`` costs some 50 microseconds a call at
    this size, and every photo needs two outlines.
    """
    (a, b), (_, c) = covariance
    mean = 0.5 * (a + c)
    spread = float(np.hypot(0.5 * (a - c), b))
    angle = 0.5 * float(np.arctan2(2.0 * b, a - c))  # direction of the major axis
    major, minor = np.sqrt(max(mean + spread, 1e-9)), np.sqrt(max(mean - spread, 1e-9))
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    unit = circle(count)
    axes = np.array([[-sin_a * minor, cos_a * minor], [cos_a * major, sin_a * major]])
    return unit @ axes + centre


class Projector:
    """Maps head-unit 3-D points to image pixels for one pose (weak perspective)."""

    def __init__(self, pose: Pose, identity: Identity) -> None:
        self.rotation = rotation(pose.yaw, pose.pitch, pose.roll)
        self.centre = np.asarray(pose.centre, dtype=np.float64)
        self.scale = pose.scale
        self.identity = identity
        self.matrix = self.rotation.T * self.scale  # scale folded in; perspective applied per point

    def lift(self, xy: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
        """Frontal (x, y) points onto the face surface, ``depth`` further towards the camera."""
        return lift_onto_face(self.identity, xy, depth)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Nx3 head points -> Nx2 image pixels (float)."""
        rotated = np.asarray(points, dtype=np.float64).reshape(-1, 3) @ self.matrix
        factor = CAMERA_DISTANCE / (CAMERA_DISTANCE - rotated[:, 2:] / self.scale)
        return rotated[:, :2] * factor + self.centre

    def surface(self, xy: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
        """Frontal (x, y) points on the face surface straight to pixels: :meth:`lift`, then :meth:`project`."""
        return self.project(self.lift(xy, depth))

    def silhouette_ellipse(self, axes: tuple[float, float, float],
                           offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
        """Centre (pixels) and 2x2 matrix L L^T of the outline of an ellipsoid with semi-axes ``axes`` at ``offset``.

        For an ellipsoid x^T A x = 1 the orthographic outline is the ellipse whose matrix is the inverse of the
        upper-left 2x2 block of (R A^-1 R^T); the perspective factor of the centre scales it as a whole.
        """
        inverse = (self.rotation * np.square(axes)) @ self.rotation.T
        offset = np.asarray(offset, dtype=np.float64)
        centre = self.project(offset[None])[0]
        factor = CAMERA_DISTANCE / (CAMERA_DISTANCE - float(self.rotation[2] @ offset))
        return centre, inverse[:2, :2] * np.square(self.scale * factor)

    def silhouette(self, axes: tuple[float, float, float], offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
        """Outline (pixels, 48 points) of an ellipsoid with semi-axes ``axes`` centred at ``offset``."""
        return ellipse_outline(*self.silhouette_ellipse(axes, offset))


def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    points = np.column_stack([np.cos(t), np.sin(t)])
    points.flags.writeable = False
    return points


_CIRCLES = {n: _unit_circle(n) for n in (8, 12, 16, 48)}


def circle(n: int) -> np.ndarray:
    """``n`` points around the unit circle (the common counts precomputed; read-only)."""
    return _CIRCLES[n] if n in _CIRCLES else _unit_circle(n)
