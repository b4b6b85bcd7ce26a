"""Elastic layers: the largest weights are stored once, and every smaller choice slices them.

A channel selection (:data:`Sel`) is either an int ``n`` (the first ``n`` channels, a cheap view) or a
1-D LongTensor of channel indices (used where the shared layout is not a prefix: attention heads, whose
``key_dim`` channels are taken per head, and the token channels, which are per-stage segments).
Kernels smaller than the stored one take its centre. Each layer can copy its active slice into a plain
``nn.Module`` (``copy_to``), which is how the supernet extracts a standalone static model.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

Sel = int | torch.Tensor


def take(t: torch.Tensor, dim: int, sel: Sel) -> torch.Tensor:
    """Select channels ``sel`` of ``t`` along ``dim`` (a view for an int prefix, a copy for indices)."""
    if isinstance(sel, int):
        return t.narrow(dim, 0, sel)
    if sel.device != t.device:  # the cached index tensors live on the CPU; weights may be on a GPU
        sel = _on_device(sel, t.device)
    return t.index_select(dim, sel)


def _on_device(sel: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``sel`` copied to ``device`` once per (index tensor, device) and then reused."""
    if sel.device == device:
        return sel
    key = (id(sel), device)
    hit = _DEVICE_INDEX.get(key)
    if hit is None or hit[0] is not sel:
        if len(_DEVICE_INDEX) > 8192:
            _DEVICE_INDEX.clear()
        hit = _DEVICE_INDEX[key] = (sel, sel.to(device))
    return hit[1]


#: Device copies of index tensors, keyed by the CPU tensor's id (the tensor itself is kept to make the id safe).
_DEVICE_INDEX: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


@lru_cache(maxsize=4096)
def per_head_index(heads: int, dim: int, dim_max: int) -> torch.Tensor:
    """Channel indices of the first ``dim`` channels of each of the first ``heads`` heads, in a layout that
    stores ``dim_max`` channels per head (attention is sliced per head, not by prefix)."""
    return (torch.arange(heads).unsqueeze(1) * dim_max + torch.arange(dim).unsqueeze(0)).reshape(-1)


@lru_cache(maxsize=4096)
def segment_index(widths: tuple[int, ...], widths_max: tuple[int, ...]) -> torch.Tensor:
    """Channel indices of the first ``widths[i]`` channels of each segment, segments ``widths_max`` wide."""
    offsets = [sum(widths_max[:i]) for i in range(len(widths_max))]
    return torch.cat([torch.arange(o, o + w) for o, w in zip(offsets, widths)])


def centre_kernel(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The centre ``k x k`` window of a ``(..., K, K)`` kernel."""
    kmax = weight.shape[-1]
    if k == kmax:
        return weight
    off = (kmax - k) // 2
    return weight[..., off:off + k, off:off + k]


class ElasticConvBN(nn.Module):
    """Conv (no bias) + BatchNorm with elastic in/out channels and kernel size; optionally depthwise.

    BatchNorm keeps running statistics for the largest layer; a subnet reads and (in training mode) updates
    only its own channels. ``momentum=None`` gives a cumulative average, as ``nn.BatchNorm2d`` does.
    """

    def __init__(self, cin_max: int, cout_max: int, kernel_max: int = 1, stride: int = 1, depthwise: bool = False,
                 bn_weight_init: float = 1.0, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.depthwise, self.stride, self.eps, self.momentum = depthwise, stride, eps, momentum
        self.weight = nn.Parameter(torch.empty(cout_max, 1 if depthwise else cin_max, kernel_max, kernel_max))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bn_weight = nn.Parameter(torch.full((cout_max,), float(bn_weight_init)))
        self.bn_bias = nn.Parameter(torch.zeros(cout_max))
        self.register_buffer("running_mean", torch.zeros(cout_max))
        self.register_buffer("running_var", torch.ones(cout_max))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def active_weight(self, out: Sel, inp: Sel | None, kernel: int | None) -> torch.Tensor:
        """The conv weight of the active slice."""
        w = take(self.weight, 0, out)
        if not self.depthwise and inp is not None:
            w = take(w, 1, inp)
        return centre_kernel(w, kernel) if kernel is not None else w

    def forward(self, x: torch.Tensor, out: Sel, inp: Sel | None = None, kernel: int | None = None) -> torch.Tensor:
        """Apply the slice ``out`` x ``inp`` (``inp`` defaults to the first ``x.shape[1]`` channels)."""
        if inp is None and not self.depthwise:
            inp = x.shape[1]
        w = self.active_weight(out, inp, kernel)
        k = w.shape[-1]
        groups = x.shape[1] if self.depthwise else 1
        y = F.conv2d(x, w, None, self.stride, k // 2, 1, groups)
        return self._bn(y, out)

    def _bn(self, y: torch.Tensor, out: Sel) -> torch.Tensor:
        weight, bias = take(self.bn_weight, 0, out), take(self.bn_bias, 0, out)
        if not self.training:
            return F.batch_norm(y, take(self.running_mean, 0, out), take(self.running_var, 0, out),
                                weight, bias, False, 0.0, self.eps)
        with torch.no_grad():
            n = y.numel() // y.shape[1]
            self.update_running_stats(out, y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=n > 1))
        return F.batch_norm(y, None, None, weight, bias, True, 0.0, self.eps)

    @torch.no_grad()
    def update_running_stats(self, out: Sel, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """Blend a batch's statistics into the running ones of channels ``out`` only (momentum, or a
        cumulative average when ``momentum`` is None)."""
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        new_mean = (1 - m) * take(self.running_mean, 0, out) + m * mean
        new_var = (1 - m) * take(self.running_var, 0, out) + m * unbiased_var
        if isinstance(out, int):
            self.running_mean[:out] = new_mean
            self.running_var[:out] = new_var
        else:
            out = _on_device(out, self.running_mean.device)
            self.running_mean.index_copy_(0, out, new_mean)
            self.running_var.index_copy_(0, out, new_var)

    @torch.no_grad()
    def copy_to(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, out: Sel, inp: Sel | None = None,
                kernel: int | None = None) -> None:
        """Copy the active slice into a plain conv + BN pair of matching shape."""
        conv.weight.copy_(self.active_weight(out, inp, kernel))
        bn.weight.copy_(take(self.bn_weight, 0, out))
        bn.bias.copy_(take(self.bn_bias, 0, out))
        bn.running_mean.copy_(take(self.running_mean, 0, out))
        bn.running_var.copy_(take(self.running_var, 0, out))
        bn.eps = self.eps
        bn.num_batches_tracked.copy_(self.num_batches_tracked)


class ElasticDepthwiseConv(nn.Module):
    """Depthwise conv with bias and an elastic channel count (the MLP's 3x3 in TopFormer blocks)."""

    def __init__(self, channels_max: int, kernel: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels_max, 1, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(channels_max))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.weight.shape[-1]
        return F.conv2d(x, self.weight[:c], self.bias[:c], 1, k // 2, 1, c)

    @torch.no_grad()
    def copy_to(self, conv: nn.Conv2d) -> None:
        c = conv.weight.shape[0]
        conv.weight.copy_(self.weight[:c])
        conv.bias.copy_(self.bias[:c])


class ElasticConv(nn.Module):
    """Plain conv with bias, elastic input channels (the classifier: decoder width -> classes)."""

    def __init__(self, cin_max: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin_max, 1, 1))
        nn.init.normal_(self.weight, std=0.01)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight[:, : x.shape[1]], self.bias)

    @torch.no_grad()
    def copy_to(self, conv: nn.Conv2d) -> None:
        conv.weight.copy_(self.weight[:, : conv.weight.shape[1]])
        conv.bias.copy_(self.bias)
