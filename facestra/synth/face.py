"""A deformable 3-D face: identity shape parameters, a pose, an expression, drawn with OpenCV primitives.

The face lives in *head units* (half the cranium width is about 1; x right, y down, z towards the camera).
Every feature is a polyline in the frontal (x, y) plane lifted onto the head ellipsoid (plus the nose's
protrusion), rotated by yaw, pitch and roll and projected with a weak perspective. So a turned head
foreshortens the far eye, moves the nose tip sideways against the cheeks and shows the ear, instead of being a
2-D warp of a frontal picture; and the five landmarks (eye centres, nose tip, mouth corners) are the projections
of the very points the drawing uses, which is what makes them *true* landmarks.

Identity lives in :class:`Identity` (shape, colours, hair, a smooth skin texture); everything that changes from
photo to photo lives in :class:`Pose` and :class:`Expression`. Drawing is a handful of ``fillPoly``/``polylines``
calls at sub-pixel precision (``shift``) and one small texture warp, which keeps a 250x250 face near a
millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Sub-pixel bits for OpenCV drawing: coordinates are passed multiplied by 2**SHIFT.
SHIFT = 4
_ONE = 1 << SHIFT
#: Texture patch (canonical face plane) resolution and extent in head units.
TEXTURE_SIZE = (64, 52)  # rows, cols
TEXTURE_X = (-1.25, 1.25)
TEXTURE_Y = (-1.45, 1.7)
#: Texture gains are stored as uint8 with this value meaning 1.0 (warping bytes is 4x cheaper than floats).
TEXTURE_ONE = 128
#: Perspective: camera distance in head units (weak perspective; large = nearly orthographic).
CAMERA_DISTANCE = 9.0

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
    texture: np.ndarray  # TEXTURE_SIZE x 3 uint8 skin gain, TEXTURE_ONE = 1.0 (and outside the face)


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


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return a * (1.0 - t) + b * t


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person. Ranges are wide so that random people differ in many independent ways."""
    u = rng.uniform
    skin = _mix(_SKIN_LIGHT, _SKIN_DARK, u(0.0, 1.0) ** 1.3) * rng.uniform(0.92, 1.08, 3)
    hair_index = rng.integers(len(_HAIR))
    hair = _HAIR[hair_index] * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 8, 3)
    iris = _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2, 3)
    lip = _mix(skin, np.array([70.0, 60.0, 185.0]), u(0.25, 0.7)) * u(0.7, 1.0)
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
        texture=_identity_texture(rng, head_w),
    )


def _identity_texture(rng: np.random.Generator, head_w: float) -> np.ndarray:
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

    The surface is the person's alone, not the pose's, which is what lets :func:`face_parts` lift the shapes
    every photo of them shares once.
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
    circle = _circle(count)
    axes = np.array([[-sin_a * minor, cos_a * minor], [cos_a * major, sin_a * major]])
    return circle @ axes + centre


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


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixels -> int32 coordinates for OpenCV's sub-pixel drawing."""
    return np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def fill(canvas: np.ndarray, points: np.ndarray, colour, antialias: bool = True) -> None:
    """Fill one polygon given in float pixels."""
    cv2.fillPoly(canvas, [_fixed(points)], _colour(colour), cv2.LINE_AA if antialias else cv2.LINE_8, SHIFT)


def line(canvas: np.ndarray, points: np.ndarray, colour, thickness: float, closed: bool = False) -> None:
    """Draw an open (or closed) polyline given in float pixels."""
    cv2.polylines(canvas, [_fixed(points)], closed, _colour(colour), max(1, int(round(thickness))), cv2.LINE_AA, SHIFT)


def _colour(colour) -> tuple[float, float, float]:
    return tuple(float(c) for c in colour)


def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    circle = np.column_stack([np.cos(t), np.sin(t)])
    circle.flags.writeable = False
    return circle


_CIRCLES = {n: _unit_circle(n) for n in (8, 12, 16, 48)}
_HALF_TURN = np.linspace(0.0, np.pi, 8)
_HALF_TURN_COS = np.cos(_HALF_TURN)
_HALF_TURN_SIN = np.sin(_HALF_TURN)
_JAW_T = np.linspace(0.0, 1.0, 9)
_SPAN7 = np.linspace(-1.0, 1.0, 7)
_SPAN9 = np.linspace(-1.0, 1.0, 9)
for _constant in (_HALF_TURN, _HALF_TURN_COS, _HALF_TURN_SIN, _JAW_T, _SPAN7, _SPAN9):
    _constant.flags.writeable = False


def _circle(n: int) -> np.ndarray:
    """``n`` points around the unit circle (the common counts precomputed)."""
    return _CIRCLES[n] if n in _CIRCLES else _unit_circle(n)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    circle = _circle(n)
    return circle * (rx, ry) + (cx, cy)


def _scaled(colour, factor: float) -> tuple[float, float, float]:
    return tuple(float(min(255.0, c * factor)) for c in colour)


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

    def surface_fill(self, xy: np.ndarray, depth: float, colour, antialias: bool = True) -> None:
        """A polygon drawn on the face surface (``depth`` above it)."""
        points = np.empty((len(xy), 3))
        points[:, :2] = xy
        points[:, 2] = depth
        self._ops.append(("fill", *self._add(points, True), _colour(colour), antialias))

    def surface_line(self, xy: np.ndarray, depth: float, colour, thickness: float) -> None:
        """A polyline on the face surface; ``thickness`` in head units."""
        points = np.empty((len(xy), 3))
        points[:, :2] = xy
        points[:, 2] = depth
        self._ops.append(("line", *self._add(points, True), _colour(colour), thickness))

    def fill3d(self, points: np.ndarray, colour, antialias: bool = True, hull: bool = False) -> None:
        """A polygon through free 3-D points (or their convex hull, for a volume seen from the camera)."""
        self._ops.append(("hull" if hull else "fill", *self._add(points, False), _colour(colour), antialias))

    def line3d(self, points: np.ndarray, colour, thickness: float) -> None:
        self._ops.append(("line", *self._add(points, False), _colour(colour), thickness))

    def pixels(self, polygon: np.ndarray, colour) -> None:
        """A polygon already in pixels (an outline computed analytically)."""
        self._ops.append(("pixels", polygon, _colour(colour)))

    def texture(self, texture: np.ndarray) -> None:
        """Modulate what is drawn so far by a texture laid on the frontal plane (see :func:`_apply_texture`).

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
                _apply_texture(canvas, texture, pixels[a:b], shape, offset)
            else:
                _, a, b = op
                marks = pixels[a:b]
        return marks


#: The expression the parts drawn alike in most photos are built for.
_AT_REST = Expression()


def mouth_corners(identity: Identity, expression: Expression) -> np.ndarray:
    """Frontal (x, y) of the image-left and image-right mouth corners for this expression."""
    mouth_y = identity.eye_y + identity.nose_len + identity.mouth_gap
    half = identity.mouth_w * (1.0 + 0.25 * expression.smile)
    lift = 0.07 * expression.smile - 0.02 * expression.mouth_open
    return np.array([[-half, mouth_y - lift], [half, mouth_y - lift]])


def landmarks_3d(identity: Identity, expression: Expression, projector: Projector) -> np.ndarray:
    """The five landmarks as head points: eye centres, nose tip, mouth corners (template order)."""
    eyes = np.array([[-identity.eye_dx, identity.eye_y], [identity.eye_dx, identity.eye_y]])
    nose = np.array([[0.0, identity.eye_y + identity.nose_len]])
    corners = mouth_corners(identity, expression)
    points = projector.lift(np.vstack([eyes, nose, corners]))
    points[2, 2] += identity.nose_depth
    return points


#: Colour of the landmark marks drawn by ``draw_face(..., marks=True)`` (a colour nothing else uses exactly).
MARK_COLOUR = (255, 0, 255)
#: Their radius in head units.
MARK_RADIUS = 0.045


@dataclass(frozen=True)
class FaceParts:
    """The shapes :func:`draw_face` draws alike in every photo of one person, built once by :func:`face_parts`.

    A photo adds only what changes: the clothes' colour, the cranium's outline (a function of the pose), and
    the eyes, brows and mouth (of the expression). Building these shapes is most of what drawing a face costs.
    """

    behind: SketchPart  # long hair behind the head
    shoulders: np.ndarray  # 3-D points, filled in each photo's clothes colour
    head: SketchPart  # neck, ears, the volume of the hair
    face: SketchPart  # jaw, skin texture, beard, hair over the forehead, eye sockets
    eyes_at_rest: SketchPart  # eyes and brows of a neutral expression (most photos have one)
    nose: SketchPart
    mouth_at_rest: SketchPart  # lips (and moustache) of a neutral expression


def face_parts(identity: Identity) -> FaceParts:
    """Build and lift the shapes of ``identity`` that no pose or expression changes (see :class:`FaceParts`)."""
    i = identity
    skin = i.skin
    hair = i.skin if i.bald else i.hair_colour
    behind = Sketch()
    if not i.bald and i.hair_length > 0.0:
        bottom = i.chin_y + 0.2 + i.hair_length * 0.8
        back = np.array([[-1.2 * i.head_w, -0.3, -0.4], [-1.25 * i.head_w, bottom, -0.4],
                         [1.25 * i.head_w, bottom, -0.4], [1.2 * i.head_w, -0.3, -0.4]])
        behind.fill3d(back, hair, antialias=False)
    shoulder_y = i.chin_y + 0.75
    shoulders = np.array([[-0.55, i.chin_y, -0.3], [-0.6, shoulder_y, -0.3], [-2.8, shoulder_y + 0.6, -0.3],
                          [-3.0, 4.0, -0.3], [3.0, 4.0, -0.3], [2.8, shoulder_y + 0.6, -0.3], [0.6, shoulder_y, -0.3],
                          [0.55, i.chin_y, -0.3]])
    # neck, ears (a far ear ends up hidden by the head), the hair's volume
    head = Sketch()
    neck = np.array([[-0.42, 0.5, -0.25], [-0.45, shoulder_y + 0.1, -0.25], [0.45, shoulder_y + 0.1, -0.25],
                     [0.42, 0.5, -0.25]])
    head.fill3d(neck, _scaled(skin, 0.8))
    ear = _ellipse(0.0, i.ear_y, i.ear_size * 0.55, i.ear_size, 12)
    for side in (-1.0, 1.0):
        head.fill3d(np.column_stack([np.full(len(ear), side * i.head_w * 0.97), ear[:, 1], ear[:, 0] - 0.05]),
                    _scaled(skin, 0.9))
    if not i.bald:
        axes, centre = _hair_ellipsoid(i)
        head.fill3d(_ellipsoid_band(axes, centre, np.array([-1.0, -0.7, -0.35, 0.0, 0.3])), hair, hull=True)
    # over the cranium: the jaw, then the skin texture over both, beard, hair, eye sockets
    face = Sketch()
    half_width = i.head_w * (i.jaw_w + (1.0 - i.jaw_w) * (1.0 - _JAW_T) ** 2) * (1 - _JAW_T) + i.chin_w * _JAW_T
    jaw_y = 0.1 + (i.chin_y - 0.1) * np.sin(_JAW_T * np.pi / 2.0)
    jaw = np.vstack([np.column_stack([-half_width, jaw_y]), np.column_stack([half_width, jaw_y])[::-1]])
    face.surface_fill(jaw, 0.0, skin)
    face.texture(i.texture)
    if i.beard > 0.0:
        beard_top = i.eye_y + i.nose_len + i.mouth_gap - 0.12
        top = np.column_stack([_SPAN7[::-1] * i.jaw_w * i.head_w, np.full(7, beard_top)])
        top[:, 1] -= 0.15 * (np.abs(top[:, 0]) / i.head_w) ** 2
        lower = jaw[jaw[:, 1] >= beard_top]
        face.surface_fill(np.vstack([lower, top]), 0.02,
                          _mix(np.asarray(skin), np.asarray(i.hair_colour), min(1.0, 0.35 + 0.5 * i.beard)))
    if not i.bald:
        _sketch_hair(face, i, hair)
    for side in (-1.0, 1.0):  # the sockets never overlap the other eye, so both can come before either eye
        _sketch_eye_socket(face, i, side)
    eyes, nose, mouth = Sketch(), Sketch(), Sketch()
    _sketch_eyes(eyes, i, _AT_REST)
    _sketch_nose(nose, i)
    _sketch_mouth(mouth, i, _AT_REST)
    return FaceParts(behind.part(i), shoulders, head.part(i), face.part(i), eyes.part(i), nose.part(i),
                     mouth.part(i))


def draw_face(canvas: np.ndarray, identity: Identity, pose: Pose, expression: Expression, clothes,
              *, marks: bool = False, parts: FaceParts | None = None) -> np.ndarray:
    """Draw the person into ``canvas`` (in place) and return the five landmarks in pixels (5x2 float).

    Landmarks are in the face's own order (its right eye, on the image's left for a frontal face, first),
    the order a detector reports for faces short of profile. ``marks=True`` also draws a small disk of
    :data:`MARK_COLOUR` around each landmark's 3-D point, through the same projection as every feature, so
    that a test can find them in the pixels. ``parts``: ``face_parts(identity)``, when many photos of the
    person are drawn.
    """
    p = Projector(pose, identity)
    i = identity
    parts = face_parts(identity) if parts is None else parts
    sketch = Sketch()
    sketch.include(parts.behind)
    sketch.fill3d(parts.shoulders, clothes, antialias=False)
    sketch.include(parts.head)
    sketch.pixels(p.silhouette((i.head_w, i.head_h, 1.0), (0.0, -0.05, 0.0)), i.skin)  # the cranium's exact outline
    sketch.include(parts.face)
    if expression.eyes_closed == 0.0 and expression.brows_raised == 0.0:
        sketch.include(parts.eyes_at_rest)
    else:
        _sketch_eyes(sketch, i, expression)
    sketch.include(parts.nose)
    if expression.smile == 0.0 and expression.mouth_open == 0.0:
        sketch.include(parts.mouth_at_rest)
    else:
        _sketch_mouth(sketch, i, expression)
    points = landmarks_3d(i, expression, p)
    if marks:
        disk = np.column_stack([_CIRCLES[16] * MARK_RADIUS, np.zeros(16)])
        for point in points:
            sketch.fill3d(point + disk, MARK_COLOUR, antialias=False)
    sketch.marks(points)
    return sketch.draw(canvas, p)


def _apply_texture(canvas: np.ndarray, texture: np.ndarray, corners: np.ndarray, shape: tuple[int, int],
                   offset: tuple[int, int]) -> None:
    """Multiply the canvas by a texture's gain, the texture's corners landing on ``corners`` (TL, TR, BL, BR px).

    The affine map through three corners is the pose's local approximation of the face plane. ``texture`` is
    the part of the whole (``shape`` rows, cols) at ``offset`` (column, row) where the gain is not one, as
    BGRA whose fourth channel is ignored (see :meth:`Sketch.texture`), so the warp is done only where it
    changes something: within the bounding box of the four corners, over the texels that vary and the one
    texel around them that bilinear interpolation blends in.
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


def _hair_ellipsoid(i: Identity) -> tuple[np.ndarray, np.ndarray]:
    axes = np.array([i.head_w + i.hair_volume * 0.6, i.head_h + i.hair_volume, 1.0 + i.hair_volume * 0.8])
    centre = np.array([0.0, -0.05 - i.hair_volume * 0.3, -0.05])
    return axes, centre


def _ellipsoid_band(axes: np.ndarray, centre: np.ndarray, levels: np.ndarray, count: int = 16) -> np.ndarray:
    """Points on horizontal circles of an ellipsoid at the given relative heights (-1 top .. 1 bottom)."""
    circle = _circle(count)
    radius = np.sqrt(np.maximum(1.0 - levels**2, 0.0))[:, None]
    x = axes[0] * radius * circle[:, 0]
    z = axes[2] * radius * circle[:, 1]
    y = np.broadcast_to(axes[1] * levels[:, None], x.shape)
    return np.stack([x, y, z], axis=-1).reshape(-1, 3) + centre


def _sketch_hair(sketch: Sketch, i: Identity, hair) -> None:
    """The hair over the forehead: the cap of the hair ellipsoid above the hairline, and a fringe."""
    axes, centre = _hair_ellipsoid(i)
    top = (i.hairline - centre[1]) / axes[1]
    sketch.fill3d(_ellipsoid_band(axes, centre, np.linspace(-1.0, top, 4)), hair, hull=True)
    if i.fringe > 0.0:
        xs = _SPAN9 * i.head_w * 0.9
        low = i.hairline + i.fringe * 0.35 * (1.0 + 0.6 * i.fringe_side * xs / i.head_w)
        low = np.minimum(low, i.eye_y - i.brow_gap - 0.05)
        fringe = np.vstack([np.column_stack([xs, np.full(9, i.hairline - 0.2)]), np.column_stack([xs, low])[::-1]])
        sketch.surface_fill(fringe, 0.04, hair)


def _sketch_eye_socket(sketch: Sketch, i: Identity, side: float) -> None:
    """The shadow around an eye: the same in every photo of the person."""
    cx, cy = side * i.eye_dx, i.eye_y
    sketch.surface_fill(_ellipse(cx, cy - 0.02, i.eye_w * 1.35, i.eye_w * 0.8, 12), 0.0, _scaled(i.skin, 0.85))


def _sketch_eyes(sketch: Sketch, i: Identity, expression: Expression) -> None:
    for side in (-1.0, 1.0):
        _sketch_eye(sketch, i, side, expression)


def _sketch_eye(sketch: Sketch, i: Identity, side: float, expression: Expression) -> None:
    """Sclera, iris, pupil, upper lid line and brow: what the expression opens, closes and raises."""
    cx, cy = side * i.eye_dx, i.eye_y
    half_w = i.eye_w
    openness = min(max(1.0 - expression.eyes_closed, 0.0), 1.0)
    half_h = i.eye_w * i.eye_h * max(openness, 0.08)
    c, s = np.cos(-side * i.eye_tilt), np.sin(-side * i.eye_tilt)
    almond = np.empty((16, 2))
    almond[:8, 0], almond[:8, 1] = -_HALF_TURN_COS * half_w, -_HALF_TURN_SIN * half_h * 1.1
    almond[8:, 0], almond[8:, 1] = _HALF_TURN_COS * half_w, _HALF_TURN_SIN * half_h * 0.8
    almond = almond @ np.array([[c, s], [-s, c]]) + (cx, cy)
    sketch.surface_fill(almond, 0.01, (235, 235, 240))
    if openness > 0.25:
        radius = half_w * i.iris_r
        sketch.surface_fill(_ellipse(cx, cy, radius, min(radius, half_h * 0.95), 12), 0.02, i.iris_colour)
        sketch.surface_fill(_ellipse(cx, cy, radius * 0.45, min(radius * 0.45, half_h * 0.6), 8), 0.025, (10, 10, 10))
    sketch.surface_line(almond[:8], 0.02, (25, 25, 30), 0.025)
    brow_y = cy - i.brow_gap - 0.1 * expression.brows_raised
    brow = np.column_stack([cx + side * _SPAN7 * half_w * i.brow_len * 0.9,
                            brow_y - i.brow_arch * (1.0 - _SPAN7**2) + side * i.brow_tilt * _SPAN7 * 0.1])
    brow_colour = _scaled(i.hair_colour, 0.7) if not i.bald else _scaled(i.skin, 0.45)
    sketch.surface_line(brow, 0.03, brow_colour, i.brow_thick)


def _sketch_nose(sketch: Sketch, i: Identity) -> None:
    tip_y = i.eye_y + i.nose_len
    shade = _scaled(i.skin, 0.72)
    # the ridge rises off the surface towards the tip: drawn as short segments at increasing depth
    sketch.surface_line(np.array([[0.03, i.eye_y], [0.04, tip_y - 0.12]]), 0.05, shade, 0.03)
    sketch.surface_line(np.array([[0.04, tip_y - 0.12], [0.0, tip_y]]), i.nose_depth * 0.85, shade, 0.03)
    sketch.surface_line(np.array([[-i.nose_w, tip_y + 0.02], [0.0, tip_y + 0.06]]), i.nose_depth * 0.35,
                        _scaled(i.skin, 0.6), 0.025)
    sketch.surface_line(np.array([[0.0, tip_y + 0.06], [i.nose_w, tip_y + 0.02]]), i.nose_depth * 0.35,
                        _scaled(i.skin, 0.6), 0.025)
    for side in (-1.0, 1.0):
        sketch.surface_fill(_ellipse(side * i.nose_w * 0.55, tip_y + 0.04, i.nose_w * 0.3, 0.025, 8), 0.08,
                            _scaled(i.skin, 0.35))


def _sketch_mouth(sketch: Sketch, i: Identity, expression: Expression) -> None:
    corners = mouth_corners(i, expression)
    mouth_y = i.eye_y + i.nose_len + i.mouth_gap
    half = corners[1, 0]
    opening = 0.1 * expression.mouth_open
    t = _SPAN9
    bulge = np.sqrt(1.0 - t**2)
    middle = np.column_stack([t * half, corners[0, 1] + (mouth_y - corners[0, 1]) * (1.0 - t**2)])
    upper_top = middle.copy()
    upper_top[:, 1] -= i.lip_upper * bulge + opening * 0.3
    lower_bottom = middle.copy()
    lower_bottom[:, 1] += (i.lip_lower + opening) * bulge
    sketch.surface_fill(np.vstack([upper_top, lower_bottom[::-1]]), 0.03, i.lip_colour)
    if expression.mouth_open > 0.15:
        inner_top = middle.copy()
        inner_top[:, 1] -= opening * 0.3
        inner_bottom = middle.copy()
        inner_bottom[:, 1] += opening * bulge**1.2
        sketch.surface_fill(np.vstack([inner_top[1:-1], inner_bottom[1:-1][::-1]]), 0.035, (30, 25, 45))
        teeth = np.vstack([inner_top[2:-2], inner_top[2:-2][::-1] + [0.0, opening * 0.35]])
        sketch.surface_fill(teeth, 0.036, (215, 220, 225))
    sketch.surface_line(middle, 0.035, _scaled(i.lip_colour, 0.5), 0.015)
    if i.moustache:
        stache = np.array([[corners[0, 0] - 0.03, corners[0, 1] + 0.02], [0.0, mouth_y - 0.09],
                           [corners[1, 0] + 0.03, corners[1, 1] + 0.02], [0.0, mouth_y - 0.04]])
        sketch.surface_fill(stache, 0.03, i.hair_colour)
