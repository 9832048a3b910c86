"""The renderer's shortcuts against the plain computations they replace: they may be faster, never different."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facestra.synth.dataset import identity_rng, photo_rng
from facestra.synth.face import draw_face, face_parts
from facestra.synth.identity import Expression, sample_identity
from facestra.synth.projection import Projector, ellipse_outline
from facestra.synth.scene import gaussian_blur, sample_photo
from facestra.synth.sketch import Sketch
from facestra.synth.texture import TEXTURE_ONE, TEXTURE_X, TEXTURE_Y


def _person_and_photos(index: int, count: int = 6):
    identity = sample_identity(identity_rng(11, index))
    return identity, [sample_photo(photo_rng(11, index, number), 160) for number in range(1, count + 1)]


@pytest.mark.parametrize("index", range(4))
def test_shapes_built_once_per_person_draw_what_building_them_per_photo_draws(index):
    # An expression that is neutral to the last bit but not equal to zero takes the path that builds the eyes
    # and mouth for the photo; the neutral one includes the person's prebuilt ones. Same pixels, same points.
    identity, photos = _person_and_photos(index)
    parts = face_parts(identity)
    almost_neutral = Expression(smile=1e-300, mouth_open=0.0, eyes_closed=1e-300, brows_raised=1e-300)
    for photo in photos:
        prebuilt = np.full((160, 160, 3), 90, np.uint8)
        built = prebuilt.copy()
        marks_a = draw_face(prebuilt, identity, photo.pose, Expression(), photo.clothes, parts=parts)
        marks_b = draw_face(built, identity, photo.pose, almost_neutral, photo.clothes)
        np.testing.assert_array_equal(prebuilt, built)
        np.testing.assert_array_equal(marks_a, marks_b)
        assert (prebuilt != 90).any()


def test_texture_warped_where_it_varies_matches_warping_all_of_it():
    identity, photos = _person_and_photos(1)
    rng = np.random.default_rng(0)
    for photo in photos:
        projector = Projector(photo.pose, identity)
        canvas = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
        original, expected = canvas.copy(), canvas.copy()
        sketch = Sketch()
        sketch.texture(identity.texture)
        sketch.draw(canvas, projector)
        # the plain way: the whole three-channel texture over the bounding box of its projected corners
        corners = projector.project(np.array([[x, y, 0.75] for y in TEXTURE_Y for x in TEXTURE_X]))
        rows, cols = identity.texture.shape[:2]
        src = np.float32([[0.0, 0.0], [cols, 0.0], [0.0, rows]]) - 0.5
        matrix = cv2.getAffineTransform(src, corners[:3].astype(np.float32))
        x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, 160)
        x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 0, 160)
        matrix[:, 2] -= [x0, y0]
        gain = cv2.warpAffine(identity.texture, matrix, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(TEXTURE_ONE,) * 3)
        expected[y0:y1, x0:x1] = cv2.multiply(expected[y0:y1, x0:x1], gain, scale=1.0 / TEXTURE_ONE)
        difference = np.abs(canvas.astype(int) - expected)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # fixed-point rounding of the shift only
        assert (canvas != original).any()  # the texture did something


def test_closed_form_outline_is_the_eigendecomposition_outline():
    rng = np.random.default_rng(3)
    for _ in range(50):
        root = rng.normal(size=(2, 2)) * 20
        covariance = root @ root.T + np.eye(2)
        centre = rng.uniform(0, 200, 2)
        outline = ellipse_outline(centre, covariance)
        values, vectors = np.linalg.eigh(covariance)
        angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        reference = (np.column_stack([np.cos(angles), np.sin(angles)]) * np.sqrt(values)) @ vectors.T + centre
        # the same 48 points (an eigenvector's sign may walk the ellipse the other way or from the far end)
        np.testing.assert_allclose(np.sort(outline.view("f8,f8"), axis=0).view(float),
                                   np.sort(reference.view("f8,f8"), axis=0).view(float), atol=1e-9)
        offsets = outline - centre
        np.testing.assert_allclose(np.einsum("ni,ij,nj->n", offsets, np.linalg.inv(covariance), offsets), 1.0)


def test_silhouette_matrix_is_the_spread_of_its_outline():
    identity, photos = _person_and_photos(2)
    for photo in photos:
        projector = Projector(photo.pose, identity)
        centre, covariance = projector.silhouette_ellipse((1.0, 1.2, 0.9), (0.0, 0.1, 0.0))
        outline = projector.silhouette((1.0, 1.2, 0.9), (0.0, 0.1, 0.0))
        offsets = outline - outline.mean(axis=0)
        np.testing.assert_allclose(outline.mean(axis=0), centre, atol=1e-9)
        np.testing.assert_allclose(offsets.T @ offsets / len(offsets) * 2.0, covariance, rtol=1e-9)


@pytest.mark.parametrize("sigma", [0.6, 1.2, 1.8])
def test_separable_blur_is_opencvs_gaussian_blur_to_a_grey_level(sigma):
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (97, 131, 3), dtype=np.uint8), (0, 0), 1.5)
    difference = np.abs(gaussian_blur(image, sigma).astype(int) - cv2.GaussianBlur(image, (0, 0), sigma))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.05
