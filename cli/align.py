"""``facestra align``: warp every face of a folder or list to the canonical crop."""

from __future__ import annotations

from pathlib import Path

import click


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
@click.option("--landmarks", type=click.Path(path_type=Path),
              help="Five points per image: CSV (path,x1,y1,...,x5,y5), JSON lines, or insightface .lst.")
@click.option("--detector", type=click.Choice(["yunet"]),
              help="Detect faces with YuNet (pip install 'facestra[detect]').")
@click.option("--size", default="112", show_default=True, help="Crop size: N (square) or HxW, e.g. 224x192.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: all cores].")
@click.option("--format", "image_format", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True)
@click.option("--quality", type=click.IntRange(0, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--all-faces", is_flag=True, help="Write every detected face as name_0, name_1, ...")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Detector confidence threshold.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: keep them and skip).")
@click.option("--strict", is_flag=True, help="Exit 1 if any image is unreadable, has bad landmarks or no face.")
@click.option("--json", "json_report", type=click.Path(path_type=Path), help="Also write the summary as JSON.")
def align(input: Path, out_dir: Path, landmarks: Path | None, detector: str | None, size: str, workers: int | None,
          image_format: str, quality: int, all_faces: bool, min_score: float, overwrite: bool, strict: bool,
          json_report: Path | None) -> None:
    """Align the faces of INPUT (an image folder or a list file) to the ArcFace template.

    Writes the same relative tree under --out, one crop per face, and --out/align_report.csv.
    Rerunning the same command resumes an interrupted run.
    """
    from facestra.align.job import align_images

    bar = _ProgressBar()
    try:
        summary = align_images(
            input, out_dir, landmarks=landmarks, detector=detector, size=size, workers=workers,
            overwrite=overwrite, strict=strict, image_format=image_format, quality=quality,
            all_faces=all_faces, min_score=min_score, json_report=json_report, progress=bar,
        )
    finally:
        bar.close()
    click.echo(summary.line())
