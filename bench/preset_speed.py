"""Training throughput of an arcface_torch configuration through ``facestra train`` on synthetic data, for
each precision and network, beside arcface_torch's own published figure for the card it runs on.

    python bench/preset_speed.py [--preset ms1mv3_r50] [--archs iresnet50,resnet50_stra] [--amp none,bf16,fp16]
                                 [--batch 128] [--steps 60] [--log-every 10] [--workers 8] [-- TRAIN OPTIONS...]

Each run is ``facestra train --preset P --data synthetic:CLASSES --arch A --amp X --batch-size B --max-steps S``
in a process of its own (as a user starts one), on one GPU; its images/s is the median of the rates logged
after the first third of the steps (cuDNN's autotuning and the allocator's first rounds fall before).
Options after ``--`` go to every run (``-- --device cpu --width 0.25`` tries the script on a CPU).

Beside each rate: the network against the preset's own one in the same precision, and arcface_torch's
figure for IResNet-50 at a batch of 8 × 128 on the same card (benchmarks/train/nvidia_*.md of insightface at
commit c42cc3ea77235d3004f135cce4f3cb2896ceeb17, 563db8e1d7d1d4f9be6822e1437fe1d24ec81127 for the A30 and
78316896468ecd4f929b1ef8b117d0ea7fa3f821 for the V100), divided by its 8 GPUs. Those ran 618K identities
from an SSD (the V100's on its synthetic set) under PyTorch 1.8-1.9 with DDP; ms1mv3's preset has 93,431.
arcface_torch published nothing for the H100 or H200: the A100's row is printed for them, as the nearest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

#: card -> samples/s of 8 GPUs, IResNet-50, batch 8 x 128, by facestra precision: "none" is fp32 with TF32
#: convolutions (PyTorch's default since 1.12, which arcface_torch's "TF32" rows had), fp16 is their "FP16"
#: row with TF32 where they report both. No bf16 row exists anywhere.
PUBLISHED: dict[str, dict[str, float]] = {
    "A100": {"none": 4760, "fp16": 5400},
    "A30": {"none": 2250, "fp16": 2640},
    "A10": {"none": 2255, "fp16": 3360},
    "V100": {"none": 2607, "fp16": 4322},
}
NEAREST = {"H100": "A100", "H200": "A100"}


def published_row(device_name: str) -> tuple[str, dict[str, float]] | None:
    """The card whose figures apply to ``device_name`` (torch's name for the GPU), and those figures."""
    for card in PUBLISHED:
        if card in device_name:
            return card, PUBLISHED[card]
    for card, nearest in NEAREST.items():
        if card in device_name:
            return f"{nearest} (nearest; none for the {card})", PUBLISHED[nearest]
    return None


def run(preset: str, arch: str, amp: str, args: argparse.Namespace, extra: list[str], folder: Path) -> float | None:
    """Images/s of one training run, or None when it failed (its error is shown)."""
    out = folder / f"{arch}-{amp}"
    command = [sys.executable, "-m", "facestra", "train", "--preset", preset, "--arch", arch, "--amp", amp,
               "--data", f"synthetic:{args.classes}", "--batch-size", str(args.batch), "--max-steps", str(args.steps),
               "--log-every", str(args.log_every), "--workers", str(args.workers), "--out", str(out), "--quiet", *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        print(f"   {arch} {amp}: failed ({done.returncode}): {lines[-1] if lines else 'no output'}", flush=True)
        return None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows if row.get("kind") == "step" and row["step"] > args.steps // 3]
    return statistics.median(rates) if rates else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ms1mv3_r50")
    parser.add_argument("--archs", default="iresnet50,resnet50_stra")
    parser.add_argument("--amp", default="none,bf16,fp16")
    parser.add_argument("--classes", type=int, default=93431, help="ms1mv3's identities")
    parser.add_argument("--batch", type=int, default=128, help="arcface_torch's batch per GPU")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8)
    args, extra = parser.parse_known_args()
    extra = [option for option in extra if option != "--"]
    archs, precisions = args.archs.split(","), args.amp.split(",")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    published = published_row(device)
    print(f"facestra train --preset {args.preset} --data synthetic:{args.classes}, batch {args.batch}, {args.steps} steps "
          f"on {device} (torch {torch.__version__}) {' '.join(extra)}")
    card = f"arcface_torch {published[0]}, per GPU" if published else "arcface_torch (no figure for this card)"
    print(f"   {'network':<16} {'precision':<9} {'images/s':>9} {'/ ' + archs[0]:>18}   {card}")
    with tempfile.TemporaryDirectory() as folder:
        for amp in precisions:
            baseline = None
            for arch in archs:  # each row as soon as it is measured: a time limit that stops the script keeps them
                rate = run(args.preset, arch, amp, args, extra, Path(folder))
                baseline = rate if arch == archs[0] else baseline
                ratio = f"{rate / baseline:.3f}" if rate and baseline else "-"
                theirs = published[1].get(amp) if published and arch == archs[0] else None
                print(f"   {arch:<16} {amp:<9} {rate or float('nan'):9.0f} {ratio:>18}   {f'{theirs / 8:.0f}' if theirs else ''}", flush=True)


if __name__ == "__main__":
    main()
