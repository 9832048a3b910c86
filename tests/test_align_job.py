"""``facestra align`` end to end: trees, reports, formats, bad input, no overwrite, resume, workers."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from _align_faces import landmarks_under, render, similarity
from _bad_images import oversized_png
from click.testing import CliRunner

from facestra.cli.main import main

DIRECT = render(similarity(1.0, 0.0, 0.0, 0.0), (112, 112))


def make_faces(root: Path, names: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Render one face per name (extension decides the format) at a random similarity; return landmarks."""
    rng = np.random.default_rng(seed)
    marks = {}
    for name in names:
        transform = similarity(rng.uniform(1.2, 1.6), rng.uniform(-30, 30), *rng.uniform(95, 105, size=2))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, 98] if path.suffix.lower() == ".jpg" else []
        assert cv2.imwrite(str(path), render(transform, (360, 360)), params)
        marks[name] = landmarks_under(transform)
    return marks


def write_csv(path: Path, marks: dict[str, np.ndarray], header: bool = True) -> Path:
    lines = ["path," + ",".join(f"{a}{i}" for i in range(1, 6) for a in "xy")] if header else []
    lines += [",".join([name, *(repr(float(v)) for v in points.reshape(-1))]) for name, points in marks.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_report(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with open(out / "align_report.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["path"], []).append(row)
    return rows


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args: str):
    return CliRunner().invoke(main, ["align", *map(str, args)])


@pytest.fixture()
def faces(tmp_path):
    images = tmp_path / "in"
    marks = make_faces(images, ["p1/a.png", "p1/b.BMP", "p2/c.jpg"])
    return images, write_csv(tmp_path / "marks.csv", marks), marks


def test_folder_with_csv_landmarks_gives_the_tree_crops_and_report(faces, tmp_path):
    images, marks_file, marks = faces
    before = tree_digest(images)
    out = tmp_path / "out"
    result = run(images, "--out", out, "--landmarks", marks_file, "--format", "png", "--workers", "1",
                 "--json", tmp_path / "summary.json")
    assert result.exit_code == 0, result.output
    assert "ok 3" in result.stdout and "0 warnings" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"ok": 3} and summary["images"] == 3 and summary["warnings"] == 0
    assert tree_digest(images) == before  # the input tree is untouched
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["p1/a.png", "p1/b.png", "p2/c.png"]
    for name in ["p1/a.png", "p1/b.png"]:  # lossless inputs: the crop equals the directly rendered face
        crop = cv2.imread(str(out / name))
        assert crop.shape == (112, 112, 3)
        assert np.abs(crop.astype(float) - DIRECT).mean() < 1.0
    jpeg_crop = cv2.imread(str(out / "p2/c.png"))
    assert np.abs(jpeg_crop.astype(float) - DIRECT).mean() < 2.0  # the input itself was JPEG-compressed
    report = read_report(out)
    assert sorted(report) == ["p1/a.png", "p1/b.BMP", "p2/c.jpg"]
    for name, (row,) in report.items():
        assert row["status"] == "ok" and float(row["residual"]) < 1e-3 and row["score"] == ""
        used = np.array([float(row[f"{a}{i}"]) for i in range(1, 6) for a in "xy"]).reshape(5, 2)
        np.testing.assert_allclose(used, marks[name], atol=1e-3)


def test_every_landmark_format_gives_the_same_crops(faces, tmp_path):
    images, marks_file, marks = faces
    jsonl = tmp_path / "marks.jsonl"
    jsonl.write_text("".join(json.dumps({"path": n, "landmarks": p.tolist()}) + "\n" for n, p in marks.items()))
    lst = tmp_path / "marks.lst"
    lst.write_text("".join(
        "\t".join(["0", n, "0", "0", "0", "1", "1", *map(repr, p[:, 0].tolist()), *map(repr, p[:, 1].tolist())])
        + "\n"
        for n, p in marks.items()
    ))
    headerless = write_csv(tmp_path / "plain.csv", marks, header=False)
    digests = []
    for number, source in enumerate([marks_file, headerless, jsonl, lst]):
        out = tmp_path / f"out{number}"
        result = run(images, "--out", out, "--landmarks", source, "--format", "png", "--workers", "1")
        assert result.exit_code == 0, result.output
        digests.append({k: v for k, v in tree_digest(out).items() if k.endswith(".png")})
    assert len(digests[0]) == 3 and all(d == digests[0] for d in digests)


def test_bad_input_becomes_report_statuses_and_strict_fails_with_exit_1(tmp_path):
    images = tmp_path / "in"
    marks = make_faces(images, [f"{n}.png" for n in
                                ("good", "short", "nan", "inf", "equal", "line", "tiny", "mirror", "word", "norow", "off")])
    (images / "garbage.jpg").write_bytes(b"this is not an image")
    good_jpeg = cv2.imencode(".jpg", render(similarity(1.3, 0, 60, 60), (260, 260)))[1].tobytes()
    (images / "cut.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (images / "huge.png").write_bytes(oversized_png())
    template = marks["good.png"]
    rows = {
        "good.png": marks["good.png"].reshape(-1).tolist(),
        "short.png": [1, 2, 3, 4, 5, 6, 7, 8],
        "nan.png": [float("nan")] + template.reshape(-1).tolist()[1:],
        "inf.png": template.reshape(-1).tolist()[:-1] + [float("inf")],
        "equal.png": [40.0] * 10,
        "line.png": np.c_[np.linspace(0, 100, 5), np.linspace(10, 60, 5)].reshape(-1).tolist(),
        "tiny.png": (template * 0.005 + 50).reshape(-1).tolist(),
        "mirror.png": (template * [-1, 1] + 300).reshape(-1).tolist(),
        "off.png": (template + [1000, 0]).reshape(-1).tolist(),  # a face to the right of the image
        "garbage.jpg": template.reshape(-1).tolist(),
        "cut.jpg": landmarks_under(similarity(1.3, 0, 60, 60)).reshape(-1).tolist(),
        "huge.png": template.reshape(-1).tolist(),
        "gone.png": template.reshape(-1).tolist(),
    }
    lines = [",".join([name, *map(str, values)]) for name, values in rows.items()]
    lines.append("word.png,abc," + ",".join(["1"] * 9))
    marks_file = tmp_path / "marks.csv"
    marks_file.write_text("\n".join(lines) + "\n")

    out = tmp_path / "out"
    result = run(images, "--out", out, "--landmarks", marks_file, "--workers", "1")
    assert result.exit_code == 0, result.output
    statuses = {name: rows_[0]["status"] for name, rows_ in read_report(out).items()}
    assert statuses == {
        "good.png": "ok",
        "short.png": "bad_landmarks", "nan.png": "bad_landmarks", "inf.png": "bad_landmarks",
        "equal.png": "bad_landmarks", "line.png": "bad_landmarks", "tiny.png": "bad_landmarks",
        "mirror.png": "bad_landmarks", "word.png": "bad_landmarks", "off.png": "bad_landmarks",
        "garbage.jpg": "unreadable", "cut.jpg": "unreadable", "huge.png": "unreadable",
        "norow.png": "no_landmarks", "gone.png": "missing_image",
    }
    details = {name: rows_[0]["detail"] for name, rows_ in read_report(out).items()}
    assert "more pixels than OpenCV decodes" in details["huge.png"]
    assert re.fullmatch(r"line 9: point 1 \([\d.]+, [\d.]+\) is outside the 360x360 image", details["off.png"])
    assert "truncated" in details["cut.jpg"] and "NaN" in details["nan.png"] and "collinear" in details["line.png"]
    # checked where the crop is fitted, yet still naming the landmarks file's line
    assert details["short.png"].startswith("line 2: ") and details["line.png"].startswith("line 6: ")
    assert "14 warnings" in result.stdout and "bad_landmarks 9" in result.stdout
    assert [p.name for p in out.rglob("*.jpg")] == ["good.jpg"]  # no garbage crops

    strict = run(images, "--out", tmp_path / "strict", "--landmarks", marks_file, "--workers", "1", "--strict")
    assert strict.exit_code == 1
    assert strict.stderr.count("\n") == 1 and strict.stderr.startswith("error: strict: 14 problems")
    assert (tmp_path / "strict" / "align_report.csv").is_file()  # the report is written before failing


def test_user_errors_are_one_line_with_exit_2(faces, tmp_path):
    images, marks_file, _ = faces
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [
        ([tmp_path / "nowhere", "--out", tmp_path / "o1", "--landmarks", marks_file], "nowhere: no such folder"),
        ([images, "--out", blocker / "sub", "--landmarks", marks_file], "cannot write the output folder"),
        ([images, "--out", images / "aligned", "--landmarks", marks_file], "must not overlap the input"),
        ([images, "--out", tmp_path / "o2"], "landmarks file or a detector"),
        ([images, "--out", tmp_path / "o3", "--landmarks", tmp_path / "missing.csv"], "missing.csv: cannot read"),
        ([images, "--out", tmp_path / "o4", "--landmarks", marks_file, "--size", "12x"], "size"),
        ([tmp_path / "empty", "--out", tmp_path / "o5", "--detector", "yunet"], "no images found"),
        ([images, "--out", tmp_path / "o6", "--landmarks", marks_file, "--all-faces"], "with a detector"),
    ]
    (tmp_path / "empty").mkdir()
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert not (images / "aligned").exists()


KILLER = textwrap.dedent(
    """
    import os, sys
    from facestra.align.job import AlignOptions, align_images

    def progress(done, total):
        if done == 3:
            os._exit(137)  # die like a killed process: no cleanup, no report

    align_images(sys.argv[1], sys.argv[2], AlignOptions(landmarks=sys.argv[3], workers=1), progress=progress)
    """
)


def test_resume_after_a_killed_run(tmp_path):
    images = tmp_path / "in"
    names = [f"img{i}.png" for i in range(8)]
    marks_file = write_csv(tmp_path / "marks.csv", make_faces(images, names))
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLER, str(images), str(out), str(marks_file)],
                            capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    first = sorted(p.name for p in out.glob("*.jpg"))
    assert {"img0.jpg", "img1.jpg", "img2.jpg"} <= set(first) and not (out / "align_report.csv").exists()
    stamps = {name: os.stat(out / name).st_mtime_ns for name in first}
    # what a kill at other moments also leaves: a half-written temp file and a torn journal line
    (out / ".img3.jpg.abc123.tmp.jpg").write_bytes(b"\xff\xd8 half")
    with open(out / ".align_journal.jsonl", "a") as journal:
        journal.write('{"path": "img3.png", "rec')

    result = run(images, "--out", out, "--landmarks", marks_file, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "ok 8" in result.stdout and "warnings" in result.stdout
    assert {name: os.stat(out / name).st_mtime_ns for name in first} == stamps  # kept, not rewritten
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"img{i}.jpg" for i in range(8)]
    assert not list(out.glob(".*.tmp.*"))  # the half-written file is gone
    report = read_report(out)
    assert sorted(report) == names and all(rows[0]["status"] == "ok" for rows in report.values())
    for name in names:  # every output decodes whole
        assert cv2.imread(str(out / name.replace(".png", ".jpg"))).shape == (112, 112, 3)

    stamps = {p.name: os.stat(p).st_mtime_ns for p in out.glob("*.jpg")}
    again = run(images, "--out", out, "--landmarks", marks_file, "--workers", "1")
    assert again.exit_code == 0 and "8 done by an earlier run" in again.stdout and "ok 8" in again.stdout
    assert {p.name: os.stat(p).st_mtime_ns for p in out.glob("*.jpg")} == stamps
    assert read_report(out) == report

    other = run(images, "--out", out, "--landmarks", marks_file, "--size", "224")
    assert other.exit_code == 2 and "other settings" in other.stderr


def test_two_workers_write_the_same_files_as_one(tmp_path, monkeypatch):
    import facestra.align.workers

    monkeypatch.setattr(facestra.align.workers, "MIN_IMAGES_PER_WORKER", 4)  # use the pool even for 24 images
    seen = []
    real_pool = facestra.align.workers.multiprocessing.get_context

    def spying_context(method):
        seen.append(method)
        return real_pool(method)

    monkeypatch.setattr(facestra.align.workers.multiprocessing, "get_context", spying_context)
    images = tmp_path / "in"
    marks_file = write_csv(tmp_path / "marks.csv", make_faces(images, [f"d{i % 3}/f{i}.png" for i in range(24)]))
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(images, "--out", one, "--landmarks", marks_file, "--workers", "1").exit_code == 0
    result = run(images, "--out", two, "--landmarks", marks_file, "--workers", "2")
    assert result.exit_code == 0, result.output
    digest_one, digest_two = tree_digest(one), tree_digest(two)
    assert {k for k in digest_one if k.endswith(".jpg")} == {f"d{i % 3}/f{i}.jpg" for i in range(24)}
    assert {k: v for k, v in digest_one.items() if k.endswith(".jpg")} == {
        k: v for k, v in digest_two.items() if k.endswith(".jpg")}
    assert (one / "align_report.csv").read_text() == (two / "align_report.csv").read_text()
    assert seen == ["spawn"]  # the second run did go through the process pool


def test_list_file_input_hxw_size_and_name_clash(tmp_path):
    images = tmp_path / "in"
    marks = make_faces(images, ["a.png", "a.bmp", "b.png", "c.png"])  # c.png is not in the list
    listing = images / "list.txt"
    listing.write_text("# images to align\na.png\na.bmp\nb.png\nmissing.png\n../outside.png\n")
    marks_file = write_csv(tmp_path / "marks.csv", marks)
    out = tmp_path / "out"
    result = run(listing, "--out", out, "--landmarks", marks_file, "--size", "224x192", "--workers", "1")
    assert result.exit_code == 0, result.output
    statuses = {name: rows[0]["status"] for name, rows in read_report(out).items()}
    assert statuses == {"a.bmp": "ok", "a.png": "name_clash", "b.png": "ok", "missing.png": "missing_image",
                        "../outside.png": "missing_image"}
    assert cv2.imread(str(out / "b.jpg")).shape == (224, 192, 3)


def test_truncated_jpeg_and_png_are_caught_before_decoding():
    from facestra.data.images import decode_image
    from facestra.data.truncation import truncation_problem

    image = render(similarity(1.0, 0.0, 0.0, 0.0), (112, 112))
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image)[1].tobytes()
    assert truncation_problem(jpeg) is None and truncation_problem(png) is None
    # an embedded thumbnail (a whole JPEG inside an APP15 segment) carries its own end marker
    thumbnail = cv2.imencode(".jpg", image[::4, ::4])[1].tobytes()
    segment = b"\xff\xef" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_thumbnail = jpeg[:2] + segment + jpeg[2:]
    assert truncation_problem(with_thumbnail) is None
    assert "truncated JPEG" in truncation_problem(with_thumbnail[: len(with_thumbnail) - 200])
    # data appended after the image (as motion photos do) is not truncation; the image decodes as before
    with_trailer = jpeg + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4
    assert truncation_problem(with_trailer) is None
    np.testing.assert_array_equal(decode_image(with_trailer, "x.jpg"), decode_image(jpeg, "x.jpg"))
    assert "truncated JPEG" in truncation_problem(jpeg[:-2])
    assert "truncated PNG" in truncation_problem(png[:-20])


def test_detector_without_yuface_says_how_to_install_it(faces, tmp_path, monkeypatch):
    images, _, _ = faces
    monkeypatch.setitem(sys.modules, "yuface", None)  # import yuface now raises ImportError
    result = run(images, "--out", tmp_path / "out", "--detector", "yunet")
    assert result.exit_code == 2
    assert "pip install 'facestra[detect]'" in result.stderr and result.stderr.count("\n") == 1


def test_degenerate_detector_landmarks_are_reported_not_cropped(tmp_path, monkeypatch):
    # a detector's landmarks are checked where the crop is fitted (the writer thread with one worker)
    import facestra.align.job as align_job
    from facestra.align.detect import Face

    class CollinearDetector:
        name = "yunet"

        def __call__(self, image):
            points = np.array([[40.0, 40.0], [60.0, 60.0], [80.0, 80.0], [100.0, 100.0], [120.0, 120.0]])
            return [Face(score=0.9, box=np.array([30.0, 30.0, 100.0, 100.0]), landmarks=points)]

    monkeypatch.setattr(align_job, "load_detector", lambda name, min_score: CollinearDetector())
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "face.png"), np.full((160, 160, 3), 128, np.uint8))

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["align", str(images), "--out", str(out), "--detector", "yunet", "--workers", "1"])
    assert result.exit_code == 0, result.output
    (row,) = read_report(out)["face.png"]
    assert row["status"] == "bad_landmarks" and row["detail"] == "points are collinear" and row["output"] == ""
    assert float(row["score"]) == pytest.approx(0.9) and not (out / "face.jpg").exists()

    strict = CliRunner().invoke(main, ["align", str(images), "--out", str(tmp_path / "strict"), "--detector", "yunet",
                                       "--workers", "1", "--strict"])
    assert strict.exit_code == 1 and "bad_landmarks 1" in strict.output
