"""Per-sample gradients and norms for the generator's layers: Opacus extensions and book-keeping clipping.

Ghost clipping needs each example's gradient NORM, not the gradient. Opacus 1.6 ships norm samplers for
Linear and Embedding only, so in its "ghost" mode every Conv2d and GroupNorm still builds per-sample
gradients. The norm samplers below fill the gap, and a faster Conv2d grad sampler serves the hooks mode.
"ghost_conv" / "hooks_conv" install them on one wrapped module, not globally (as register_norm_sampler
would), so Opacus' stock modes stay what they are and bench/ can measure all of them side by side.
BookKeepingModule (the default mode, "bookkeeping") needs neither: see its section at the end.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.utils.tensor_utils import unfold2d
from torch import nn
from torch.nn import functional as F
from torch.nn.grad import conv2d_weight

# Elements of per-sample conv gradient built at once on the materialise path: 16 MB of float32. At 1 << 24
# (64 MB) a DP step's peak on the small generator was about 10 MB higher (bench/train.py, alternating runs:
# mean 325 MB against 314 MB), at the same speed.
MATERIALISE_CHUNK = 1 << 22


def _conv_patches(layer: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """Activations (B, C_in, H, W) -> the patches each output position sees, (B, C_in*kh*kw, P)."""
    if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding in ((0, 0), "valid"):
        return a.reshape(a.shape[0], a.shape[1], -1)  # 1x1 conv: the patches are the pixels
    return unfold2d(a, kernel_size=layer.kernel_size, padding=layer.padding, stride=layer.stride,
                    dilation=layer.dilation)


def conv2d_weight_sq_norms(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norms (B,) of the per-sample weight gradients G_i = g_i U_i^T of a Conv2d.

    a: activations (B, C_in, H, W); g: backprops (B, C_out, H', W'), P = H'W' output positions; U_i: the
    patches (D, P), D = C_in*kh*kw. Two exact ways, chosen per layer by their cost:
      ghost norm: ||g_i U_i^T||^2 = sum_pq (U_i^T U_i)_pq (g_i^T g_i)_pq
                  B*P^2*(C_out + D) flops, B*P^2 memory
      materialise: G_i (C_out, D), squared and summed
                   B*P*C_out*D flops, C_out*D memory
    Ghost wins where P*(C_out + D) < C_out*D: the coarse, wide levels of a U-Net. The materialise path
    gets G_i for a chunk of the batch as the weight gradient of one grouped convolution (the chunk folded
    into the groups: no unfolded k*k copy of the activations, 2-3x faster than unfold + bmm on CPU), so at
    most MATERIALISE_CHUNK gradient elements exist at once and none outlives the call (Opacus' hooks mode
    keeps every layer's (B, *weight) until the optimizer step).
    """
    n, c_out, h_out, w_out = g.shape
    p, d = h_out * w_out, layer.weight[0].numel()
    if _ghost_is_cheaper(layer, g):
        u = _conv_patches(layer, a)  # (B, D, P)
        gf = g.reshape(n, c_out, p)  # (B, C_out, P)
        aat = torch.bmm(u.transpose(1, 2), u)  # (B, P, P)
        ggt = torch.bmm(gf.transpose(1, 2), gf)  # (B, P, P)
        return (aat * ggt).sum(dim=(1, 2)).clamp_(min=0.0)
    step = max(1, MATERIALISE_CHUNK // (c_out * d))
    return torch.cat([conv2d_weight_per_sample(layer, a[i:i + step], g[i:i + step])
                      .flatten(1).square().sum(dim=1) for i in range(0, n, step)])


def _ghost_is_cheaper(layer: nn.Conv2d, g: torch.Tensor) -> bool:
    """Ghost norm over materialising, by their cost (see conv2d_weight_sq_norms)."""
    p, c_out, d = g.shape[2] * g.shape[3], layer.out_channels, layer.weight[0].numel()
    return p * (c_out + d) < c_out * d


def conv2d_weight_per_sample(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients (B, C_out, C_in, kh, kw) of a Conv2d (groups=1) from its activations
    (B, C_in, H, W) and backprops (B, C_out, H', W'): the weight gradient of ONE convolution whose groups
    are the samples (input (1, B*C_in, H, W), weight (B*C_out, C_in, kh, kw), groups=B), so no unfolded
    k*k copy of the activations is built as in Opacus' unfold + einsum sampler (2-3x faster on CPU)."""
    b, c_in, c_out = len(a), layer.in_channels, layer.out_channels
    grad = conv2d_weight(a.reshape(1, b * c_in, *a.shape[2:]), (b * c_out, c_in, *layer.kernel_size),
                         g.reshape(1, b * c_out, *g.shape[2:]), stride=layer.stride, padding=layer.padding,
                         dilation=layer.dilation, groups=b)  # (B*C_out, C_in, kh, kw): sample j is group j
    return grad.view(b, c_out, c_in, *layer.kernel_size)


def _plain_conv(layer: nn.Conv2d) -> bool:
    """Layouts the samplers below handle themselves; others get Opacus' own per-sample gradients."""
    return layer.groups == 1 and not isinstance(layer.padding, str)


def _zero_padded(layer: nn.Conv2d, a: torch.Tensor) -> tuple[nn.Conv2d, torch.Tensor]:
    """Reflect/replicate/circular padding applied to the activations, and the layer as one with no padding.

    Both our samplers and Opacus' unfold pad with zeros from `layer.padding` and ignore `padding_mode`
    (a 9% norm error with reflect padding): pad as the forward pass did, then sample an unpadded conv.
    The proxy is a shallow copy, so it shares the layer's parameters (the keys of the returned dicts).
    """
    if layer.padding_mode == "zeros":
        return layer, a
    a = F.pad(a, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
    proxy = copy.copy(layer)
    proxy.padding, proxy.padding_mode = (0, 0), "zeros"
    return proxy, a


def compute_conv2d_grad_sample(layer: nn.Conv2d, activations: list[torch.Tensor],
                               backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Opacus grad sampler for nn.Conv2d (the "hooks_conv" mode): per-sample grads of weight and bias."""
    layer, a = _zero_padded(layer, activations[0].to(backprops.dtype).contiguous())  # (B, C_in, H, W)
    backprops = backprops.contiguous()  # (B, C_out, H', W')
    if len(a) == 0 or not _plain_conv(layer):
        return compute_conv_grad_sample(layer, [a], backprops)
    out: dict[torch.Tensor, torch.Tensor] = {}
    if layer.weight.requires_grad:
        out[layer.weight] = conv2d_weight_per_sample(layer, a, backprops)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.sum(dim=(2, 3))  # (B, C_out)
    return out


def compute_conv2d_norm_sample(layer: nn.Conv2d, activations: list[torch.Tensor],
                               backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Opacus norm sampler for nn.Conv2d: per-sample gradient norms (B,) of weight and bias."""
    # (B, C_in, H, W), made contiguous: unfold2d assumes NCHW strides
    layer, a = _zero_padded(layer, activations[0].to(backprops.dtype).contiguous())
    backprops = backprops.contiguous()
    n = a.shape[0]
    if n == 0:  # Poisson sampling drew nobody
        return {p: backprops.new_zeros(0) for p in (layer.weight, layer.bias)
                if p is not None and p.requires_grad}
    if not _plain_conv(layer):  # rare layouts: norms of Opacus' per-sample gradients
        grads = compute_conv_grad_sample(layer, [a], backprops)
        return {p: gs.reshape(n, -1).norm(dim=1) for p, gs in grads.items()}
    out: dict[torch.Tensor, torch.Tensor] = {}
    if layer.weight.requires_grad:
        out[layer.weight] = conv2d_weight_sq_norms(layer, a, backprops).sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.sum(dim=(2, 3)).norm(dim=1)  # bias grad per sample: (B, C_out)
    return out


def compute_group_norm_norm_sample(layer: nn.GroupNorm, activations: list[torch.Tensor],
                                   backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Opacus norm sampler for nn.GroupNorm: its per-sample grads are only (B, C), so reduce then norm."""
    a = activations[0].to(backprops.dtype)  # (B, C, H, W)
    out: dict[torch.Tensor, torch.Tensor] = {}
    if len(a) == 0:  # Poisson sampling drew nobody
        return {p: backprops.new_zeros(0) for p in (layer.weight, layer.bias)
                if p is not None and p.requires_grad}
    if layer.weight is not None and layer.weight.requires_grad:
        xhat = F.group_norm(a, layer.num_groups, eps=layer.eps)  # what the affine weight multiplies
        out[layer.weight] = (xhat * backprops).flatten(2).sum(dim=2).norm(dim=1)  # (B,)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.flatten(2).sum(dim=2).norm(dim=1)  # (B,)
    return out


GHOST_CONV_NORM_SAMPLERS = {nn.Conv2d: compute_conv2d_norm_sample,
                            nn.GroupNorm: compute_group_norm_norm_sample}


def install_ghost_conv(module: GradSampleModuleFastGradientClipping) -> None:
    """Give one ghost-clipping module the Conv2d and GroupNorm norm samplers (Linear's stay Opacus')."""
    if not isinstance(module, GradSampleModuleFastGradientClipping):
        raise ValueError("install_ghost_conv needs the module "
                         "make_private(grad_sample_mode='ghost') returned")
    # An instance attribute shadows the class registry that opacus' register_norm_sampler writes to.
    module.NORM_SAMPLERS = {**type(module).NORM_SAMPLERS, **GHOST_CONV_NORM_SAMPLERS}


def install_hooks_conv(module: GradSampleModule) -> None:
    """Give one hooks-mode module the grouped-convolution Conv2d grad sampler (the rest stay Opacus')."""
    if type(module) is not GradSampleModule:
        raise ValueError("install_hooks_conv needs the module "
                         "make_private(grad_sample_mode='hooks') returned")
    module.GRAD_SAMPLERS = {**type(module).GRAD_SAMPLERS, nn.Conv2d: compute_conv2d_grad_sample}


# ------------------------------------------------------------------------------ book-keeping clipping
#
# Bu et al. 2023 (arXiv 2210.00038): ONE backward pass, and it computes no weight gradient. Forward hooks
# keep each layer's input (activations) and its output's gradient edge; torch.autograd.grad of the summed
# per-sample losses runs the backward pass to the layer OUTPUTS (every weight gradient kernel pruned), and a
# hook on each output turns its gradient (the backprops), as it arrives, into that layer's per-sample
# squared norms and an adder holding what the clipped sum needs. Each person's gradient norm is then summed
# from the layers' norms, and each layer's weight gradient is computed once, as an ordinary batch gradient
# whose backprops are scaled by the clip factors: the sum of clipped per-sample gradients. A layer whose
# norms are cheaper to get by materialising its per-sample gradients keeps them instead, when they are no
# larger than what they let go (_keeps_per_sample), and its clipped sum is their weighted sum (Bu et al.'s
# mixed book-keeping).

def _conv_bk(layer: nn.Conv2d, a: torch.Tensor,
             g: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
    """Conv2d: per-sample squared norms (B,), and a function adding the clipped sum to the parameters'
    grads."""
    layer_z, a = _zero_padded(layer, a.to(g.dtype).contiguous())
    g = g.contiguous()
    bias = layer.bias if layer.bias is not None and layer.bias.requires_grad else None
    if layer.weight.requires_grad and _plain_conv(layer_z) and _keeps_per_sample(layer_z, a, g):
        kept = conv2d_weight_per_sample(layer_z, a, g)  # (B, *weight)
        kept_bias = g.sum(dim=(2, 3)) if bias is not None else None  # (B, C_out)
        del a, g  # only the per-sample gradients outlive this call: no larger than what they replace

        def add_kept(c: torch.Tensor) -> None:
            _accumulate(layer.weight, torch.tensordot(c.to(kept.dtype), kept, dims=1))
            if bias is not None and kept_bias is not None:
                _accumulate(bias, c.to(kept_bias.dtype) @ kept_bias)
        sq = kept.flatten(1).square().sum(dim=1)
        return (sq if kept_bias is None else sq + kept_bias.square().sum(dim=1)), add_kept
    if not layer.weight.requires_grad:
        sq = g.new_zeros(len(g))
    elif _plain_conv(layer_z):
        sq = conv2d_weight_sq_norms(layer_z, a, g)
    else:  # grouped: norms of Opacus' per-sample gradients (rare in this model)
        sq = compute_conv_grad_sample(layer_z, [a], g)[layer.weight].flatten(1).square().sum(1)
    if bias is not None:
        sq = sq + g.sum(dim=(2, 3)).square().sum(dim=1)

    def add(c: torch.Tensor) -> None:
        gc = g * c.view(-1, 1, 1, 1)  # (B, C_out, H', W'): each person's backprops times their clip factor
        if layer.weight.requires_grad:
            _accumulate(layer.weight, conv2d_weight(a, layer.weight.shape, gc, stride=layer_z.stride,
                                                    padding=layer_z.padding, dilation=layer_z.dilation,
                                                    groups=layer_z.groups))
        if bias is not None:
            _accumulate(bias, gc.sum(dim=(0, 2, 3)))
    return sq, add


def _keeps_per_sample(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> bool:
    """Keep a layer's per-sample gradients until the clip factors are known where the norms materialise them
    anyway and they are no larger than the activations and backprops they let go: the clipped sum is then
    a weighted sum of them, not a second weight-gradient convolution (a fifth of a step on the small
    generator, mostly its high-resolution, narrow layers)."""
    return not _ghost_is_cheaper(layer, g) and len(g) * layer.weight.numel() <= a.numel() + g.numel()


def _group_norm_bk(layer: nn.GroupNorm, a: torch.Tensor,
                   g: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
    """GroupNorm: per-sample gradients are only (B, C): build them, norm them, weight and sum them."""
    grads: list[tuple[torch.Tensor, torch.Tensor]] = []
    if layer.weight is not None and layer.weight.requires_grad:
        xhat = F.group_norm(a.to(g.dtype), layer.num_groups, eps=layer.eps)
        grads.append((layer.weight, (xhat * g).flatten(2).sum(dim=2)))  # (B, C)
    if layer.bias is not None and layer.bias.requires_grad:
        grads.append((layer.bias, g.flatten(2).sum(dim=2)))  # (B, C)
    sq = sum((gs.square().sum(dim=1) for _, gs in grads), g.new_zeros(len(g)))

    def add(c: torch.Tensor) -> None:
        for p, gs in grads:
            _accumulate(p, (gs * c[:, None]).sum(dim=0))
    return sq, add


def _linear_bk(layer: nn.Linear, a: torch.Tensor,
               g: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
    """Linear on (B, in) or (B, ..., in): ghost norms (||g_i||^2 ||a_i||^2 for one position per sample)."""
    b = len(g)
    # (B, T, in), (B, T, out)
    a3, g3 = a.to(g.dtype).reshape(b, -1, a.shape[-1]), g.reshape(b, -1, g.shape[-1])
    sq = g.new_zeros(b)
    if layer.weight.requires_grad:
        if a3.shape[1] == 1:
            sq = sq + a3[:, 0].square().sum(1) * g3[:, 0].square().sum(1)
        else:
            sq = sq + (torch.bmm(a3, a3.transpose(1, 2)) * torch.bmm(g3, g3.transpose(1, 2))).sum(dim=(1, 2))
    if layer.bias is not None and layer.bias.requires_grad:
        sq = sq + g3.sum(dim=1).square().sum(dim=1)

    def add(c: torch.Tensor) -> None:
        gc = g3 * c[:, None, None]
        if layer.weight.requires_grad:
            _accumulate(layer.weight, torch.einsum("bto,bti->oi", gc, a3))
        if layer.bias is not None and layer.bias.requires_grad:
            _accumulate(layer.bias, gc.sum(dim=(0, 1)))
    return sq, add


BOOK_KEEPING_LAYERS: dict[type[nn.Module],
                          Callable[..., tuple[torch.Tensor, Callable[[torch.Tensor], None]]]] = {
    nn.Conv2d: _conv_bk, nn.GroupNorm: _group_norm_bk, nn.Linear: _linear_bk}


def _accumulate(p: torch.Tensor, grad: torch.Tensor) -> None:
    p.grad = grad.detach() if p.grad is None else p.grad + grad.detach()


class BookKeepingModule(nn.Module):
    """A module wrapped for book-keeping clipping: records each layer's input in the forward pass, and turns
    each layer's output gradient into its norms and clipped-sum adder while the backward pass runs.

    Every layer that owns trainable parameters must be a Conv2d, GroupNorm or Linear called once per forward.
    `_module` holds the wrapped module, as in Opacus' wrappers (state_dict keys carry the prefix).

    Memory (issue 20.8, bench/train.py): a layer's output is never held, only its gradient edge, so autograd
    frees it as in a plain step; and each layer's output gradient becomes its (norms, adder) inside the
    backward pass, as autograd hands it over, and its input is let go then, so every layer's output
    gradient is never alive at once next to every activation (the first version asked torch.autograd.grad
    for all of them together: the peak was the activations plus all the backprops).
    """

    def __init__(self, module: nn.Module, max_grad_norm: float) -> None:
        super().__init__()
        self._module = module
        self.max_grad_norm = max_grad_norm
        self.records: list[_Record] = []
        self._turned: dict[int, tuple[torch.Tensor, Callable[[torch.Tensor], None]]] = {}
        self._clipping = False  # the output hooks act only inside clipped_backward
        for name, layer in module.named_modules():
            if not any(p.requires_grad for p in layer.parameters(recurse=False)):
                continue
            if type(layer) not in BOOK_KEEPING_LAYERS:
                raise ValueError(f"book-keeping clipping does not know {name} ({type(layer).__name__}); use "
                                 "grad_sample_mode='hooks_conv'")
            layer.register_forward_hook(self._record)

    def _record(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and output.requires_grad):
            return
        record = _Record(layer, inputs[0].detach(), torch.autograd.graph.get_gradient_edge(output),
                         output.shape, output.dtype, output.device, source=not inputs[0].requires_grad)
        index = len(self.records)
        self.records.append(record)
        output.register_hook(lambda g: self._turn(index, g))

    def _turn(self, index: int, g: torch.Tensor) -> None:
        """Layer `index`'s whole output gradient, as the backward pass hands it over: its norms and adder."""
        if not self._clipping or index in self._turned:
            return
        record = self.records[index]
        self._turned[index] = BOOK_KEEPING_LAYERS[type(record.layer)](record.layer, record.activations, g)
        record.activations = None  # the adder keeps what it needs; the rest goes with the backward pass

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.records.clear()
        return self._module(*args, **kwargs)

    def clipped_backward(self, per_sample_loss: torch.Tensor) -> torch.Tensor:
        """Set each parameter's .grad to the sum over the batch of clipped per-sample gradients; return the
        norms."""
        layers = [r.layer for r in self.records]
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("book-keeping clipping needs each layer called once per forward pass")
        # Asking for the gradients of the source layers' outputs (their input needs none) runs the backward
        # through every recorded layer's output, whose hooks turn it; no weight gradient is computed.
        sources = [i for i, r in enumerate(self.records) if r.source] or list(range(len(self.records)))
        self._clipping, self._turned = True, {}
        try:
            grads = torch.autograd.grad(per_sample_loss.sum(), [self.records[i].edge for i in sources],
                                        allow_unused=True)
            for i, g in zip(sources, grads, strict=True):  # captured, not hooked, where torch skips the hook
                if g is not None:
                    self._turn(i, g)
            del grads
            for i, r in enumerate(self.records):  # a layer the loss does not reach: a zero gradient
                if i not in self._turned:
                    self._turn(i, torch.zeros(r.shape, dtype=r.dtype, device=r.device))
            turned = [self._turned[i] for i in range(len(self.records))]
        finally:
            self._clipping, self._turned, self.records = False, {}, []
        sq = per_sample_loss.new_zeros(len(per_sample_loss))
        for layer_sq, _ in turned:
            sq = sq + layer_sq
        norms = sq.clamp(min=0).sqrt()  # (B,) each person's whole-gradient L2 norm
        factors = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # Opacus' flat clipping factors
        while turned:  # popped as they go: each adder's kept tensors go once it has added
            turned.pop(0)[1](factors)
        return norms


@dataclass
class _Record:
    """One layer's call in the forward pass: its input, and its output's gradient edge (not the output)."""

    layer: nn.Module
    activations: torch.Tensor | None
    edge: Any  # torch.autograd.graph.GradientEdge
    shape: torch.Size
    dtype: torch.dtype
    device: torch.device
    source: bool  # its input needs no gradient: the backward pass ends at its output
