"""The paper's ablations (Tables 2-4), seed-averaged: every variant trained and verified the same way.

    python bench/ablate.py --quick --workdir /tmp/ablation             # synthetic faces, ~20 min on 2 CPU cores
    python bench/ablate.py --workdir runs/ablation --data faces_aligned/ --val lfw.bin,cfp_fp.bin,agedb_30.bin \
        --device cuda --jobs 1 --batch-size 512 --epochs 20        # real data on a GPU, the paper's schedule

Prints a markdown table: each variant's mean verification accuracy over the seeds with a 95 % interval,
every seed's figure, the difference to the ResNet-50 baseline (the baseline every ratio is measured against,
trained in the same invocation), parameters and MACs. Rerunning the same command resumes: finished runs are
read back from WORK/runs/<variant>/seed<k>/result.json. --markdown FILE also writes the table there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from facestra.ablation import QUICK, AblationConfig, markdown_table, run_ablation, variant_names
from facestra.errors import UserError
from facestra.io import write_text_atomic


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="the 2-CPU-core setting (width 0.125, 48x48, 4 epochs)")
    parser.add_argument("--variants", default=",".join(variant_names()), help=f"comma-separated, from {', '.join(variant_names())}")
    parser.add_argument("--seeds", type=_ints, default=(0, 1, 2), help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--data", help="aligned training data (identity tree, list or train.rec); default: synthetic faces")
    parser.add_argument("--val", help="comma-separated benchmark files or folders (with --data)")
    for name, kind in (("width", float), ("embedding-size", int), ("epochs", int), ("batch-size", int), ("jobs", int),
                       ("threads", int), ("loader-workers", int), ("identities", int), ("warmup-epochs", float)):
        parser.add_argument(f"--{name}", type=kind)
    parser.add_argument("--input-size", type=int, help="square input side")
    parser.add_argument("--lr-steps", type=_ints)
    parser.add_argument("--loss", choices=["softmax", "cosface", "arcface"])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"])
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    values = dict(QUICK) if args.quick else {}
    for name in ("width", "embedding_size", "epochs", "batch_size", "jobs", "threads", "loader_workers", "identities",
                 "warmup_epochs", "lr_steps", "loss", "device", "amp", "data"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.input_size is not None:
        values["input_size"] = (args.input_size, args.input_size)
    if args.val:
        values["val"] = tuple(part for part in args.val.split(",") if part)
    started = time.perf_counter()
    try:
        config = AblationConfig(workdir=args.workdir, variants=tuple(v for v in args.variants.split(",") if v),
                                seeds=args.seeds, **values)
        summaries = run_ablation(config, log=lambda line: print(line, flush=True))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown_table(summaries)
    size = config.input_size
    print(f"\n{len(config.seeds)} seeds, {config.epochs} epochs, width {config.width:g}, {size[0]}x{size[1]}, "
          f"{config.loss}, batch {config.batch_size}, total {(time.perf_counter() - started) / 60:.1f} min\n")
    print(table)
    if args.markdown:
        write_text_atomic(args.markdown, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
