"""``facestra train``: backbone + margin head + diversity loss, from one CPU process to many GPUs.

The public API is the configuration (:class:`TrainConfig`, :func:`build_config` for presets,
:func:`resume_config` to continue a run), :func:`train`, and what it reports (:class:`TrainEvent` while it
runs, :class:`TrainResult` when it ends); the modules of this package are its parts. Names are imported on
first use: the configuration is torch-free, so ``facestra train --help`` builds its options without torch.
"""

from __future__ import annotations

from facestra.lazy import lazy_package

__all__, __getattr__ = lazy_package(
    __name__,
    {
        ".config": "TrainConfig build_config resume_config",
        ".loop": "TrainResult train",
        ".metrics": "TrainEvent",
    },
)
