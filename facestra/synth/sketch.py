"""Drawing at sub-pixel precision, and the sketch that keeps drawing a face near a millisecond.

OpenCV draws integer coordinates, so shapes are passed in fixed point (``shift``) to keep sub-pixel
positions. At the size of a face, per-call numpy overhead rather than arithmetic is the cost, so shapes are
collected in head coordinates and projected in one product (:class:`Sketch`), and what a person keeps from
photo to photo is built once (:class:`SketchPart`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facestra.synth.identity import Identity
from facestra.synth.projection import Projector, lift_onto_face
from facestra.synth.texture import TEXTURE_ONE, TEXTURE_X, TEXTURE_Y, apply_texture

#: Sub-pixel bits for OpenCV drawing: coordinates are passed multiplied by 2**SHIFT.
SHIFT = 4
_ONE = 1 << SHIFT
#: A BGR colour in [0, 255]: a tuple, or an array of three.
Colour = Sequence[float] | np.ndarray


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixels -> int32 coordinates for OpenCV's sub-pixel drawing."""
    return np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def fill(canvas: np.ndarray, points: np.ndarray, colour: Colour, antialias: bool = True) -> None:
    """Fill one polygon given in float pixels."""
    cv2.fillPoly(canvas, [_fixed(points)], _colour(colour), cv2.LINE_AA if antialias else cv2.LINE_8, SHIFT)


def line(canvas: np.ndarray, points: np.ndarray, colour: Colour, thickness: float, closed: bool = False) -> None:
    """Draw an open (or closed) polyline given in float pixels."""
    cv2.polylines(canvas, [_fixed(points)], closed, _colour(colour), max(1, int(round(thickness))), cv2.LINE_AA, SHIFT)


def _colour(colour: Colour) -> tuple[float, float, float]:
    return tuple(float(c) for c in colour)


@dataclass(frozen=True)
class SketchPart:
    """Shapes that look alike in every photo of one person: final 3-D head points, and ops indexing them from 0."""

    points: np.ndarray
    ops: tuple[tuple, ...]


class Sketch:
    """Shapes collected in head coordinates, then projected all at once and drawn in order.

    Projecting a face's ~400 points in one matrix product instead of ~40 small ones is what keeps drawing
    near a millisecond: per-call numpy overhead, not arithmetic, is the cost at this size. For the same reason
    the shapes a person keeps from photo to photo are built once (:meth:`part`) and included in each sketch.
    """

    def __init__(self) -> None:
        self._points: list[np.ndarray] = []  # Nx3: x, y and either z or a depth above the surface
        self._on_surface: list[bool] = []
        self._lengths: list[int] = []
        self._ops: list[tuple] = []
        self._count = 0

    def _add(self, points: np.ndarray, on_surface: bool) -> tuple[int, int]:
        points = np.asarray(points, dtype=np.float64)
        start = self._count
        self._points.append(points)
        self._on_surface.append(on_surface)
        self._lengths.append(len(points))
        self._count += len(points)
        return start, self._count

    def include(self, part: SketchPart) -> None:
        """Draw ``part``'s shapes (built by :meth:`part`) after those added so far."""
        start, _ = self._add(part.points, False)
        self._ops.extend((op[0], op[1] + start, op[2] + start, *op[3:]) for op in part.ops)

    def part(self, identity: Identity) -> SketchPart:
        """These shapes, lifted onto ``identity``'s face, ready to include in any sketch of that person.

        Only shapes whose points are head points can be parts (not :meth:`pixels`, which depend on the pose).
        """
        if any(op[0] == "pixels" for op in self._ops):
            raise ValueError("a sketch part cannot hold polygons given in pixels")
        return SketchPart(self._head_points(identity), tuple(self._ops))

    def _head_points(self, identity: Identity) -> np.ndarray:
        if not self._points:
            return np.empty((0, 3))
        points = np.concatenate(self._points)
        surface = np.repeat(np.array(self._on_surface, dtype=bool), self._lengths)
        points[surface] = lift_onto_face(identity, points[surface, :2], points[surface, 2])
        return points

    def surface_fill(self, xy: np.ndarray, depth: float, colour: Colour, antialias: bool = True) -> None:
        """A polygon drawn on the face surface (``depth`` above it)."""
        points = np.empty((len(xy), 3))
        points[:, :2] = xy
        points[:, 2] = depth
        self._ops.append(("fill", *self._add(points, True), _colour(colour), antialias))

    def surface_line(self, xy: np.ndarray, depth: float, colour: Colour, thickness: float) -> None:
        """A polyline on the face surface; ``thickness`` in head units."""
        points = np.empty((len(xy), 3))
        points[:, :2] = xy
        points[:, 2] = depth
        self._ops.append(("line", *self._add(points, True), _colour(colour), thickness))

    def fill3d(self, points: np.ndarray, colour: Colour, antialias: bool = True, hull: bool = False) -> None:
        """A polygon through free 3-D points (or their convex hull, for a volume seen from the camera)."""
        self._ops.append(("hull" if hull else "fill", *self._add(points, False), _colour(colour), antialias))

    def line3d(self, points: np.ndarray, colour: Colour, thickness: float) -> None:
        """A polyline through free 3-D points; ``thickness`` in head units."""
        self._ops.append(("line", *self._add(points, False), _colour(colour), thickness))

    def pixels(self, polygon: np.ndarray, colour: Colour) -> None:
        """A polygon already in pixels (an outline computed analytically)."""
        self._ops.append(("pixels", polygon, _colour(colour)))

    def texture(self, texture: np.ndarray) -> None:
        """Modulate what is drawn so far by a texture laid on the frontal plane.

        See :func:`~facestra.synth.texture.apply_texture`.

        Only the texels whose gain is not one are kept: the margin around the face is a third of the texture,
        and warping it changes nothing.
        """
        rows, cols = np.nonzero((texture != TEXTURE_ONE).any(axis=2))
        if not len(rows):
            return
        r0, c0 = int(rows.min()), int(cols.min())
        # with a fourth channel: OpenCV warps four-channel bytes twice as fast as three (same values)
        varying = cv2.cvtColor(np.ascontiguousarray(texture[r0:rows.max() + 1, c0:cols.max() + 1]), cv2.COLOR_BGR2BGRA)
        corners = np.array([[x, y, 0.75] for y in TEXTURE_Y for x in TEXTURE_X])  # TL, TR, BL, BR
        self._ops.append(("texture", *self._add(corners, False), varying, texture.shape[:2], (c0, r0)))

    def marks(self, points: np.ndarray) -> None:
        """Points projected but not drawn (the landmarks)."""
        self._ops.append(("marks", *self._add(points, False)))

    def draw(self, canvas: np.ndarray, projector: Projector) -> np.ndarray | None:
        """Project every point, draw every shape in order; return the projected marks, if any."""
        pixels = projector.project(self._head_points(projector.identity))
        fixed = np.round(pixels * _ONE).astype(np.int32)
        marks = None
        for op in self._ops:
            kind = op[0]
            if kind == "fill":
                _, a, b, colour, antialias = op
                cv2.fillPoly(canvas, [fixed[a:b]], colour, cv2.LINE_AA if antialias else cv2.LINE_8, SHIFT)
            elif kind == "line":
                _, a, b, colour, thickness = op
                width = max(1, int(round(thickness * projector.scale)))
                cv2.polylines(canvas, [fixed[a:b]], False, colour, width, cv2.LINE_AA, SHIFT)
            elif kind == "hull":
                _, a, b, colour, _antialias = op
                hull = cv2.convexHull(fixed[a:b])
                cv2.fillPoly(canvas, [hull], colour, cv2.LINE_AA, SHIFT)
            elif kind == "pixels":
                _, polygon, colour = op
                cv2.fillPoly(canvas, [_fixed(polygon)], colour, cv2.LINE_AA, SHIFT)
            elif kind == "texture":
                _, a, b, texture, shape, offset = op
                apply_texture(canvas, texture, pixels[a:b], shape, offset)
            else:
                _, a, b = op
                marks = pixels[a:b]
        return marks
