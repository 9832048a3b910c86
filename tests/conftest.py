"""Test-wide settings: one torch thread per pytest-xdist worker, so two workers share two cores fairly."""

from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
