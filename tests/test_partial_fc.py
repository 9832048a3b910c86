"""Partial FC (--sample-rate): the sharded head against the full classifier computed in one process, its
sampling, its SGD and AdamW (against torch's optimizers), its checkpoint shards (bit-exact resume,
re-sharding) and a 2-process torchrun run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _train_shapes import make_image_folder
from click.testing import CliRunner

from facestra.cli.main import main
from facestra.errors import UserError
from facestra.train import TrainConfig, resume_config, train
from facestra.train.distributed import Process
from facestra.train.heads import ClassifierHead
from facestra.train.partial_fc import ShardedClassifierHead, initial_rows, sample_classes, shard_bounds
from facestra.train.shard_files import SHARDS, load_shards, write_shard

CLASSES, SIZE, LOCAL_BATCH, WORLD = 23, 12, 5, 2
LOSSES = ("softmax", "cosface", "arcface")
SMALL = dict(arch="resnet18", width=0.125, input_size=(32, 32), embedding_size=32, workers=0, log_every=1, device="cpu", threads=1)


def _problem(loss: str) -> dict[str, torch.Tensor]:
    """A full classifier and a global batch; labels repeat and cover both shards."""
    generator = torch.Generator().manual_seed(LOSSES.index(loss))
    weight = torch.randn(CLASSES, SIZE, generator=generator)
    bias = torch.randn(CLASSES, generator=generator)
    embeddings = torch.randn(WORLD * LOCAL_BATCH, SIZE, generator=generator)
    labels = torch.tensor([0, 22, 5, 5, 11, 12, 3, 19, 22, 7])
    return {"weight": weight, "bias": bias, "embeddings": embeddings, "labels": labels}


def _sharded_pass(rank: int, loss: str, sample_rate: float, process: Process) -> dict:
    """What one process computes: its rows of the problem's classifier, its own samples, one backward."""
    problem = _problem(loss)
    head = ShardedClassifierHead(SIZE, CLASSES, loss=loss, sample_rate=sample_rate, process=process, seed=3)
    head.weight.copy_(problem["weight"][head.start:head.stop])
    if head.bias is not None:
        head.bias.copy_(problem["bias"][head.start:head.stop])
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    embeddings = problem["embeddings"][rows].clone().requires_grad_()
    cross_entropy, correct = head.loss_and_correct(embeddings, problem["labels"][rows])
    cross_entropy.mean().backward()  # this process's loss, as a training step computes it
    index, weight_grad, bias_grad = head.gradients()
    return {
        "start": head.start, "stop": head.stop, "cross_entropy": cross_entropy.detach(), "correct": correct,
        "embedding_grad": embeddings.grad, "index": index, "weight_grad": weight_grad, "bias_grad": bias_grad,
    }


def _worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    process = Process(rank, WORLD)
    results = {f"{loss}-{rate}": _sharded_pass(rank, loss, rate, process) for loss in LOSSES for rate in (1.0, 0.5)}
    torch.save(results, f"{folder}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    """Every loss at R = 1 and R = 0.5, computed by two gloo processes."""
    folder = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(str(folder),), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


def _reference(loss: str, columns: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The full classifier in this process (optionally restricted to ``columns``), on the global batch."""
    problem = _problem(loss)
    head = ClassifierHead(SIZE, CLASSES, loss=loss)
    with torch.no_grad():
        head.weight.copy_(problem["weight"])
        if head.bias is not None:
            head.bias.copy_(problem["bias"])
    embeddings = problem["embeddings"].clone().requires_grad_()
    logits, plain = head(embeddings, problem["labels"])
    labels = problem["labels"]
    if columns is not None:  # a softmax over the kept classes only: where each label sits among them
        logits, plain = logits[:, columns], plain[:, columns]
        labels = torch.searchsorted(columns, labels)
    cross_entropy = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    cross_entropy.mean().backward()  # the global mean, as one process would train it
    return {"cross_entropy": cross_entropy.detach(), "correct": plain.argmax(1) == labels,
            "embedding_grad": embeddings.grad, "weight_grad": head.weight.grad,
            "bias_grad": None if head.bias is None else head.bias.grad}


@pytest.mark.parametrize("loss", LOSSES)
def test_two_shards_at_rate_one_give_the_full_classifiers_loss_and_gradients(two_processes, loss):
    expected = _reference(loss)
    ranks = [r[f"{loss}-1.0"] for r in two_processes]
    assert [(r["start"], r["stop"]) for r in ranks] == [(0, 12), (12, 23)] and all(r["index"] is None for r in ranks)
    np.testing.assert_allclose(torch.cat([r["cross_entropy"] for r in ranks]), expected["cross_entropy"], rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.cat([r["correct"] for r in ranks]), expected["correct"])
    # each process's loss is its own mean; DistributedDataParallel averages the backbone's gradients over processes
    embedding_grad = torch.cat([r["embedding_grad"] for r in ranks]) / WORLD
    np.testing.assert_allclose(embedding_grad, expected["embedding_grad"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(torch.cat([r["weight_grad"] for r in ranks]), expected["weight_grad"], rtol=1e-5, atol=1e-6)
    if loss == "softmax":
        np.testing.assert_allclose(torch.cat([r["bias_grad"] for r in ranks]), expected["bias_grad"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
def test_sampling_keeps_every_positive_and_is_the_softmax_over_the_kept_classes(two_processes, loss):
    ranks = [r[f"{loss}-0.5"] for r in two_processes]
    kept = [r["start"] + r["index"] for r in ranks]
    labels = _problem(loss)["labels"]
    for r, classes in zip(ranks, kept):
        positives = {int(c) for c in labels if r["start"] <= c < r["stop"]}
        assert positives <= set(classes.tolist())
        assert len(classes) == max(int(0.5 * (r["stop"] - r["start"])), len(positives))
    columns = torch.cat(kept)
    expected = _reference(loss, columns)
    np.testing.assert_allclose(torch.cat([r["cross_entropy"] for r in ranks]), expected["cross_entropy"], rtol=1e-5, atol=1e-5)
    embedding_grad = torch.cat([r["embedding_grad"] for r in ranks]) / WORLD
    np.testing.assert_allclose(embedding_grad, expected["embedding_grad"], rtol=1e-5, atol=1e-6)
    # gradients reach the kept rows only, and are those of the full classifier's rows
    np.testing.assert_allclose(torch.cat([r["weight_grad"] for r in ranks]), expected["weight_grad"][columns], rtol=1e-5, atol=1e-6)


def _shard_beside_replicated(optimizer: str) -> tuple[ShardedClassifierHead, ClassifierHead, torch.Tensor, torch.Tensor]:
    """A sharded head holding every class (sample rate 1.0), the replicated head with the same weights, and a batch."""
    torch.manual_seed(0)
    embeddings, labels = torch.randn(6, SIZE), torch.tensor([1, 2, 3, 1, 0, 9])
    head = ShardedClassifierHead(SIZE, CLASSES, loss="softmax", sample_rate=1.0, optimizer=optimizer)
    reference = ClassifierHead(SIZE, CLASSES, loss="softmax")
    with torch.no_grad():
        reference.weight.copy_(head.weight)
    return head, reference, embeddings, labels


def _step_both(head: ShardedClassifierHead, reference: ClassifierHead, optimizer: torch.optim.Optimizer,
               embeddings: torch.Tensor, labels: torch.Tensor, steps: int, **rates: float) -> None:
    """``steps`` steps of the shard's own update and of ``optimizer`` on the replicated head, each over two
    micro-batches whose gradients accumulate."""
    for _ in range(steps):
        head.zero_grad()
        optimizer.zero_grad()
        for half in (slice(0, 3), slice(3, 6)):
            head.loss_and_correct(embeddings[half], labels[half])[0].mean().backward()
            reference.loss_and_correct(embeddings[half], labels[half])[0].mean().backward()
        assert head.step(**rates)
        optimizer.step()


def test_the_row_sgd_is_torch_sgd_at_rate_one_and_leaves_unsampled_rows_alone():
    head, reference, embeddings, labels = _shard_beside_replicated("sgd")
    sgd = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    _step_both(head, reference, sgd, embeddings, labels, 3, lr=0.1, momentum=0.9, weight_decay=5e-4)
    torch.testing.assert_close(head.weight, reference.weight.detach(), rtol=0, atol=1e-7)
    torch.testing.assert_close(head.bias, reference.bias.detach(), rtol=0, atol=1e-7)

    sampled = ShardedClassifierHead(SIZE, 200, loss="arcface", sample_rate=0.05)
    before = sampled.weight.clone()
    sampled.loss_and_correct(embeddings[:3], labels[:3])[0].mean().backward()
    sampled.loss_and_correct(embeddings[3:], labels[3:])[0].mean().backward()
    rows = sampled.gradients()[0]
    assert set(labels.tolist()) <= set(rows.tolist()) and len(rows) <= 2 * 10
    assert sampled.step(lr=0.1, momentum=0.9, weight_decay=5e-4)
    changed = (sampled.weight != before).any(dim=1).nonzero().flatten()
    assert torch.equal(changed, rows)


def _adamw_heads(sample_rate: float, loss: str = "softmax") -> tuple[ShardedClassifierHead, torch.nn.Parameter, torch.nn.Parameter | None]:
    """A sharded AdamW head and, as arcface_torch's PartialFC_V2 keeps it, the same shard as parameters."""
    head = ShardedClassifierHead(SIZE, CLASSES, loss=loss, sample_rate=sample_rate, optimizer="adamw", seed=4)
    weight = torch.nn.Parameter(head.weight.clone())
    bias = None if head.bias is None else torch.nn.Parameter(head.bias.clone())
    return head, weight, bias


def test_the_shards_adamw_is_torch_adamw_on_the_replicated_head_at_rate_one():
    head, reference, embeddings, labels = _shard_beside_replicated("adamw")
    adamw = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.05)
    _step_both(head, reference, adamw, embeddings, labels, 4, lr=0.01, momentum=0.9, weight_decay=0.05)
    state = adamw.state[reference.weight]
    assert head.optimizer_steps == int(state["step"]) == 4
    # the two heads' gradients differ by float rounding, and AdamW divides each by its running RMS, so a row
    # whose gradient is near zero carries that rounding into a step of size lr: 1e-6 of the 0.04 the rows
    # moved (the next test holds the formula itself to 1e-7 on identical gradients)
    torch.testing.assert_close(head.weight, reference.weight.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(head.bias, reference.bias.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(head.weight_exp_avg, state["exp_avg"], rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(head.weight_exp_avg_sq, state["exp_avg_sq"], rtol=1e-4, atol=1e-10)
    moved = (head.weight - torch.as_tensor(ShardedClassifierHead(SIZE, CLASSES, loss="softmax").weight)).abs().max()
    assert moved > 0.03


def test_the_shards_adamw_at_a_sampled_rate_steps_every_row_as_partial_fc_v2_does():
    """PartialFC_V2 gathers the sampled rows of one parameter, so torch.optim.AdamW sees a zero gradient on
    the others and still moves them (decaying moments, decoupled weight decay); here the head's own
    gradients of its scored rows are scattered into such a parameter and stepped by torch's AdamW."""
    torch.manual_seed(1)
    embeddings, labels = torch.randn(6, SIZE), torch.tensor([1, 2, 3, 1, 0, 9])
    head, weight, bias = _adamw_heads(0.3)
    adamw = torch.optim.AdamW([weight, bias], lr=0.02, weight_decay=0.1)
    moved_unscored = False
    for _ in range(3):
        head.zero_grad()
        head.loss_and_correct(embeddings[:3], labels[:3])[0].mean().backward()
        head.loss_and_correct(embeddings[3:], labels[3:])[0].mean().backward()
        rows, weight_grad, bias_grad = head.gradients()
        assert rows is not None and len(rows) < CLASSES
        weight.grad = torch.zeros_like(weight).index_copy_(0, rows, weight_grad)
        bias.grad = torch.zeros_like(bias).index_copy_(0, rows, bias_grad)
        before = head.weight.clone()
        assert head.step(lr=0.02, momentum=0.9, weight_decay=0.1)
        adamw.step()
        unscored = torch.ones(CLASSES, dtype=torch.bool).index_fill_(0, rows, False)
        moved_unscored |= bool((head.weight[unscored] != before[unscored]).any())
        torch.testing.assert_close(head.weight, weight.detach(), rtol=0, atol=1e-7)
        torch.testing.assert_close(head.bias, bias.detach(), rtol=0, atol=1e-7)
    assert moved_unscored  # the decoupled weight decay (and the first moment) reach rows not scored this step


def test_an_adamw_shard_is_saved_and_resharded_with_its_moments_and_step_count(tmp_path):
    saved = [ShardedClassifierHead(SIZE, CLASSES, loss="softmax", process=Process(rank, 2), seed=1, optimizer="adamw") for rank in range(2)]
    for head in saved:
        for name in head.row_names():
            getattr(head, name).normal_()
        head.optimizer_steps = 5
        write_shard(tmp_path, "t", head)
    names = ("weight", "weight_exp_avg", "weight_exp_avg_sq", "bias", "bias_exp_avg", "bias_exp_avg_sq")
    assert saved[0].row_names() == names
    full = {name: torch.cat([getattr(h, name) for h in saved]) for name in names}
    for world in (1, 3):
        resumed = [ShardedClassifierHead(SIZE, CLASSES, loss="softmax", process=Process(r, world), seed=2, optimizer="adamw") for r in range(world)]
        for head in resumed:
            load_shards(head, tmp_path, {"token": "t", "world_size": 2, "num_classes": CLASSES})
            assert head.optimizer_steps == 5
        for name, rows in full.items():
            assert torch.equal(torch.cat([getattr(h, name) for h in resumed]), rows), name
    with pytest.raises(UserError, match=r"t-0-of-2.pt: holds no weight_momentum; was the run trained with another `loss` or `optimizer`"):
        load_shards(_shards(2)[0], tmp_path, {"token": "t", "world_size": 2, "num_classes": CLASSES})


def test_a_shard_without_positives_still_scores_a_row():
    generator = torch.Generator().manual_seed(0)
    none = torch.zeros(0, dtype=torch.long)
    assert len(sample_classes(none, 5, 0.1, generator)) == 1  # 0.1 x 5 rounds to no row
    assert sample_classes(torch.arange(5), 5, 0.1, generator) is None  # every row is a positive
    assert sample_classes(torch.tensor([7]), 100, 0.1, generator).tolist().count(7) == 1


def test_initial_rows_do_not_depend_on_the_sharding():
    full = initial_rows(10_000, 4, 0, 10_000, seed=5)
    assert full.std().item() == pytest.approx(0.01, rel=0.05)
    parts = [initial_rows(10_000, 4, *shard_bounds(10_000, 3, rank), seed=5) for rank in range(3)]
    assert torch.equal(torch.cat(parts), full)
    assert not torch.equal(initial_rows(10_000, 4, 0, 10_000, seed=6), full)


def _shards(world: int, loss: str = "softmax") -> list[ShardedClassifierHead]:
    return [ShardedClassifierHead(SIZE, CLASSES, loss=loss, process=Process(rank, world), seed=1) for rank in range(world)]


@pytest.mark.parametrize("new_world", [1, 2, 3, 5])
def test_checkpoint_shards_are_resharded_at_another_world_size(tmp_path, new_world):
    saved = _shards(2)
    for head in saved:  # rows that differ from the initial ones
        head.weight.normal_()
        head.weight_momentum.normal_()
        head.bias.normal_()
        head.draws = 7
        write_shard(tmp_path, "000000004-ab", head)
    full = {name: torch.cat([getattr(h, name) for h in saved]) for name in ("weight", "weight_momentum", "bias", "bias_momentum")}
    resumed = _shards(new_world)
    for head in resumed:
        load_shards(head, tmp_path, {"token": "000000004-ab", "world_size": 2, "num_classes": CLASSES})
        assert head.draws == 7
    for name, rows in full.items():
        assert torch.equal(torch.cat([getattr(h, name) for h in resumed]), rows), name


def test_a_missing_or_foreign_shard_is_refused_in_one_line(tmp_path):
    for head in _shards(2):
        write_shard(tmp_path, "t", head)
    saved = {"token": "t", "world_size": 2, "num_classes": CLASSES}
    (tmp_path / SHARDS / "t-1-of-2.pt").unlink()
    first, second = _shards(2)
    load_shards(first, tmp_path, saved)  # needs shard 0 only
    with pytest.raises(UserError, match=r"t-1-of-2.pt: missing; the classifier of .* was saved in 2 shards") as error:
        load_shards(second, tmp_path, saved)
    assert "\n" not in str(error.value)
    (tmp_path / SHARDS / "t-0-of-2.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"t-0-of-2.pt: not a readable classifier shard"):
        load_shards(first, tmp_path, saved)
    for head in _shards(2, loss="arcface"):
        write_shard(tmp_path, "a", head)
    with pytest.raises(UserError, match=r"a-0-of-2.pt: holds no bias; was the run trained with another `loss`"):
        load_shards(_shards(2)[0], tmp_path, {**saved, "token": "a"})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("faces") / "train", range(12), 6)


def _steps(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(m["step"], m["loss"], m["accuracy"], m["lr"]) for m in rows if m["kind"] == "step"]


def _straight_and_resumed(tmp_path: Path, common: dict) -> tuple[dict, dict]:
    """One run straight through, and one interrupted after step 3 and resumed, which must log the same steps
    bit for bit; their final classifier shards."""
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **common))
    assert straight.global_step == 8

    def interrupt_at_step_3(event):
        if event.kind == "step" and event.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    broken = train(TrainConfig(out=str(tmp_path / "broken"), **common), progress=interrupt_at_step_3)
    assert broken.stopped == "interrupted" and broken.global_step == 4
    assert len(list((tmp_path / "broken" / SHARDS).glob("*.pt"))) == 1  # the older generation is gone
    train(resume_config(tmp_path / "broken"))
    assert _steps(tmp_path / "broken") == _steps(tmp_path / "straight")  # bit for bit
    a, b = (torch.load(next((tmp_path / run / SHARDS).glob("*.pt")), weights_only=True) for run in ("straight", "broken"))
    return a, b


def test_one_process_sampled_run_resumes_bit_exactly(data, tmp_path):
    common = dict(data=str(data), batch_size=16, epochs=2, lr_steps=(1,), loss="cosface", sample_rate=0.5, save_every=2, **SMALL)
    a, b = _straight_and_resumed(tmp_path, common)
    assert torch.equal(a["weight"], b["weight"]) and torch.equal(a["weight_momentum"], b["weight_momentum"]) and a["draws"] == b["draws"] == 8
    # the run folder is one kind of run: it does not resume as a replicated one
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "broken"), "--sample-rate", "1"])
    assert result.exit_code == 2 and "--sample-rate cannot change when resuming (the run has 0.5)" in result.output


def test_a_sampled_adamw_run_resumed_after_an_interruption_repeats_the_uninterrupted_one(data, tmp_path):
    common = dict(data=str(data), batch_size=16, epochs=2, schedule="poly", warmup_epochs=1, optimizer="adamw", lr=0.01,
                  weight_decay=0.1, loss="softmax", sample_rate=0.5, save_every=2, **SMALL)
    a, b = _straight_and_resumed(tmp_path, common)
    assert a["optimizer"] == "adamw" and a["optimizer_steps"] == b["optimizer_steps"] == 8 and a["draws"] == b["draws"] == 8
    for name in ("weight", "weight_exp_avg", "weight_exp_avg_sq", "bias", "bias_exp_avg", "bias_exp_avg_sq"):
        assert torch.equal(a[name], b[name]), name
    assert (a["weight_exp_avg_sq"] > 0).all()  # every row was stepped, scored or not


def test_sample_rate_is_range_checked_on_the_command_line(data, tmp_path):
    for bad in ("0", "1.5"):
        result = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--sample-rate", bad])
        assert result.exit_code == 2 and "--sample-rate" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_two_gloo_processes_train_like_one_and_resume_resharded(data, tmp_path):
    args = ["--arch", "resnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32", "--workers", "0",
            "--device", "cpu", "--threads", "1", "--batch-size", "16", "--epochs", "1", "--log-every", "1", "--quiet",
            "--sample-rate", "1", "--sync-bn"]  # softmax: ArcFace's scale amplifies float rounding over steps
    two, one = tmp_path / "two", tmp_path / "one"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "facestra", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*torchrun, "--data", str(data), "--out", str(two), *args, "--check-replicas"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    train(TrainConfig(data=str(data), out=str(one), batch_size=16, epochs=1, sample_rate=1.0, sync_bn=True, **SMALL))
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert all(r["replicas_identical"] for r in rows)  # the backbones agree; the shards differ by design
    np.testing.assert_allclose([s[1] for s in _steps(two)], [s[1] for s in _steps(one)], rtol=1e-5)
    assert sorted(p.name.split("-", 2)[2] for p in (two / SHARDS).glob("*.pt")) == ["0-of-2.pt", "1-of-2.pt"]

    # one more epoch in one process: the two shards become one, which continues where the two left off
    resumed = train(resume_config(two, {"epochs": 2}))
    assert resumed.global_step == 8
    assert [p.name.split("-", 2)[2] for p in (two / SHARDS).glob("*.pt")] == ["0-of-1.pt"]
    losses = [s[1] for s in _steps(two)]
    assert len(losses) == 8 and np.mean(losses[4:]) < np.mean(losses[:4])
