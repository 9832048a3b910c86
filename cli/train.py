"""``facestra train``: parse options, call :func:`facestra.train.train`, show a progress bar, print the outcome.

Under ``torchrun --nproc-per-node N -m facestra train ...`` every process runs this command; only rank 0
shows the bar and prints.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import click
from click.core import ParameterSource

from facestra.cli.options import dataclass_options, stra_options
from facestra.train.config import PRESETS, TrainConfig

_NAMES = tuple(field.name for field in dataclasses.fields(TrainConfig))
# Fields that are not options: --resume names a run folder instead, and validation batches stay at their default.
_NOT_OPTIONS = ("resume", "val_batch_size")


def _only(first: str, last: str) -> tuple[str, ...]:
    """The ``exclude`` that keeps TrainConfig's options from ``first`` to ``last``, so that ``--help`` lists
    them in field order with the StRA switches after the network's other options."""
    kept = _NAMES[_NAMES.index(first): _NAMES.index(last) + 1]
    return tuple(name for name in _NAMES if name not in kept or name in _NOT_OPTIONS)


@click.command()
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue the run in this folder.")
@click.option("--preset", type=click.Choice(list(PRESETS)),
              help="A published recipe: the paper's schedules (paper-*), or arcface_torch's configs of the same name "
              "(network, margins and scale, optimizer, lr, weight decay, batch of 128 per GPU x 8, epochs, warm-up, poly "
              "schedule, clipping, fp16); explicit options override it.")
@dataclass_options(TrainConfig, exclude=_only("data", "dropout"))
@stra_options
@dataclass_options(TrainConfig, exclude=_only("loss", "check_replicas"))
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(resume_dir: str | None, preset: str | None, quiet: bool, **options) -> None:
    """Train a face network with softmax, CosFace, ArcFace or the combined margin, from random weights or
    fine-tuning pretrained ones (--init); torchrun for several GPUs or processes."""
    from facestra.train import build_config, resume_config
    from facestra.train import train as run_training

    ctx = click.get_current_context()
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
    if resume_dir is not None:
        config = resume_config(resume_dir, {k: v for k, v in given.items() if not (k == "out" and v == resume_dir)})
    else:
        config = build_config(given, preset)

    is_main = int(os.environ.get("RANK", "0")) == 0
    with _ProgressBar(enabled=is_main and not quiet) as bar:
        result = run_training(config, progress=bar.update, warn=lambda line: click.echo(f"warning: {line}", err=True))
    if not is_main:
        return
    click.echo(
        f"{result.stopped} at step {result.global_step}/{result.total_steps} ({result.epochs_completed:.2f} epochs, "
        f"{result.elapsed_s:.0f} s); {result.num_images} images of {result.num_identities} identities"
    )
    if result.final_loss is not None:
        click.echo(f"last loss {result.final_loss:.4f}, training accuracy {result.final_accuracy:.3f}")
    if result.best_accuracy is not None:
        click.echo(f"best mean validation accuracy {result.best_accuracy:.4f}: {result.best_path}")
    if result.skipped_images:
        click.echo(f"skipped {result.skipped_images} unreadable images, listed in {result.run_dir / 'skipped.txt'}")
    click.echo(f"model: {result.model_path}  checkpoint: {result.checkpoint_path}")
    if result.stopped == "interrupted":
        click.echo(f"interrupted; continue with: facestra train --resume {result.run_dir}", err=True)
        sys.exit(130)


class _ProgressBar:
    """A tqdm bar over optimizer steps showing loss, accuracy, lr and images/s."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __enter__(self) -> _ProgressBar:
        return self

    def update(self, event) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=event.total_steps, initial=event.global_step, unit="step", dynamic_ncols=True)
        if event.kind == "step":
            self.bar.update(event.global_step - self.bar.n)
            v = event.values
            self.bar.set_postfix_str(f"loss {v['loss']:.3f} acc {v['accuracy']:.3f} lr {v['lr']:.3g} {v.get('images_per_s', 0):.0f} img/s")
        elif event.kind == "val":
            figures = ", ".join(f"{k} {v:.4f}" for k, v in event.values.items() if isinstance(v, float))
            self.bar.write(f"val step {event.global_step}: {figures}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
