"""A plain (static) TopFormer built from an :class:`ArchConfig`, module for module as TopFormer builds it.

This is what ``TopFormerSupernet.get_active_subnet`` returns and what gets exported to TFLite/ONNX: standard
``nn.Conv2d`` / ``nn.BatchNorm2d`` layers, no elastic machinery. Structure (TopFormer, CVPR 2022):
stem conv -> MobileNetV2 inverted residuals (the Token Pyramid Module) -> average-pool the stage 2-5 outputs
to 1/64 of the input and concatenate them as tokens -> transformer blocks (1x1-conv q/k/v with BN,
multi-head attention, ReLU6 + projection, MLP with a depthwise conv) -> split the tokens back per scale ->
Semantics Injection Modules on stages 3-5 -> head: sum at 1/8, fuse conv + BN + ReLU, 1x1 classifier.
``forward`` returns logits at 1/8 of the input; what the deployed model does after that is its head
(``supernet.heads``: ``Deployed(net, head)``); :class:`WithResize` is the ``logits`` head (bilinear resize).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from supernet.heads import Deployed
from supernet.space import INJECTION_LEVELS, PYRAMID_STAGES, ArchConfig, SearchSpace, TABLE1


class ConvBN(nn.Sequential):
    """Conv without bias followed by BatchNorm (TopFormer's ``Conv2d_BN``)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1x1 expand + ReLU, depthwise kxk + ReLU, 1x1 project (linear)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = int(round(cin * expansion))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [ConvBN(cin, hidden, 1), nn.ReLU()]
        layers += [ConvBN(hidden, hidden, kernel, stride, groups=hidden), nn.ReLU(), ConvBN(hidden, cout, 1)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class Attention(nn.Module):
    """Multi-head self-attention over a (B, C, H, W) token map with 1x1-conv projections (TopFormer).

    Like TopFormer's code, the attention logits are not scaled by ``key_dim ** -0.5`` (q/k carry a BN).
    """

    def __init__(self, dim: int, key_dim: int, heads: int, value_dim: int):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.to_q = ConvBN(dim, heads * key_dim)
        self.to_k = ConvBN(dim, heads * key_dim)
        self.to_v = ConvBN(dim, heads * value_dim)
        self.proj = nn.Sequential(nn.ReLU6(), ConvBN(heads * value_dim, dim, bn_weight_init=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        q = self.to_q(x).reshape(b, self.heads, self.key_dim, n).transpose(2, 3)
        k = self.to_k(x).reshape(b, self.heads, self.key_dim, n)
        v = self.to_v(x).reshape(b, self.heads, self.value_dim, n).transpose(2, 3)
        attn = torch.matmul(q, k).softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(2, 3).reshape(b, self.heads * self.value_dim, h, w)
        return self.proj(out)


class Mlp(nn.Module):
    """1x1 ConvBN -> depthwise 3x3 (bias) -> ReLU6 -> 1x1 ConvBN."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ConvBN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=True)
        self.act = nn.ReLU6()
        self.fc2 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class TransformerBlock(nn.Module):
    """Pre-activation-free TopFormer block: ``x + attn(x)`` then ``x + mlp(x)``."""

    def __init__(self, dim: int, key_dim: int, heads: int, value_dim: int, mlp_hidden: int):
        super().__init__()
        self.attn = Attention(dim, key_dim, heads, value_dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class HSigmoid(nn.Module):
    """``relu6(x + 3) / 6`` (TopFormer's h_sigmoid)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class Injection(nn.Module):
    """Semantics Injection Module: ``local(x_l) * hsigmoid(act(x_g))^ + embed(x_g)^`` (^ = resized to x_l)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.local_embedding = ConvBN(cin, cout)
        self.global_embedding = ConvBN(cin, cout)
        self.global_act = ConvBN(cin, cout)
        self.act = HSigmoid()

    def forward(self, x_local: torch.Tensor, x_global: torch.Tensor) -> torch.Tensor:
        size = x_local.shape[2:]
        local = self.local_embedding(x_local)
        gate = F.interpolate(self.act(self.global_act(x_global)), size=size, mode="bilinear", align_corners=False)
        glob = F.interpolate(self.global_embedding(x_global), size=size, mode="bilinear", align_corners=False)
        return local * gate + glob


class Head(nn.Module):
    """TopFormer's SimpleHead: sum the injected maps at the finest scale, fuse conv + BN + ReLU, classify."""

    def __init__(self, channels: int, num_classes: int, depthwise_fuse: bool, dropout: float = 0.1):
        super().__init__()
        self.fuse = ConvBN(channels, channels, groups=channels if depthwise_fuse else 1)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[0]
        for f in feats[1:]:
            x = x + F.interpolate(f, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(self.act(self.fuse(x))))


def pool_tokens(feats: list[torch.Tensor], stride: int = 2) -> torch.Tensor:
    """Average-pool every pyramid map to the coarsest map's size / ``stride`` and concatenate on channels."""
    h, w = feats[-1].shape[2:]
    size = ((h - 1) // stride + 1, (w - 1) // stride + 1)
    return torch.cat([F.adaptive_avg_pool2d(f, size) for f in feats], dim=1)


class TopFormer(nn.Module):
    """A static TopFormer for one :class:`ArchConfig` (what the supernet extracts and what gets exported)."""

    def __init__(self, cfg: ArchConfig, num_classes: int = 150, space: SearchSpace = TABLE1):
        super().__init__()
        space.validate(cfg)
        self.cfg = cfg
        self.stem = nn.Sequential(ConvBN(3, cfg.stem_width, space.stem_kernel, space.stem_stride), nn.ReLU())
        cin = cfg.stem_width
        self.stages = nn.ModuleList()
        for st, spec in zip(cfg.stages, space.stages):
            blocks = []
            for b in range(st.depth):
                stride = spec.stride if b == 0 else 1
                blocks.append(InvertedResidual(cin, st.width, st.kernels[b], stride, st.expansions[b]))
                cin = st.width
            self.stages.append(nn.Sequential(*blocks))
        dim = cfg.token_dim
        self.split = list(cfg.pyramid_widths)
        self.transformer = nn.Sequential(*[
            TransformerBlock(dim, v.key_dim, v.heads, v.value_dim, v.mlp_hidden(dim))
            for v in cfg.vits for _ in range(v.depth)
        ])
        self.injections = nn.ModuleList(Injection(self.split[i], cfg.decoder_width) for i in INJECTION_LEVELS)
        self.head = Head(cfg.decoder_width, num_classes, cfg.fuse == "depthwise")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        pyramid = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in PYRAMID_STAGES:
                pyramid.append(x)
        tokens = self.transformer(pool_tokens(pyramid))
        glob = tokens.split(self.split, dim=1)
        feats = [inj(pyramid[i], glob[i]) for inj, i in zip(self.injections, INJECTION_LEVELS)]
        return self.head(feats)


class WithResize(Deployed):
    """A segmentation net whose logits are bilinearly resized to the input size: ``Deployed(net, "logits")``."""

    def __init__(self, net: nn.Module):
        super().__init__(net, "logits")
