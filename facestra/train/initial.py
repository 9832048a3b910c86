"""Pretrained weights a run starts from (``--init``): which network they are, and how a run takes them over.

Fine-tuning keeps everything the weights were trained with: the architecture and its sizes (read from the
file, as :func:`facestra.models.load` reads them for ``embed`` and ``verify``) and the input convention (an
arcface_torch backbone keeps ``(x/255 - 0.5)/0.5``: the training images are normalised that way, and the
run's model files say so, so that embed, verify and export feed it the same pixels). An option that
contradicts the weights is refused in one line instead of loading half a network. Only the margin head is
new. The start is recorded (path and sha256 of the file) in ``last.pt`` and in every model file the run
writes, so a fine-tuned model says where it came from, and a resumed run needs the file no more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from facestra import models
from facestra.data.images import InputConvention
from facestra.errors import UserError
from facestra.models.fingerprint import file_sha256
from facestra.models.record import record_of, with_record
from facestra.models.stra import StRAOptions


@dataclass(frozen=True)
class Start:
    """Where a run's backbone started: the file, its sha256 and the weights' input convention."""

    path: str
    sha256: str
    convention: InputConvention

    def record(self) -> dict[str, Any]:
        """What ``last.pt`` and the model files hold (plain values)."""
        return {"path": self.path, "sha256": self.sha256, "input": self.convention.as_dict()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Start:
        entry = record["input"]
        return cls(str(record["path"]), str(record["sha256"]), InputConvention(float(entry["mean"]), float(entry["std"])))

    def apply(self, backbone: nn.Module) -> None:
        """Give the run's backbone the weights' convention and the record its model files carry."""
        with_record(backbone, input_convention=self.convention, initialised_from={"path": self.path, "sha256": self.sha256})


@dataclass(frozen=True)
class InitialNetwork:
    """The network loaded from an ``--init`` file, and what a run must build to take its weights."""

    start: Start
    network: nn.Module

    @property
    def options(self) -> dict[str, Any]:
        """The training options that describe this network (arch, width, embedding and input size, StRA)."""
        record = record_of(self.network)
        kwargs = record.arch_kwargs
        switches = {name: kwargs[name] for name in StRAOptions.names() if name in kwargs}
        return {
            "arch": record.arch,
            "width": float(kwargs.get("width", 1.0)),
            "embedding_size": int(self.network.embedding_size),
            "input_size": tuple(self.network.input_size),
            "stra_options": StRAOptions(**switches) if switches else None,
        }

    def check(self, given: Mapping[str, Any]) -> None:
        """Refuse, in one line, a run option (``given``: the run's values of :attr:`options`) that the weights
        contradict; StRA switches are compared as the networks build them."""
        path = self.start.path
        for name, value in self.options.items():
            wanted = given[name]
            if name == "stra_options":  # not given: the defaults, which a *_stra network builds
                wanted, value = wanted or StRAOptions(), value or StRAOptions()
                if wanted != value:
                    raise UserError(f"the StRA switches contradict `init` {path}: its weights have {dataclasses.asdict(value)}")
                continue
            if name == "input_size":
                wanted, value = tuple(wanted), tuple(value)
            if wanted != value:
                raise UserError(f"`{name}` {_shown(wanted)} contradicts `init` {path}: its weights have {_shown(value)}")

    def load_into(self, backbone: nn.Module) -> None:
        """Copy the weights into the run's freshly built ``backbone`` (every tensor, exactly) and apply the start."""
        try:
            backbone.load_state_dict(self.network.state_dict(), strict=True)
        except RuntimeError as error:
            raise UserError(f"`init` {self.start.path}: its weights do not fit the run's network ({str(error).splitlines()[0]})") from None
        self.start.apply(backbone)


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def initial_network(path: Path, *, arch: str | None = None) -> InitialNetwork:
    """The network in ``path`` (a facestra model file, arcface_torch's backbone.pth or checkpoint_gpu_*.pt;
    ``arch`` names a bare state dict's network), with the refusals of :func:`facestra.models.load`."""
    network = models.load(path, arch=arch)
    start = Start(str(Path(path).resolve()), file_sha256(path), record_of(network).input_convention)
    return InitialNetwork(start, network)
