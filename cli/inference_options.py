"""The options every command that runs a model on images shares (embed, verify)."""

from __future__ import annotations

import os
from typing import Callable

import click

DEFAULT_WORKERS = min(4, max(1, (os.cpu_count() or 1) - 1))


def inference_options(command: Callable) -> Callable:
    """Add --flip, --batch-size, --workers, --device and --resize to a command."""
    options = [
        click.option("--flip", type=click.Choice(["concat", "sum", "none"]), default="concat", show_default=True,
                     help="Combine each image with its mirror: concatenate (the protocol), add, or no mirror."),
        click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True, help="Images per forward pass."),
        click.option("--workers", type=click.IntRange(min=0), default=DEFAULT_WORKERS, show_default=True,
                     help="Image-decoding processes (0: decode in the main process)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to run the model (auto: cuda when available)."),
        click.option("--resize", is_flag=True, help="Resize images that are not the model's input size (otherwise an error)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def progress_bar(total: int, description: str):
    """A tqdm bar on stderr counting images, with images/s."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", unit_scale=False, dynamic_ncols=True, leave=False)
