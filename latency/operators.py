"""Decompose a subnet into the operators the device runs, each buildable alone from the network's own classes.

An operator is a frozen dataclass with a stable string key (the latency-table key), its input shapes (NCHW),
its FLOPs (``supernet.size`` convention, so a network's operators add up to ``model_size``), a numeric feature
vector for the regressors, and ``build()``: a tiny ``nn.Module`` made from the classes of
``supernet/topformer.py``, i.e. exactly what the whole network runs. ``decompose(cfg, size)`` lists them.

Not separate operators: the channel split of the tokens (a view, a slice on the device); its cost lands in the
whole-network correction of the predictor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Union

import torch
from torch import nn

from supernet.size import conv_out
from supernet.space import INJECTION_LEVELS, PYRAMID_STAGES, TABLE1, ArchConfig, SearchSpace

NUM_CLASSES = 150


def _fmt_key(kind: str, obj: object) -> str:
    parts = []
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, tuple):
            v = "x".join(str(x) for x in v)
        elif isinstance(v, bool):
            v = int(v)
        parts.append(f"{f.name}={v}")
    return f"{kind}:" + ",".join(parts)


def _cbn_flops(cin: int, cout: int, k: int, groups: int, n: int) -> int:
    """Conv + BN FLOPs over ``n`` output pixels (size.py convention: MACs + 2 per element for BN)."""
    return (cin // groups) * k * k * cout * n + 2 * cout * n


@dataclass(frozen=True)
class Stem:
    """The stem: 3x3 stride-2 conv + BN + ReLU on the RGB input (``hw`` = input side)."""

    cout: int
    k: int
    s: int
    hw: int
    kind = "stem"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    def out_hw(self) -> int:
        return conv_out(self.hw, self.k, self.s)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, 3, self.hw, self.hw)]

    def build(self) -> nn.Module:
        from supernet.topformer import ConvBN

        return nn.Sequential(ConvBN(3, self.cout, self.k, self.s), nn.ReLU())

    def flops(self) -> int:
        n = self.out_hw() ** 2
        return _cbn_flops(3, self.cout, self.k, 1, n) + self.cout * n

    def features(self) -> list[float]:
        return [self.cout, self.k, self.s, self.hw, self.flops(), 3 * self.hw ** 2 + self.cout * self.out_hw() ** 2]


@dataclass(frozen=True)
class MBConv:
    """One inverted-residual block: in/out width, kernel, expansion, stride, input side, residual or not."""

    cin: int
    cout: int
    k: int
    e: int
    s: int
    hw: int
    res: bool
    kind = "mbconv"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    @property
    def hidden(self) -> int:
        return int(round(self.cin * self.e))

    def out_hw(self) -> int:
        return conv_out(self.hw, self.k, self.s)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, self.cin, self.hw, self.hw)]

    def build(self) -> nn.Module:
        from supernet.topformer import InvertedResidual

        block = InvertedResidual(self.cin, self.cout, self.k, self.s, self.e)
        assert block.use_residual == self.res, "residual flag disagrees with the network's rule"
        return block

    def flops(self) -> int:
        n_in, n_out, h = self.hw ** 2, self.out_hw() ** 2, self.hidden
        total = 0
        if self.e != 1:
            total += _cbn_flops(self.cin, h, 1, 1, n_in) + h * n_in
        total += _cbn_flops(h, h, self.k, h, n_out) + h * n_out
        total += _cbn_flops(h, self.cout, 1, 1, n_out)
        return total

    def features(self) -> list[float]:
        n_in, n_out, h = self.hw ** 2, self.out_hw() ** 2, self.hidden
        expand = self.cin * h * n_in if self.e != 1 else 0
        dw = h * self.k * self.k * n_out
        project = h * self.cout * n_out
        memory = self.cin * n_in + (h * n_in if self.e != 1 else 0) + h * n_out + self.cout * n_out
        return [self.cin, self.cout, self.k, self.e, self.s, self.hw, int(self.res), h,
                expand, dw, project, memory, self.flops()]


@dataclass(frozen=True)
class PyramidPool:
    """Average-pool the four pyramid maps to the token grid and concatenate them (``pool_tokens``)."""

    widths: tuple[int, ...]
    hws: tuple[int, ...]
    kind = "pool"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    def token_hw(self) -> int:
        return (self.hws[-1] - 1) // 2 + 1

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, w, h, h) for w, h in zip(self.widths, self.hws)]

    def build(self) -> nn.Module:
        return _PoolModule()

    def flops(self) -> int:
        return 0  # functional pooling is not counted by supernet.size

    def features(self) -> list[float]:
        elems = sum(w * h * h for w, h in zip(self.widths, self.hws))
        return [*self.widths, sum(self.widths), elems, self.token_hw()]


class _PoolModule(nn.Module):
    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        from supernet.topformer import pool_tokens

        return pool_tokens(list(feats))


@dataclass(frozen=True)
class Transformer:
    """One transformer block on a ``t`` x ``t`` token grid of ``dim`` channels."""

    dim: int
    heads: int
    key_dim: int
    value_dim: int
    mlp_hidden: int
    t: int
    kind = "transformer"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, self.dim, self.t, self.t)]

    def build(self) -> nn.Module:
        from supernet.topformer import TransformerBlock

        return TransformerBlock(self.dim, self.key_dim, self.heads, self.value_dim, self.mlp_hidden)

    def flops(self) -> int:
        n, d = self.t ** 2, self.dim
        qk, vd, hid = self.heads * self.key_dim, self.heads * self.value_dim, self.mlp_hidden
        total = 2 * _cbn_flops(d, qk, 1, 1, n) + _cbn_flops(d, vd, 1, 1, n) + vd * n + _cbn_flops(vd, d, 1, 1, n)
        total += _cbn_flops(d, hid, 1, 1, n) + (hid * 9 * n + hid * n) + hid * n + _cbn_flops(hid, d, 1, 1, n)
        return total

    def features(self) -> list[float]:
        n = self.t ** 2
        attn = self.heads * n * n * (self.key_dim + self.value_dim)
        return [self.dim, self.heads, self.key_dim, self.value_dim, self.mlp_hidden, n,
                self.heads * self.key_dim, self.heads * self.value_dim, attn, self.heads * n * n, self.flops()]


@dataclass(frozen=True)
class InjectionOp:
    """One Semantics Injection Module: local map ``cin`` x ``hw``^2, global tokens ``cin`` x ``t``^2 -> ``cout``."""

    cin: int
    cout: int
    hw: int
    t: int
    kind = "injection"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, self.cin, self.hw, self.hw), (1, self.cin, self.t, self.t)]

    def build(self) -> nn.Module:
        from supernet.topformer import Injection

        return Injection(self.cin, self.cout)

    def flops(self) -> int:
        n, m = self.hw ** 2, self.t ** 2
        return _cbn_flops(self.cin, self.cout, 1, 1, n) + 2 * _cbn_flops(self.cin, self.cout, 1, 1, m) + self.cout * m

    def features(self) -> list[float]:
        n = self.hw ** 2
        return [self.cin, self.cout, self.hw, self.t, self.cin * self.cout * n, self.cout * n,
                self.cin * n, self.flops()]


@dataclass(frozen=True)
class HeadOp:
    """The head: resize + sum the injected maps (sides ``hws``), fuse conv + BN + ReLU, 1x1 classifier."""

    ch: int
    classes: int
    depthwise: bool
    hws: tuple[int, ...]
    kind = "head"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, self.ch, h, h) for h in self.hws]

    def build(self) -> nn.Module:
        from supernet.topformer import Head

        return _HeadModule(Head(self.ch, self.classes, self.depthwise))

    def flops(self) -> int:
        n = self.hws[0] ** 2
        g = self.ch if self.depthwise else 1
        return _cbn_flops(self.ch, self.ch, 1, g, n) + self.ch * n + self.ch * self.classes * n + self.classes * n

    def features(self) -> list[float]:
        n = self.hws[0] ** 2
        return [self.ch, self.classes, int(self.depthwise), self.hws[0], self.ch * n, self.flops()]


class _HeadModule(nn.Module):
    """``Head`` takes a list of maps; the exported operator takes them as separate inputs."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.head(list(feats))


@dataclass(frozen=True)
class Resize:
    """The deployed model's final bilinear resize of the logits from ``hw`` to ``out``."""

    ch: int
    hw: int
    out: int
    kind = "resize"

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, self.ch, self.hw, self.hw)]

    def build(self) -> nn.Module:
        return _ResizeModule(self.out)

    def flops(self) -> int:
        return 0

    def features(self) -> list[float]:
        return [self.ch, self.hw, self.out, self.ch * self.out ** 2]


class _ResizeModule(nn.Module):
    def __init__(self, out: int):
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.interpolate(x, size=(self.out, self.out), mode="bilinear", align_corners=False)


Operator = Union[Stem, MBConv, PyramidPool, Transformer, InjectionOp, HeadOp, Resize]
#: Operator classes by kind (the first field of every key).
KINDS: dict[str, type] = {c.kind: c for c in (Stem, MBConv, PyramidPool, Transformer, InjectionOp, HeadOp, Resize)}


def parse_key(key: str) -> Operator:
    """Rebuild an operator from its key (inverse of ``op.key``); raises ValueError on a malformed key."""
    kind, _, rest = key.partition(":")
    cls = KINDS.get(kind)
    if cls is None or not rest:
        raise ValueError(f"unknown operator key {key!r}")
    values = dict(item.split("=", 1) for item in rest.split(","))
    kwargs = {}
    for f in fields(cls):
        raw = values[f.name]
        if f.type in ("tuple[int, ...]",):
            kwargs[f.name] = tuple(int(x) for x in raw.split("x"))
        elif f.type == "bool":
            kwargs[f.name] = bool(int(raw))
        else:
            kwargs[f.name] = int(raw)
    op = cls(**kwargs)
    if op.key != key:
        raise ValueError(f"operator key {key!r} is not canonical")
    return op


def decompose(cfg: ArchConfig, size: int = 512, num_classes: int = NUM_CLASSES,
              space: SearchSpace = TABLE1) -> list[Operator]:
    """The operators the deployed network (``WithResize(TopFormer(cfg))``) runs at ``size`` x ``size``, in order."""
    ops: list[Operator] = []
    stem = Stem(cfg.stem_width, space.stem_kernel, space.stem_stride, size)
    ops.append(stem)
    hw, cin = stem.out_hw(), cfg.stem_width
    pyramid_hw: list[int] = []
    for i, (st, spec) in enumerate(zip(cfg.stages, space.stages)):
        for b in range(st.depth):
            s = spec.stride if b == 0 else 1
            op = MBConv(cin, st.width, st.kernels[b], st.expansions[b], s, hw, s == 1 and cin == st.width)
            ops.append(op)
            hw, cin = op.out_hw(), st.width
        if i in PYRAMID_STAGES:
            pyramid_hw.append(hw)
    pool = PyramidPool(cfg.pyramid_widths, tuple(pyramid_hw))
    ops.append(pool)
    t, dim = pool.token_hw(), cfg.token_dim
    for v in cfg.vits:
        for _ in range(v.depth):
            ops.append(Transformer(dim, v.heads, v.key_dim, v.value_dim, v.mlp_hidden(dim), t))
    for level in INJECTION_LEVELS:
        ops.append(InjectionOp(cfg.pyramid_widths[level], cfg.decoder_width, pyramid_hw[level], t))
    head = HeadOp(cfg.decoder_width, num_classes, cfg.fuse == "depthwise",
                  tuple(pyramid_hw[level] for level in INJECTION_LEVELS))
    ops.append(head)
    ops.append(Resize(num_classes, head.hws[0], size))
    return ops


def log_features(op: Operator) -> list[float]:
    """Features plus their log1p: latency is close to multiplicative in sizes, trees split better on logs."""
    f = [float(x) for x in op.features()]
    return f + [math.log1p(max(x, 0.0)) for x in f]
