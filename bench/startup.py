"""Start-up cost where a user waits on it: `facestra --help`, `facestra compare --help`, and a two-photo
`facestra compare` with an ONNX model, each as a fresh process (the best of ``--repeats``).

Baselines run side by side in the same invocation: what `import torch` alone costs (the help texts import
neither torch nor the onnx package), and the same ONNX compare through the torch path
(:class:`facestra.models.onnx.OnnxModel` and :func:`facestra.embed.inference.embed_images`, as before the
torch-free path). The ONNX model is a small resnet18 exported by facestra; the photos are scikit-image's
astronaut and a shifted, rotated copy (YuNet detects both).

    python bench/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(command: list[str], repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``command`` (a fresh process each), in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def make_inputs(folder: Path) -> tuple[Path, Path, Path]:
    import cv2
    import numpy as np
    import torch
    from skimage import data

    from facestra import models
    from facestra.models.onnx import export_onnx

    torch.manual_seed(0)
    export_onnx(models.create("resnet18", width=0.25, embedding_size=128).eval(), folder / "model.onnx")
    astronaut = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    cv2.imwrite(str(folder / "a.png"), astronaut)
    matrix = cv2.getRotationMatrix2D((256, 256), 8, 0.8)
    matrix[:, 2] += (20, -10)
    cv2.imwrite(str(folder / "b.png"), cv2.warpAffine(astronaut, matrix, (512, 512), borderValue=(90, 90, 90)))
    return folder / "model.onnx", folder / "a.png", folder / "b.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    facestra = [python, "-m", "facestra"]
    with tempfile.TemporaryDirectory() as folder:
        model, first, second = make_inputs(Path(folder))
        torch_import = wall([python, "-c", "import torch"], args.repeats)
        help_all = wall([*facestra, "--help"], args.repeats)
        help_compare = wall([*facestra, "compare", "--help"], args.repeats)
        print(f"import torch alone:          {torch_import:.2f} s")
        print(f"facestra --help:             {help_all:.2f} s  (ratio to import torch: {help_all / torch_import:.2f}x)")
        print(f"facestra compare --help:     {help_compare:.2f} s  (ratio to import torch: {help_compare / torch_import:.2f}x)")
        fast = wall([*facestra, "compare", str(first), str(second), "--checkpoint", str(model)], args.repeats)
        via_torch = (
            "import sys, torch\n"
            "from facestra.models.onnx import load_onnx\n"
            "from facestra.verify.compare import compare_images\n"
            f"compare_images(load_onnx({str(model)!r}), {str(first)!r}, {str(second)!r})"
        )
        slow = wall([python, "-c", via_torch], args.repeats)
        print(f"compare, ONNX, torch-free:   {fast:.2f} s")
        print(f"compare, ONNX, through torch: {slow:.2f} s  (ratio torch-free / through torch: {fast / slow:.2f}x)")


if __name__ == "__main__":
    main()
