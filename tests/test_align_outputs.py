"""``facestra align`` never adopts or overwrites a file it did not write, ``--overwrite`` leaves no stale crop,
and every file name round-trips through the report; BOM and CRLF text inputs read like plain ones."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner
from test_align_job import make_faces, write_csv

from facestra.cli.main import main

DETAIL_COLUMNS = [f"{axis}{i}" for i in range(1, 6) for axis in "xy"]


def run(*args):
    return CliRunner().invoke(main, ["align", *map(str, args), "--workers", "1"])


def report_rows(out: Path) -> list[dict]:
    with open(out / "align_report.csv", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def statuses(out: Path) -> dict[str, str]:
    return {row["path"]: row["status"] for row in report_rows(out)}


def test_a_file_facestra_did_not_write_is_occupied_never_adopted_or_overwritten(tmp_path):
    images = tmp_path / "in"
    marks_file = write_csv(tmp_path / "marks.csv", make_faces(images, ["p1/a.png", "p1/b.png", "c.png"]))
    out = tmp_path / "out"
    (out / "p1").mkdir(parents=True)
    (out / "p1" / "a.jpg").write_bytes(b"precious")
    for extra in ([], [], ["--overwrite"], ["--strict"]):  # fresh, resumed, redone, strict: all the same
        result = run(images, "--out", out, "--landmarks", marks_file, *extra)
        assert result.exit_code == 1, (extra, result.output)
        assert result.stderr.count("\n") == 1, result.stderr
        if extra == ["--strict"]:
            assert result.stderr.startswith("error: strict: 1 problems") and "occupied 1" in result.stderr
        else:
            assert "occupied 1" in result.stdout and "1 warnings" in result.stdout
            assert "p1/a.jpg" in result.stderr and "not write" in result.stderr
        assert (out / "p1" / "a.jpg").read_bytes() == b"precious"
        rows = {row["path"]: row for row in report_rows(out)}
        assert {p: r["status"] for p, r in rows.items()} == {"p1/a.png": "occupied", "p1/b.png": "ok", "c.png": "ok"}
        assert rows["p1/a.png"]["output"] == "" and "p1/a.jpg already exists and was not written by" in \
            rows["p1/a.png"]["detail"]
    assert cv2.imread(str(out / "p1" / "b.jpg")).shape == (112, 112, 3)


def test_resume_adopts_a_crop_only_if_it_holds_what_this_run_writes(tmp_path):
    images = tmp_path / "in"
    marks_file = write_csv(tmp_path / "marks.csv", make_faces(images, ["a.png", "b.png", "c.png"]))
    out = tmp_path / "out"
    assert run(images, "--out", out, "--landmarks", marks_file).exit_code == 0
    journal = out / ".align_journal.jsonl"
    journal.write_text(journal.read_text().split("\n")[0] + "\n")  # a kill lost every record line
    (out / "b.jpg").unlink()
    cv2.imwrite(str(out / "b.jpg"), np.zeros((112, 112, 3), np.uint8))  # the user's own picture now
    user_bytes = (out / "b.jpg").read_bytes()
    result = run(images, "--out", out, "--landmarks", marks_file)
    assert result.exit_code == 1 and "occupied 1" in result.stdout and "ok 2" in result.stdout
    rows = {row["path"]: row for row in report_rows(out)}
    assert rows["a.png"]["detail"] == "written by the interrupted run" and rows["b.png"]["status"] == "occupied"
    assert (out / "b.jpg").read_bytes() == user_bytes


def test_overwrite_removes_the_earlier_runs_crops_of_another_format_and_of_now_failing_images(tmp_path):
    images = tmp_path / "in"
    marks = make_faces(images, ["p1/a.png", "p1/b.png", "c.png", "gone.png"])
    marks_file = write_csv(tmp_path / "marks.csv", marks)
    out = tmp_path / "out"
    (out / "p1").mkdir(parents=True)
    (out / "p1" / "mine.jpg").write_bytes(b"user file")  # no image of that name: never touched
    (out / "notes.txt").write_text("keep")
    assert run(images, "--out", out, "--landmarks", marks_file).exit_code == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "c.jpg", "gone.jpg", "p1/a.jpg", "p1/b.jpg", "p1/mine.jpg"]

    marks["p1/b.png"] = np.full((5, 2), 40.0)  # now bad landmarks
    write_csv(marks_file, marks)
    (images / "c.png").write_bytes(b"not an image any more")
    (images / "gone.png").unlink()
    result = run(images, "--out", out, "--landmarks", marks_file, "--overwrite", "--format", "png")
    assert result.exit_code == 0, result.output
    assert statuses(out) == {"p1/a.png": "ok", "p1/b.png": "bad_landmarks", "c.png": "unreadable",
                             "gone.png": "missing_image"}
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [".align_journal.jsonl", "align_report.csv", "notes.txt", "p1/a.png", "p1/mine.jpg"]
    assert (out / "p1" / "mine.jpg").read_bytes() == b"user file" and (out / "notes.txt").read_text() == "keep"


ODD_NAMES = ["comma, and \"quotes\".png", " leading and trailing .png ", "ünïcödé 名前.png", "new\nline.png",
             "carriage\rreturn.png", "line\u2028separator.png", "form\x0cfeed.png"]


def test_every_file_name_round_trips_through_the_report(tmp_path):
    images = tmp_path / "in"
    names = list(ODD_NAMES)
    try:
        (tmp_path / os.fsdecode(b"probe\xff.png")).write_bytes(b"")
        names.append(os.fsdecode(b"not utf-8 \xff.png"))  # what Linux allows: any bytes but / and NUL
    except (OSError, UnicodeError):
        pass
    plain = make_faces(images, [f"{number}.png" for number in range(len(names))])  # OpenCV wants plain names
    marks = {}
    for number, name in enumerate(names):
        os.rename(images / f"{number}.png", images / name)
        marks[name] = plain[f"{number}.png"]
    landmarks = tmp_path / "marks.jsonl"  # JSON escapes every name, even one with a newline
    landmarks.write_text("".join(json.dumps({"path": n, "landmarks": p.tolist()}) + "\n" for n, p in marks.items()))
    out = tmp_path / "out"
    result = run(images, "--out", out, "--landmarks", landmarks)
    assert result.exit_code == 0, result.output
    rows = report_rows(out)
    assert sorted(row["path"] for row in rows) == sorted(names)
    for row in rows:  # each row names its own image: its landmarks are that image's, its crop is beside it
        assert row["status"] == "ok"
        used = np.array([float(row[c]) for c in DETAIL_COLUMNS]).reshape(5, 2)
        np.testing.assert_allclose(used, marks[row["path"]], atol=1e-3)
        assert row["output"] == os.path.splitext(row["path"])[0] + ".jpg"
        assert cv2.imdecode(np.fromfile(out / row["output"], np.uint8), cv2.IMREAD_COLOR).shape == (112, 112, 3)


def test_bom_and_crlf_text_inputs_read_like_plain_ones(tmp_path):
    images = tmp_path / "in"
    names = ["a.png", "b c.png", "d,e.png", "line\u2028separator.png"]  # str.splitlines breaks at U+2028
    marks = make_faces(images, names)

    def crlf_bom(path: Path, lines: list[str]) -> Path:
        path.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\r\n" for line in lines).encode("utf-8"))
        return path

    def numbers(points):
        return [repr(float(v)) for v in points.reshape(-1)]

    sources = {
        "csv": crlf_bom(tmp_path / "m.csv", ["path," + ",".join(DETAIL_COLUMNS)] + [
            ",".join([f'"{n}"' if "," in n else n, *numbers(p)]) for n, p in marks.items()]),
        "jsonl": crlf_bom(tmp_path / "m.jsonl", [json.dumps({"path": n, "landmarks": p.tolist()}, ensure_ascii=False)
                                                 for n, p in marks.items()]),
        "lst": crlf_bom(tmp_path / "m.lst", ["\t".join(["0", n, "0", "0", "0", "1", "1",
                                                         *map(repr, p[:, 0].tolist()), *map(repr, p[:, 1].tolist())])
                                              for n, p in marks.items()]),
    }
    listing = crlf_bom(images / "list.txt", ["# the images", *names])
    crops = []
    for kind, source in sources.items():
        for number, input_ in enumerate([images, listing]):
            out = tmp_path / f"out_{kind}_{number}"
            result = run(input_, "--out", out, "--landmarks", source, "--format", "png")
            assert result.exit_code == 0, (kind, result.output)
            assert statuses(out) == {n: "ok" for n in names}, kind
            crops.append([(out / n).read_bytes() for n in names])
    assert all(c == crops[0] for c in crops)
