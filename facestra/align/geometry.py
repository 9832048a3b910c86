"""Five-landmark similarity alignment to the ArcFace crop: template, estimate, warp.

Every face that enters training or evaluation is warped so that its eyes, nose tip and mouth corners land on
the ArcFace 112x112 template. The map is a *similarity* (rotation, uniform scale, translation, no
reflection) so that face shape is never distorted; it is the least-squares fit of Umeyama (1991), written
out in closed form so that it is exact, deterministic and free of RANSAC's randomness.

All functions are pure: arrays in, arrays out. Problems with landmarks are reported as
:class:`LandmarkError` (a ``ValueError``) whose message is meant for the alignment report.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from facestra.fields import IMAGE_SIDES

#: The ArcFace template for a 112x112 crop, in pixels (x, y): the eye on the image's left, the other eye,
#: the nose tip, the mouth corner on the image's left, the other mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_TEMPLATE_112.setflags(write=False)

#: Landmarks spread less than this (RMS distance to their centroid, in image pixels) carry no usable
#: scale: the crop would be a blow-up of one or two pixels.
MIN_SPREAD_PIXELS = 1.0
#: Ratio of the two principal extents below which five points count as lying on one line.
MIN_FLATNESS = 0.02

Size = tuple[int, int]


class LandmarkError(ValueError):
    """Landmarks that cannot give a meaningful crop; the message says why (for the report)."""


def parse_size(size: int | str | tuple[int, int] | list[int]) -> Size:
    """Read an output size given as ``112``, ``"112"``, ``"224x192"`` (height x width) or ``(H, W)``."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size {size!r}: expected (height, width)")
        height, width = (int(v) for v in size)
    elif isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        text = str(size).strip().lower()
        parts = text.split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"size {size!r}: expected N or HxW, e.g. 112 or 224x192") from None
        if len(values) == 1:
            height = width = values[0]
        elif len(values) == 2:
            height, width = values
        else:
            raise ValueError(f"size {size!r}: expected N or HxW, e.g. 112 or 224x192")
    low, high = IMAGE_SIDES
    if not (low <= height <= high and low <= width <= high):
        raise ValueError(f"size {size!r}: height and width must be between {low} and {high} pixels")
    return height, width


def reference_landmarks(size: int | str | tuple[int, int] = 112) -> np.ndarray:
    """The template (5x2, x/y in pixels) for an output crop of ``size``.

    The convention is the one users of insightface and of the SphereFace/CosFace crops expect:

    * square sizes that are multiples of 112 scale the 112 template (224 -> x2);
    * other square sizes follow insightface's ``norm_crop`` rule for 128: scale by size/128 and shift right
      by 8*size/128 (the 112 template sits in a 128-wide crop with 8 pixels each side);
    * ``HxW`` with H != W scales by H/112 and centres the template horizontally, which gives the classic
      112x96 SphereFace/CosFace template at 112x96 and twice it at 224x192.
    """
    height, width = parse_size(size)
    template = ARCFACE_TEMPLATE_112.copy()
    if height == width:
        if height % 112 == 0:
            return template * (height / 112.0)
        ratio = height / 128.0
        template *= ratio
        template[:, 0] += 8.0 * ratio
        return template
    ratio = height / 112.0
    template *= ratio
    template[:, 0] += (width - 112.0 * ratio) / 2.0
    return template


def _centred(points: list[float]) -> tuple[list[float], list[float], float, float]:
    """x and y coordinates of flat [x1, y1, x2, y2, ...] points about their centroid, and the centroid."""
    xs, ys = points[0::2], points[1::2]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return [x - mean_x for x in xs], [y - mean_y for y in ys], mean_x, mean_y


def _dot(u: list[float], v: list[float]) -> float:
    return sum(map(operator.mul, u, v))


#: The 112 template about its centroid (x and y): what :func:`landmark_problem` compares points with.
_TEMPLATE_X, _TEMPLATE_Y = (tuple(v) for v in _centred(ARCFACE_TEMPLATE_112.reshape(-1).tolist())[:2])


def landmark_problem(points: np.ndarray) -> str | None:
    """Why ``points`` (5x2, image pixels, template order) cannot be aligned, or None if they can.

    Catches what would otherwise give a garbage crop silently: wrong count, NaN/inf, all points equal,
    points a pixel apart (scale ~ 0), points on a line, and mirrored points (e.g. eyes given right first:
    a mirror image of the template fits them better than the template, and no rotation can fix that).
    Written with plain floats (closed-form 2x2 algebra): it runs once per image, and numpy's per-call
    overhead on five points would cost more than the warp.
    """
    flat = np.asarray(points, dtype=np.float64).reshape(-1).tolist()
    if len(flat) != 10:
        return f"expected 5 points (10 numbers), got {len(flat)} numbers"
    if not all(math.isfinite(v) for v in flat):
        return "landmarks contain NaN or infinity"
    x, y, _, _ = _centred(flat)
    sxx, syy, sxy = _dot(x, x), _dot(y, y), _dot(x, y)
    spread = math.sqrt((sxx + syy) / 5.0)
    if spread == 0.0:
        return "all five points are equal"
    if spread < MIN_SPREAD_PIXELS:
        return f"points span {spread:.3g} pixels (scale ~ 0)"
    half_trace = (sxx + syy) / 2.0
    root = math.hypot((sxx - syy) / 2.0, sxy)  # principal variances: half_trace +- root
    if math.sqrt(max(half_trace - root, 0.0) / (half_trace + root)) < MIN_FLATNESS:
        return "points are collinear"
    tx, ty = _TEMPLATE_X, _TEMPLATE_Y
    rotation_fit = math.hypot(_dot(tx, x) + _dot(ty, y), _dot(tx, y) - _dot(ty, x))
    reflection_fit = math.hypot(_dot(tx, x) - _dot(ty, y), _dot(tx, y) + _dot(ty, x))
    if reflection_fit > rotation_fit:
        return "points are mirrored with respect to the template (left/right swapped?)"
    return None


#: How far (in eye distances) a point may lie outside the image and still be aligned: detectors extrapolate
#: the landmarks of a face cut by the border a little beyond it, and that crop is still mostly face.
OUTSIDE_TOLERANCE_EYES = 0.5


def outside_image_problem(points: np.ndarray, width: int, height: int) -> str | None:
    """Why five landmarks put the face outside a ``width`` x ``height`` image, or None: a point further out
    than :data:`OUTSIDE_TOLERANCE_EYES` eye distances would leave a crop that is mostly black border."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1).tolist()
    eye_distance = math.hypot(flat[2] - flat[0], flat[3] - flat[1])
    margin = OUTSIDE_TOLERANCE_EYES * eye_distance
    for number, (x, y) in enumerate(zip(flat[0::2], flat[1::2]), start=1):
        if not (-margin <= x <= width - 1 + margin and -margin <= y <= height - 1 + margin):
            return f"point {number} ({x:.1f}, {y:.1f}) is outside the {width}x{height} image"
    return None


def estimate_similarity(src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping ``src_points`` onto ``dst_points``: a 2x3 matrix.

    This is Umeyama's solution written out for the plane. With centred points a (source) and b
    (destination), the cross-covariance is C = sum b a^T / n. Umeyama takes R = U diag(1, sign det(U V^T)) V^T
    from the SVD C = U S V^T and scale = trace(diag(1, +-1) S) / var(a). In 2D that rotation has angle
    atan2(C10 - C01, C00 + C11) and that scale is hypot(C00 + C11, C10 - C01) / var(a), so no SVD is needed
    -- which matters when it runs once per image. Raises :class:`LandmarkError` when the source points
    have no spread.
    """
    src = np.asarray(src_points, dtype=np.float64).reshape(-1).tolist()
    dst = np.asarray(dst_points, dtype=np.float64).reshape(-1).tolist()
    if len(src) != len(dst) or len(src) < 4 or len(src) % 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {len(src)} and {len(dst)} numbers")
    if not all(math.isfinite(v) for v in src + dst):
        raise LandmarkError("landmarks contain NaN or infinity")
    ax, ay, src_x, src_y = _centred(src)
    bx, by, dst_x, dst_y = _centred(dst)
    variance = _dot(ax, ax) + _dot(ay, ay)
    if variance <= 1e-12 * len(ax):
        raise LandmarkError("all points are equal")
    cosine = (_dot(ax, bx) + _dot(ay, by)) / variance  # scale * cos(angle)
    sine = (_dot(ax, by) - _dot(ay, bx)) / variance  # scale * sin(angle)
    return np.array(
        [
            [cosine, -sine, dst_x - (cosine * src_x - sine * src_y)],
            [sine, cosine, dst_y - (sine * src_x + cosine * src_y)],
        ]
    )


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map Nx2 points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix, dtype=np.float64)[:, 2]


def fit_residual(matrix: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray) -> float:
    """RMS distance, in output-crop pixels, between the mapped landmarks and the template."""
    (a, b, c), (d, e, f) = np.asarray(matrix, dtype=np.float64).tolist()
    src = np.asarray(src_points, dtype=np.float64).reshape(-1).tolist()
    dst = np.asarray(dst_points, dtype=np.float64).reshape(-1).tolist()
    squares = [
        (a * x + b * y + c - u) ** 2 + (d * x + e * y + f - v) ** 2
        for x, y, u, v in zip(src[0::2], src[1::2], dst[0::2], dst[1::2])
    ]
    return math.sqrt(sum(squares) / len(squares))


def fit_face(
    landmarks: np.ndarray,
    size: int | str | tuple[int, int] = 112,
) -> tuple[np.ndarray, float]:
    """The 2x3 image-to-crop similarity for a face's five ``landmarks`` and its RMS residual in crop pixels.

    Raises :class:`LandmarkError` for landmarks that :func:`landmark_problem` rejects.
    """
    problem = landmark_problem(landmarks)
    if problem is not None:
        raise LandmarkError(problem)
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    template = reference_landmarks(size)
    matrix = estimate_similarity(points, template)
    return matrix, fit_residual(matrix, points, template)


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int | str | tuple[int, int] = 112) -> np.ndarray:
    """The crop of ``size`` under the image-to-crop ``matrix``: bilinear, black border."""
    import cv2

    height, width = parse_size(size)
    return cv2.warpAffine(
        image,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def warp_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int | str | tuple[int, int] = 112,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Crop the face whose five ``landmarks`` (image pixels, template order) are given.

    Returns ``(crop, matrix, residual)``: the aligned crop (bilinear, black border), the 2x3 image-to-crop
    matrix, and the RMS landmark residual in crop pixels (:func:`fit_face` then :func:`warp_to_crop`).
    """
    matrix, residual = fit_face(landmarks, size)
    return warp_to_crop(image, matrix, size), matrix, residual
