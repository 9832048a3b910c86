"""Two runs on one output: the second stops with one line naming the first run's process, and the lock of a
killed run is taken over. The other run is a real second process, holding the very lock a command takes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.errors import UserError
from facestra.locks import LOCK_NAME, lock_holder, output_lock

HOLD = """
import sys, time
from facestra.locks import output_lock
with output_lock(sys.argv[1], name=sys.argv[2]):
    print("locked", flush=True)
    time.sleep(120)
"""


class Holder:
    """A second Python process holding ``folder/name`` through :func:`output_lock` until stopped."""

    def __init__(self, folder: Path, name: str = LOCK_NAME) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), name], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "locked"
        self.pid = self.process.pid

    def kill(self) -> None:
        """``kill -9``: the lock file stays, naming a process that is gone."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture()
def holders():
    started: list[Holder] = []

    def start(folder: Path, name: str = LOCK_NAME) -> Holder:
        started.append(Holder(folder, name))
        return started[-1]

    yield start
    for holder in started:
        if holder.process.poll() is None:
            holder.kill()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    models.save(models.create("resnet18", width=0.125, input_size=(32, 32)).eval(), path)
    return path


def test_the_lock_names_its_holder_and_a_killed_holders_lock_is_taken_over(tmp_path: Path, holders) -> None:
    holder = holders(tmp_path / "out")
    with pytest.raises(UserError, match=rf"another facestra run \(pid {holder.pid}\) is writing it"):
        with output_lock(tmp_path / "out"):
            pass
    holder.kill()
    assert lock_holder(tmp_path / "out" / LOCK_NAME) == holder.pid  # stale: its process is gone
    with output_lock(tmp_path / "out") as path:
        assert lock_holder(path) == os.getpid()
        with pytest.raises(UserError, match=rf"\(pid {os.getpid()}\)"):  # one holder, even within a process
            with output_lock(tmp_path / "out"):
                pass
    assert os.listdir(tmp_path / "out") == []  # released: the lock file goes with it


def test_a_lock_taken_for_a_command_that_then_fails_removes_the_folders_it_made(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        with output_lock(tmp_path / "a" / "b"):
            raise UserError("refused before any work")
    assert os.listdir(tmp_path) == []


def _refused_while_held_then_run(holders, lock: Path, args: list, message: str) -> list[str]:
    """Run ``args`` while another process holds ``lock``: refused in one line starting ``error: MESSAGE:
    another facestra run (pid N)`` and nothing written but the lock; then kill the holder (its lock file
    stays, stale) and run again: it takes the lock over and succeeds. Returns the output folder's listing."""
    holder = holders(lock.parent, lock.name)
    before = sorted(p.name for p in lock.parent.iterdir())
    second = CliRunner().invoke(main, [str(a) for a in args])
    assert second.exit_code == 2
    assert second.output.strip().splitlines()[-1].startswith(f"error: {message}: another facestra run (pid {holder.pid}) is writing it")
    assert sorted(p.name for p in lock.parent.iterdir()) == before
    holder.kill()
    third = CliRunner().invoke(main, [str(a) for a in args])
    assert third.exit_code == 0, third.output
    return sorted(p.name for p in lock.parent.iterdir())


def test_two_embed_runs_on_one_output(checkpoint: Path, tmp_path: Path, holders) -> None:
    from test_embed import face_images

    face_images(tmp_path / "faces", 3)
    faces = tmp_path / "faces"
    out = tmp_path / "e.npy"
    args = ["embed", faces, "--checkpoint", checkpoint, "--out", out, "--workers", "0"]
    assert _refused_while_held_then_run(holders, tmp_path / ".e.npy.lock", args, str(out)) == ["e.npy", "e.paths.txt", "faces"]


def test_two_training_runs_in_one_folder(tmp_path: Path, holders) -> None:
    from _train_shapes import make_image_folder

    data = make_image_folder(tmp_path / "data", range(3), 4)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--out", run, "--arch", "resnet18", "--width", "0.125", "--input-size", "32",
            "--embedding-size", "16", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--quiet"]
    written = _refused_while_held_then_run(holders, run / LOCK_NAME, args, f"the run folder {run}")
    assert "model.pt" in written and LOCK_NAME not in written


def test_two_align_runs_into_one_folder(tmp_path: Path, holders) -> None:
    from test_align_job import make_faces, write_csv

    marks = write_csv(tmp_path / "marks.csv", make_faces(tmp_path / "in", ["a.png", "b.png"]))
    out = tmp_path / "out"
    args = ["align", tmp_path / "in", "--out", out, "--landmarks", marks, "--workers", "1"]
    written = _refused_while_held_then_run(holders, out / LOCK_NAME, args, f"the align folder {out}")
    assert written == [".align_journal.jsonl", "a.jpg", "align_report.csv", "b.jpg"]


def test_two_ijb_runs_on_one_work_folder(checkpoint: Path, tmp_path: Path, holders) -> None:
    from test_ijb import make_ijb

    data = tmp_path / "IJBC"
    make_ijb(data, seed=1, one_to_n=False)
    work = tmp_path / "work"
    args = ["verify", "--checkpoint", checkpoint, "--benchmark", "ijbc", "--data", data, "--workers", "0", "--work", work]
    written = _refused_while_held_then_run(holders, work / LOCK_NAME, args, f"the IJB work folder {work}")
    assert written == ["ijbc_raw_features.json", "ijbc_raw_features.npy"]


def test_a_refused_align_or_train_leaves_no_output_folder(tmp_path: Path) -> None:
    from test_align_job import make_faces

    make_faces(tmp_path / "in", ["a.png"])
    (tmp_path / "marks.csv").write_text("not,a,landmark,file\n")
    result = CliRunner().invoke(main, ["align", str(tmp_path / "in"), "--out", str(tmp_path / "new" / "out"),
                                       "--landmarks", str(tmp_path / "marks.csv")])
    assert result.exit_code == 2, result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "new" / "run"),
                                       "--arch", "resnet18", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "in", "marks.csv"]
