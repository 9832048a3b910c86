"""facestra train end to end on small shape data the tests draw: learning, validation, resume, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _train_shapes import SMALL, SMALL_CLI, make_image_folder, make_training_set
from click.testing import CliRunner

from facestra import models
from facestra.cli.main import main
from facestra.errors import UserError
from facestra.models import StRAOptions
from facestra.protocols import write_bin
from facestra.train import TrainConfig, build_config, resume_config, train
from facestra.train.optim import paper_lr_factor


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    """16 training identities x 8 images, and a .bin of 400 pairs of 8 other identities."""
    root = tmp_path_factory.mktemp("shapes")
    data, images, same = make_training_set(root, range(16), 8, range(16, 24), 400)
    write_bin(root / "heldout.bin", images, same)
    return {"data": data, "val": root / "heldout.bin"}


def _metrics(run_dir: Path, kind: str = "step") -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if json.loads(line)["kind"] == kind]


@pytest.mark.parametrize("loss", ["softmax", "cosface", "arcface"])
def test_each_loss_learns_and_verifies_held_out_identities(shapes, tmp_path, loss):
    run = tmp_path / "run"
    config = TrainConfig(
        data=str(shapes["data"]), out=str(run), loss=loss, batch_size=16, epochs=6, lr_steps=(5,), val=(str(shapes["val"]),), **SMALL
    )
    result = train(config)
    assert result.stopped == "completed" and result.global_step == 48 == result.total_steps
    losses = [m["loss"] for m in _metrics(run)]
    assert len(losses) == 48
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    validation = _metrics(run, "val")
    assert len(validation) == 6  # once per epoch
    accuracies = [v["heldout_accuracy"] for v in validation]
    assert max(accuracies) >= 0.65, accuracies  # chance is 0.5 on these balanced pairs
    assert result.best_accuracy == max(accuracies)
    # best.pt is a model file that verify/embed load; model.pt is the final backbone
    best = models.load(run / "best.pt")
    final = models.load(run / "model.pt")
    assert best.record.arch == final.record.arch == "resnet18" and final.embedding_size == 32
    identities = json.loads((run / "identities.json").read_text())["identities"]
    assert identities == sorted(p.name for p in shapes["data"].iterdir())


def test_stra_network_trains_with_its_diversity_loss(shapes, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(data=str(shapes["data"]), out=str(run), batch_size=16, epochs=1, **{**SMALL, "arch": "resnet50_stra"})
    train(config)
    rows = _metrics(run)
    for row in rows:
        assert 0 < row["diversity"] < 3 * 7  # summed over 3 StRA blocks, each in [0, G - 1]
        assert row["loss"] == pytest.approx(row["cls_loss"] + 0.1 * row["diversity"], rel=1e-9)
    assert models.load(run / "model.pt").record.arch == "resnet50_stra"


def test_learning_rate_schedule_follows_the_paper():
    factors = [paper_lr_factor(s, steps_per_epoch=10, lr_steps=(8, 12), lr_factor=0.1, warmup_epochs=0) for s in range(200)]
    assert factors[79] == 1.0 and factors[80] == pytest.approx(0.1) and factors[119] == pytest.approx(0.1)
    assert factors[120] == pytest.approx(0.01) and factors[199] == pytest.approx(0.01)
    warm = [paper_lr_factor(s, steps_per_epoch=10, lr_steps=(8,), lr_factor=0.1, warmup_epochs=1) for s in range(12)]
    assert warm[0] == pytest.approx(0.1) and warm[9] == pytest.approx(1.0) and warm[11] == 1.0


def test_interrupted_and_resumed_run_repeats_the_losses_exactly(shapes, tmp_path):
    common = dict(data=str(shapes["data"]), batch_size=32, epochs=3, lr_steps=(2,), dropout=0.2, save_every=3, **SMALL)
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **common))
    assert straight.global_step == 12

    def interrupt_at_step_6(event):
        if event.kind == "step" and event.global_step == 6:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: stop cleanly after this step

    broken = train(TrainConfig(out=str(tmp_path / "broken"), **{**common, "workers": 2}), progress=interrupt_at_step_6)
    # the signal arrives after step 6 has checked for one: step 7 is the step that ends
    assert broken.stopped == "interrupted" and broken.global_step == 7
    assert [m["step"] for m in _metrics(tmp_path / "broken")] == list(range(1, 8))
    resumed = train(resume_config(tmp_path / "broken"))
    assert resumed.stopped == "completed" and resumed.global_step == 12

    straight_losses = [(m["step"], m["loss"], m["accuracy"], m["lr"]) for m in _metrics(tmp_path / "straight")]
    resumed_losses = [(m["step"], m["loss"], m["accuracy"], m["lr"]) for m in _metrics(tmp_path / "broken")]
    assert resumed_losses == straight_losses  # bit for bit
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "broken" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["head"]["weight"], b["head"]["weight"])


def test_time_budget_stops_cleanly_and_saves(shapes, tmp_path):
    run = tmp_path / "run"
    result = train(TrainConfig(data=str(shapes["data"]), out=str(run), batch_size=16, epochs=50, max_minutes=1e-4, **SMALL))
    assert result.stopped == "time budget"
    assert 1 <= result.global_step < result.total_steps
    model = models.load(result.model_path)
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["position"]["global_step"] == result.global_step
    assert torch.equal(model.state_dict()["head.fc.weight"], saved["model"]["head.fc.weight"])


def test_run_folder_is_never_clobbered(shapes, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(shapes["data"]), "--out", str(run), "--batch-size", "64", "--epochs", "1", *SMALL_CLI]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "completed at step 2/2" in first.output
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2
    assert again.output.strip() == f"error: {run}: already holds a training run; use --resume {run} to continue it or --overwrite to replace it"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # a bad option with --overwrite still destroys nothing
    bad = CliRunner().invoke(main, [*args, "--overwrite", "--grad-accum", "3"])
    assert bad.exit_code == 2 and "divisible" in bad.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    replaced = CliRunner().invoke(main, [*args, "--overwrite", "--seed", "1"])
    assert replaced.exit_code == 0, replaced.output
    assert (run / "model.pt").read_bytes() != before["model.pt"]
    missing = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no last.pt to resume from" in missing.output
    changed = CliRunner().invoke(main, ["train", "--resume", str(run), "--arch", "resnet34"])
    assert changed.exit_code == 2 and "--arch cannot change when resuming" in changed.output


def test_a_diverged_run_stops_without_a_model_and_can_be_started_again(shapes, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(shapes["data"]), "--out", str(run), "--batch-size", "32", "--epochs", "2", *SMALL_CLI]
    diverged = CliRunner().invoke(main, [*args, "--lr", "1e12", "--log-every", "1"])
    assert diverged.exit_code == 2
    assert re.fullmatch(
        r"error: step \d+: the training loss is (nan|inf); the run diverged and no model was written from "
        r"its weights; start again with a lower --lr \(now 1e\+12\) or --warmup-epochs",
        diverged.output.strip(),
    )
    assert not (run / "model.pt").exists() and not (run / "last.pt").exists()
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert resumed.exit_code == 2 and resumed.output.strip().endswith(
        "no last.pt to resume from; its run stopped before saving anything: start it again without --resume"
    )
    again = CliRunner().invoke(main, [*args, "--lr", "0.01", "--epochs", "1"])  # no --overwrite: nothing was saved
    assert again.exit_code == 0, again.output
    assert json.loads((run / "config.json").read_text())["lr"] == 0.01
    records = _metrics(run)  # the diverged run's log is gone
    assert records and all(record["lr"] <= 0.01 and np.isfinite(record["loss"]) for record in records)


def test_a_validation_failure_does_not_cost_the_epoch(shapes, tmp_path, monkeypatch):
    # A broken benchmark is refused before training now (tests/test_benchmark_checks.py), so the failure
    # that only validating can meet is injected.
    from facestra.train.validation import Validator

    def fail(self, backbone):
        raise UserError(f"{shapes['val']}: validation failed")

    monkeypatch.setattr(Validator, "evaluate", fail)
    run = tmp_path / "run"
    args = ["train", "--data", str(shapes["data"]), "--out", str(run), "--batch-size", "64", "--epochs", "1", *SMALL_CLI]
    failed = CliRunner().invoke(main, [*args, "--val", str(shapes["val"])])
    assert failed.exit_code == 2 and "validation failed" in failed.output
    assert (run / "last.pt").is_file() and (run / "model.pt").is_file()  # saved before validating
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["position"]["epoch"] == 1 and state["position"]["global_step"] == 2


def test_unreadable_images_are_skipped_and_listed_or_fatal_with_strict(shapes, tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, range(4), 8)
    broken = data / "id002" / "003.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    run = tmp_path / "run"
    result = train(TrainConfig(data=str(data), out=str(run), batch_size=16, epochs=1, **SMALL))
    assert result.skipped_images == 1
    assert (run / "skipped.txt").read_text() == f"{broken}\n"
    assert sum(m["unreadable"] for m in _metrics(run)) == 1
    strict = CliRunner().invoke(
        main, ["train", "--data", str(data), "--out", str(tmp_path / "strict"), "--batch-size", "32", "--epochs", "1", "--strict", *SMALL_CLI]
    )
    assert strict.exit_code == 2
    assert strict.output.strip().splitlines()[-1] == f"error: {broken}: unreadable image (--strict)"


def test_ctrl_c_on_the_command_saves_and_exits_130(shapes, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "facestra",
        "train",
        "--data",
        str(shapes["data"]),
        "--out",
        str(run),
        "--batch-size",
        "16",
        "--epochs",
        "1000",
        "--log-every",
        "1",
        *SMALL_CLI,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics = run / "metrics.jsonl"
        for _ in range(600):
            if metrics.exists() and metrics.read_text().count("\n") >= 2:
                break
            if process.poll() is not None:
                break
            import time

            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted at step" in out
    assert f"continue with: facestra train --resume {run}" in err
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["position"]["global_step"] >= 2
    models.load(run / "model.pt")


def test_presets_and_explicit_options(tmp_path):
    from facestra.errors import UserError
    from facestra.train import build_config

    medium = build_config({"data": "d", "out": "o"}, "paper-medium")
    assert (medium.epochs, medium.lr_steps, medium.batch_size, medium.lr) == (20, (8, 12), 512, 0.1)
    vgg = build_config({"data": "d", "out": "o", "epochs": 3, "groups": 4}, "paper-vggface2")
    assert (vgg.epochs, vgg.lr_steps, vgg.input_size) == (3, (20, 30, 38, 44, 48), (224, 192))
    assert vgg.stra_options == StRAOptions(groups=4)
    assert (vgg.momentum, vgg.weight_decay, vgg.diversity_weight) == (0.9, 5e-4, 0.1)
    with pytest.raises(UserError, match="missing `out`"):
        build_config({"data": "d"})


def test_config_json_round_trips_the_stra_options_and_reads_those_of_0_2(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")  # resume_config reads only config.json
    config = TrainConfig(data=str(tmp_path), out=str(run), arch="resnet50_stra", stra_options=StRAOptions(groups=4, gate="tanh"))
    written = json.loads(json.dumps(config.to_json()))
    assert written["stra_options"] == {"groups": 4, "kernel_size": 3, "mode_attention": True, "mode_interaction": True, "gate": "tanh"}
    assert TrainConfig.from_json(written) == config
    # facestra 0.2 wrote a dict of the switches given, {} for none
    for saved, expected in (({"groups": 4, "gate": "tanh"}, StRAOptions(groups=4, gate="tanh")), ({}, None), (None, None)):
        (run / "config.json").write_text(json.dumps({**written, "stra_options": saved}))
        assert resume_config(run).stra_options == expected
    (run / "config.json").write_text(json.dumps({**written, "stra_options": {"groups": 0}}))
    with pytest.raises(UserError, match=r"run/config.json: not a run configuration facestra can resume \(groups must be positive, got 0\)"):
        resume_config(run)
    with pytest.raises(UserError, match=r"^kernel_size must be odd, 1 to 15, got 4$"):
        build_config({"data": "d", "out": "o", "kernel_size": 4})


def test_stra_switches_reach_the_network_and_are_refused_for_plain_resnets(shapes, tmp_path):
    base = ["train", "--data", str(shapes["data"]), "--batch-size", "64", "--epochs", "1", *SMALL_CLI]
    ok = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "a"), "--arch", "resnet50_stra", "--groups", "4", "--no-mode-interaction"])
    assert ok.exit_code == 0, ok.output
    model = models.load(tmp_path / "a" / "model.pt")
    assert model.record.arch_kwargs["groups"] == 4 and model.record.arch_kwargs["mode_interaction"] is False
    refused = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b"), "--groups", "4"])
    assert refused.exit_code == 2 and refused.output.startswith("error: --arch resnet18:")
    assert not (tmp_path / "b").exists()


def _stage4_switches(model) -> list[tuple]:
    """(mode attention, interaction, gate, K) of each stage-4 block; () for plain bottlenecks."""
    rows = []
    for block in model.layer4:
        stra = getattr(block, "stra", None)
        if stra is None:
            rows.append(())
        else:
            mode = stra.mode
            rows.append((mode is not None, mode is not None and mode.interaction, mode.gate if mode else None, stra.local.kernel_size))
    return rows


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--arch", "resnet50"], ()),  # Table 2, baseline
        (["--no-mode-attention"], (False, False, None, 3)),  # local attention only
        (["--no-mode-interaction"], (True, False, "sigmoid", 3)),  # + mode attention without interaction
        ([], (True, True, "sigmoid", 3)),  # full
        (["--gate", "softmax"], (True, True, "softmax", 3)),  # Table 3
        (["--gate", "tanh"], (True, True, "tanh", 3)),
        (["--kernel-size", "5"], (True, True, "sigmoid", 5)),  # Table 4
        (["--kernel-size", "7"], (True, True, "sigmoid", 7)),
    ],
    ids=["baseline", "local", "local+mode", "full", "softmax", "tanh", "k5", "k7"],
)
def test_every_ablation_row_trains_from_flags(shapes, tmp_path, flags, expected):
    args = [
        "train",
        "--data",
        str(shapes["data"]),
        "--out",
        str(tmp_path / "run"),
        "--batch-size",
        "16",
        "--max-steps",
        "1",
        *SMALL_CLI[2:],
        "--arch",
        "resnet50_stra",
        *flags,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model = models.load(tmp_path / "run" / "model.pt")
    assert _stage4_switches(model) == [expected] * 3


def test_accumulation_mixed_precision_channels_last_and_step_validation(shapes, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(
        data=str(shapes["data"]),
        out=str(run),
        batch_size=32,
        grad_accum=2,
        amp="bf16",
        channels_last=True,
        epochs=1,
        val=(str(shapes["val"]),),
        val_every=2,
        **SMALL,
    )
    result = train(config)
    rows = _metrics(run)
    assert len(rows) == 4 and all(np.isfinite(r["loss"]) for r in rows)
    assert [v["step"] for v in _metrics(run, "val")] == [2, 4]
    assert result.best_path == run / "best.pt" and models.load(result.best_path).record.arch == "resnet18"


def test_resume_refuses_changed_data(tmp_path):
    data = make_image_folder(tmp_path / "data", range(4), 8)
    run = tmp_path / "run"
    train(TrainConfig(data=str(data), out=str(run), batch_size=16, epochs=1, **SMALL))
    before = (run / "last.pt").read_bytes()
    cv2.imwrite(str(data / "id001" / "extra.png"), np.zeros((32, 32, 3), np.uint8))
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {data.resolve()}: 33 images, but the run in {run} was trained on 32; resume with the same data"
    assert (run / "last.pt").read_bytes() == before
