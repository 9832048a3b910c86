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
from dataclasses import dataclass
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


def _written_out_backward() -> bool:
    """Whether the hand-written backward functions apply: when autograd records (not under an exporter's
    tracing, which records the plain operations)."""
    return torch.is_grad_enabled() and not torch.jit.is_tracing()


class GroupedPointwise(nn.Conv2d):
    """A grouped 1×1 convolution without bias (a state-dict ``weight`` of (out, in/groups, 1, 1), as
    ``nn.Conv2d``'s) that, on CPU tensors in NCHW, runs as one batched matrix product of each group's
    weights with its channels: the same sums, but the grouped convolution of oneDNN took 2-8 times longer
    (forward and backward) on the (B, C/G, H·W) slices of StRA's small maps. Elsewhere (GPUs, channels-last,
    tracing for export) it is the convolution itself.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(in_channels, out_channels, 1, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or not x.is_contiguous() or torch.jit.is_tracing():
            return super().forward(x)
        b, c, h, w = x.shape
        g = self.groups
        weight = self.weight.view(g, self.out_channels // g, c // g)
        return torch.matmul(weight, x.view(b, g, c // g, h * w)).view(b, self.out_channels, h, w)


class _TanhBySigmoid(torch.autograd.Function):
    """``tanh x = 2σ(2x) − 1`` forward, tanh's own backward ``(1 − y²)·grad``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = torch.sigmoid(2 * x).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """``nn.Tanh``, computed on CPU as ``2σ(2x) − 1``: the same function, but this torch build's CPU tanh
    ran 4.5x slower than its sigmoid (426 against 95 µs on a 32×32×14×14 map, results within 2e-7)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or torch.jit.is_tracing():
            return super().forward(x)
        return _TanhBySigmoid.apply(x)


def _grouped_mlp(in_channels: int, hidden_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """Grouped 1×1 conv, BN, tanh, grouped 1×1 conv, BN (Fig. 7's "GC" pairs; no bias before a BN)."""
    return nn.Sequential(
        GroupedPointwise(in_channels, hidden_channels, groups),
        nn.BatchNorm2d(hidden_channels),
        Tanh(),
        GroupedPointwise(hidden_channels, out_channels, groups),
        nn.BatchNorm2d(out_channels),
    )


def _window(padded: Tensor, index: int, kernel_size: int, stride: int, h_out: int, w_out: int) -> Tensor:
    """The neighbour at window offset ``index`` (row-major) of every output node: a strided view, no copy."""
    dy, dx = divmod(index, kernel_size)
    return padded[..., dy : dy + (h_out - 1) * stride + 1 : stride, dx : dx + (w_out - 1) * stride + 1 : stride]


def output_size(h: int, w: int, stride: int) -> tuple[int, int]:
    """The output map of a window centred on every ``stride``-th node of an h×w map."""
    return (h - 1) // stride + 1, (w - 1) // stride + 1


def softmasks(logits: Tensor, kernel_size: int, stride: int) -> Tensor:
    """The softmasks a_ij, (B, G, K², H_out, W_out), from the logits (B, G, 1 + K², H, W) laid out ``[ν, ω]``:
    ``softmax_j(ω(x_i)_j + ν(x_j))`` over the K² window positions j, with ν zero outside the map."""
    k, s = kernel_size, stride
    h_out, w_out = output_size(*logits.shape[-2:], s)
    pad = k // 2
    omega = logits[:, :, 1:, ::s, ::s]  # ω(x_i): K² logits at each output node
    nu = F.pad(logits[:, :, 0], (pad, pad, pad, pad))  # ν(x_j): one logit per input node, zero outside
    neighbours = torch.stack([_window(nu, index, k, s, h_out, w_out) for index in range(k * k)], dim=2)
    scores = omega + neighbours
    if torch.is_grad_enabled() or torch.jit.is_tracing():
        return scores.softmax(dim=2)
    if scores.dtype in (torch.float16, torch.bfloat16):  # as autocast runs softmax: in float32
        scores = scores.float()
    # inside _LocalAttentionFunction: the softmax written out, which on CPU ran 2-3x faster than torch's
    # softmax over a middle dimension
    weights = scores.sub_(scores.amax(dim=2, keepdim=True)).exp_()
    return weights.div_(weights.sum(dim=2, keepdim=True))


def aggregate(values: Tensor, weights: Tensor, kernel_size: int, stride: int) -> Tensor:
    """``s_i = Σ_j a_ij u(x_j)`` for values (B, G, C/G, H, W) and softmasks (B, G, K², H_out, W_out), the values
    zero outside the map: one fused multiply-add per window position on strided views."""
    k, s = kernel_size, stride
    h_out, w_out = weights.shape[-2:]
    pad = k // 2
    padded = F.pad(values, (pad, pad, pad, pad))
    out = _window(padded, 0, k, s, h_out, w_out) * weights[:, :, 0:1]
    for index in range(1, k * k):
        out = torch.addcmul(out, _window(padded, index, k, s, h_out, w_out), weights[:, :, index : index + 1])
    return out


@dataclass(frozen=True)
class _PhaseGrid:
    """Where a map of H×W nodes sits in a zero-padded grid split by row and column phase modulo the stride:
    padded row r (the map's row r - pad) is row r // s of phase r % s, and each phase is stored flat,
    ``rows × cols`` long. A window position of every output node is then one contiguous range of each
    phase (:meth:`window`), in "wide" coordinates ``oy · cols + ox`` whose ox ≥ W_out are unused columns.
    """

    kernel_size: int
    stride: int
    height: int
    width: int

    @property
    def out_size(self) -> tuple[int, int]:
        return output_size(self.height, self.width, self.stride)

    @property
    def cols(self) -> int:
        s, pad = self.stride, self.kernel_size // 2
        return max(self.out_size[1] + (self.kernel_size - 1) // s, (self.width - 1 + pad) // s + 1)

    @property
    def rows(self) -> int:
        """One more than the deepest window reaches, so that a window's last wide row stays inside."""
        s, pad = self.stride, self.kernel_size // 2
        return max(self.out_size[0] + (self.kernel_size - 1) // s, (self.height - 1 + pad) // s + 1) + 1

    def placements(self) -> list[tuple[tuple, tuple]]:
        """(map slice, grid slice) pairs, one per phase, that together place every node once."""
        s, pad = self.stride, self.kernel_size // 2
        pairs = []
        for py in range(s):
            q_row = -(-(pad - py) // s) if pad > py else 0  # the phase's first row inside the map
            first_row = q_row * s + py - pad
            n_rows = len(range(first_row, self.height, s))
            for px in range(s):
                q_col = -(-(pad - px) // s) if pad > px else 0
                first_col = q_col * s + px - pad
                n_cols = len(range(first_col, self.width, s))
                source = (..., slice(first_row, self.height, s), slice(first_col, self.width, s))
                target = (..., py, px, slice(q_row, q_row + n_rows), slice(q_col, q_col + n_cols))
                pairs.append((source, target))
        return pairs

    def place(self, values: Tensor) -> Tensor:
        """``values`` (…, H, W) in a new grid (…, s, s, rows · cols)."""
        s = self.stride
        grid = values.new_zeros(*values.shape[:-2], s, s, self.rows, self.cols)
        for source, target in self.placements():
            grid[target] = values[source]
        return grid.flatten(-2)

    def take(self, grid: Tensor) -> Tensor:
        """The map's nodes back out of a grid (…, s, s, rows · cols): :meth:`place`'s adjoint."""
        grid = grid.unflatten(-1, (self.rows, self.cols))
        values = grid.new_empty(*grid.shape[:-4], self.height, self.width)
        for source, target in self.placements():
            values[source] = grid[target]
        return values

    def window(self, grid: Tensor, index: int) -> Tensor:
        """Window position ``index`` (row-major) of every output node, in wide coordinates: a view."""
        dy, dx = divmod(index, self.kernel_size)
        start = (dy // self.stride) * self.cols + dx // self.stride
        return grid[..., dy % self.stride, dx % self.stride, start : start + self.out_size[0] * self.cols]

    def widen(self, tensor: Tensor) -> Tensor:
        """(…, H_out, W_out) -> (…, H_out · cols), zeros in the unused columns."""
        return F.pad(tensor, (0, self.cols - tensor.shape[-1])).flatten(-2)

    def narrow(self, wide: Tensor) -> Tensor:
        """:meth:`widen`'s inverse: the used columns, as a view."""
        return wide.unflatten(-1, (self.out_size[0], self.cols))[..., : self.out_size[1]]


class _LocalAttentionFunction(torch.autograd.Function):
    """Eq. 3's weighted sums of node features (B, G, C/G, H, W) with the softmasks of the logits
    (:func:`softmasks` and :func:`aggregate`'s sums), computed on a :class:`_PhaseGrid` and with the
    backward written out. On CPU the K² window slices of a 7×7 map are
    rows of 7 values, which vectorise poorly (a multiply-add over one ran 4x slower than over a contiguous
    range), and autograd's backward of each slice fills a zero tensor of the whole padded map and adds it
    in (half of a stride-2 unit's time); in wide coordinates every window is one contiguous range, stride 2
    included, and each window's gradient is added into one buffer in place."""

    @staticmethod
    def forward(ctx, values: Tensor, logits: Tensor, kernel_size: int, stride: int) -> Tensor:
        layout = _PhaseGrid(kernel_size, stride, *values.shape[-2:])
        weights = layout.widen(softmasks(logits, kernel_size, stride))
        grid = layout.place(values)
        out = layout.window(grid, 0) * weights[:, :, 0:1]
        for index in range(1, kernel_size * kernel_size):
            out.addcmul_(layout.window(grid, index), weights[:, :, index : index + 1])
        ctx.save_for_backward(grid, weights)
        ctx.geometry = (kernel_size, stride, *values.shape[-2:])  # plain numbers, which torch.compile traces
        ctx.dtypes = (values.dtype, logits.dtype)
        return layout.narrow(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        grid, weights = ctx.saved_tensors
        layout = _PhaseGrid(*ctx.geometry)
        k, s, h, w = ctx.geometry
        b, g = grid.shape[:2]
        dtype = torch.promote_types(grid.dtype, weights.dtype)  # float32 under autocast's float16 values
        grad_wide = layout.widen(grad_out.to(dtype))
        grad_grid = torch.zeros_like(grid, dtype=dtype)
        per_position = []
        for index in range(k * k):  # ∂/∂a_ij = <∂s_i, u_j>; ∂u_j += a_ij ∂s_i
            per_position.append((layout.window(grid, index) * grad_wide).sum(dim=2))
            layout.window(grad_grid, index).addcmul_(grad_wide, weights[:, :, index : index + 1])
        grad_weights = torch.stack(per_position, dim=2)
        grad_scores = torch._softmax_backward_data(
            layout.narrow(grad_weights).contiguous(), layout.narrow(weights).contiguous().to(dtype), 2, dtype
        )
        values_dtype, logits_dtype = ctx.dtypes
        shape = (b, g, 1 + k * k, h, w)
        grad_logits = grad_scores.new_zeros(shape) if s > 1 else grad_scores.new_empty(shape)
        grad_logits[:, :, 1:, ::s, ::s] = grad_scores  # ω is read at the output nodes
        h_out, w_out = layout.out_size
        neighbours = grad_scores.reshape(b * g, k * k, h_out * w_out)  # ν_j is read in every window holding j
        grad_logits[:, :, 0] = F.fold(neighbours, (h, w), k, padding=k // 2, stride=s).view(b, g, h, w)
        return layout.take(grad_grid).to(values_dtype), grad_logits.to(logits_dtype), None, None


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
        if _written_out_backward():
            # u is linear and the same for every node of a window, so Σ_j a_ij u(x_j) = u(Σ_j a_ij x_j): in
            # training u runs after the aggregation, on the output nodes (a quarter of them at stride 2)
            out = _LocalAttentionFunction.apply(x.unflatten(1, (g, c // g)), logits, k, s)
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


def _node_sum(nodes: Tensor, weights: Tensor) -> Tensor:
    """``Σ_i w_i x_i``: nodes (B, G, C/G, N) weighted by (B, G, N), giving (B, G, C/G)."""
    return (nodes * weights.unsqueeze(2)).sum(dim=3)


def _channel_dot(nodes: Tensor, vectors: Tensor) -> Tensor:
    """``<x_i, v>``: every node (B, G, C/G, N) against its mode's vector (B, G, C/G), giving (B, G, N)."""
    return torch.matmul(vectors.unsqueeze(2), nodes).squeeze(2)


class _Contraction(torch.autograd.Function):
    """:func:`_node_sum` (``over_nodes``) or :func:`_channel_dot` of the nodes with ``other``, with the backward
    written out: each one's gradient is the other contraction and an outer product, which autograd's
    backward of the equivalent einsum formed as a batched matrix product with an inner size of one, several
    times slower on CPU than the broadcast multiply here."""

    @staticmethod
    def forward(ctx, nodes: Tensor, other: Tensor, over_nodes: bool) -> Tensor:
        ctx.save_for_backward(nodes, other)
        ctx.over_nodes = over_nodes
        return _node_sum(nodes, other) if over_nodes else _channel_dot(nodes, other)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        nodes, other = ctx.saved_tensors
        if ctx.over_nodes:  # grad (B, G, C/G), other the node weights (B, G, N)
            return grad.unsqueeze(3) * other.unsqueeze(2), _channel_dot(nodes, grad), None
        return other.unsqueeze(3) * grad.unsqueeze(2), _node_sum(nodes, grad), None  # other the vectors


class _AddOuter(torch.autograd.Function):
    """``x_i + w_i v``: nodes (B, G, C/G, N) plus each mode's vector (B, G, C/G) weighted per node (B, G, N),
    in one fused multiply-add, its backward as two contractions instead of two products and reductions."""

    @staticmethod
    def forward(ctx, nodes: Tensor, vectors: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(vectors, weights)
        return torch.addcmul(nodes, vectors.unsqueeze(3), weights.unsqueeze(2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        vectors, weights = ctx.saved_tensors
        return grad, _node_sum(grad, weights), _channel_dot(grad, vectors)


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
        modal = _Contraction.apply(nodes, weights, True) if _written_out_backward() else _node_sum(nodes, weights)  # z_g
        out = self._add_context(nodes, modal, self.gate_norm, h, w)
        if self.interaction_gate_norm is not None:
            affinity = F.normalize(torch.einsum("bgc,bjc->bgj", modal, modal), dim=2)
            routed = torch.einsum("bgj,bjc->bgc", (affinity * math.sqrt(g)).softmax(dim=2), modal)  # z'_g
            out = self._add_context(out, routed, self.interaction_gate_norm, h, w)
        return out.reshape(b, c, h, w), masks

    def _add_context(self, nodes: Tensor, modal: Tensor, norm: nn.BatchNorm2d, h: int, w: int) -> Tensor:
        """``nodes + gate(BN(<nodes, modal>)) · modal`` for nodes (B, G, C/G, N) and modal vectors (B, G, C/G)."""
        b, g, _, n = nodes.shape
        if not _written_out_backward():
            scores = norm(_channel_dot(nodes, modal).reshape(b, g, h, w)).reshape(b, g, 1, n)
            return nodes + self._gate(scores) * modal.unsqueeze(3)
        scores = norm(_Contraction.apply(nodes, modal, False).reshape(b, g, h, w)).reshape(b, g, n)
        return _AddOuter.apply(nodes, modal, self._gate(scores))

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
