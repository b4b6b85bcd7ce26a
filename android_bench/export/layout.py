"""Layout helpers for export: NHWC boundary wrapper and a channel-last form of TopFormer's attention.

Phones want channel-last (NHWC) tensors. The TFLite converter lowers convolutions to NHWC itself, but a
reshape written against NCHW memory order forces it to transpose back and forth around every reshape;
:class:`ChannelLastAttention` computes the same function with reshapes that read NHWC order.
"""
from __future__ import annotations

import torch
from torch import nn

from supernet.topformer import Attention


class NHWCBoundary(nn.Module):
    """Wrap an NCHW module so it takes and returns channel-last tensors (for the ONNX file, which has no
    layout pass of its own: the two permutes become the file's boundary transposes)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x.permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1)


class ChannelLastAttention(nn.Module):
    """The same function as :class:`~supernet.topformer.Attention`, written so that the head split reads the
    channel-last (NHWC) memory order the converter lowers to. The original reshapes an NCHW map, which forces
    the converter to transpose NHWC->NCHW before and back after; this form needs only the four transposes
    that move the heads axis (q, k, v in, attention output out)."""

    def __init__(self, attn: Attention):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = attn.heads, attn.key_dim, attn.value_dim
        self.to_q, self.to_k, self.to_v, self.proj = attn.to_q, attn.to_k, attn.to_v, attn.proj

    def _split(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        b, _, h, w = t.shape
        return t.permute(0, 2, 3, 1).reshape(b, h * w, self.heads, dim)  # (B, N, heads, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self._split(self.to_q(x), self.key_dim).permute(0, 2, 1, 3)  # (B, heads, N, key_dim)
        k = self._split(self.to_k(x), self.key_dim).permute(0, 2, 3, 1)  # (B, heads, key_dim, N)
        v = self._split(self.to_v(x), self.value_dim).permute(0, 2, 1, 3)  # (B, heads, N, value_dim)
        attn = torch.matmul(q, k).softmax(dim=-1)
        out = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(b, h, w, self.heads * self.value_dim)
        return self.proj(out.permute(0, 3, 1, 2))


def channel_last_attention_(module: nn.Module) -> nn.Module:
    """Swap every :class:`Attention` inside ``module`` for its :class:`ChannelLastAttention` twin (in place,
    weights shared). Returns ``module`` (or the twin when ``module`` itself is an :class:`Attention`)."""
    if isinstance(module, Attention):
        return ChannelLastAttention(module)
    for name, child in list(module.named_children()):
        if isinstance(child, Attention):
            setattr(module, name, ChannelLastAttention(child))
        else:
            channel_last_attention_(child)
    return module
