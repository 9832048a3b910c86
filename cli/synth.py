"""``facestra synth``: render a data set of synthetic people with true landmarks and benchmark pairs."""

from __future__ import annotations

import click

from facestra.cli.options import dataclass_options
from facestra.fields import MAX_WORKERS
from facestra.synth.dataset import SynthSettings


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@dataclass_options(SynthSettings)
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=None, help="Processes (default: all cores).")
def synth(out: str, workers: int | None, **settings) -> None:
    """Write synthetic faces to OUT: train/ and test/ identity folders, landmarks.csv, test/pairs.txt, test.bin."""
    from tqdm import tqdm

    from facestra.synth.dataset import synthesize

    settings = SynthSettings(**settings)
    with tqdm(total=settings.identities * settings.images_per_identity, unit="img", desc="synth", leave=False) as bar:
        summary = synthesize(out, settings, workers=workers, progress=lambda done, total: bar.update(done - bar.n))
    rate = summary.written / summary.seconds if summary.seconds > 0 else 0.0
    click.echo(f"{summary.images} images of {summary.train_identities} training and {summary.test_identities} test "
               f"identities ({summary.written} written, {summary.resumed} already there) in {summary.seconds:.1f}s "
               f"({rate:.0f} images/s)")
    click.echo(f"train images: {summary.train_dir}")
    click.echo(f"test images:  {summary.test_dir}")
    click.echo(f"landmarks:    {summary.landmarks}")
    click.echo(f"pairs:        {summary.pairs} (10 folds x {summary.pairs_per_fold} same + "
               f"{summary.pairs_per_fold} different)")
    click.echo(f"benchmark:    {summary.bin} (aligned 112x112)")
    click.echo(f"raw aligned pixels verify {100 * summary.raw_pixel_accuracy:.2f}% of these pairs "
               "(the floor a trained network must beat)")
