"""``facestra info``: what a network costs, per stage, before anyone trains it."""

from __future__ import annotations

import json

import click

from facestra.cli.options import SIZE, dataclass_options, refuse_unused_options, stra_options
from facestra.train.config import TrainConfig


def _arch_names() -> list[str]:
    from facestra.models import names

    return names()


@click.command()
@click.option("--arch", "archs", multiple=True, help="Architecture (repeatable). Default: resnet50 and resnet50_stra.")
@dataclass_options(TrainConfig, only=("width",))
@click.option("--input", "input_size", type=SIZE, default="112x112", show_default=True, help="Input size HxW.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
@stra_options
def info(archs: tuple[str, ...], width: float, input_size: tuple[int, int], json_path: str | None, overwrite: bool, **stra) -> None:
    """Parameters and multiply-adds of networks, per stage (compare resnet50 with resnet50_stra).

    The StRA options apply to the *_stra architectures, e.g. --kernel-size 7 or --no-mode-interaction to
    cost a row of the paper's ablations. Networks are built on PyTorch's meta device: shapes only, so the
    figures of a network too large for this machine are printed without allocating it.
    """
    import torch

    from facestra import models
    from facestra.io import refuse_output_over_inputs, write_text_atomic

    if json_path:
        refuse_output_over_inputs(json_path, (), overwrite=overwrite, role="--json")

    archs = archs or ("resnet50", "resnet50_stra")
    stra = {name: value for name, value in stra.items() if value is not None}
    if not any(arch.endswith("_stra") for arch in archs):
        refuse_unused_options(tuple(stra), "only used with a *_stra --arch")
    report = {}
    for arch in archs:
        try:
            with torch.device("meta"):
                model = models.create(arch, width=width, input_size=input_size, **(stra if arch.endswith("_stra") else {}))
        except ValueError as error:
            raise click.UsageError(f"--arch {arch}: {error}") from None
        report[arch] = models.complexity(model, input_size).as_dict()
    stage_names = list(next(iter(report.values()))["stages"])
    header = f"{'stage':<8}" + "".join(f"{arch + ' params':>22}{'MACs':>12}" for arch in archs)
    click.echo(f"input {input_size[0]}x{input_size[1]}, width {width:g}")
    click.echo(header)
    for stage in stage_names + ["total"]:
        row = f"{stage:<8}"
        for arch in archs:
            figures = report[arch] if stage == "total" else report[arch]["stages"][stage]
            row += f"{figures['params'] / 1e6:>21.2f}M{figures['macs'] / 1e9:>11.3f}G"
        click.echo(row)
    for arch in archs:
        counts = report[arch].get("stra_block_params")
        if counts:
            click.echo(f"{arch}: {len(counts)} StRA blocks of {', '.join(f'{n:,}' for n in counts)} parameters")
    if len(archs) == 2:
        first, second = (report[a]["macs"] for a in archs)
        click.echo(f"{archs[1]} / {archs[0]} MACs: {second / first:.3f}")
    if json_path:
        payload = {"input_size": list(input_size), "width": width, "models": report}
        write_text_atomic(json_path, json.dumps(payload, indent=2) + "\n")
        click.echo(f"wrote {json_path}")
