"""Throughput of resnet50 vs resnet50_stra (batch 32, 112x112), forward and training step, side by side.

    python bench/model_speed.py [--width 1.0] [--batch 32] [--repeats 5] [--device cpu|cuda|all]
                                [--mode forward|train|both] [--compile] [--amp bf16|none] [--nchw]
                                [--part network|stage4|unit-stride2|unit-stride1]

Prints images/s for both models on each device and the ratio stra/plain (>= 1 means StRA is not slower).
A training step is forward (with the diversity loss), backward and an SGD update, without the classifier
head (the same for both networks). ``--part unit-stride2`` and ``unit-stride1`` time the middle layer of
stage 4's first and second block alone: the 3x3 convolution against the StRA unit that replaces it, fed
maps that take a gradient as they do inside the network. The two models are timed alternately, repeat by repeat, so that machine
load affects both alike. On CUDA the default precision is bf16 autocast, on the CPU fp32.
"""

from __future__ import annotations

import argparse
import time

import torch

from facestra import models
from facestra.allocator import reuse_freed_memory
from facestra.models.stages import run_blocks, with_diversity


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_forward(model: torch.nn.Module, batch: torch.Tensor, device: str, amp: bool) -> float:
    _synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
        model(batch)
    _synchronize(device)
    return time.perf_counter() - start


def _time_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor, device: str,
                     amp: bool) -> float:
    _synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
        embeddings, diversity = model.forward_with_diversity(batch)
        loss = embeddings.float().square().mean() + 0.1 * diversity.float().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _synchronize(device)
    return time.perf_counter() - start


class _Stage4(torch.nn.Module):
    """Stage 4 of a network alone, fed layer3-shaped maps: the only place where the two networks differ."""

    def __init__(self, network: models.FaceResNet) -> None:
        super().__init__()
        self.layer4 = network.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_diversity(x)[0]

    def forward_with_diversity(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, diversity = run_blocks(list(self.layer4), x)
        return features.flatten(1), diversity


class _Middle(torch.nn.Module):
    """The middle layer of one stage-4 block alone (a 3x3 convolution or an StRA unit)."""

    def __init__(self, network: models.FaceResNet, block: int) -> None:
        super().__init__()
        self.mid = network.layer4[block].mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_diversity(x)[0]

    def forward_with_diversity(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, diversity = with_diversity(self.mid, x)
        return features.flatten(1), diversity


#: --part unit-*: the stage-4 block whose middle layer is timed, and the side of the maps it is fed.
UNITS = {"unit-stride2": (0, 14), "unit-stride1": (1, 7)}


def bench(device: str, width: float, batch_size: int, repeats: int, mode: str, amp: bool,
          compile_models: bool = False, channels_last: bool = True, part: str = "network") -> None:
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    built = {name: models.create(name, width=width) for name in ("resnet50", "resnet50_stra")}
    if part == "stage4":
        channels = built["resnet50"].layer4[0].conv1.in_channels
        batch = torch.randn(batch_size, channels, 14, 14, device=device)
        built = {name: _Stage4(network) for name, network in built.items()}
    elif part in UNITS:
        block, side = UNITS[part]
        channels = built["resnet50"].layer4[block].conv1.out_channels
        batch = torch.randn(batch_size, channels, side, side, device=device)
        built = {name: _Middle(network, block) for name, network in built.items()}
    else:
        batch = torch.randn(batch_size, 3, 112, 112, device=device)
    batch = batch.contiguous(memory_format=memory_format).requires_grad_(part in UNITS)  # a unit's input takes a gradient
    built = {name: model.to(device).to(memory_format=memory_format) for name, model in built.items()}
    if mode == "forward":
        runners = {}
        for name, model in built.items():
            model.eval()
            forward = torch.compile(model) if compile_models else model
            runners[name] = lambda forward=forward: _time_forward(forward, batch, device, amp)
    else:
        runners = {}
        for name, model in built.items():
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            if compile_models:
                model.forward_with_diversity = torch.compile(model.forward_with_diversity)
            runners[name] = lambda model=model, optimizer=optimizer: _time_train_step(model, optimizer, batch, device, amp)
    for run in runners.values():  # warm-up (allocator, cuDNN autotuning, compilation)
        run()
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(run())
    rates = {name: batch_size / min(seconds) for name, seconds in times.items()}
    # each round times both models back to back: the median of the rounds' ratios resists load that drifts
    round_ratios = sorted(p / s for p, s in zip(times["resnet50"], times["resnet50_stra"]))
    median_ratio = round_ratios[len(round_ratios) // 2]
    setting = (f"{mode}{'' if part == 'network' else ', ' + part}, batch {batch_size}, width {width:g}, "
               f"{'bf16' if amp else 'fp32'}, "
               f"{'channels-last' if channels_last else 'NCHW'}, best of {repeats}")
    setting += ", torch.compile" if compile_models else ""
    for name, rate in rates.items():
        print(f"{device:<5} {name:<14} {rate:9.1f} images/s  ({setting})")
    print(f"{device:<5} {mode:<7} ratio resnet50_stra / resnet50 = {rates['resnet50_stra'] / rates['resnet50']:.3f} "
          f"(best against best; median of the {repeats} rounds' ratios {median_ratio:.3f}, "
          f"range {round_ratios[0]:.3f}..{round_ratios[-1]:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--mode", choices=["forward", "train", "both"], default="both")
    parser.add_argument("--amp", choices=["auto", "bf16", "none"], default="auto", help="auto: bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models first")
    parser.add_argument("--nchw", action="store_true", help="NCHW tensors (facestra train's default on the CPU) "
                        "instead of channels-last (its default on GPUs, and inference's everywhere)")
    parser.add_argument("--part", choices=["network", "stage4", *UNITS], default="network",
                        help="stage4: time only stage 4, on 14x14 maps (where the networks differ); unit-stride2, "
                        "unit-stride1: only the middle layer of its first or second block")
    args = parser.parse_args()
    reuse_freed_memory()  # as the facestra program does at start, so that both sides of each ratio run alike
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    modes = ["forward", "train"] if args.mode == "both" else [args.mode]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda  not available: skipped")
            continue
        amp = args.amp == "bf16" or (args.amp == "auto" and device == "cuda")
        for mode in modes:
            bench(device, args.width, args.batch, args.repeats, mode, amp, args.compile, not args.nchw, args.part)


if __name__ == "__main__":
    main()
