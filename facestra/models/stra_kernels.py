"""How an StRA unit is computed fast, separately from what it computes (:mod:`facestra.models.stra`).

On CPU, autograd's way through the unit's many small operations cost far more than their arithmetic: the
backward of each of the K² window slices filled a zero tensor of the whole padded map and added it in,
grouped 1×1 convolutions on StRA's small maps ran 2-8 times slower than the same matrix products, and
this torch build's tanh ran 4.5 times slower than its sigmoid. Here are the same functions with the
backward written out where that pays, each held against a plain autograd reference in float64 by
``tests/test_stra_computation.py`` (forward, every gradient, BatchNorm statistics; both strides, every
switch). The local attention has two written-out forms, each faster on maps of its own sizes: a phase grid
(:class:`LocalAttentionFunction`) and a dense window matrix (:class:`WindowMatrixFunction`), of which
:func:`local_attention` picks one. The plain operations stay for tracing (ONNX export) and inference, in
the order of Eq. 3.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def written_out_backward() -> bool:
    """Whether the hand-written backward functions apply: when autograd records (not under an exporter's
    tracing, which records the plain operations)."""
    return torch.is_grad_enabled() and not torch.jit.is_tracing()


class GroupedPointwise(nn.Conv2d):
    """A grouped 1×1 convolution without bias (a state-dict ``weight`` of (out, in/groups, 1, 1), as
    ``nn.Conv2d``'s) that, on CPU tensors in NCHW, runs as one batched matrix product of each group's
    weights with its channels: the same sums, but the grouped convolution of oneDNN took 2-8 times longer
    (forward and backward) on the (B, C/G, H·W) slices of StRA's small maps; with one output per group, a
    broadcast multiply and sum. Elsewhere (GPUs, channels-last, tracing for export) it is the convolution itself.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(in_channels, out_channels, 1, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or not x.is_contiguous() or torch.jit.is_tracing():
            return super().forward(x)
        b, c, h, w = x.shape
        g = self.groups
        if self.out_channels == g and not torch.is_autocast_enabled("cpu"):
            # one output per group (the mode masks' logits): the matrix product ran 3.5x slower
            return (x.view(b, g, c // g, h * w) * self.weight.view(1, g, c // g, 1)).sum(dim=2).view(b, g, h, w)
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


def window_view(padded: Tensor, index: int, kernel_size: int, stride: int, h_out: int, w_out: int) -> Tensor:
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
    neighbours = torch.stack([window_view(nu, index, k, s, h_out, w_out) for index in range(k * k)], dim=2)
    scores = omega + neighbours
    if torch.is_grad_enabled() or torch.jit.is_tracing():
        return scores.softmax(dim=2)
    return _window_softmax_(scores)


def _window_softmax_(scores: Tensor) -> Tensor:
    """Softmax over dim 2, in place where it can be (in float32 for half-precision scores, as autocast runs a
    softmax): written out, because on CPU it ran 2-3x faster than torch's softmax over a middle dimension.
    For computations without autograd (inference, and inside :class:`LocalAttentionFunction`)."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    weights = scores.sub_(scores.amax(dim=2, keepdim=True)).exp_()
    return weights.div_(weights.sum(dim=2, keepdim=True))


def aggregate(values: Tensor, weights: Tensor, kernel_size: int, stride: int) -> Tensor:
    """``s_i = Σ_j a_ij u(x_j)`` for values (B, G, C/G, H, W) and softmasks (B, G, K², H_out, W_out), the values
    zero outside the map: one fused multiply-add per window position on strided views."""
    k, s = kernel_size, stride
    h_out, w_out = weights.shape[-2:]
    pad = k // 2
    padded = F.pad(values, (pad, pad, pad, pad))
    out = window_view(padded, 0, k, s, h_out, w_out) * weights[:, :, 0:1]
    for index in range(1, k * k):
        out = torch.addcmul(out, window_view(padded, index, k, s, h_out, w_out), weights[:, :, index : index + 1])
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

    def slots(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Where the grid's values come from and where the map's nodes go: for every grid position
        (s · s · rows · cols of them) 1 + the node it holds (row-major) or 0 where it is padding, and for every
        node its grid position. :meth:`place` and :meth:`take` are then one gather each, where a copy per
        phase ran elementwise over rows of 7 (twice as long at stride 2) and the grid had to be zeroed first."""
        nodes = torch.arange(1, self.height * self.width + 1, device=device).view(self.height, self.width)
        grid = nodes.new_zeros(self.stride, self.stride, self.rows, self.cols)
        for source, target in self.placements():
            grid[target] = nodes[source]
        source = grid.flatten()
        return source, source.argsort()[source.numel() - nodes.numel() :]  # the padding's zeros sort first

    def place(self, values: Tensor, sources: Tensor) -> Tensor:
        """``values`` (…, H, W) in a new grid (…, s, s, rows · cols), given :meth:`slots`' first tensor."""
        flat = F.pad(values.reshape(-1, self.height * self.width), (1, 0))  # position 0 holds the padding's zero
        grid = flat.index_select(1, sources)  # on two dimensions: three times faster than on five
        return grid.view(*values.shape[:-2], self.stride, self.stride, self.rows * self.cols)

    def take(self, grid: Tensor, positions: Tensor) -> Tensor:
        """The map's nodes back out of a grid (…, s, s, rows · cols), given :meth:`slots`' second tensor:
        :meth:`place`'s adjoint."""
        values = grid.reshape(-1, self.stride * self.stride * self.rows * self.cols).index_select(1, positions)
        return values.view(*grid.shape[:-3], self.height, self.width)

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


def wide_softmasks(logits: Tensor, layout: _PhaseGrid, sources: Tensor) -> Tensor:
    """:func:`softmasks` in the wide coordinates of ``layout``, (B, G, K², H_out · cols), without autograd: ν
    placed in a grid of its own, so that its neighbours at each window position are one contiguous range.
    The unused columns hold finite weights that multiply nothing anyone reads."""
    k, s = layout.kernel_size, layout.stride
    nu_grid = layout.place(logits[:, :, 0], sources)  # ν(x_j), zero outside the map
    scores = torch.stack([layout.window(nu_grid, index) for index in range(k * k)], dim=2)
    return _window_softmax_(scores.add_(layout.widen(logits[:, :, 1:, ::s, ::s])))  # + ω(x_i) at the output nodes


class LocalAttentionFunction(torch.autograd.Function):
    """Eq. 3's weighted sums of node features (B, G, C/G, H, W) with the softmasks of the logits
    (:func:`softmasks` and :func:`aggregate`'s sums), computed on a :class:`_PhaseGrid` and with the
    backward written out. On CPU the K² window slices of a 7×7 map are
    rows of 7 values, which vectorise poorly (a multiply-add over one ran 4x slower than over a contiguous
    range), and autograd's backward of each slice fills a zero tensor of the whole padded map and adds it
    in (half of a stride-2 unit's time); in wide coordinates every window is one contiguous range, stride 2
    included, and each window's gradient is added into one buffer in place. The softmasks and their
    gradients stay wide too, ν's gradient gathered window by window as the values' is (``F.fold`` took a
    tenth of the function's time, one small copy per sample and mode)."""

    @staticmethod
    def forward(ctx, values: Tensor, logits: Tensor, kernel_size: int, stride: int) -> Tensor:
        layout = _PhaseGrid(kernel_size, stride, *values.shape[-2:])
        sources, positions = layout.slots(values.device)
        weights = wide_softmasks(logits, layout, sources)
        grid = layout.place(values, sources)
        out = layout.window(grid, 0) * weights[:, :, 0:1]
        for index in range(1, kernel_size * kernel_size):
            out.addcmul_(layout.window(grid, index), weights[:, :, index : index + 1])
        ctx.save_for_backward(grid, weights, positions)
        ctx.geometry = (kernel_size, stride, *values.shape[-2:])  # plain numbers, which torch.compile traces
        ctx.dtypes = (values.dtype, logits.dtype)
        return layout.narrow(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        grid, weights, positions = ctx.saved_tensors
        layout = _PhaseGrid(*ctx.geometry)
        k, s = layout.kernel_size, layout.stride
        dtype = torch.promote_types(grid.dtype, weights.dtype)  # float32 under autocast's float16 values
        grad_wide = layout.widen(grad_out.to(dtype))  # zero in the unused columns
        grad_grid = torch.zeros_like(grid, dtype=dtype)
        per_position = []
        for index in range(k * k):  # ∂/∂a_ij = <∂s_i, u_j>; ∂u_j += a_ij ∂s_i
            per_position.append((layout.window(grid, index) * grad_wide).sum(dim=2))
            layout.window(grad_grid, index).addcmul_(grad_wide, weights[:, :, index : index + 1])
        # zero in the unused columns, where every ∂/∂a_ij is
        grad_scores = torch._softmax_backward_data(torch.stack(per_position, dim=2), weights.to(dtype), 2, dtype)
        grad_nu = torch.zeros_like(grid[:, :, 0], dtype=dtype)  # ν_j is read in every window holding j
        for index in range(k * k):
            layout.window(grad_nu, index).add_(grad_scores[:, :, index])
        values_dtype, logits_dtype = ctx.dtypes
        grad_logits = _logits_gradient(layout.narrow(grad_scores), layout.take(grad_nu, positions), s)
        return layout.take(grad_grid, positions).to(values_dtype), grad_logits.to(logits_dtype), None, None


def _logits_gradient(grad_omega: Tensor, grad_nu: Tensor, stride: int) -> Tensor:
    """The gradient of the logits (B, G, 1 + K², H, W) laid out ``[ν, ω]``, from that of ω at the output nodes
    (B, G, K², H_out, W_out), where :func:`softmasks` reads it, and that of ν at every node (B, G, H, W)."""
    b, g, positions = grad_omega.shape[:3]
    shape = (b, g, 1 + positions, *grad_nu.shape[-2:])
    grad = grad_omega.new_zeros(shape) if stride > 1 else grad_omega.new_empty(shape)  # ω's unread nodes: zero
    grad[:, :, 1:, ::stride, ::stride] = grad_omega
    grad[:, :, 0] = grad_nu
    return grad


def matrix_form_pays(nodes: int, kernel_size: int) -> bool:
    """Whether :class:`WindowMatrixFunction` was faster than :class:`LocalAttentionFunction` on a map of ``nodes``
    input nodes (``bench/local_attention_forms.py``): with K = 3 on up to 8×8 maps (stage 4's 7×7: 1.7x at
    stride 1), not on 9×9 and larger (0.43x on 12×12); with K = 5 on 10×10 (1.3x), not on 14×14 (0.7x); never
    with K = 1. The matrix holds N_in / K² times the products the windows need, so large maps lose."""
    return kernel_size > 1 and nodes <= min(8 * kernel_size**2, 128)


def local_attention(values: Tensor, logits: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Eq. 3's weighted sums of node features (B, G, C/G, H, W) with the softmasks of the logits (B, G, 1 + K², H, W),
    (B, G, C/G, H_out, W_out), by the written-out function that was faster on this map (:func:`matrix_form_pays`).
    Neither function's backward can itself be differentiated: both compute the softmasks out of autograd's sight,
    so a second backward through them (after ``create_graph=True``) raises instead of missing their terms."""
    if matrix_form_pays(values.shape[-2] * values.shape[-1], kernel_size):
        return WindowMatrixFunction.apply(values, logits, kernel_size, stride)
    return LocalAttentionFunction.apply(values, logits, kernel_size, stride)


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``, whose matrix products it would run in half precision; nothing where
    the device has no autocast (``meta``, on which the memory check runs the network)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def neighbour_table(kernel_size: int, stride: int, height: int, width: int, device: torch.device) -> Tensor:
    """(K², H_out · W_out): the input node (row-major) at each window position (row-major) of each output node,
    and ``height · width`` where the window reaches into the zero padding."""
    h_out, w_out = output_size(height, width, stride)
    pad = kernel_size // 2
    offsets = torch.arange(kernel_size, device=device)
    rows = torch.arange(h_out, device=device).view(1, -1, 1) * stride + offsets.repeat_interleave(kernel_size).view(-1, 1, 1) - pad
    cols = torch.arange(w_out, device=device).view(1, 1, -1) * stride + offsets.repeat(kernel_size).view(-1, 1, 1) - pad
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    return torch.where(inside, rows * width + cols, height * width).view(kernel_size**2, h_out * w_out)


class WindowMatrixFunction(torch.autograd.Function):
    """:class:`LocalAttentionFunction`'s sums as one batched matrix product per sample and mode: the softmasks
    scattered into a dense (N_in × N_out) matrix that is zero outside each output node's window, and the values
    (C/G × N_in) multiplied by it; the backward is two more such products, the softmasks' gradient gathered
    from the second. The dense matrix holds N_in / K² times the multiply-adds the windows need, but three
    matrix products replace some forty memory-bound passes over the map: on stage 4's 7×7 maps (49 nodes,
    K = 3) the function and its backward took 1.5 against 2.4 ms, the whole stride-1 unit 5.7 against 6.3 ms
    at width 0.25 and 20.5 against 24.2 ms at width 1; on larger maps it was slower (:func:`local_attention`
    chooses). A non-finite value reaches every output of its channel (it meets the matrix's zeros), where the
    grid confines it to the windows holding it: the loss is not finite either way, and a run stops there."""

    @staticmethod
    def forward(ctx, values: Tensor, logits: Tensor, kernel_size: int, stride: int) -> Tensor:
        b, g, c, h, w = values.shape
        k, s = kernel_size, stride
        h_out, w_out = output_size(h, w, s)
        n_in, n_out = h * w, h_out * w_out
        table = neighbour_table(k, s, h, w, values.device)
        nu = F.pad(logits[:, :, 0].reshape(b, g, n_in), (0, 1))  # ν(x_j), and a zero for the padding
        scores = nu.index_select(2, table.flatten()).view(b, g, k * k, n_out)
        weights = _window_softmax_(scores.add_(logits[:, :, 1:, ::s, ::s].reshape(b, g, k * k, n_out)))  # + ω(x_i)
        # each window weight's place in the flattened matrix; the padding's all go to one extra place at the end
        places = torch.where(table < n_in, table * n_out + torch.arange(n_out, device=values.device), n_in * n_out)
        dtype = torch.promote_types(values.dtype, weights.dtype)  # float32 under autocast's half-precision values
        flat = weights.new_zeros(b * g, n_in * n_out + 1, dtype=dtype)
        flat.scatter_(1, places.view(1, -1).expand(b * g, -1), weights.view(b * g, -1).to(dtype))
        nodes = values.reshape(b * g, c, n_in).to(dtype)
        with _without_autocast(values.device):  # in float32, as the grid's products run
            out = torch.bmm(nodes, flat[:, :-1].view(b * g, n_in, n_out))
        ctx.save_for_backward(nodes, weights, flat, table, places)
        ctx.geometry = (k, s, h, w)
        ctx.dtypes = (values.dtype, logits.dtype)
        return out.view(b, g, c, h_out, w_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        nodes, weights, flat, table, places = ctx.saved_tensors
        k, s, h, w = ctx.geometry
        b, g = weights.shape[:2]
        c = nodes.shape[1]
        h_out, w_out = output_size(h, w, s)
        n_in, n_out = h * w, h_out * w_out
        matrix = flat[:, :-1].view(b * g, n_in, n_out)
        grad = grad_out.reshape(b * g, c, n_out).to(nodes.dtype)
        with _without_autocast(nodes.device):
            grad_nodes = torch.bmm(grad, matrix.transpose(1, 2))  # ∂u_j = Σ_i a_ij ∂s_i
            grad_matrix = torch.bmm(nodes.transpose(1, 2), grad)  # <u_j, ∂s_i> for every pair, read in the windows
        inside = table < n_in  # the padding's weights multiply zeros: their gradient is zero
        read = places.clamp_max(n_in * n_out - 1).view(1, -1).expand(b * g, -1)  # the padding's: any place, masked
        grad_weights = grad_matrix.view(b * g, -1).gather(1, read).view(b, g, k * k, n_out) * inside
        grad_scores = torch._softmax_backward_data(grad_weights, weights.to(nodes.dtype), 2, nodes.dtype)
        grad_nu = grad_scores.new_zeros(b, g, n_in + 1).index_add_(2, table.flatten(), grad_scores.view(b, g, -1))
        values_dtype, logits_dtype = ctx.dtypes
        grad_logits = _logits_gradient(grad_scores.view(b, g, k * k, h_out, w_out), grad_nu[..., :n_in].view(b, g, h, w), s)
        return grad_nodes.view(b, g, c, h, w).to(values_dtype), grad_logits.to(logits_dtype), None, None


def node_sum(nodes: Tensor, weights: Tensor) -> Tensor:
    """``Σ_i w_i x_i``: nodes (B, G, C/G, N) weighted by (B, G, N), giving (B, G, C/G)."""
    return (nodes * weights.unsqueeze(2)).sum(dim=3)


def channel_dot(nodes: Tensor, vectors: Tensor) -> Tensor:
    """``<x_i, v>``: every node (B, G, C/G, N) against its mode's vector (B, G, C/G), giving (B, G, N)."""
    return torch.matmul(vectors.unsqueeze(2), nodes).squeeze(2)


class Contraction(torch.autograd.Function):
    """:func:`node_sum` (``over_nodes``) or :func:`channel_dot` of the nodes with ``other``, with the backward
    written out: each one's gradient is the other contraction and an outer product, which autograd's
    backward of the equivalent einsum formed as a batched matrix product with an inner size of one, several
    times slower on CPU than the broadcast multiply here."""

    @staticmethod
    def forward(ctx, nodes: Tensor, other: Tensor, over_nodes: bool) -> Tensor:
        ctx.save_for_backward(nodes, other)
        ctx.over_nodes = over_nodes
        return node_sum(nodes, other) if over_nodes else channel_dot(nodes, other)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        nodes, other = ctx.saved_tensors
        if ctx.over_nodes:  # grad (B, G, C/G), other the node weights (B, G, N)
            return grad.unsqueeze(3) * other.unsqueeze(2), channel_dot(nodes, grad), None
        return other.unsqueeze(3) * grad.unsqueeze(2), node_sum(nodes, grad), None  # other the vectors


class AddOuter(torch.autograd.Function):
    """``x_i + w_i v``: nodes (B, G, C/G, N) plus each mode's vector (B, G, C/G) weighted per node (B, G, N),
    in one fused multiply-add, its backward as two contractions instead of two products and reductions."""

    @staticmethod
    def forward(ctx, nodes: Tensor, vectors: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(vectors, weights)
        return torch.addcmul(nodes, vectors.unsqueeze(3), weights.unsqueeze(2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        vectors, weights = ctx.saved_tensors
        # a loss that sums the output hands in an expanded gradient (stride 0), on which the CPU's batched
        # matrix product of channel_dot runs sample by sample: 1,500 small operations instead of one
        grad = grad.contiguous()
        return grad, node_sum(grad, weights), channel_dot(grad, vectors)
