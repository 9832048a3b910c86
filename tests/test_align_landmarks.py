"""Landmark files: CSV (with and without header), JSON lines, insightface .lst; bad rows become reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facestra.align.landmarks import read_landmarks
from facestra.errors import UserError

POINTS = np.array([[10.5, 20.0], [30.0, 21.0], [20.0, 30.0], [12.0, 40.0], [28.0, 41.25]])


def _flat(points):
    return [f"{v:g}" for v in points.reshape(-1)]


def test_csv_with_header(tmp_path):
    path = tmp_path / "marks.csv"
    path.write_text("path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\n" + ",".join(["a/b.jpg", *_flat(POINTS)]) + "\n")
    (entry,) = read_landmarks(path)
    assert entry.path == "a/b.jpg" and entry.problem is None and entry.line == 2
    np.testing.assert_array_equal(entry.points, POINTS)


def test_csv_without_header_and_quoted_path_with_comma(tmp_path):
    path = tmp_path / "marks.txt"  # format sniffed from the content
    path.write_text('"x, y.jpg",' + ",".join(_flat(POINTS)) + "\n" + ",".join(["c.png", *_flat(POINTS + 1)]) + "\n")
    first, second = read_landmarks(path)
    assert first.path == "x, y.jpg" and second.path == "c.png"
    np.testing.assert_array_equal(second.points, POINTS + 1)


def test_json_lines_nested_and_flat(tmp_path):
    path = tmp_path / "marks.jsonl"
    path.write_text(
        json.dumps({"path": "a.jpg", "landmarks": POINTS.tolist()}) + "\n\n"
        + json.dumps({"image": "b.jpg", "kps": POINTS.reshape(-1).tolist()}) + "\n"
    )
    first, second = read_landmarks(path)
    assert (first.path, second.path) == ("a.jpg", "b.jpg")
    np.testing.assert_array_equal(first.points, POINTS)
    np.testing.assert_array_equal(second.points, POINTS)


def test_a_json_array_file_is_read_too(tmp_path):
    path = tmp_path / "marks.json"
    path.write_text(json.dumps([{"path": "a.jpg", "points": POINTS.tolist()}, {"path": "b.jpg"}], indent=1))
    first, second = read_landmarks(path)
    np.testing.assert_array_equal(first.points, POINTS)
    assert second.path == "b.jpg" and "landmarks" in second.problem


def test_insightface_lst_stores_xs_then_ys(tmp_path):
    path = tmp_path / "train.lst"
    fields = ["0", "id1/1.jpg", "7", "1", "2", "50", "60", *_flat(POINTS[:, 0]), *_flat(POINTS[:, 1])]
    path.write_text("\t".join(fields) + "\n")
    (entry,) = read_landmarks(path)
    assert entry.path == "id1/1.jpg"
    np.testing.assert_array_equal(entry.points, POINTS)


def test_bad_rows_carry_a_reason_instead_of_failing_the_file(tmp_path):
    path = tmp_path / "marks.csv"
    path.write_text(
        "short.jpg,1,2,3\n"
        "word.jpg," + ",".join(["abc"] + _flat(POINTS)[1:]) + "\n"
        "nan.jpg," + ",".join(["nan"] + _flat(POINTS)[1:]) + "\n"
    )
    short, word, nan = read_landmarks(path)
    assert "got 3" in short.problem and short.points is None
    assert "not a number" in word.problem
    assert nan.problem is None and np.isnan(nan.points[0, 0])  # NaN is judged later, by the validator
    jsonl = tmp_path / "marks.jsonl"
    jsonl.write_text('{"path": "a.jpg", "landmarks": [[1, 2]]}\nnot json\n{"landmarks": []}\n')
    few, broken, pathless = read_landmarks(jsonl)
    assert "got 2" in few.problem and "not JSON" in broken.problem and "path" in pathless.problem


def test_unreadable_or_empty_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_landmarks(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("path,x1,y1\n")
    with pytest.raises(UserError, match="no landmark rows"):
        read_landmarks(empty)
