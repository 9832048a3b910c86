"""What the reliability checks cost an ``embed`` job, each against the work it guards, timed in one process.

* the job fingerprint with each image's size and modification time (one ``stat`` per image) against the
  one of facestra 0.2.0, which hashed the names and weights only;
* the check that embeddings are not identical for every image, over a finished N x D memory-mapped matrix,
  against writing that matrix;
* taking and releasing an output's lock, in microseconds.

    python bench/reliability_overhead.py [--images 20000 --dim 1024 --arch resnet50 --width 1.0 --repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _timing import best_time

from facestra import models
from facestra.embed.fingerprint import job_fingerprint
from facestra.embed.sanity import refuse_identical_rows
from facestra.locks import output_lock


def fingerprint_of_020(model: torch.nn.Module, names: list[str], options: dict) -> str:
    """facestra 0.2.0's job key: options, architecture, names, weights (no file stamps)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([options, getattr(model, "arch", "")]).encode())
    for name in names:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = models.create(args.arch, width=args.width).eval()
    with tempfile.TemporaryDirectory(prefix="facestra-bench-") as folder:
        names = []
        for i in range(args.images):
            path = os.path.join(folder, f"{i:07d}.png")
            Path(path).write_bytes(b"x")
            names.append(path)
        options = {"flip": "concat", "normalize": True}
        old = best_time(lambda: fingerprint_of_020(model, names, options), args.repeats)
        new = best_time(lambda: job_fingerprint(model, names, options), args.repeats)
        print(f"job fingerprint, {args.images} images, {args.arch} x{args.width:g}: 0.2.0 {old:.3f} s, with file stamps "
              f"{new:.3f} s; ratio {new / old:.2f}x")

        matrix_path = os.path.join(folder, "e.npy")
        rows = np.random.default_rng(0).standard_normal((args.images, args.dim)).astype(np.float32)

        def write() -> None:
            matrix = np.lib.format.open_memmap(matrix_path, mode="w+", dtype=np.float32, shape=rows.shape)
            matrix[:] = rows
            matrix.flush()
            del matrix

        written = best_time(write, args.repeats)
        matrix = np.load(matrix_path, mmap_mode="r")
        checked = best_time(lambda: refuse_identical_rows(matrix, names, names), args.repeats)
        same = np.broadcast_to(rows[:1], rows.shape)
        worst = best_time(lambda: refuse_identical_rows(same, [b"a"] * len(names), names), args.repeats)
        print(f"identical-rows check, {args.images} x {args.dim}: writing the matrix {written:.4f} s, the check {checked:.6f} s "
              f"(ratio {checked / written:.4f}x); every row equal, images equal (the whole scan) {worst:.4f} s "
              f"(ratio {worst / written:.2f}x)")

        start = time.perf_counter()
        for _ in range(1000):
            with output_lock(folder):
                pass
        print(f"output lock taken and released: {(time.perf_counter() - start) * 1000:.1f} us each")


if __name__ == "__main__":
    main()
