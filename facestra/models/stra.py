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
        nn.Conv2d(in_channels, hidden_channels, 1, groups=groups, bias=False),
        nn.BatchNorm2d(hidden_channels),
        nn.Tanh(),
        nn.Conv2d(hidden_channels, out_channels, 1, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def _window(padded: Tensor, index: int, kernel_size: int, stride: int, h_out: int, w_out: int) -> Tensor:
    """The neighbour at window offset ``index`` (row-major) of every output node: a strided view, no copy."""
    dy, dx = divmod(index, kernel_size)
    return padded[..., dy : dy + (h_out - 1) * stride + 1 : stride, dx : dx + (w_out - 1) * stride + 1 : stride]


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
        self.value = nn.Conv2d(channels, channels, 1, groups=groups, bias=False)
        self.logits = _grouped_mlp(channels, hidden, groups * (1 + kernel_size * kernel_size), groups)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1

    def attention(self, x: Tensor) -> Tensor:
        """The softmasks a_ij: (B, G, K², H_out, W_out), a softmax over the K² window positions."""
        b, _, h, w = x.shape
        k, s, g = self.kernel_size, self.stride, self.groups
        h_out, w_out = self.output_size(h, w)
        pad = k // 2
        logits = self.logits(x).view(b, g, 1 + k * k, h, w)
        omega = logits[:, :, 1:, ::s, ::s]  # ω(x_i): K² logits at each output node
        nu = F.pad(logits[:, :, 0], (pad, pad, pad, pad))  # ν(x_j): one logit per input node, zero outside
        neighbours = torch.stack([_window(nu, index, k, s, h_out, w_out) for index in range(k * k)], dim=2)
        return (omega + neighbours).softmax(dim=2)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g, k, s = self.groups, self.kernel_size, self.stride
        weights = self.attention(x)
        h_out, w_out = weights.shape[-2:]
        pad = k // 2
        values = F.pad(self.value(x), (pad, pad, pad, pad)).view(b, g, c // g, h + 2 * pad, w + 2 * pad)
        out = _window(values, 0, k, s, h_out, w_out) * weights[:, :, 0:1]
        for index in range(1, k * k):  # one fused multiply-add per window position
            out = torch.addcmul(out, _window(values, index, k, s, h_out, w_out), weights[:, :, index : index + 1])
        return out.reshape(b, c, h_out, w_out)

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
        modal = torch.einsum("bgcn,bgn->bgc", nodes, masks.reshape(b, g, h * w))  # z_g
        out = self._add_context(nodes, modal, self.gate_norm, h, w)
        if self.interaction_gate_norm is not None:
            affinity = F.normalize(torch.einsum("bgc,bjc->bgj", modal, modal), dim=2)
            routed = torch.einsum("bgj,bjc->bgc", (affinity * math.sqrt(g)).softmax(dim=2), modal)  # z'_g
            out = self._add_context(out, routed, self.interaction_gate_norm, h, w)
        return out.reshape(b, c, h, w), masks

    def _add_context(self, nodes: Tensor, modal: Tensor, norm: nn.BatchNorm2d, h: int, w: int) -> Tensor:
        """``nodes + gate(BN(<nodes, modal>)) · modal`` for nodes (B, G, C/G, N) and modal vectors (B, G, C/G)."""
        b, g, _, n = nodes.shape
        scores = norm(torch.einsum("bgcn,bgc->bgn", nodes, modal).reshape(b, g, h, w)).reshape(b, g, 1, n)
        return nodes + self._gate(scores) * modal.unsqueeze(3)

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
        # Channels innermost: every window term then reads C'/G contiguous values per node and its one weight,
        # which vectorises (the stride-2 block ran about 1.5x faster on CPU than on NCHW's strided rows); a
        # no-op on GPUs, whose networks run channels-last already.
        s = self.local(x.contiguous(memory_format=torch.channels_last))
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
