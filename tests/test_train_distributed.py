"""Two CPU processes under torchrun (gloo): identical replicas after every step, and with --sync-bn the
same weights as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _train_shapes import make_image_folder, make_pairs

from facestra.protocols import write_bin
from facestra.train import TrainConfig, train

ARGS = [
    "--arch", "resnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32", "--workers", "0",
    "--device", "cpu", "--threads", "1", "--batch-size", "16", "--epochs", "2", "--lr-steps", "1",
    "--log-every", "1", "--quiet",
]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _steps(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if json.loads(line)["kind"] == "step"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_sync_bn(tmp_path):
    data = make_image_folder(tmp_path / "data", range(8), 8)
    first, second, same = make_pairs(list(range(8, 12)), 40)
    write_bin(tmp_path / "val.bin", [cv2.imencode(".png", im)[1].tobytes() for pair in zip(first, second) for im in pair], same)
    two, one = tmp_path / "two", tmp_path / "one"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "facestra", "train"]
    _run([*torchrun, "--data", str(data), "--out", str(two), *ARGS, "--sync-bn", "--check-replicas", "--val", str(tmp_path / "val.bin")])
    # the same run in one process (in this one: --sync-bn is a no-op with a single process)
    train(TrainConfig(
        data=str(data), out=str(one), arch="resnet18", width=0.125, input_size=(32, 32), embedding_size=32, workers=0,
        device="cpu", threads=1, batch_size=16, epochs=2, lr_steps=(1,), log_every=1, sync_bn=True,
    ))

    distributed_steps = _steps(two)
    assert len(distributed_steps) == 8
    for step in distributed_steps:
        digests = step["replica_digests"]
        assert len(digests) == 2 and digests[0] == digests[1], step["step"]  # bit-identical replicas
    validations = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    assert [v["step"] for v in validations] == [4, 8] and (two / "best.pt").is_file()  # rank 0 validates, rank 1 waits
    losses = [s["loss"] for s in distributed_steps]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # it trains

    single_losses = [s["loss"] for s in _steps(one)]
    np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
    a = torch.load(two / "last.pt", weights_only=True)
    b = torch.load(one / "last.pt", weights_only=True)
    assert a["world_size"] == 2 and b["world_size"] == 1
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(a["head"]["weight"], b["head"]["weight"], rtol=1e-4, atol=1e-5)
