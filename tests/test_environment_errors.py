"""What the environment refuses (a full disk, a read-only folder, a name the OS cannot hold) is one line
naming the file, exit 2, found before the long work where it can be, and leaves no partial output."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.cli.messages import environment_error
from facestra.errors import UserError
from facestra.io import check_writable_folder, reserve_space, write_text_atomic
from tests._mounts import tmpfs

INPUT = (32, 32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    models.save(models.create("resnet18", width=0.125, input_size=INPUT).eval(), path)
    return path


def faces(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"face_{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (*INPUT, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model is where the long work starts: a check that comes after it is too late."""
    import facestra.embed.inference as inference

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(inference, "load_for_inference", refuse)


def test_environment_error_lines() -> None:
    assert environment_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/e.npy")) == "cannot write /d/e.npy: No space left on device"
    assert environment_error(OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/x")) == "cannot write /ro/x: Read-only file system"
    assert environment_error(PermissionError(errno.EACCES, "Permission denied", "/p")) == "cannot access /p: Permission denied"
    assert environment_error(OSError(errno.ENOSPC, "No space left on device")) is None  # no file to name
    assert environment_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "/a")) is None
    with pytest.raises(OSError) as raised:
        open("/tmp/" + "n" * 300, "w")
    assert environment_error(raised.value) == f"cannot create /tmp/{'n' * 300}: File name too long"


def test_a_name_too_long_for_the_os_is_one_line(checkpoint: Path, tmp_path: Path) -> None:
    faces(tmp_path / "faces", 2)
    out = tmp_path / ("e" * 300 + ".npy")
    result = CliRunner().invoke(main, ["embed", str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: cannot create {out}: File name too long"]


def test_atomic_write_onto_a_full_disk_names_the_target_and_leaves_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", size="64k") as full:
        target = full / "report.json"
        with pytest.raises(OSError) as raised:
            write_text_atomic(target, "x" * 200_000)
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
        assert os.listdir(full) == []
        with pytest.raises(OSError) as raised:
            (full / "big").touch()
            reserve_space(full / "big", 1 << 20, name="wanted.npy")
        assert raised.value.errno == errno.ENOSPC and raised.value.filename == "wanted.npy"


def test_embed_onto_a_full_disk_is_one_line_and_leaves_nothing(checkpoint: Path, tmp_path: Path) -> None:
    faces(tmp_path / "faces", 20)  # 20 x 1024 float32 = 80 KB: more than the disk holds
    with tmpfs(tmp_path / "full", size="64k") as full:
        out = full / "e.npy"
        # a subprocess: without the reservation the memory map's write kills the process with SIGBUS
        result = subprocess.run([sys.executable, "-m", "facestra", "embed", str(tmp_path / "faces"), "--checkpoint", str(checkpoint),
                                 "--out", str(out), "--workers", "0"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert [line for line in result.stderr.splitlines() if line.startswith("error")] == [f"error: cannot write {out}: No space left on device"]
        assert "Traceback" not in result.stderr
        assert os.listdir(full) == []


def test_embed_into_a_read_only_folder_stops_before_the_model(checkpoint: Path, tmp_path: Path, no_model) -> None:
    faces(tmp_path / "faces", 2)
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        result = CliRunner().invoke(
            main, ["embed", str(tmp_path / "faces"), "--checkpoint", str(checkpoint), "--out", str(ro / "e.npy"), "--workers", "0"]
        )
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [f"error: cannot write {ro}: Read-only file system"]


def test_verify_json_into_a_read_only_folder_stops_before_the_model(checkpoint: Path, tmp_path: Path, no_model) -> None:
    paths = faces(tmp_path / "faces", 3)
    (tmp_path / "pairs.csv").write_text(
        "".join(f"faces/{a.name},faces/{b.name},{s}\n" for a, b, s in [(paths[0], paths[1], 1), (paths[1], paths[2], 0)] * 10)
    )
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        for option in ("--json", "--roc"):
            name = "report.json" if option == "--json" else "roc.png"
            result = CliRunner().invoke(
                main, ["verify", "--checkpoint", str(checkpoint), "--data", str(tmp_path), option, str(ro / name), "--workers", "0"]
            )
            assert result.exit_code == 2, result.output
            assert result.output.strip().splitlines() == [f"error: cannot write {ro}: Read-only file system"]


def test_check_writable_folder(tmp_path: Path) -> None:
    # a missing folder is proven makeable through its nearest parent, and not made (a refused command leaves none)
    check_writable_folder(tmp_path / "new" / "deep")
    assert os.listdir(tmp_path) == []
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        with pytest.raises(UserError, match="cannot write .*: Read-only file system"):
            check_writable_folder(ro)
        with pytest.raises(UserError, match="cannot write .*/ro/new/deep: Read-only file system"):
            check_writable_folder(ro / "new" / "deep")


TRAIN = [
    "--arch",
    "resnet18",
    "--width",
    "0.125",
    "--input-size",
    "32",
    "--embedding-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
]


def test_train_into_a_read_only_folder_or_onto_a_full_disk_is_one_line(tmp_path: Path) -> None:
    from _train_shapes import make_image_folder

    data = make_image_folder(tmp_path / "data", range(3), 4)
    with tmpfs(tmp_path / "ro", readonly=True) as ro:
        result = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(ro / "run"), *TRAIN])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [f"error: cannot write {ro / 'run'}: Read-only file system"]
    with tmpfs(tmp_path / "full", size="200k") as full:  # room for the run's JSON files, not for a checkpoint
        result = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(full / "run"), *TRAIN])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines()[-1] == f"error: cannot write {full / 'run' / 'last.pt'}: No space left on device"
        assert "Traceback" not in result.output
        assert not [name for name in os.listdir(full / "run") if name.startswith(".")]  # no temporary left
