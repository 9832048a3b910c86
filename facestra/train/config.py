"""Named training schedules from the paper (appendix D), and how options combine with them.

Precedence, lowest first: :class:`facestra.train.loop.TrainConfig` defaults, the preset, explicit options.
"""

from __future__ import annotations

from typing import Any

from facestra.errors import UserError
from facestra.models.stra import StRAOptions
from facestra.train.loop import TrainConfig

STRA_OPTION_NAMES = StRAOptions.names()

PRESETS: dict[str, dict[str, Any]] = {
    # "models are trained for 20 epochs ... multiplied by 0.1 at the 8-th and 12-th epochs", batch 512
    "paper-medium": {"epochs": 20, "lr": 0.1, "lr_steps": (8, 12), "batch_size": 512},
    # "50 epochs on VGGFace2 ... at the 20-th, 30-th, 38-th, 44-th and 48-th epochs"; inputs 224x192
    "paper-vggface2": {"epochs": 50, "lr": 0.1, "lr_steps": (20, 30, 38, 44, 48), "batch_size": 512, "input_size": (224, 192)},
}


def preset_names() -> list[str]:
    return list(PRESETS)


def build_config(options: dict[str, Any], preset: str | None = None) -> TrainConfig:
    """A config from explicit ``options`` over ``preset`` over the defaults; StRA switches are gathered
    into ``stra_options`` (only those given, so plain ResNets accept the defaults)."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS.get(preset, {})) if preset else {}
    stra = {key: options.pop(key) for key in STRA_OPTION_NAMES if key in options}
    values.update(options)
    if stra:
        values["stra_options"] = {**values.get("stra_options", {}), **stra}
    missing = [name for name in ("data", "out") if not values.get(name)]
    if missing:
        raise UserError(f"missing {' and '.join('--' + m for m in missing)} (or give --resume RUN_DIR)")
    return TrainConfig(**values)
