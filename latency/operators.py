"""Decompose a subnet into the operators the device runs, each buildable alone from the network's own classes.

An operator is a frozen dataclass with a stable string key (the latency-table key), its input shapes (NCHW),
its FLOPs (``supernet.size`` convention, so a network's operators add up to ``model_size``), a numeric feature
vector for the regressors, and ``build()``: a tiny ``nn.Module`` made from the classes of
``supernet/topformer.py`` and ``supernet/heads.py``, i.e. exactly what the whole network runs.
``decompose(cfg, size, head=...)`` lists them: one per part of the shape trace (``supernet.trace``), mapped by
``from_part``; the last one depends on the output head (none for ``logits8``, ``Labels`` for ``labels``,
``Resize`` for ``logits``).

Not separate operators: the channel split of the tokens (a view, a slice on the device); its cost lands in the
whole-network correction of the predictor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Union

import torch
from torch import nn

from supernet.heads import DEFAULT_HEAD, HeadOnly
from supernet.space import TABLE1, ArchConfig, SearchSpace
from supernet.trace import (HeadPart, InjectionPart, LabelsPart, MBConvPart, Part, PoolPart, ResizePart, StemPart,
                            TransformerPart, conv_out, side, token_side, trace)

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


class _Keyed:
    """Gives every operator its table key: the kind, then each field as name=value (``parse_key`` inverts it)."""

    kind = ""

    @property
    def key(self) -> str:
        return _fmt_key(self.kind, self)


@dataclass(frozen=True)
class Stem(_Keyed):
    """The stem: 3x3 stride-2 conv + BN + ReLU on the RGB input (``hw`` = input side)."""

    cout: int
    k: int
    s: int
    hw: int
    kind = "stem"

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
class MBConv(_Keyed):
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
class PyramidPool(_Keyed):
    """Average-pool the four pyramid maps to the token grid and concatenate them (``pool_tokens``)."""

    widths: tuple[int, ...]
    hws: tuple[int, ...]
    kind = "pool"

    def token_hw(self) -> int:
        return token_side(self.hws[-1])

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
class Transformer(_Keyed):
    """One transformer block on a ``t`` x ``t`` token grid of ``dim`` channels."""

    dim: int
    heads: int
    key_dim: int
    value_dim: int
    mlp_hidden: int
    t: int
    kind = "transformer"

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
class InjectionOp(_Keyed):
    """One Semantics Injection Module: local map ``cin`` x ``hw``^2, global tokens ``cin`` x ``t``^2 -> ``cout``."""

    cin: int
    cout: int
    hw: int
    t: int
    kind = "injection"

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
class HeadOp(_Keyed):
    """The head: resize + sum the injected maps (sides ``hws``), fuse conv + BN + ReLU, 1x1 classifier."""

    ch: int
    classes: int
    depthwise: bool
    hws: tuple[int, ...]
    kind = "head"

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
class _OutputHead(_Keyed):
    """An output head after the classifier (``supernet.heads``): ``ch`` logits at ``hw`` -> an ``out`` x ``out`` output."""

    ch: int
    hw: int
    out: int
    head = ""

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [(1, self.ch, self.hw, self.hw)]

    def build(self) -> nn.Module:
        return HeadOnly(self.head, (self.out, self.out))

    def flops(self) -> int:
        return 0  # supernet.size counts no resize, argmax or copy


@dataclass(frozen=True)
class Resize(_OutputHead):
    """The ``logits`` output head: bilinear resize of the logits from ``hw`` to ``out``."""

    kind = "resize"
    head = "logits"

    def features(self) -> list[float]:
        return [self.ch, self.hw, self.out, self.ch * self.out ** 2]


@dataclass(frozen=True)
class Labels(_OutputHead):
    """The ``labels`` output head: argmax over ``ch`` logits at ``hw``, nearest upsample of the labels to ``out``."""

    kind = "labels"
    head = "labels"

    def features(self) -> list[float]:
        return [self.ch, self.hw, self.out, self.ch * self.hw ** 2 + self.out ** 2]


Operator = Union[Stem, MBConv, PyramidPool, Transformer, InjectionOp, HeadOp, Resize, Labels]
#: Operator classes by kind (the first field of every key).
KINDS: dict[str, type] = {c.kind: c for c in (Stem, MBConv, PyramidPool, Transformer, InjectionOp, HeadOp, Resize,
                                              Labels)}
#: The operator kinds that end the deployed network, per output head (``supernet.heads``).
HEAD_KINDS: dict[str, tuple[str, ...]] = {"logits8": (), "labels": ("labels",), "logits": ("resize",)}


def parse_key(key: str) -> Operator:
    """Rebuild an operator from its key (inverse of ``op.key``); raises ValueError on a malformed key."""
    kind, _, rest = str(key).partition(":")
    cls = KINDS.get(kind)
    if cls is None or not rest:
        raise ValueError(f"unknown operator key {key!r}")
    try:
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
    except (KeyError, ValueError, TypeError) as exc:  # a missing field, a non-integer, a wrong arity
        raise ValueError(f"malformed operator key {key!r} ({type(exc).__name__}: {exc})") from None
    if op.key != key:
        raise ValueError(f"operator key {key!r} is not canonical")
    return op


def from_part(part: Part) -> Operator:
    """The operator that runs one traced part (``supernet.trace``); operators are square, so is the part."""
    if isinstance(part, StemPart):
        return Stem(part.cout, part.kernel, part.stride, side(part.in_hw))
    if isinstance(part, MBConvPart):
        return MBConv(part.cin, part.cout, part.kernel, part.expansion, part.stride, side(part.in_hw), part.residual)
    if isinstance(part, PoolPart):
        return PyramidPool(part.widths, tuple(side(s[1:]) for s in part.inputs))
    if isinstance(part, TransformerPart):
        return Transformer(part.cin, part.heads, part.key_dim, part.value_dim, part.mlp_hidden, side(part.in_hw))
    if isinstance(part, InjectionPart):
        return InjectionOp(part.cin, part.cout, side(part.in_hw), side(part.global_hw))
    if isinstance(part, HeadPart):
        return HeadOp(part.cin, part.cout, part.depthwise, tuple(side(s[1:]) for s in part.inputs))
    if isinstance(part, ResizePart):
        return Resize(part.cout, side(part.in_hw), side(part.out_hw))
    if isinstance(part, LabelsPart):
        return Labels(part.cin, side(part.in_hw), side(part.out_hw))
    raise TypeError(f"no operator for part {part.name!r} of kind {part.kind!r}")


def decompose(cfg: ArchConfig, size: int = 512, num_classes: int = NUM_CLASSES,
              space: SearchSpace = TABLE1, head: str = DEFAULT_HEAD) -> list[Operator]:
    """The operators the deployed network (``Deployed(TopFormer(cfg), head)``) runs at ``size`` x ``size``, in
    order: one per part of :func:`supernet.trace.trace`."""
    return [from_part(part) for part in trace(cfg, size, num_classes, space, head)]


def log_features(op: Operator) -> list[float]:
    """Features plus their log1p: latency is close to multiplicative in sizes, trees split better on logs."""
    f = [float(x) for x in op.features()]
    return f + [math.log1p(max(x, 0.0)) for x in f]
