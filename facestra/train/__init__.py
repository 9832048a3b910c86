"""``facestra train``: backbone + margin head + diversity loss, from one CPU process to many GPUs.

The public API is the configuration (:class:`TrainConfig`, :func:`build_config` for presets,
:func:`resume_config` to continue a run), :func:`train`, and what it reports (:class:`TrainEvent` while it
runs, :class:`TrainResult` when it ends); the modules of this package are its parts.
"""

from facestra.train.config import TrainConfig, build_config, resume_config
from facestra.train.loop import TrainResult, train
from facestra.train.metrics import TrainEvent

__all__ = ["TrainConfig", "TrainEvent", "TrainResult", "build_config", "resume_config", "train"]
