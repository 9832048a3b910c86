"""Benchmark protocol readers (LFW, CFP-FP, CPLFW, CALFW, AgeDB-30, .bin, pairs.csv) -> pairs of images with their folds."""

from facestra.protocols.benchmark import Benchmark, ImageSource
from facestra.protocols.binfile import read_bin, write_bin
from facestra.protocols.registry import (
    canonical_name,
    find_benchmarks,
    load_benchmark,
    read_bin_benchmark,
    standard_names,
)

__all__ = [
    "Benchmark",
    "ImageSource",
    "canonical_name",
    "find_benchmarks",
    "load_benchmark",
    "read_bin",
    "read_bin_benchmark",
    "standard_names",
    "write_bin",
]
