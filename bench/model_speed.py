"""Forward throughput of resnet50 vs resnet50_stra (batch 32, 112x112), measured side by side.

    python bench/model_speed.py [--width 1.0] [--batch 32] [--repeats 5] [--device cpu|cuda|all] [--compile]

Prints images/s for both models on each device and the ratio stra/plain (>= 1 means StRA is not slower).
The two models are timed alternately, repeat by repeat, so that machine load affects both alike.
"""

from __future__ import annotations

import argparse
import time

import torch

from facestra import models
from facestra.allocator import reuse_freed_memory


def _time_forward(model: torch.nn.Module, batch: torch.Tensor, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
        model(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(device: str, width: float, batch_size: int, repeats: int, compile_models: bool = False) -> None:
    torch.manual_seed(0)
    batch = torch.randn(batch_size, 3, 112, 112, device=device).contiguous(memory_format=torch.channels_last)
    built = {
        name: models.create(name, width=width).to(device).eval().to(memory_format=torch.channels_last)
        for name in ("resnet50", "resnet50_stra")
    }
    if compile_models:
        built = {name: torch.compile(model) for name, model in built.items()}
    for model in built.values():  # warm-up (allocator, cuDNN autotuning)
        _time_forward(model, batch, device)
    best = {name: float("inf") for name in built}
    for _ in range(repeats):
        for name, model in built.items():
            best[name] = min(best[name], _time_forward(model, batch, device))
    rates = {name: batch_size / seconds for name, seconds in best.items()}
    for name, rate in rates.items():
        print(f"{device:<5} {name:<14} {rate:9.1f} images/s  (batch {batch_size}, width {width:g}, best of {repeats}"
              f"{', torch.compile' if compile_models else ''})")
    print(f"{device:<5} ratio resnet50_stra / resnet50 = {rates['resnet50_stra'] / rates['resnet50']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models first")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda  not available: skipped")
            continue
        bench(device, args.width, args.batch, args.repeats, args.compile)


if __name__ == "__main__":
    main()
