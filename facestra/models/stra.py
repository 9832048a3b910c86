"""Structure-Regularized Attention (paper §3, appendix A, Fig. 7), as the authors trained it.

An StRA unit replaces the 3×3 convolution of a bottleneck; its input is the bottleneck's first 1×1
convolution after BN and ReLU. The C' channels are split into G modes of C'/G channels; every grouped
convolution below has G groups, so mode g's weights only ever see mode g's channels.

* :class:`LocalAttention` (Eq. 3): ``s_i = Σ_{j∈N_K(i)} softmax_j(ω(x_i)_j + ν(x_j)) · u(x_j)``.
  ``u`` is its own grouped 1×1 convolution. ω and ν share one trunk (grouped 1×1 conv C'→C'/4, BN, tanh,
  grouped 1×1 conv → G·(1+K²), BN) whose output channels are laid out mode by mode, ``[ν_g, ω_g(K²)]``,
  so that mode g's logits come from mode g's group (the released code slices the first G channels as ν,
  which takes them from the first groups: a bug not repeated here). Neighbours outside the map are zero
  padding, for the values and the ν logits alike, as in the released code (they keep a share of the
  softmax and contribute nothing). With stride s the output nodes are every s-th input node: ω is read
  there, the neighbourhoods are the input's.
* :class:`ModeAttention` (Eq. 5–6): G spatial masks (grouped 1×1 conv C'→8G, BN, tanh, grouped 1×1 conv
  → G, BN, softmax over H×W) give modal vectors ``z_g = Σ_i M^g_i s_i^g``; ``y1 = s + σ(BN1(<s, z>)) z``.
  With mode interaction, ``z'_g = Σ_j softmax_j(√G · A_gj) z_j`` where A is the Gram matrix of the modal
  vectors with each row L2-normalised, and ``y2 = y1 + σ(BN2(<y1, z'>)) z'``. σ is a sigmoid, a tanh or
  a softmax over the modes (Table 3); the BatchNorm before every gate is what keeps the gate from
  saturating (without it the scores are sums over C'/G products and the sigmoid sits at 1).
* :func:`diversity_loss`: ``L_d = G − Σ_ij max_g M^g_ij`` per sample.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facestra.models.stages import MidLayer
from facestra.models.stra_kernels import (
    AddOuter,
    Contraction,
    GroupedPointwise,
    Tanh,
    aggregate,
    channel_dot,
    local_attention,
    node_sum,
    output_size,
    softmasks,
    written_out_backward,
)
from facestra.models.stra_options import StRAOptions


def diversity_loss(masks: Tensor) -> Tensor:
    """``L_d = G − Σ_ij max_g M^g_ij`` for masks of shape (B, G, H, W); returns one value per sample.

    Each mask sums to one, so the loss is 0 only when the G masks are one-hot on G different positions and
    G − 1 when all masks coincide: it pushes modes towards disjoint parts of the face.
    """
    groups = masks.shape[1]
    return groups - masks.amax(dim=1).flatten(1).sum(dim=1)


def _modes(channels: int, options: StRAOptions) -> int:
    """The number of modes G, which must divide the channels (each mode holds C'/G of them)."""
    if channels % options.groups:
        raise ValueError(f"channels ({channels}) must be divisible by the number of modes ({options.groups})")
    return options.groups


def _grouped_mlp(in_channels: int, hidden_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """Grouped 1×1 conv, BN, tanh, grouped 1×1 conv, BN (Fig. 7's "GC" pairs; no bias before a BN)."""
    return nn.Sequential(
        GroupedPointwise(in_channels, hidden_channels, groups),
        nn.BatchNorm2d(hidden_channels),
        Tanh(),
        GroupedPointwise(hidden_channels, out_channels, groups),
        nn.BatchNorm2d(out_channels),
    )


class LocalAttention(nn.Module):
    """Eq. 3 with per-mode K×K softmasks; ``stride`` 2 samples the output nodes on the stride grid."""

    def __init__(self, channels: int, *, options: StRAOptions, stride: int = 1, reduction: int = 4) -> None:
        super().__init__()
        groups, kernel_size = _modes(channels, options), options.kernel_size
        if stride < 1:
            raise ValueError(f"stride must be positive, got {stride}")
        self.groups = groups
        self.kernel_size = kernel_size
        self.stride = stride
        hidden = groups * max(1, channels // reduction // groups)
        self.value = GroupedPointwise(channels, channels, groups)
        self.logits = _grouped_mlp(channels, hidden, groups * (1 + kernel_size * kernel_size), groups)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return output_size(h, w, self.stride)

    def _logits(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return self.logits(x).view(b, self.groups, 1 + self.kernel_size**2, h, w)

    def attention(self, x: Tensor) -> Tensor:
        """The softmasks a_ij: (B, G, K², H_out, W_out), a softmax over the K² window positions."""
        return softmasks(self._logits(x), self.kernel_size, self.stride)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g, k, s = self.groups, self.kernel_size, self.stride
        logits = self._logits(x)
        if written_out_backward():
            # u is linear and the same for every node of a window, so Σ_j a_ij u(x_j) = u(Σ_j a_ij x_j): in
            # training u runs after the aggregation, on the output nodes (a quarter of them at stride 2)
            out = local_attention(x.unflatten(1, (g, c // g)), logits, k, s)
            return self.value(out.reshape(b, c, *out.shape[-2:]).contiguous())
        # the plain operations, in the order of Eq. 3 (an exporter traces these; cost counts u on every node)
        out = aggregate(self.value(x).view(b, g, c // g, h, w), softmasks(logits, k, s), k, s)
        return out.reshape(b, c, *out.shape[-2:])

    def extra_macs(self, output: Tensor) -> int:
        """Multiply-adds of the weighted aggregation, which no convolution hook sees."""
        return self.kernel_size**2 * output[0].numel()


class ModeMasks(nn.Module):
    """The G normalised spatial masks M^g (softmax over H×W), from grouped 1×1 convs C'→8G→G."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.logits = _grouped_mlp(channels, 8 * groups, groups, groups)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.logits(x)
        return logits.flatten(2).softmax(dim=2).view_as(logits)


class ModeAttention(nn.Module):
    """Eq. 5–6: modal vectors from spatial masks, BN-normalised gated context added in one or two stages
    (the second with ``options.mode_interaction``)."""

    def __init__(self, channels: int, *, options: StRAOptions) -> None:
        super().__init__()
        groups = _modes(channels, options)
        self.groups = groups
        self.gate = options.gate
        self.masks = ModeMasks(channels, groups)
        self.gate_norm = nn.BatchNorm2d(groups)
        self.interaction_gate_norm = nn.BatchNorm2d(groups) if options.mode_interaction else None

    @property
    def interaction(self) -> bool:
        return self.interaction_gate_norm is not None

    def forward(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """Return the enriched features (same shape as ``s``) and the masks (B, G, H, W)."""
        b, c, h, w = s.shape
        g = self.groups
        masks = self.masks(s)
        nodes = s.reshape(b, g, c // g, h * w)  # s_i^g
        weights = masks.reshape(b, g, h * w)
        modal = Contraction.apply(nodes, weights, True) if written_out_backward() else node_sum(nodes, weights)  # z_g
        out = self._add_context(nodes, modal, self.gate_norm, h, w)
        if self.interaction_gate_norm is not None:
            affinity = F.normalize(torch.einsum("bgc,bjc->bgj", modal, modal), dim=2)
            routed = torch.einsum("bgj,bjc->bgc", (affinity * math.sqrt(g)).softmax(dim=2), modal)  # z'_g
            out = self._add_context(out, routed, self.interaction_gate_norm, h, w)
        return out.reshape(b, c, h, w), masks

    def _add_context(self, nodes: Tensor, modal: Tensor, norm: nn.BatchNorm2d, h: int, w: int) -> Tensor:
        """``nodes + gate(BN(<nodes, modal>)) · modal`` for nodes (B, G, C/G, N) and modal vectors (B, G, C/G)."""
        b, g, _, n = nodes.shape
        if not written_out_backward():
            scores = norm(channel_dot(nodes, modal).reshape(b, g, h, w)).reshape(b, g, 1, n)
            return nodes + self._gate(scores) * modal.unsqueeze(3)
        scores = norm(Contraction.apply(nodes, modal, False).reshape(b, g, h, w)).reshape(b, g, n)
        return AddOuter.apply(nodes, modal, self._gate(scores))

    def _gate(self, scores: Tensor) -> Tensor:
        if self.gate == "sigmoid":
            return scores.sigmoid()
        if self.gate == "softmax":  # each node shared among the modes as a multinomial assignment
            return scores.softmax(dim=1)
        return scores.tanh()

    def extra_macs(self, output: tuple[Tensor, Tensor]) -> int:
        """Modal vectors, scores and context (three passes over C'·H·W), twice as many with interaction
        less the modal-vector pass, plus the G×G Gram matrix and routing (2·G·C')."""
        features = output[0][0]
        if self.interaction_gate_norm is None:
            return 3 * features.numel()
        return 5 * features.numel() + 2 * self.groups * features.shape[0]


class StRA(nn.Module):
    """Local attention followed by mode attention: the layer in the middle slot of a block (in place of its
    3×3 convolution), mapping (B, C, H, W) to (B, C, H/stride, W/stride) as that convolution does.

    ``forward`` returns the features; :meth:`forward_with_masks` also the mode masks (None when mode
    attention is switched off, the "local attention only" row of Table 2), and
    :meth:`forward_with_diversity` each sample's diversity loss of those masks (zeros without them).
    """

    def __init__(self, channels: int, *, stride: int = 1, options: StRAOptions) -> None:
        super().__init__()
        self.local = LocalAttention(channels, options=options, stride=stride)
        self.mode = ModeAttention(channels, options=options) if options.mode_attention else None

    def forward_with_masks(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        s = self.local(x)
        if self.mode is None:
            return s, None
        return self.mode(s)

    def forward_with_diversity(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, masks = self.forward_with_masks(x)
        return out, x.new_zeros(x.shape[0]) if masks is None else diversity_loss(masks)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_masks(x)[0]


def stra_mid_layer(options: StRAOptions) -> MidLayer:
    """StRA with ``options`` in the middle slot of a block, kept as its ``stra`` (the name in model files)."""
    return MidLayer("stra", partial(StRA, options=options))
