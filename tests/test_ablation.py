"""The ablation runner: its interval arithmetic, and a tiny two-variant, two-seed experiment that resumes."""

from __future__ import annotations

import json
import math

import pytest

from facestra.ablation import QUICK, AblationConfig, markdown_table, mean_interval, run_ablation
from facestra.errors import UserError


def test_mean_interval_is_the_student_t_interval() -> None:
    mean, half = mean_interval([0.90, 0.92, 0.94])
    # sd 0.02, t(0.975, 2 degrees of freedom) = 4.302653 from the tables
    assert mean == pytest.approx(0.92)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_interval([0.5])[1])


def test_unknown_variant_and_missing_benchmarks_are_refused(tmp_path) -> None:
    with pytest.raises(UserError, match="unknown variant k9"):
        AblationConfig(workdir=tmp_path, variants=("full", "k9"))
    with pytest.raises(UserError, match="`val` benchmarks"):  # the library names its argument
        AblationConfig(workdir=tmp_path, data=str(tmp_path))


def test_tiny_experiment_trains_each_run_once_and_resumes(tmp_path) -> None:
    settings = {**QUICK, "identities": 24, "test_identities": 8, "images_per_identity": 4, "epochs": 1,
                "lr_steps": (), "warmup_epochs": 0.0, "batch_size": 16, "jobs": 2, "input_size": (32, 32)}
    config = AblationConfig(workdir=tmp_path / "work", variants=("resnet50", "local"), seeds=(0, 1), **settings)
    lines: list[str] = []
    summaries = run_ablation(config, log=lines.append)
    assert "4 runs to do, 0 already done, 2 at a time" in lines
    assert [s.variant.name for s in summaries] == ["resnet50", "local"]
    for summary in summaries:
        results = [json.loads((tmp_path / "work" / "runs" / summary.variant.name / f"seed{seed}" / "result.json").read_text())
                   for seed in (0, 1)]
        assert summary.accuracies == tuple(r["accuracy"] for r in results)
        assert all(0.0 <= a <= 1.0 for a in summary.accuracies)
    plain, stra = summaries
    assert stra.params < plain.params and stra.macs < plain.macs
    table = markdown_table(summaries).splitlines()
    assert table[2].startswith("| resnet50 | Table 2: baseline |") and table[3].startswith("| local |")

    again: list[str] = []
    assert [s.accuracies for s in run_ablation(config, log=again.append)] == [s.accuracies for s in summaries]
    assert "0 runs to do, 4 already done, 2 at a time" in again


def test_real_data_path_trains_on_a_folder_and_verifies_on_a_bin(tmp_path) -> None:
    """--data and --val as a user with an aligned training tree and a .bin benchmark gives them."""
    from facestra.synth.dataset import SynthSettings, synthesize

    faces = tmp_path / "faces"
    synthesize(faces, SynthSettings(identities=12, images_per_identity=3, test_identities=4, pairs_per_fold=4))
    settings = {**QUICK, "input_size": (112, 112), "epochs": 1, "lr_steps": (), "warmup_epochs": 0.0, "batch_size": 16,
                "jobs": 1}
    config = AblationConfig(workdir=tmp_path / "work", variants=("full",), seeds=(3,), data=str(faces / "train"),
                            val=(str(faces / "test.bin"),), **settings)
    (summary,) = run_ablation(config)
    result = json.loads((tmp_path / "work" / "runs" / "full" / "seed3" / "result.json").read_text())
    assert list(result["per_benchmark"]) == ["test"] and summary.accuracies == (result["accuracy"],)
    assert not (tmp_path / "work" / "faces").exists()  # nothing synthesised when data is given
