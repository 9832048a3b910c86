"""``facestra align``: warp every face of a folder or list to the canonical crop."""

from __future__ import annotations

from pathlib import Path

import click

from facestra.align.job import AlignOptions, align_images
from facestra.align.records import OCCUPIED
from facestra.cli.options import dataclass_options, refuse_unused_options
from facestra.errors import UserError


class _ProgressBar:
    """A tqdm bar (on stderr, only on a terminal) fed by the library's ``progress(done, total)`` calls."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", desc="align", disable=None)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@dataclass_options(AlignOptions)
def align(input: Path, out_dir: Path, **options) -> None:
    """Align the faces of INPUT (an image folder or a list file) to the ArcFace template.

    Writes the same relative tree under --out, one crop per face, and --out/align_report.csv.
    Rerunning the same command resumes an interrupted run.
    """
    if options.get("detector") is None:
        refuse_unused_options(("min_score",), "only used with a detector (--detector)")
    bar = _ProgressBar()
    try:
        summary = align_images(input, out_dir, AlignOptions(**options), progress=bar)
    finally:
        bar.close()
    click.echo(summary.line())
    taken = [record for record in summary.records if record.status == OCCUPIED]
    if taken:  # the user's files are safe, but the run is not what was asked: say so in the exit status
        raise UserError(f"{summary.report_path.parent}: {len(taken)} image(s) got no crop, their crop's name "
                        f"being taken by a file facestra did not write (first: {taken[0].detail})", exit_code=1)
