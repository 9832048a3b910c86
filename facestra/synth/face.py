"""The face itself: which features a person has, how each is shaped, and where its true landmarks are.

Every feature is a polyline in the frontal (x, y) plane lifted onto the person's face surface (plus the nose's
protrusion) and projected with the photo's pose, so the five landmarks (eye centres, nose tip, mouth corners)
are the projections of the very points the drawing uses: *true* landmarks. What no pose or expression changes
is built once per person (:func:`face_parts`), because building shapes is most of what drawing a face costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facestra.synth.identity import Expression, Identity, Pose, mix
from facestra.synth.projection import Projector, circle
from facestra.synth.sketch import Colour, Sketch, SketchPart

# Parameter samples the features are built from (read-only).
_HALF_TURN = np.linspace(0.0, np.pi, 8)
_HALF_TURN_COS = np.cos(_HALF_TURN)
_HALF_TURN_SIN = np.sin(_HALF_TURN)
_JAW_T = np.linspace(0.0, 1.0, 9)
_SPAN7 = np.linspace(-1.0, 1.0, 7)
_SPAN9 = np.linspace(-1.0, 1.0, 9)
for _constant in (_HALF_TURN, _HALF_TURN_COS, _HALF_TURN_SIN, _JAW_T, _SPAN7, _SPAN9):
    _constant.flags.writeable = False


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    """``n`` frontal-plane points around the axis-aligned ellipse at (``cx``, ``cy``) with radii ``rx``, ``ry``."""
    return circle(n) * (rx, ry) + (cx, cy)


def _scaled(colour: Colour, factor: float) -> tuple[float, float, float]:
    return tuple(float(min(255.0, c * factor)) for c in colour)


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
                          mix(np.asarray(skin), np.asarray(i.hair_colour), min(1.0, 0.35 + 0.5 * i.beard)))
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


def draw_face(canvas: np.ndarray, identity: Identity, pose: Pose, expression: Expression, clothes: Colour,
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
        disk = np.column_stack([circle(16) * MARK_RADIUS, np.zeros(16)])
        for point in points:
            sketch.fill3d(point + disk, MARK_COLOUR, antialias=False)
    sketch.marks(points)
    return sketch.draw(canvas, p)


def _hair_ellipsoid(i: Identity) -> tuple[np.ndarray, np.ndarray]:
    axes = np.array([i.head_w + i.hair_volume * 0.6, i.head_h + i.hair_volume, 1.0 + i.hair_volume * 0.8])
    centre = np.array([0.0, -0.05 - i.hair_volume * 0.3, -0.05])
    return axes, centre


def _ellipsoid_band(axes: np.ndarray, centre: np.ndarray, levels: np.ndarray, count: int = 16) -> np.ndarray:
    """Points on horizontal circles of an ellipsoid at the given relative heights (-1 top .. 1 bottom)."""
    unit = circle(count)
    radius = np.sqrt(np.maximum(1.0 - levels**2, 0.0))[:, None]
    x = axes[0] * radius * unit[:, 0]
    z = axes[2] * radius * unit[:, 1]
    y = np.broadcast_to(axes[1] * levels[:, None], x.shape)
    return np.stack([x, y, z], axis=-1).reshape(-1, 3) + centre


def _sketch_hair(sketch: Sketch, i: Identity, hair: Colour) -> None:
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
