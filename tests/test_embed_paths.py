"""Every file name the OS allows keeps its row in ``<out>.paths.txt``, and text inputs read the same way
whatever their line ends or byte-order mark."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.embed import read_paths
from facestra.embed.inference import InferenceOptions, embed_images
from facestra.io import format_path_line, parse_path_line, read_lines

INPUT = (32, 32)
AWKWARD = ["plain.png", "new\nline.png", "tab\tbed.png", " lead.png", "inner space.png", "dir like\\x.png", '"quoted.png', 'mid"quote.png',
           "back\\slash.png", "caf\u00e9.png", "cr\rturn.png", "sep\u2028line.png", os.fsdecode(b"latin\xe9.png")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = models.create("resnet18", width=0.125, input_size=INPUT).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    models.save(model, path)
    return model, path


def write_faces(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for index, name in enumerate(names):
        image = rng.integers(0, 256, (*INPUT, 3), dtype=np.uint8)
        image[:, :8] = 20 * index  # every image its own embedding, so a shifted row shows
        ok, data = cv2.imencode(".png", image)
        assert ok
        with open(os.fsencode(folder / name), "wb") as handle:  # bytes: the name as the file system holds it
            handle.write(data.tobytes())
        paths.append(folder / name)
    return paths


def test_format_and_parse_round_trip_every_name() -> None:
    for name in [*AWKWARD, "trail.png ", "", "x\x00y", "emoji\U0001f600.png", "tag\U000e0001.png"]:
        line = format_path_line(name)
        assert "\n" not in line and "\r" not in line
        line.encode("utf-8")  # a plain UTF-8 line, whatever the name
        assert parse_path_line(line) == name
    assert format_path_line("plain/name.png") == "plain/name.png"  # an ordinary name stays readable
    assert format_path_line('"q.png').startswith('"') and parse_path_line(format_path_line('"q.png')) == '"q.png'


def test_awkward_names_keep_their_rows_in_paths_txt(checkpoint, tmp_path: Path) -> None:
    model, path = checkpoint
    write_faces(tmp_path / "faces", AWKWARD)
    out = tmp_path / "e.npy"
    result = CliRunner().invoke(main, ["embed", str(tmp_path / "faces"), "--checkpoint", str(path), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    matrix = np.load(out)
    listing = tmp_path / "e.paths.txt"
    names = read_paths(listing)
    assert len(names) == len(matrix) == len(AWKWARD) == len(listing.read_bytes().split(b"\n")) - 1
    assert sorted(os.path.basename(name) for name in names) == sorted(AWKWARD)
    # row i is the embedding of the image named on line i
    expected = embed_images(model, [Path(name) for name in names], InferenceOptions(batch_size=4, workers=0))
    assert np.allclose(matrix, expected, atol=1e-5)
    # the listing embed wrote is an input list that names the same images in the same order
    again = CliRunner().invoke(main, ["embed", str(listing), "--checkpoint", str(path), "--out", str(tmp_path / "again.npy"), "--workers", "0"])
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.load(tmp_path / "again.npy"), matrix)
    assert read_paths(tmp_path / "again.paths.txt") == names


def test_a_bom_and_crlf_list_reads_like_a_plain_one(checkpoint, tmp_path: Path) -> None:
    _, path = checkpoint
    write_faces(tmp_path, ["a.png", "b.png", "c.png"])
    plain, windows = tmp_path / "plain.txt", tmp_path / "windows.txt"
    plain.write_bytes(b"a.png\nb.png\nc.png\n")
    windows.write_bytes(b"\xef\xbb\xbfa.png\r\nb.png\r\nc.png\r\n")
    assert read_lines(windows) == read_lines(plain) == ["a.png", "b.png", "c.png"]
    for listing in (plain, windows):
        result = CliRunner().invoke(
            main, ["embed", str(listing), "--checkpoint", str(path), "--out", str(tmp_path / f"{listing.stem}.npy"), "--workers", "0"]
        )
        assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "plain.npy"), np.load(tmp_path / "windows.npy"))
    assert read_paths(tmp_path / "plain.paths.txt") == read_paths(tmp_path / "windows.paths.txt")


def test_a_broken_quoted_line_names_the_file_and_line(checkpoint, tmp_path: Path) -> None:
    _, path = checkpoint
    write_faces(tmp_path, ["a.png"])
    listing = tmp_path / "list.txt"
    listing.write_text('a.png\n"unterminated.png\n')
    result = CliRunner().invoke(main, ["embed", str(listing), "--checkpoint", str(path), "--out", str(tmp_path / "e.npy"), "--workers", "0"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {listing}: line 2: not a valid quoted file name")


def windows_copy(text: str, path: Path) -> Path:
    """``text`` as a Windows editor saves it: a UTF-8 byte-order mark and CRLF line ends."""
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    return path


def test_pairs_and_training_lists_read_a_bom_and_crlf_like_a_plain_file(tmp_path: Path) -> None:
    from facestra.data.datasets import open_list_file
    from facestra.protocols import load_benchmark

    write_faces(tmp_path / "img", ["a.png", "b.png", "c.png"])
    pairs = "img/a.png,img/b.png,1\nimg/b.png,img/c.png,0\n"  # no header: the mark is on a pair
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "pairs.csv").write_text(pairs.replace("img/", "../img/"))
    (tmp_path / "win").mkdir()
    windows_copy(pairs.replace("img/", "../img/"), tmp_path / "win" / "pairs.csv")
    plain, windows = load_benchmark("p", tmp_path / "plain"), load_benchmark("w", tmp_path / "win")
    assert [Path(i).resolve() for i in windows.images] == [Path(i).resolve() for i in plain.images]
    assert np.array_equal(windows.pairs, plain.pairs) and np.array_equal(windows.issame, plain.issame)

    listing = "path,label\nimg/a.png,0\nimg/b.png,1\n"
    (tmp_path / "train.txt").write_text(listing)
    plain_list = open_list_file(tmp_path / "train.txt", INPUT)
    windows_list = open_list_file(windows_copy(listing, tmp_path / "train_win.txt"), INPUT)
    assert windows_list.paths == plain_list.paths and list(windows_list.labels) == list(plain_list.labels) == [0, 1]


def test_align_reads_a_listing_with_quoted_names(tmp_path: Path) -> None:
    import csv
    import json

    from test_align_job import make_faces

    from facestra.io import write_path_lines

    images = tmp_path / "in"
    names = ["new\nline.png", '"quoted.png', "tab\tbed.png", "left out.png"]
    plain = make_faces(images, [f"{number}.png" for number in range(len(names))])  # OpenCV wants plain names
    marks = {}
    for number, name in enumerate(names):
        os.rename(images / f"{number}.png", images / name)
        marks[name] = plain[f"{number}.png"]
    landmarks = tmp_path / "marks.jsonl"
    landmarks.write_text("".join(json.dumps({"path": n, "landmarks": p.tolist()}) + "\n" for n, p in marks.items()))
    listing = images / "list.txt"
    write_path_lines(listing, names[:3])  # as embed writes paths.txt: awkward names quoted
    result = CliRunner().invoke(main, ["align", str(listing), "--out", str(tmp_path / "out"), "--landmarks", str(landmarks), "--workers", "1"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out" / "align_report.csv", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["path"] for row in rows) == sorted(names[:3]) and {row["status"] for row in rows} == {"ok"}


def test_train_lists_a_skipped_image_with_an_awkward_name_on_one_line(tmp_path: Path) -> None:
    from _train_shapes import make_image_folder

    from facestra.io import read_path_lines
    from facestra.train import TrainConfig, train

    data = tmp_path / "data"
    make_image_folder(data, range(4), 8)
    broken = data / "id002" / os.fsdecode(b"bro\nken \xff.png")
    with open(os.fsencode(broken), "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n cut short")
    run = tmp_path / "run"
    small = dict(arch="resnet18", width=0.125, input_size=(32, 32), embedding_size=32, workers=0, log_every=1, device="cpu", threads=1)
    result = train(TrainConfig(data=str(data), out=str(run), batch_size=16, epochs=1, **small))
    assert result.skipped_images == 1
    assert read_path_lines(run / "skipped.txt") == [str(broken)]
