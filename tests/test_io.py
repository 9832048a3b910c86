"""Reading and writing files: whole contents, atomic replacement, errors a caller can report."""

from __future__ import annotations

import os

import pytest

from facestra.errors import UserError
from facestra.io import read_file, write_bytes_atomic


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 3 * 1024 * 1024 + 7])
def test_read_file_returns_every_byte(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert read_file(path) == data
    assert read_file(str(path)) == data


def test_read_file_reads_what_a_size_does_not_announce():
    # /proc files report size 0 yet have contents: the reader must go on to the end, not trust the size
    text = read_file("/proc/self/status") if os.path.exists("/proc/self/status") else None
    if text is None:
        pytest.skip("no /proc here")
    assert text.startswith(b"Name:") and len(text) > 100


def test_read_file_raises_oserror_for_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "nothing.jpg")


def test_atomic_write_keeps_an_existing_file_unless_told(tmp_path):
    target = tmp_path / "out" / "a.jpg"
    write_bytes_atomic(target, b"first", overwrite=False)
    with pytest.raises(UserError, match="a.jpg"):
        write_bytes_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    write_bytes_atomic(target, b"third")
    assert target.read_bytes() == b"third"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.jpg"]  # no temporaries left behind


def test_no_output_is_an_input_however_it_is_named(tmp_path):
    from facestra.io import refuse_output_over_inputs

    (tmp_path / "in").mkdir()
    source = tmp_path / "in" / "pairs.txt"
    source.write_text("a b 1\n")
    (tmp_path / "link.json").symlink_to(source)
    os.link(source, tmp_path / "hard.json")
    spellings = [source, tmp_path / "in" / ".." / "in" / "pairs.txt", tmp_path / "link.json", tmp_path / "hard.json"]
    for output in spellings:
        for overwrite in (False, True):
            with pytest.raises(UserError, match=rf"^{source}: is one of the inputs; refusing to write"):
                refuse_output_over_inputs(output, [tmp_path / "model.pt", source], overwrite=overwrite)
    assert source.read_text() == "a b 1\n"
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere")
    for existing in (tmp_path / "old.json", tmp_path / "dangling.json"):
        with pytest.raises(UserError, match=rf"^--json {existing}: already exists \(pass `overwrite` to replace it\)$"):
            refuse_output_over_inputs(existing, [source], overwrite=False, role="--json")
        refuse_output_over_inputs(existing, [source], overwrite=True)
    refuse_output_over_inputs(tmp_path / "new.json", [source], overwrite=False)
    with pytest.raises(OSError, match="File name too long"):  # before any work, naming the output
        refuse_output_over_inputs(tmp_path / ("x" * 300), [source], overwrite=False)


def test_only_the_temporaries_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from facestra.io import remove_dead_temporaries, temporary_path

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    target = tmp_path / "report.json"
    mine = temporary_path(target)
    assert os.path.basename(mine).startswith(f".report.json.{os.getpid()}-") and mine.endswith(".tmp.json")
    names = {
        "dead": f".report.json.{dead}-0123456789ab.tmp.json",
        "old": ".report.json.0123456789ab.tmp.json",  # facestra 0.2 named no process
        "alive": os.path.basename(mine),
        "other target": f".other.json.{dead}-0123456789ab.tmp.json",
        "not ours": f".report.json.{dead}-notarandompart.tmp.json",
    }
    for name in names.values():
        (tmp_path / name).write_text("half")
    assert remove_dead_temporaries(target) == 2
    assert sorted(os.listdir(tmp_path)) == sorted([names["alive"], names["other target"], names["not ours"]])


@pytest.mark.parametrize("command", ["train", "align", "embed", "export"])
def test_an_input_the_os_cannot_open_is_an_unreadable_input(tmp_path, command):
    from click.testing import CliRunner

    from facestra.cli.main import main

    (tmp_path / "file.txt").write_text("x")
    for unopenable, reason in [(tmp_path / ("x" * 300), "File name too long"), (tmp_path / "file.txt" / "sub", "Not a directory")]:
        args = {
            "train": ["train", "--data", unopenable, "--out", tmp_path / "run", "--device", "cpu"],
            "align": ["align", unopenable, "--out", tmp_path / "out", "--detector", "yunet"],
            "embed": ["embed", tmp_path / "file.txt", "--checkpoint", unopenable, "--out", tmp_path / "e.npy"],
            "export": ["export", unopenable, "--onnx", tmp_path / "m.onnx"],
        }[command]
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 2, result.output
        assert "cannot create" not in result.output and "Traceback" not in result.output
        if command != "export":  # click checks an export CHECKPOINT itself: "does not exist"
            assert result.output.strip().splitlines()[-1] == f"error: {unopenable}: cannot read this input ({reason})"
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]
