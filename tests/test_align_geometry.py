"""The numerical core of alignment: template, Umeyama estimate, landmark checks, warp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from _align_faces import landmarks_under, render, similarity

from facestra.align.geometry import (
    ARCFACE_TEMPLATE_112,
    LandmarkError,
    apply_affine,
    estimate_similarity,
    fit_residual,
    landmark_problem,
    outside_image_problem,
    parse_size,
    reference_landmarks,
    warp_face,
)


def test_hand_built_case_rotation_scale_translation():
    # Image points: template rotated by +90 degrees, scaled by 2, moved by (300, 40).
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    image_points = 2.0 * ARCFACE_TEMPLATE_112 @ rotation.T + np.array([300.0, 40.0])
    # By hand: the inverse map is (1/2) R^T (p - t) = [[0, .5], [-.5, 0]] p + (-20, 150).
    expected = np.array([[0.0, 0.5, -20.0], [-0.5, 0.0, 150.0]])
    matrix = estimate_similarity(image_points, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(matrix, expected, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_matches_opencv_partial_affine_on_exact_points(seed):
    rng = np.random.default_rng(seed)
    transform = similarity(rng.uniform(0.3, 4.0), rng.uniform(-180, 180), *rng.uniform(-200, 400, size=2))
    src = landmarks_under(transform)
    dst = reference_landmarks(rng.choice([112, 224, 128]))
    ours = estimate_similarity(src, dst)
    theirs, inliers = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32))
    assert inliers.all()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)
    assert fit_residual(ours, src, dst) < 1e-9


def umeyama_by_svd(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Textbook Umeyama (1991) with an SVD, as an independent reference for the closed form."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / (a**2).sum(axis=1).mean()
    return np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])


@pytest.mark.parametrize("seed", range(20))
def test_closed_form_equals_svd_umeyama_on_noisy_and_mirrored_points(seed):
    rng = np.random.default_rng(100 + seed)
    src = landmarks_under(similarity(rng.uniform(0.5, 3), rng.uniform(-180, 180), 100, 80))
    src = src + rng.normal(0, rng.uniform(0.1, 15.0), size=(5, 2))
    if seed % 4 == 0:
        src = src * [-1.0, 1.0]  # mirrored: the best similarity still must not reflect
    np.testing.assert_allclose(estimate_similarity(src, ARCFACE_TEMPLATE_112),
                               umeyama_by_svd(src, ARCFACE_TEMPLATE_112), atol=1e-9)


def test_least_squares_on_noisy_points_beats_perturbations():
    rng = np.random.default_rng(7)
    src = landmarks_under(similarity(1.7, 12, 80, 30)) + rng.normal(0, 2.0, size=(5, 2))
    dst = ARCFACE_TEMPLATE_112
    best = estimate_similarity(src, dst)
    best_cost = ((apply_affine(best, src) - dst) ** 2).sum()
    for _ in range(200):  # any nearby similarity fits worse
        da, ds, dx, dy = rng.normal(0, [0.02, 0.01, 0.3, 0.3])
        scale = np.sqrt(np.linalg.det(best[:, :2])) * (1 + ds)
        angle = np.arctan2(best[1, 0], best[0, 0]) + da
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        other = np.hstack([rot, best[:, 2:] + [[dx], [dy]]])
        assert ((apply_affine(other, src) - dst) ** 2).sum() >= best_cost - 1e-9


def test_never_a_reflection_even_for_mirrored_points():
    mirrored = ARCFACE_TEMPLATE_112 * [-1.0, 1.0] + [200.0, 0.0]
    matrix = estimate_similarity(mirrored, ARCFACE_TEMPLATE_112)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix[0, 0], matrix[1, 1])  # rotation+scale structure [[a, -b], [b, a]]
    np.testing.assert_allclose(matrix[0, 1], -matrix[1, 0])
    assert "mirrored" in landmark_problem(mirrored)


@pytest.mark.parametrize(
    "points, words",
    [
        (np.full((5, 2), 40.0), "equal"),
        (ARCFACE_TEMPLATE_112 * 0.01, "scale"),
        (np.c_[np.linspace(0, 100, 5), np.linspace(0, 50, 5)], "collinear"),
        (np.vstack([[np.nan, 51.0], ARCFACE_TEMPLATE_112[1:]]), "NaN"),
        (np.vstack([ARCFACE_TEMPLATE_112[:4], [[70.0, np.inf]]]), "infinity"),
        (np.arange(8.0), "10 numbers"),
    ],
)
def test_degenerate_landmarks_are_named_and_refused(points, words):
    problem = landmark_problem(points)
    assert problem is not None and words in problem
    with pytest.raises(LandmarkError, match=words):
        warp_face(np.zeros((200, 200, 3), np.uint8), points, 112)


def test_good_landmarks_pass_including_a_profile_like_face():
    assert landmark_problem(ARCFACE_TEMPLATE_112) is None
    assert landmark_problem(np.array([[50, 50], [52, 50], [45, 70], [50, 90], [52, 90.0]])) is None


def test_a_face_outside_the_image_is_named_and_a_face_at_the_border_is_not():
    face = ARCFACE_TEMPLATE_112 + [100, 100]  # eye distance 35.2: points may lie 17.6 px beyond an edge
    assert outside_image_problem(face, 300, 300) is None
    at_border = face - [face[:, 0].min() + 17, 0]  # the left eye 17 px beyond the left edge
    assert outside_image_problem(at_border, 300, 300) is None
    beyond = face - [face[:, 0].min() + 19, 0]
    assert outside_image_problem(beyond, 300, 300) == f"point 1 ({beyond[0, 0]:.1f}, {beyond[0, 1]:.1f}) is outside the 300x300 image"
    below = face + [0, 200 - face[3, 1] + 30]  # the mouth corners 30 px under the bottom of a 300x200 image
    assert outside_image_problem(below, 300, 200).startswith("point 4 ")
    assert outside_image_problem(face, 150, 300).startswith("point 2 ")  # the right eye at x=173.5, limit 166.6


def test_reference_landmarks_sizes():
    np.testing.assert_allclose(reference_landmarks(112), ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(reference_landmarks("224"), 2 * ARCFACE_TEMPLATE_112)
    # insightface norm_crop for 128: unscaled template moved 8 pixels right
    np.testing.assert_allclose(reference_landmarks(128), ARCFACE_TEMPLATE_112 + [8.0, 0.0])
    # 112x96: the SphereFace/CosFace template (ArcFace's moved 8 pixels left); 224x192 is twice that
    np.testing.assert_allclose(reference_landmarks("112x96"), ARCFACE_TEMPLATE_112 - [8.0, 0.0])
    np.testing.assert_allclose(reference_landmarks("224x192"), 2 * (ARCFACE_TEMPLATE_112 - [8.0, 0.0]))
    assert parse_size("224x192") == (224, 192) and parse_size(112) == (112, 112)
    for bad in ("0", "abc", "1x2x3", "-5", "5000"):
        with pytest.raises(ValueError):
            parse_size(bad)


@pytest.mark.parametrize(
    "scale, angle, tx, ty", [(2.5, 17.0, 90.0, 40.0), (2.6, -35.0, 30.0, 200.0), (1.6, 180.0, 260.0, 230.0)]
)
def test_face_rendered_at_known_similarity_comes_back(scale, angle, tx, ty):
    transform = similarity(scale, angle, tx, ty)
    image = render(transform, (460, 460))
    crop, matrix, residual = warp_face(image, landmarks_under(transform), 112)
    direct = render(similarity(1.0, 0.0, 0.0, 0.0), (112, 112))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert residual < 1e-6
    difference = np.abs(crop.astype(float) - direct.astype(float))
    assert difference.mean() < 1.0, difference.mean()
    # geometric check, independent of the matrix: the green (second eye) blob peaks where it does directly
    def green_peak(image):
        pixels = image.astype(int)
        greenness = pixels[:, :, 1] - np.maximum(pixels[:, :, 0], pixels[:, :, 2])
        return np.array(np.unravel_index(np.argmax(greenness), greenness.shape))

    assert np.abs(green_peak(crop) - green_peak(direct)).max() <= 1


def test_non_square_size_matches_rendering_with_the_hxw_template():
    transform = similarity(2.2, 8.0, 60.0, 20.0)
    image = render(transform, (360, 360))
    crop, _, residual = warp_face(image, landmarks_under(transform), "224x192")
    assert crop.shape == (224, 192, 3) and residual < 1e-6
    # the HxW template is the 112 one scaled by 2 and moved 16 left: render the face that way directly
    direct = render(similarity(2.0, 0.0, -16.0, 0.0), (224, 192))
    assert np.abs(crop.astype(float) - direct.astype(float)).mean() < 1.0


def test_outside_the_source_image_is_constant_black():
    transform = similarity(2.0, 0.0, -50.0, -50.0)  # face cut by the image's top-left corner
    image = render(transform, (300, 300))
    crop, _, _ = warp_face(image, landmarks_under(transform), 112)
    # crop = (image + 50) / 2, so crop pixels with x or y < 25 come from outside the image
    assert crop[:24].max() == 0 and crop[:, :24].max() == 0
    assert crop[26:, 26:].min() > 0
