"""Benchmarks that cannot give a meaningful figure are refused or flagged (issue 16 items 2 and 5).

Refused: no pairs, one kind of pair (a silent 100 % before), too few pairs for the folds, fold ids out of
range. Warned of: a fold of one kind of pair, self-pairs, duplicate pairs. ``verify`` over several
benchmarks reports those that worked when one fails, and ``train --val`` checks its benchmarks before it
writes anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from _train_shapes import SMALL_CLI, make_training_set
from click.testing import CliRunner
from test_protocols import make_bin, make_lfw, write_image
from test_verify_cli import INPUT, checkpoint  # noqa: F401  (the tiny model file, a fixture)

from facestra.cli.main import main
from facestra.errors import UserError
from facestra.protocols import load_benchmark, write_bin
from facestra.protocols.benchmark import Benchmark
from facestra.verify.checks import check_benchmark, check_images
from facestra.verify.pairs import evaluate_distances


def write_csv(root: Path, rows: list[tuple[int, int, int] | tuple[int, int, int, int]]) -> Path:
    """``root/pairs.csv`` over images ``root/img/<n>.png`` (32x32), one row per (image, image, same[, fold])."""
    for row in rows:
        for n in row[:2]:
            if not (root / "img" / f"{n}.png").exists():
                image = np.random.default_rng(n).integers(0, 256, (*INPUT, 3), dtype=np.uint8)
                (root / "img").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "img" / f"{n}.png"), image)
    lines = [",".join([f"img/{row[0]}.png", f"img/{row[1]}.png", *map(str, row[2:])]) for row in rows]
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    return root / "pairs.csv"


def good_rows(num_pairs: int = 20) -> list[tuple[int, int, int]]:
    return [(2 * i, 2 * i + 1, i % 2) for i in range(num_pairs)]


def verify(checkpoint: Path, *args: str):
    return CliRunner().invoke(main, ["verify", "--checkpoint", str(checkpoint), "--workers", "0", "--device", "cpu", *args])


# --- refused -------------------------------------------------------------------------------------------


def test_all_same_pairs_are_refused_not_a_silent_100(checkpoint: Path, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "b", [(2 * i, 2 * i + 1, 1) for i in range(20)])
    result = verify(checkpoint, "--data", str(csv))
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {csv}: all 20 pairs are same pairs; verification needs both same and different pairs")


def test_all_different_pairs_are_refused(tmp_path: Path) -> None:
    bench = load_benchmark("x", write_csv(tmp_path / "b", [(2 * i, 2 * i + 1, 0) for i in range(20)]))
    with pytest.raises(UserError, match="all 20 pairs are different pairs"):
        check_benchmark(bench)


def test_a_benchmark_without_pairs_is_refused(tmp_path: Path) -> None:
    # The readers refuse an empty pair file themselves; a Benchmark built in code can still be empty.
    empty = Benchmark("x", tmp_path / "x.bin", (), np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=bool))
    with pytest.raises(UserError, match=r"x.bin: no pairs$"):
        check_benchmark(empty)


def test_fewer_pairs_than_folds_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    make_bin(small, num_pairs=6)
    result = verify(checkpoint, "--data", str(small))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {small}: 6 pairs cannot be split into 10 folds (need at least 10 pairs)"


def test_fold_ids_outside_the_range_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    rows = [(a, b, s, 0 if i < 10 else 7) for i, (a, b, s) in enumerate(good_rows())]  # folds 0 and 7: 1..6 empty
    csv = write_csv(tmp_path / "b", rows)
    result = verify(checkpoint, "--data", str(csv))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {csv}: fold id 7 is outside the expected range 0..1 for 2 folds (fold 1 has no pairs)")


def test_negative_fold_ids_are_refused(tmp_path: Path) -> None:
    rows = [(a, b, s, -1 if i < 10 else 0) for i, (a, b, s) in enumerate(good_rows())]
    bench = load_benchmark("x", write_csv(tmp_path / "b", rows))
    with pytest.raises(UserError, match="fold id -1 is outside the expected range 0..1"):
        check_benchmark(bench)


def test_folds_counted_from_one_are_accepted(tmp_path: Path) -> None:
    rows = [(a, b, s, 1 + i // 10) for i, (a, b, s) in enumerate(good_rows())]
    assert check_benchmark(load_benchmark("x", write_csv(tmp_path / "b", rows))) == []


def test_a_single_fold_is_refused(tmp_path: Path) -> None:
    rows = [(a, b, s, 3) for a, b, s in good_rows()]
    bench = load_benchmark("x", write_csv(tmp_path / "b", rows))
    with pytest.raises(UserError, match=r"all 20 pairs are in fold 3; the protocol needs at least 2 folds"):
        check_benchmark(bench)


def test_lfw_with_one_set_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "lfw"
    for person, count in {"Ann_A": 2, "Bob_B": 1}.items():
        for n in range(1, count + 1):
            write_image(root / person / f"{person}_{n:04d}.jpg", n)
    (root / "pairs.txt").write_text("1 1\nAnn_A 1 2\nAnn_A 1 Bob_B 1\n")
    with pytest.raises(UserError, match=r"all 2 pairs are in fold 0; the protocol needs at least 2 folds"):
        check_benchmark(load_benchmark("lfw", root))


def test_evaluate_distances_refuses_nan_and_one_kind() -> None:
    issame = np.arange(20) % 2 == 0
    with pytest.raises(ValueError, match="1 of 20 distances are NaN"):
        evaluate_distances(np.where(np.arange(20) == 3, np.nan, 1.0), issame)
    with pytest.raises(ValueError, match="need both same and different pairs"):
        evaluate_distances(np.ones(20), np.ones(20, dtype=bool))


def test_check_images_names_the_first_unreadable_image(tmp_path: Path) -> None:
    images, issame = make_bin(tmp_path / "ok.bin", num_pairs=10)
    broken = tmp_path / "broken.bin"
    write_bin(broken, images[:5] + [b"not an image"] + images[6:], issame)
    check_images(load_benchmark("x", tmp_path / "ok.bin"))
    with pytest.raises(UserError, match=r"broken.bin \(image 5\): not a readable image") as caught:
        check_images(load_benchmark("x", broken))
    assert caught.value.exit_code == 1


# --- warned of -----------------------------------------------------------------------------------------


def test_a_fold_of_one_kind_is_warned_of(checkpoint: Path, tmp_path: Path) -> None:
    rows = [(a, b, 1 if i < 10 else s, i // 10) for i, (a, b, s) in enumerate(good_rows(30))]  # fold 0: only same
    csv = write_csv(tmp_path / "b", rows)
    report = tmp_path / "report.json"
    result = verify(checkpoint, "--data", str(csv), "--json", str(report))
    assert result.exit_code == 0, result.output
    expected = f"{csv}: 1 fold(s) hold only one kind of pair (0); their accuracies say little about the threshold"
    assert f"warning: {expected}" in result.output
    assert json.loads(report.read_text())["benchmarks"]["b"]["warnings"] == [expected]


def test_self_pairs_and_duplicates_are_warned_of(tmp_path: Path) -> None:
    rows = good_rows() + [(4, 4, 1), (1, 0, 0)]  # an image with itself; pair 1 again, the other way round
    warnings = check_benchmark(load_benchmark("x", write_csv(tmp_path / "b", rows)))
    csv = tmp_path / "b" / "pairs.csv"
    assert warnings == [
        f"{csv}: 1 pair(s) of an image with itself (first: pair 21); their distance is 0 whatever the model",
        f"{csv}: 1 duplicate pair(s) (the pair listed first as pair 1 comes again); they count more than once",
    ]


def test_self_pairs_in_a_bin_are_found_by_their_bytes(tmp_path: Path) -> None:
    images, issame = make_bin(tmp_path / "src.bin", num_pairs=20)
    images[3] = images[2]  # pair 2 (1-based): the same encoded image twice
    path = tmp_path / "self.bin"
    write_bin(path, images, issame)
    warnings = check_benchmark(load_benchmark("x", path))
    assert warnings == [f"{path}: 1 pair(s) of an image with itself (first: pair 2); their distance is 0 whatever the model"]


def test_a_clean_benchmark_has_no_warnings(tmp_path: Path) -> None:
    assert check_benchmark(load_benchmark("lfw", make_lfw(tmp_path / "lfw")), folds=2) == []


# --- several benchmarks, one broken --------------------------------------------------------------------


def test_verify_reports_the_good_benchmark_when_another_fails(checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_csv(root / "lfw", good_rows())
    write_csv(root / "calfw", [(2 * i, 2 * i + 1, 1) for i in range(20)])  # one kind of pair
    report = tmp_path / "report.json"
    result = verify(checkpoint, "--data-root", str(root), "--benchmark", "lfw,calfw", "--json", str(report))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    header = next(line for line in lines if "Network" in line)
    assert "LFW" in header and "CALFW" not in header
    assert lines[-1] == (f"error: {root / 'calfw' / 'pairs.csv'}: all 20 pairs are same pairs; "
                         "verification needs both same and different pairs")
    data = json.loads(report.read_text())
    assert list(data["benchmarks"]) == ["lfw"] and data["benchmarks"]["lfw"]["num_pairs"] == 20
    assert data["errors"] == [{"benchmark": "calfw", "error": lines[-1].removeprefix("error: ")}]


def test_verify_with_an_unreadable_image_in_one_benchmark_exits_1(checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_csv(root / "lfw", good_rows())
    write_csv(root / "calfw", good_rows())
    (root / "calfw" / "img" / "5.png").write_bytes(b"not an image")
    report = tmp_path / "report.json"
    result = verify(checkpoint, "--data-root", str(root), "--benchmark", "lfw,calfw", "--json", str(report))
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {root / 'calfw' / 'img' / '5.png'}: not a readable image")
    data = json.loads(report.read_text())
    assert list(data["benchmarks"]) == ["lfw"] and [e["benchmark"] for e in data["errors"]] == ["calfw"]


# --- train --val ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    data, images, same = make_training_set(root, range(8), 4, range(8, 12), 40)
    return {"data": data, "images": images, "same": same}


def train_args(train_data: dict[str, Path], run: Path, val: Path) -> list[str]:
    return ["train", "--data", str(train_data["data"]), "--out", str(run), "--batch-size", "16", "--epochs", "1",
            "--val", str(val), *SMALL_CLI]


def test_train_val_with_an_unreadable_image_fails_before_the_run_folder(train_data, tmp_path: Path) -> None:
    broken = tmp_path / "broken.bin"
    write_bin(broken, [*train_data["images"][:-1], b"not an image"], train_data["same"])
    run = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(train_data, run, broken))
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"error: {broken} (image 79): not a readable image (empty, truncated or unknown format)"
    assert not run.exists()


def test_train_val_with_one_kind_of_pair_fails_before_the_run_folder(train_data, tmp_path: Path) -> None:
    broken = tmp_path / "same.bin"
    write_bin(broken, train_data["images"], [True] * len(train_data["same"]))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(train_data, run, broken))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {broken}: all 40 pairs are same pairs; verification needs both same and different pairs"
    assert not run.exists()


def test_train_val_prints_the_benchmark_warnings(train_data, tmp_path: Path) -> None:
    images = list(train_data["images"])
    images[1] = images[0]  # pair 1: an image with itself
    val = tmp_path / "self.bin"
    write_bin(val, images, train_data["same"])
    run = tmp_path / "run"
    result = CliRunner().invoke(main, train_args(train_data, run, val))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        f"warning: {val}: 1 pair(s) of an image with itself (first: pair 1); their distance is 0 whatever the model\n")
    assert (run / "best.pt").is_file()
