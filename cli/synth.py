"""``facestra synth``: render a data set of synthetic people with true landmarks and benchmark pairs."""

from __future__ import annotations

import click


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--identities", type=click.IntRange(min=3), required=True, help="People to create (train + test).")
@click.option("--images-per-identity", type=click.IntRange(min=2), required=True, help="Photos of each person.")
@click.option("--size", type=click.IntRange(min=64), default=250, show_default=True, help="Image side in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same files.")
@click.option("--test-identities", type=click.IntRange(min=2), default=None,
              help="People kept out of training for the pairs (default: a fifth, at least 2).")
@click.option("--pairs-per-fold", type=click.IntRange(min=1), default=300, show_default=True,
              help="Same (and as many different) pairs in each of the 10 folds, at most.")
@click.option("--difficulty", type=click.FloatRange(0.0, 3.0), default=1.0, show_default=True,
              help="Scale of pose, lighting, occlusion and image degradation (0: clean frontal photos).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
def synth(out: str, identities: int, images_per_identity: int, size: int, seed: int, test_identities: int | None,
          pairs_per_fold: int, difficulty: float, workers: int | None) -> None:
    """Write synthetic faces to OUT: train/ and test/ identity folders, landmarks.csv, test/pairs.txt, test.bin."""
    from tqdm import tqdm

    from facestra.synth.dataset import SynthSettings, synthesize

    settings = SynthSettings(identities=identities, images_per_identity=images_per_identity, size=size, seed=seed,
                             test_identities=test_identities, pairs_per_fold=pairs_per_fold, difficulty=difficulty)
    with tqdm(total=identities * images_per_identity, unit="img", desc="synth", leave=False) as bar:
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
