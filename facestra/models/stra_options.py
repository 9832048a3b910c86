"""The StRA switches of the paper's ablations as one typed, validated option bundle, in a module without
torch: the command line builds ``--groups``, ``--gate`` and the rest from it without importing the network
code (:mod:`facestra.models.stra` builds the block from it)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from facestra.fields import documented

GATES = ("sigmoid", "softmax", "tanh")
# The paper tries K = 3, 5, 7 (Table 4). Stage 4 of a 112x112 network is 7x7, so K = 13 already reaches
# every position from every other, and each window holds K^2 shifted copies of the features in memory:
# K = 999 used up 24 GiB of memory before its first training step.
MAX_KERNEL_SIZE = 15


@dataclass(frozen=True)
class StRAOptions:
    """The switches of the paper's ablations (Tables 2-4, Fig. 3), declared once: the builder's keyword
    arguments, the ``stra_options`` of a training config and the command-line options all come from here.

    Table 2's rows are ``mode_attention=False`` (local attention only), ``mode_interaction=False`` (mode
    attention without interaction) and the defaults (full); the ResNet-50 baseline is ``--arch resnet50``.
    """

    groups: int = documented(8, "StRA: number of modes G (Fig. 3).", minimum=1)
    kernel_size: int = documented(3, "StRA: local-attention window K, odd (Table 4).", minimum=1, maximum=MAX_KERNEL_SIZE)
    mode_attention: bool = documented(True, "StRA: the mode-attention unit; off = local attention only (Table 2).")
    mode_interaction: bool = documented(True, "StRA: mode interaction, Eq. 6 (Table 2).")
    gate: str = documented("sigmoid", "StRA: gate of the attention coefficients, Eq. 5 (Table 3).", choices=GATES)

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise ValueError(f"groups must be positive, got {self.groups}")
        if not 1 <= self.kernel_size <= MAX_KERNEL_SIZE or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, 1 to {MAX_KERNEL_SIZE}, got {self.kernel_size}")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {self.gate!r}")

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(field.name for field in fields(StRAOptions))
