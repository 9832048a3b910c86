"""``facestra train``: parse options, call :func:`facestra.train.loop.train`, show a progress bar, print the outcome.

Under ``torchrun --nproc-per-node N -m facestra train ...`` every process runs this command; only rank 0
shows the bar and prints.
"""

from __future__ import annotations

import os
import sys

import click
from click.core import ParameterSource
from facestra.cli.options import SIZE, stra_options


class _IntList(click.ParamType):
    """``8,12`` -> (8, 12)."""

    name = "EPOCHS"

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of epochs like 8,12", param, ctx)


class _PathList(click.ParamType):
    """``lfw.bin,cfp_fp.bin`` -> ("lfw.bin", "cfp_fp.bin")."""

    name = "FILES"

    def convert(self, value, param, ctx) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        return tuple(v.strip() for v in str(value).split(",") if v.strip())


def _arch_names() -> list[str]:
    from facestra.models import names

    return names()


@click.command()
@click.option("--data", help="Training images: identity folder tree, 'path,label' list file, or train.rec (+ train.idx).")
@click.option("--out", help="Run folder for checkpoints, metrics and the trained model.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue the run in this folder.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@click.option("--preset", type=click.Choice(["paper-medium", "paper-vggface2"]), help="The paper's schedule (epochs, lr steps, batch).")
@click.option("--arch", default="resnet50_stra", show_default=True, help="Architecture (facestra info lists costs).")
@click.option("--width", type=float, default=1.0, show_default=True, help="Channel width multiplier.")
@click.option("--embedding-size", type=int, default=512, show_default=True)
@click.option("--input-size", type=SIZE, default="112x112", show_default=True, help="Network input HxW.")
@click.option("--dropout", type=float, default=0.0, show_default=True)
@stra_options
@click.option("--loss", type=click.Choice(["softmax", "cosface", "arcface"]), default="softmax", show_default=True)
@click.option("--scale", type=float, help="Feature scale s (CosFace/ArcFace default 20).")
@click.option("--margin", type=float, help="Margin m (CosFace 0.2, ArcFace 0.15 by default).")
@click.option("--diversity-weight", type=float, default=0.1, show_default=True, help="Weight of the StRA diversity loss.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--lr-steps", type=_IntList(), default="8,12", show_default=True, help="Epochs at which lr is multiplied by --lr-factor.")
@click.option("--lr-factor", type=float, default=0.1, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--warmup-epochs", type=float, default=0.0, show_default=True, help="Linear lr warm-up.")
@click.option("--batch-size", type=int, default=512, show_default=True, help="Global batch (over all processes).")
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per optimizer step.")
@click.option("--workers", type=int, default=4, show_default=True, help="Data-loader processes per training process.")
@click.option("--threads", type=int, help="CPU threads for the network (default: PyTorch's choice).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--amp", type=click.Choice(["none", "bf16", "fp16"]), default="none", show_default=True, help="Mixed precision.")
@click.option("--channels-last/--no-channels-last", default=None, help="Channels-last memory format (default: on GPUs).")
@click.option("--compile", is_flag=True, help="torch.compile the network: faster steps on a GPU after a slow first one.")
@click.option("--sync-bn", is_flag=True, help="Batch statistics over all processes.")
@click.option("--no-flip", "flip", flag_value=False, default=True, help="Turn off the random horizontal flip.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of skipping it.")
@click.option("--val", type=_PathList(), help="Benchmarks to verify on, comma-separated (lfw.bin,cfp_fp.bin,...).")
@click.option("--val-every", type=int, default=0, show_default=True, help="Validate every N steps (0: every epoch).")
@click.option("--save-every", type=int, default=0, show_default=True, help="Also save last.pt every N steps.")
@click.option("--log-every", type=int, default=10, show_default=True, help="Log metrics every N steps.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps in all.")
@click.option("--max-minutes", type=float, help="Time budget: stop cleanly and save after this many minutes.")
@click.option("--check-replicas", is_flag=True, help="Debugging: record a digest of every process's weights after each step.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(resume_dir: str | None, preset: str | None, quiet: bool, **options) -> None:
    """Train a face network with softmax, CosFace or ArcFace (torchrun for several GPUs or processes)."""
    from facestra.train.config import build_config
    from facestra.train.loop import resume_config
    from facestra.train.loop import train as run_training

    ctx = click.get_current_context()
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
    if resume_dir is not None:
        config = resume_config(resume_dir, {k: v for k, v in given.items() if not (k == "out" and v == resume_dir)})
    else:
        config = build_config(given, preset)

    is_main = int(os.environ.get("RANK", "0")) == 0
    with _ProgressBar(enabled=is_main and not quiet) as bar:
        result = run_training(config, progress=bar.update)
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
