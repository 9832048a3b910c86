"""The detector path: YuNet (``yuface``) on scikit-image's astronaut, face choice, no-face, all faces."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facestra.align.geometry import apply_affine, estimate_similarity, reference_landmarks
from facestra.cli.main import main

pytest.importorskip("yuface")
skimage_data = pytest.importorskip("skimage.data")

TEMPLATE = reference_landmarks(112)


def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])


def run(*args):
    return CliRunner().invoke(main, ["align", *map(str, args)])


def report_rows(out):
    with open(out / "align_report.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def landmarks_of(row) -> np.ndarray:
    return np.array([float(row[f"{a}{i}"]) for i in range(1, 6) for a in "xy"]).reshape(5, 2)


def dark_centroid(grey: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Centroid of the darkest pixels (the iris) in a window around ``centre``: found in the crop itself."""
    x0, y0 = int(round(centre[0])) - 9, int(round(centre[1])) - 7
    window = grey[y0 : y0 + 15, x0 : x0 + 19].astype(float)
    ys, xs = np.nonzero(window <= np.percentile(window, 12))
    return np.array([xs.mean() + x0, ys.mean() + y0])


@pytest.fixture(scope="module")
def astronaut_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    images = root / "in"
    images.mkdir()
    cv2.imwrite(str(images / "astronaut.png"), astronaut_bgr())
    cv2.imwrite(str(images / "blank.png"), np.full((240, 320, 3), 128, np.uint8))
    out = root / "out"
    result = run(images, "--out", out, "--detector", "yunet", "--format", "png", "--workers", "1")
    return result, out


def test_astronaut_gives_exactly_one_face_with_its_score(astronaut_run):
    result, out = astronaut_run
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in report_rows(out)}
    assert len([r for r in report_rows(out) if r["path"] == "astronaut.png"]) == 1
    face = rows["astronaut.png"]
    assert face["status"] == "ok" and face["output"] == "astronaut.png" and face["face"] == ""
    assert 0.5 <= float(face["score"]) <= 1.0
    assert rows["blank.png"]["status"] == "no_face" and not (out / "blank.png").exists()
    assert "no_face 1" in result.stdout


def test_astronaut_eyes_land_near_the_template_eyes(astronaut_run):
    _, out = astronaut_run
    (face,) = [r for r in report_rows(out) if r["path"] == "astronaut.png"]
    points = landmarks_of(face)
    # the detector's eyes are where they are in the photo (independently hand-measured: pupils near
    # (203, 100) and (247, 102); YuNet puts the image-left eye a few pixels further left)
    assert np.abs(points[0] - [201, 101]).max() <= 4 and np.abs(points[1] - [247, 102]).max() <= 4
    matrix = estimate_similarity(points, TEMPLATE)
    eye_errors = np.linalg.norm(apply_affine(matrix, points[:2]) - TEMPLATE[:2], axis=1)
    # measured 3.8 and 3.5 pixels: the least-squares fit spreads the five-point misfit (a broad smile
    # does not match the template's mouth) over all points; the RMS residual in the report says the same
    assert eye_errors.max() <= 4.0, eye_errors
    assert abs(float(face["residual"]) - 3.7) < 0.5
    # and, in the written crop itself, the irises are dark blobs near the template's eyes
    grey = cv2.cvtColor(cv2.imread(str(out / "astronaut.png")), cv2.COLOR_BGR2GRAY)
    for eye in TEMPLATE[:2]:
        assert np.linalg.norm(dark_centroid(grey, eye) - eye) <= 4.5


def test_even_hand_measured_astronaut_landmarks_leave_more_than_3_px_at_the_eyes() -> None:
    # pupils, nose tip and mouth corners read off the photo by eye (see README, Alignment): the five-point
    # fit itself, not the detector, is what keeps the eyes over 3 px from the template on this face
    hand = np.array([[201.0, 100.0], [247.0, 102.0], [226.0, 127.0], [205.0, 140.0], [243.0, 141.0]])
    eye_errors = np.linalg.norm(apply_affine(estimate_similarity(hand, TEMPLATE), hand[:2]) - TEMPLATE[:2], axis=1)
    assert np.all(eye_errors > 3.0) and np.all(eye_errors < 3.6), eye_errors


@pytest.mark.xfail(strict=True, reason="the issue asks for 3 px; the five-point least-squares fit leaves 3.8 and "
                   "3.5 px at the eyes with YuNet's landmarks, and over 3 px even with hand-measured ones")
def test_astronaut_eyes_within_three_pixels_as_the_issue_asks(astronaut_run):
    _, out = astronaut_run
    (face,) = [r for r in report_rows(out) if r["path"] == "astronaut.png"]
    points = landmarks_of(face)
    matrix = estimate_similarity(points, TEMPLATE)
    assert np.linalg.norm(apply_affine(matrix, points[:2]) - TEMPLATE[:2], axis=1).max() <= 3.0


def test_two_faces_default_keeps_the_central_one_all_faces_writes_both(tmp_path):
    astronaut = astronaut_bgr()
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((700, 900, 3), 90, np.uint8)
    canvas[100:612, 194:706] = astronaut  # big face near the centre
    canvas[20:276, 630:886] = small  # small face at the top-right corner
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "group.png"), canvas)

    out = tmp_path / "one"
    assert run(images, "--out", out, "--detector", "yunet", "--workers", "1").exit_code == 0
    (row,) = report_rows(out)
    assert row["status"] == "ok" and 194 < landmarks_of(row)[0, 0] < 706  # the central, larger face

    every = tmp_path / "every"
    result = run(images, "--out", every, "--detector", "yunet", "--all-faces", "--workers", "1")
    assert result.exit_code == 0, result.output
    rows = report_rows(every)
    assert [r["output"] for r in rows] == ["group_0.jpg", "group_1.jpg"]
    assert all(r["status"] == "ok" and float(r["score"]) >= 0.5 for r in rows)
    assert landmarks_of(rows[0])[0, 0] < 706 < landmarks_of(rows[1])[0, 0]  # preferred face first
    for r in rows:
        assert cv2.imread(str(every / r["output"])).shape == (112, 112, 3)
