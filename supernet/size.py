"""Parameter count and FLOPs of a subnet, computed analytically from its config: one function, used everywhere.

FLOPs convention (the one TopFormer's tables use, mmcv's ``get_model_complexity_info``):
multiply-adds of every convolution plus one per output element for a conv bias, plus 2 per element for each
affine BatchNorm and 1 per element for each activation (ReLU, ReLU6, and the ReLU6 inside h-sigmoid).
The attention's matrix products, softmax, pooling and bilinear resizes (functional calls in TopFormer) and
element-wise additions/multiplications are not counted. ``conv_macs`` reports conv multiply-adds alone.
Parameters count weights, biases and BN affine parameters (not BN running statistics).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from supernet.space import ArchConfig, SearchSpace, TABLE1
from supernet.trace import (HeadPart, InjectionPart, MBConvPart, Part, StemPart, TransformerPart, conv_out,
                            trace)

__all__ = ["SizeReport", "model_size", "part_params", "conv_out"]  # conv_out lives in supernet.trace; re-exported here


@dataclass
class SizeReport:
    """Totals plus a per-part breakdown (``parts``: name -> (params, flops))."""

    params: int = 0
    flops: int = 0
    conv_macs: int = 0
    parts: dict[str, list[int]] = field(default_factory=dict)

    def add(self, part: str, params: int, flops: int, macs: int) -> None:
        self.params += params
        self.flops += flops
        self.conv_macs += macs
        p = self.parts.setdefault(part, [0, 0])
        p[0] += params
        p[1] += flops

    def as_dict(self) -> dict:
        return {"params": self.params, "flops": self.flops, "conv_macs": self.conv_macs,
                "params_m": round(self.params / 1e6, 4), "gflops": round(self.flops / 1e9, 4)}


class _Counter:
    def __init__(self) -> None:
        self.report = SizeReport()
        self.part = ""

    def conv(self, cin: int, cout: int, k: int, groups: int, hw: tuple[int, int], bias: bool = False) -> None:
        out_elems = hw[0] * hw[1]
        macs = (cin // groups) * k * k * cout * out_elems
        params = (cin // groups) * k * k * cout + (cout if bias else 0)
        flops = macs + (cout * out_elems if bias else 0)
        self.report.add(self.part, params, flops, macs)

    def bn(self, c: int, hw: tuple[int, int]) -> None:
        self.report.add(self.part, 2 * c, 2 * c * hw[0] * hw[1], 0)

    def act(self, c: int, hw: tuple[int, int]) -> None:
        self.report.add(self.part, 0, c * hw[0] * hw[1], 0)

    def conv_bn(self, cin: int, cout: int, k: int, groups: int, hw: tuple[int, int]) -> None:
        self.conv(cin, cout, k, groups, hw)
        self.bn(cout, hw)


def model_size(cfg: ArchConfig, size: int | tuple[int, int] = 512, num_classes: int = 150,
               space: SearchSpace = TABLE1) -> SizeReport:
    """Params and FLOPs of the static TopFormer of ``cfg`` at input ``size`` (an int or (H, W)), counted part by
    part over :func:`supernet.trace.trace` (the breakdown groups: stem, stage1.., vit1.., injection1.., head)."""
    c = _Counter()
    for part in trace(cfg, size, num_classes, space):
        c.part = part.group
        _COUNT[part.kind](c, part)
    return c.report


def part_params(part: Part) -> int:
    """Weights (parameters) of one traced part, counted as :func:`model_size` counts them (the latency
    predictor's whole-network correction charges a network for the weights it streams through the cache)."""
    c = _Counter()
    _COUNT[part.kind](c, part)
    return c.report.params


def _count_stem(c: _Counter, p: StemPart) -> None:
    c.conv_bn(p.cin, p.cout, p.kernel, 1, p.out_hw)
    c.act(p.cout, p.out_hw)


def _count_mbconv(c: _Counter, p: MBConvPart) -> None:
    hidden = p.hidden
    if p.expansion != 1:
        c.conv_bn(p.cin, hidden, 1, 1, p.in_hw)
        c.act(hidden, p.in_hw)
    c.conv_bn(hidden, hidden, p.kernel, hidden, p.out_hw)
    c.act(hidden, p.out_hw)
    c.conv_bn(hidden, p.cout, 1, 1, p.out_hw)


def _count_transformer(c: _Counter, p: TransformerPart) -> None:
    dim, thw = p.cin, p.in_hw
    qk, vd = p.heads * p.key_dim, p.heads * p.value_dim
    c.conv_bn(dim, qk, 1, 1, thw)
    c.conv_bn(dim, qk, 1, 1, thw)
    c.conv_bn(dim, vd, 1, 1, thw)
    c.act(vd, thw)  # ReLU6 before the projection
    c.conv_bn(vd, dim, 1, 1, thw)
    hidden = p.mlp_hidden
    c.conv_bn(dim, hidden, 1, 1, thw)
    c.conv(hidden, hidden, 3, hidden, thw, bias=True)
    c.act(hidden, thw)
    c.conv_bn(hidden, dim, 1, 1, thw)


def _count_injection(c: _Counter, p: InjectionPart) -> None:
    d, thw = p.cout, p.global_hw
    c.conv_bn(p.cin, d, 1, 1, p.in_hw)  # local embedding
    c.conv_bn(p.cin, d, 1, 1, thw)  # global act
    c.act(d, thw)  # h-sigmoid's ReLU6
    c.conv_bn(p.cin, d, 1, 1, thw)  # global embedding


def _count_head(c: _Counter, p: HeadPart) -> None:
    d, hhw = p.cin, p.out_hw
    c.conv_bn(d, d, 1, d if p.depthwise else 1, hhw)
    c.act(d, hhw)
    c.conv(d, p.cout, 1, 1, hhw, bias=True)


def _count_nothing(c: _Counter, p: Part) -> None:
    """Pooling and bilinear resizes are functional calls: not counted (module docstring)."""


_COUNT: dict[str, Callable[[_Counter, Any], None]] = {
    "stem": _count_stem, "mbconv": _count_mbconv, "pool": _count_nothing, "transformer": _count_transformer,
    "injection": _count_injection, "head": _count_head, "resize": _count_nothing, "labels": _count_nothing,
}
