"""Structure-Regularized Attention (paper §3, appendix A, Fig. 7).

An StRA unit replaces the 3×3 convolution of a bottleneck. Its input is the output of the bottleneck's first
1×1 convolution, which plays the role of the unitary transform ``u`` of Eq. 3 (appendix A: "the input of the
local attention operation is produced by a 1×1 convolution"). The C' channels are split into G modes of
C'/G channels each; every mode has its own attention weights.

* :class:`LocalAttention` (Eq. 3): ``s_i = Σ_{j∈N_K(i)} softmax_j(ω(x_i)_j + ν(x_j)) · u(x_j)``. ω predicts
  K×K logits at each output position, ν one logit per input position that each neighbour contributes.
  Neighbours outside the image get no weight (their logit is −inf), so every softmax sums to one over the
  neighbours that exist.
* :class:`ModeAttention` (Eq. 5–6): G spatial masks (softmax over H×W), modal vectors ``z_g`` as
  mask-weighted sums of mode g's local-attention output, optional mode interaction
  ``z'_g = Σ_j softmax_j(<z_g, z_j>) z_j``, coefficients ``r_ig = gate(<s_i^g, z_g>)``, and the context
  ``r_ig · z'_g`` added to the local-attention output.
* :func:`diversity_loss`: ``L_d = G − Σ_ij max_g M^g_ij`` per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATES = ("sigmoid", "softmax", "tanh")


def diversity_loss(masks: Tensor) -> Tensor:
    """``L_d = G − Σ_ij max_g M^g_ij`` for masks of shape (B, G, H, W); returns one value per sample.

    Each mask sums to one, so the loss is 0 only when the G masks are one-hot on G different positions and
    G − 1 when all masks coincide: it pushes modes towards disjoint parts of the face.
    """
    groups = masks.shape[1]
    return groups - masks.amax(dim=1).flatten(1).sum(dim=1)


class _GroupMLP(nn.Sequential):
    """Two 1×1 group convolutions with BN and ReLU between: the ω and ν transforms of Fig. 7."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, 1, groups=groups, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, out_channels, 1, groups=groups, bias=True),
        )


class LocalAttention(nn.Module):
    """Eq. 3 with per-mode K×K softmasks; ``stride`` 2 samples output positions on the stride grid.

    The aggregation is a sum of K² shifted views of the padded input, each weighted by one attention map, so
    memory stays O(C·H·W) instead of the O(K²·C·H·W) of an unfold.
    """

    def __init__(self, channels: int, *, groups: int = 8, kernel_size: int = 3, stride: int = 1, reduction: int = 4) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by the number of modes ({groups})")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.groups = groups
        self.kernel_size = kernel_size
        self.stride = stride
        hidden = groups * max(channels // groups // reduction, 4)
        self.omega = _GroupMLP(channels, hidden, groups * kernel_size * kernel_size, groups)
        self.nu = _GroupMLP(channels, hidden, groups, groups)

    def attention(self, x: Tensor) -> Tensor:
        """The softmasks a_ij: (B, G, K², H_out, W_out), a softmax over the K² neighbours."""
        b, _, h, w = x.shape
        k, s, g = self.kernel_size, self.stride, self.groups
        pad = k // 2
        h_out, w_out = (h - 1) // s + 1, (w - 1) // s + 1
        omega = self.omega(x[:, :, ::s, ::s] if s > 1 else x).view(b, g, k * k, h_out, w_out)
        nu = F.pad(self.nu(x), (pad, pad, pad, pad), value=float("-inf"))
        neighbour_logits = [self._shifted(nu, index, h_out, w_out) for index in range(k * k)]
        logits = omega + torch.stack(neighbour_logits, dim=2)
        return logits.softmax(dim=2)

    def _shifted(self, padded: Tensor, index: int, h_out: int, w_out: int) -> Tensor:
        """The neighbour at window offset ``index`` of every output position (a strided view, no copy)."""
        dy, dx = divmod(index, self.kernel_size)
        s = self.stride
        return padded[..., dy : dy + (h_out - 1) * s + 1 : s, dx : dx + (w_out - 1) * s + 1 : s]

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g, k = self.groups, self.kernel_size
        weights = self.attention(x)  # (B, G, K², H', W')
        h_out, w_out = weights.shape[-2:]
        pad = k // 2
        values = F.pad(x, (pad, pad, pad, pad)).view(b, g, c // g, h + 2 * pad, w + 2 * pad)
        out = None
        for index in range(k * k):
            term = self._shifted(values, index, h_out, w_out) * weights[:, :, index : index + 1]
            out = term if out is None else out + term
        assert out is not None
        return out.reshape(b, c, h_out, w_out)

    def extra_macs(self, output: Tensor) -> int:
        """Multiply-adds of the weighted aggregation, which no convolution hook sees."""
        return self.kernel_size**2 * output[0].numel()


class ModeMasks(nn.Module):
    """G spatial masks from a 1×1 group convolution + BN, each normalised by a softmax over H×W."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, groups, 1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(groups)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.bn(self.conv(x))
        return logits.flatten(2).softmax(dim=2).view_as(logits)


class ModeAttention(nn.Module):
    """Eq. 5–6: modal vectors from spatial masks, gated node-to-mode context added to the input."""

    def __init__(self, channels: int, *, groups: int = 8, gate: str = "sigmoid", interaction: bool = True) -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        self.groups = groups
        self.gate = gate
        self.interaction = interaction
        self.masks = ModeMasks(channels, groups)

    def forward(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """Return the enriched features (same shape as ``s``) and the masks (B, G, H, W)."""
        b, c, h, w = s.shape
        g = self.groups
        masks = self.masks(s)
        nodes = s.view(b, g, c // g, h * w)  # s_i^g
        modal = torch.einsum("bgcn,bgn->bgc", nodes, masks.flatten(2))  # z_g
        coefficients = self._gate(torch.einsum("bgcn,bgc->bgn", nodes, modal))  # r_ig
        if self.interaction:
            affinity = torch.einsum("bgc,bjc->bgj", modal, modal).softmax(dim=2)
            modal = torch.einsum("bgj,bjc->bgc", affinity, modal)  # z'_g
        context = modal.unsqueeze(3) * coefficients.unsqueeze(2)
        return s + context.view(b, c, h, w), masks

    def _gate(self, scores: Tensor) -> Tensor:
        if self.gate == "sigmoid":
            return scores.sigmoid()
        if self.gate == "softmax":  # nodes shared among modes as a multinomial assignment
            return scores.softmax(dim=1)
        return scores.tanh()

    def extra_macs(self, output: tuple[Tensor, Tensor]) -> int:
        """Modal vectors, coefficients and context: three passes over C·H·W, plus G²·C/G·2 interaction."""
        features = output[0][0]
        c = features.shape[0]
        interaction = 2 * self.groups * c if self.interaction else 0
        return 3 * features.numel() + interaction


class StRA(nn.Module):
    """Local attention followed by mode attention: the drop-in replacement of a bottleneck's 3×3 conv.

    ``forward`` returns ``(features, masks)``; masks are None when mode attention is switched off (the
    "local attention only" ablation of Table 2).
    """

    def __init__(
        self,
        channels: int,
        *,
        stride: int = 1,
        groups: int = 8,
        kernel_size: int = 3,
        mode_attention: bool = True,
        mode_interaction: bool = True,
        gate: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.local = LocalAttention(channels, groups=groups, kernel_size=kernel_size, stride=stride)
        self.mode = (
            ModeAttention(channels, groups=groups, gate=gate, interaction=mode_interaction) if mode_attention else None
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        s = self.local(x)
        if self.mode is None:
            return s, None
        return self.mode(s)
